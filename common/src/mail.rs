//! The SMTP transport both tools mail through (siemtrigger's `mail` action,
//! `siemquery --report --mail`), from one URL in `[actions.mail] smtp`:
//!
//! - `smtp://host[:25]`: plain SMTP (a local relay);
//! - `smtp+starttls://host[:587]`: upgraded with STARTTLS, refused without it;
//! - `smtps://host[:465]`: TLS from the first byte.
//!
//! `user:password@` in the URL authenticates (AUTH PLAIN/LOGIN); the URL is
//! only ever shown redacted. Over plain `smtp://` that would send the
//! password unencrypted, so it is refused unless the action says
//! `allow_plaintext_auth = true` (a relay on the same host, say).

use lettre::SmtpTransport;
use lettre::transport::smtp::authentication::Credentials;

use crate::Error;
use crate::db::redact;

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    Plain,
    StartTls,
    Tls,
}

/// The security mode and default port of an `smtp` URL scheme.
pub fn security(scheme: &str) -> Option<(Security, u16)> {
    match scheme {
        "smtp" => Some((Security::Plain, 25)),
        "smtp+starttls" => Some((Security::StartTls, 587)),
        "smtps" => Some((Security::Tls, 465)),
        _ => None,
    }
}

/// A transport for `url` (see the module docs); credentials over plain
/// `smtp://` only with `allow_plaintext_auth`.
pub fn transport(url: &str, allow_plaintext_auth: bool) -> Result<SmtpTransport, Error> {
    let shown = redact(url);
    let bad = |message: String| Error::ConfigValue {
        key: "actions.mail.smtp".into(),
        message,
    };
    let u = url::Url::parse(url).map_err(|e| bad(format!("{shown:?}: {e}")))?;
    let (mode, default_port) = security(u.scheme()).ok_or_else(|| {
        bad(format!(
            "{shown:?}: use smtp:// (plain), smtp+starttls:// or smtps://"
        ))
    })?;
    let host = u
        .host_str()
        .ok_or_else(|| bad(format!("{shown:?} has no host")))?;
    let builder = match mode {
        Security::Plain => SmtpTransport::builder_dangerous(host),
        Security::StartTls => {
            SmtpTransport::starttls_relay(host).map_err(|e| bad(format!("{shown:?}: {e}")))?
        }
        Security::Tls => SmtpTransport::relay(host).map_err(|e| bad(format!("{shown:?}: {e}")))?,
    };
    let mut builder = builder.port(u.port().unwrap_or(default_port));
    if !u.username().is_empty() {
        if mode == Security::Plain && !allow_plaintext_auth {
            return Err(bad(format!(
                "{shown:?}: AUTH over plain smtp:// would send the password unencrypted; \
                 use smtp+starttls:// or smtps://, or set allow_plaintext_auth = true \
                 in the action"
            )));
        }
        let user = percent_decode(u.username());
        let pass = percent_decode(u.password().unwrap_or(""));
        builder = builder.credentials(Credentials::new(user, pass));
    }
    Ok(builder.build())
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_errors() {
        assert_eq!(security("smtp"), Some((Security::Plain, 25)));
        assert_eq!(security("smtp+starttls"), Some((Security::StartTls, 587)));
        assert_eq!(security("smtps"), Some((Security::Tls, 465)));
        assert!(transport("smtp://localhost:2525", false).is_ok());
        assert!(transport("smtp+starttls://mail.example.org", false).is_ok());
        assert!(transport("smtps://bob:s3cret@mail.example.org", false).is_ok());
        assert!(transport("smtp+starttls://bob:s3cret@mail.example.org", false).is_ok());
        let err = transport("smtp://bob:s3cret@mail.example.org", false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("allow_plaintext_auth") && !err.contains("s3cret"),
            "{err}"
        );
        assert!(transport("smtp://bob:s3cret@localhost", true).is_ok());
        let err = transport("http://bob:s3cret@mail.example.org", false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("smtp+starttls://") && !err.contains("s3cret"),
            "{err}"
        );
    }

    #[test]
    fn credentials_are_percent_decoded() {
        assert_eq!(percent_decode("p%40ss%3Aword"), "p@ss:word");
    }
}
