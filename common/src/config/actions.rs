//! `[actions.NAME]`: what siemtrigger does with an alert, and (`[actions.mail]`)
//! how `siemquery --report --mail` sends the report. Read once with the
//! config (an unknown key is an error with its line); [`ActionConfig::resolve`]
//! checks the keys of the action's type and fills in the one set of defaults.
//!
//! ```toml
//! [actions.mail]                 # type defaults to the name (mail, exec, webhook, file)
//! smtp = "smtp://localhost:25"   # or smtp+starttls://host:587, smtps://host:465; user:pass@ for AUTH
//! # allow_plaintext_auth = true  # user:pass@ over plain smtp:// (refused without it)
//! from = "siem@example.org"
//! to = ["security@example.org"]
//! digest = false                 # true: one mail per run with every alert
//!
//! [actions.page]
//! type = "exec"                  # run directly, never through a shell
//! program = "/usr/local/bin/page-oncall"
//! args = ["--rule", "{rule}", "--", "{key}"]   # {field} of the alert in arguments
//! timeout = "30s"
//!
//! [actions.hook]
//! type = "webhook"               # JSON POST of the alert
//! url = "http://127.0.0.1:8080/alerts"
//!
//! [actions.log]
//! type = "file"                  # one JSON object per line, appended
//! path = "/var/log/siemstress/alerts.ndjson"
//! ```
//!
//! Every action also takes `timeout` (default 30s), `retries` (retries after
//! the first attempt, default 5; 0: one attempt) and `backoff` (first retry
//! delay, default 30s, doubling).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::Error;

/// Default `subject` of a mail action.
pub const DEFAULT_SUBJECT: &str = "[siemstress] {severity} {rule}: {key}";
/// Default `timeout` of an action.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `retries`: retries of a failed action after its first attempt.
pub const DEFAULT_RETRIES: u32 = 5;
/// Default `backoff`: the first retry's delay (doubling after).
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(30);

/// Action types.
pub const TYPES: [&str; 4] = ["mail", "exec", "webhook", "file"];

/// `[actions.NAME]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// `mail`, `exec`, `webhook` or `file`; default the action's name.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    // mail
    pub smtp: Option<String>,
    pub from: Option<String>,
    pub to: Option<OneOrMany>,
    pub subject: Option<String>,
    pub digest: Option<bool>,
    /// AUTH over plain `smtp://` (refused without it).
    pub allow_plaintext_auth: Option<bool>,
    // exec
    pub program: Option<String>,
    pub args: Option<Vec<String>>,
    // webhook
    pub url: Option<String>,
    // file
    pub path: Option<PathBuf>,
    // every type
    pub timeout: Option<String>,
    pub retries: Option<u32>,
    pub backoff: Option<String>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A checked action with its defaults filled in.
#[derive(Debug, Clone)]
pub struct Action {
    pub kind: ActionKind,
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub retries: u32,
    pub backoff: Duration,
}

/// What an action does.
#[derive(Debug, Clone)]
pub enum ActionKind {
    Mail(Mail),
    Exec {
        program: String,
        /// `{field}` templates of the alert.
        args: Vec<String>,
    },
    Webhook {
        /// `http://` only.
        url: url::Url,
    },
    File {
        path: PathBuf,
    },
}

/// A `mail` action (and the report's mail).
#[derive(Debug, Clone)]
pub struct Mail {
    /// SMTP URL (see `common::mail`); checked.
    pub smtp: String,
    pub from: lettre::message::Mailbox,
    pub to: Vec<lettre::message::Mailbox>,
    /// `{field}` template of the alert.
    pub subject: String,
    /// One mail per run with every alert.
    pub digest: bool,
    /// AUTH over plain `smtp://` allowed.
    pub allow_plaintext_auth: bool,
}

impl Mail {
    /// A message from `from` to every `to`, with `subject`.
    pub fn builder(&self, subject: &str) -> lettre::message::MessageBuilder {
        let mut b = lettre::Message::builder()
            .from(self.from.clone())
            .subject(subject);
        for t in &self.to {
            b = b.to(t.clone());
        }
        b
    }
}

impl ActionConfig {
    /// Checks `[actions.NAME]`: the keys of its type are set and valid, the
    /// keys of other types absent; defaults filled in. Errors name the key.
    pub fn resolve(&self, name: &str) -> Result<Action, Error> {
        let bad = |key: &str, message: String| Error::ConfigValue {
            key: crate::config::toml_key(&["actions", name, key]),
            message,
        };
        let type_name = self.kind.as_deref().unwrap_or(name);
        if !TYPES.contains(&type_name) {
            return Err(bad(
                "type",
                format!(
                    "unknown type {type_name:?} ({}; the type defaults to the action's name)",
                    TYPES.join(", ")
                ),
            ));
        }
        // Keys of another type are refused rather than ignored.
        let keys: [(&str, bool, &str); 10] = [
            ("smtp", self.smtp.is_some(), "mail"),
            ("from", self.from.is_some(), "mail"),
            ("to", self.to.is_some(), "mail"),
            ("subject", self.subject.is_some(), "mail"),
            ("digest", self.digest.is_some(), "mail"),
            (
                "allow_plaintext_auth",
                self.allow_plaintext_auth.is_some(),
                "mail",
            ),
            ("program", self.program.is_some(), "exec"),
            ("args", self.args.is_some(), "exec"),
            ("url", self.url.is_some(), "webhook"),
            ("path", self.path.is_some(), "file"),
        ];
        if let Some((key, _, owner)) = keys.iter().find(|(_, set, t)| *set && *t != type_name) {
            return Err(bad(
                key,
                format!("not used by a {type_name} action (only by {owner})"),
            ));
        }
        let missing = |key: &str, example: &str| bad(key, format!("is not set ({example})"));
        let kind = match type_name {
            "mail" => {
                let smtp = self
                    .smtp
                    .clone()
                    .ok_or_else(|| missing("smtp", "e.g. smtp = \"smtp://localhost:25\""))?;
                // The URL (scheme, host) is checked when the config loads, not at the first alert.
                let allow_plaintext_auth = self.allow_plaintext_auth.unwrap_or(false);
                crate::mail::transport(&smtp, allow_plaintext_auth).map_err(|e| match e {
                    Error::ConfigValue { message, .. } => bad("smtp", message),
                    other => other,
                })?;
                let mailbox = |key: &str, s: &str| {
                    s.parse::<lettre::message::Mailbox>()
                        .map_err(|e| bad(key, format!("{s:?}: {e}")))
                };
                let from = self
                    .from
                    .as_deref()
                    .ok_or_else(|| missing("from", "e.g. from = \"siem@example.org\""))?;
                let to = match &self.to {
                    None => Vec::new(),
                    Some(OneOrMany::One(s)) => vec![s.clone()],
                    Some(OneOrMany::Many(l)) => l.clone(),
                };
                if to.is_empty() {
                    return Err(missing("to", "e.g. to = [\"security@example.org\"]"));
                }
                ActionKind::Mail(Mail {
                    smtp,
                    from: mailbox("from", from)?,
                    to: to
                        .iter()
                        .map(|t| mailbox("to", t))
                        .collect::<Result<_, _>>()?,
                    subject: self
                        .subject
                        .clone()
                        .unwrap_or_else(|| DEFAULT_SUBJECT.to_owned()),
                    digest: self.digest.unwrap_or(false),
                    allow_plaintext_auth,
                })
            }
            "exec" => ActionKind::Exec {
                program: self
                    .program
                    .clone()
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| missing("program", "the path of the program to run"))?,
                args: self.args.clone().unwrap_or_default(),
            },
            "webhook" => {
                let s = self
                    .url
                    .as_deref()
                    .ok_or_else(|| missing("url", "e.g. url = \"http://127.0.0.1:8080/alerts\""))?;
                let u = url::Url::parse(s).map_err(|e| bad("url", format!("{s:?}: {e}")))?;
                if u.scheme() != "http" {
                    return Err(bad(
                        "url",
                        "only http:// is supported (put a local TLS proxy in front for https)"
                            .into(),
                    ));
                }
                ActionKind::Webhook { url: u }
            }
            _ => ActionKind::File {
                path: self
                    .path
                    .clone()
                    .filter(|p| !p.as_os_str().is_empty())
                    .ok_or_else(|| missing("path", "the file the alerts are appended to"))?,
            },
        };
        let duration = |key: &str, v: &Option<String>, default: Duration| {
            v.as_deref()
                .map(|s| crate::time::parse_duration(s).map_err(|e| bad(key, e.to_string())))
                .transpose()
                .map(|d| d.unwrap_or(default))
        };
        Ok(Action {
            kind,
            timeout: duration("timeout", &self.timeout, DEFAULT_TIMEOUT)?,
            retries: self.retries.unwrap_or(DEFAULT_RETRIES),
            backoff: duration("backoff", &self.backoff, DEFAULT_BACKOFF)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn action(text: &str) -> Result<Action, Error> {
        let cfg = Config::parse_str(text)?;
        let (name, a) = cfg.actions.iter().next().expect("one action");
        a.resolve(name)
    }

    #[test]
    fn one_set_of_defaults() {
        let a = action(
            "[actions.mail]\nsmtp = \"smtp://127.0.0.1:25\"\nfrom = \"a@example.org\"\nto = \"b@example.org\"\n",
        )
        .unwrap();
        assert_eq!(
            (a.timeout, a.retries, a.backoff),
            (DEFAULT_TIMEOUT, DEFAULT_RETRIES, DEFAULT_BACKOFF)
        );
        let ActionKind::Mail(m) = a.kind else {
            panic!("{a:?}")
        };
        assert_eq!(
            (m.subject.as_str(), m.digest, m.to.len()),
            (DEFAULT_SUBJECT, false, 1)
        );
        let a = action("[actions.page]\ntype = \"exec\"\nprogram = \"/bin/true\"\nretries = 0\n")
            .unwrap();
        assert_eq!(a.retries, 0);
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            (
                "[actions.mail]\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\n",
                "actions.mail.smtp",
            ),
            (
                "[actions.mail]\nsmtp = \"ftp://x\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\n",
                "actions.mail.smtp",
            ),
            (
                "[actions.mail]\nsmtp = \"smtp://x\"\nfrom = \"a@b.c\"\n",
                "actions.mail.to",
            ),
            (
                "[actions.mail]\nsmtp = \"smtp://x\"\nfrom = \"nobody\"\nto = \"d@e.f\"\n",
                "actions.mail.from",
            ),
            (
                "[actions.pager]\nprogram = \"/bin/true\"\n",
                "actions.pager.type",
            ),
            (
                "[actions.p]\ntype = \"exec\"\nprogram = \"/bin/true\"\nsmtp = \"smtp://x\"\n",
                "actions.p.smtp",
            ),
            (
                "[actions.h]\ntype = \"webhook\"\nurl = \"https://x/\"\n",
                "actions.h.url",
            ),
            ("[actions.f]\ntype = \"file\"\n", "actions.f.path"),
            (
                "[actions.f]\ntype = \"file\"\npath = \"/x\"\ntimeout = \"soon\"\n",
                "actions.f.timeout",
            ),
        ] {
            let e = action(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        // Unknown keys: at config load, with the line.
        let e = Config::parse_str("[actions.f]\ntype = \"file\"\npath = \"/x\"\nretry = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("retry") && e.contains("line 4"), "{e}");
    }
}
