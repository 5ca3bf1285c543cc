//! Loading a [`RuleSet`]: the files of `[rules] paths` (globs, relative to
//! the config file's directory), then the config's inline `[[rule]]`s.

use siemstress_common::config::Config;

use super::error::RuleError;
use super::validate::validate;
use super::{Rule, RuleSet};
use super::{builtin, def};

impl RuleSet {
    /// Loads the rules a config names: files matched by `[rules] paths`,
    /// then inline `[[rule]]`s.
    pub fn load(config: &Config) -> Result<Self, RuleError> {
        let cfg_origin = config.origin_name();
        let base = config.base_dir();
        let actions = action_names(config);
        let mut set = RuleSet::default();
        let mut mapping: Option<crate::sigma::Mapping> = None;
        for pattern in &config.rules.paths {
            let paths =
                siemstress_common::paths::expand(&base, pattern).map_err(|m| RuleError {
                    key: Some("rules.paths".into()),
                    line: config.key_line("rules.paths"),
                    ..RuleError::file(
                        &cfg_origin,
                        if m.starts_with("bad glob") {
                            m
                        } else {
                            format!("rule file {m}")
                        },
                    )
                })?;
            for path in paths {
                let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
                if ext == "yml" || ext == "yaml" {
                    if mapping.is_none() {
                        mapping = Some(load_mapping(config, &cfg_origin)?);
                    }
                    let mapping = mapping.as_ref().expect("mapping");
                    set.add_sigma(&path, mapping, &actions)?;
                    continue;
                }
                let origin = path.display().to_string();
                let text = siemstress_common::files::read_text(&path)
                    .map_err(|e| RuleError::file(&origin, format!("cannot read rule file: {e}")))?;
                set.add_text(&text, &origin, true, &actions)?;
            }
        }
        // A bad [sigma] is an error of the config, Sigma rules or not.
        let sc = &config.sigma;
        if mapping.is_none()
            && (sc.mapping.is_some() || !sc.logsource.is_empty() || !sc.fields.is_empty())
        {
            load_mapping(config, &cfg_origin)?;
        }
        if config.rule.is_some() {
            let origin = format!("{cfg_origin}{INLINE_SUFFIX}");
            set.add_text(&config.text, &origin, false, &actions)?;
        }
        set.add_builtin(config, &cfg_origin, &actions)?;
        if let Some(n) = config.rules.max_keys {
            if n < 1 {
                return Err(RuleError {
                    key: Some("rules.max_keys".into()),
                    line: config.key_line("rules.max_keys"),
                    ..RuleError::file(&cfg_origin, format!("must be at least 1, not {n}"))
                });
            }
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            for r in &mut set.rules {
                r.max_keys.get_or_insert(n);
            }
        }
        Ok(set)
    }

    /// The shipped pack, unless `[rules] builtin = false` (default: only
    /// when the config names no rules), without the rules `[rules]
    /// disable` names.
    fn add_builtin(
        &mut self,
        config: &Config,
        cfg_origin: &str,
        actions: &[String],
    ) -> Result<(), RuleError> {
        let cfg = &config.rules;
        let on = cfg
            .builtin
            .unwrap_or(cfg.paths.is_empty() && config.rule.is_none());
        let disable_err = |message: String| RuleError {
            key: Some("rules.disable".into()),
            line: config.key_line("rules.disable"),
            ..RuleError::file(cfg_origin, message)
        };
        if !on {
            if !cfg.disable.is_empty() {
                return Err(disable_err(
                    "the built-in rules are off (they run when the config names no rules, \
                     or with [rules] builtin = true)"
                        .into(),
                ));
            }
            return Ok(());
        }
        let mut pack = RuleSet::default();
        for (file, text) in builtin::FILES {
            pack.add_text(text, file, true, actions)?;
        }
        for name in &cfg.disable {
            if pack.get(name).is_none() {
                return Err(disable_err(format!(
                    "no built-in rule is called {name:?} (siemtrigger --list-rules shows them)"
                )));
            }
        }
        for mut rule in pack.rules {
            if cfg.disable.contains(&rule.name) {
                continue;
            }
            rule.builtin = true;
            let line = rule.line;
            // Your rule of a built-in's name (a Sigma example next to the pack,
            // say): the error is yours to fix, so it names your rule, and the
            // two ways out.
            if let Some(mine) = self.rules.iter().find(|r| r.name == rule.name) {
                return Err(RuleError {
                    line: Some(mine.line),
                    rule: Some(mine.name.clone()),
                    key: Some("name".into()),
                    ..RuleError::file(
                        &mine.origin,
                        format!(
                            "the built-in rule {}:{line} has that name: rename this rule, or \
                             leave the built-in out with [rules] disable = [{:?}]",
                            rule.origin, rule.name
                        ),
                    )
                });
            }
            self.push(rule, line)?;
            self.builtin += 1;
        }
        Ok(())
    }

    /// Parses the text of one rule file (`origin` names it in errors);
    /// `actions` are the action names configured (`[actions.NAME]`).
    #[cfg(any(test, fuzzing))]
    pub fn from_file_text(text: &str, origin: &str, actions: &[String]) -> Result<Self, RuleError> {
        let mut set = RuleSet::default();
        set.add_text(text, origin, true, actions)?;
        Ok(set)
    }

    fn add_text(
        &mut self,
        text: &str,
        origin: &str,
        whole_file: bool,
        actions: &[String],
    ) -> Result<(), RuleError> {
        for read in def::read(text, origin, whole_file)? {
            let mut rule = validate(read.def, origin, &read.lines, actions)?;
            rule.line = read.lines.of("name");
            let line = rule.line;
            self.push(rule, line)?;
        }
        Ok(())
    }

    /// The rules of a Sigma file; those that cannot be translated (or whose
    /// translation does not load) are skipped with their reason.
    pub fn add_sigma(
        &mut self,
        path: &std::path::Path,
        mapping: &crate::sigma::Mapping,
        actions: &[String],
    ) -> Result<(), RuleError> {
        let origin = path.display().to_string();
        let outcomes = crate::sigma::translate_file(path, mapping)
            .map_err(|e| RuleError::file(&origin, format!("cannot read rule file: {e}")))?;
        self.add_sigma_outcomes(path, outcomes, actions)
    }

    /// The translated rules of the Sigma file `path` (refusals: skipped).
    pub fn add_sigma_outcomes(
        &mut self,
        path: &std::path::Path,
        outcomes: Vec<crate::sigma::Outcome>,
        actions: &[String],
    ) -> Result<(), RuleError> {
        let origin = path.display().to_string();
        for outcome in outcomes {
            let t = match outcome {
                Ok(t) => t,
                Err(r) => {
                    self.skipped.push((path.to_owned(), r.to_string()));
                    continue;
                }
            };
            let mut one = RuleSet::default();
            if let Err(e) = one.add_text(&t.toml, &origin, true, actions) {
                let r = crate::sigma::Refused {
                    title: t.title,
                    id: t.id,
                    reason: match e.key {
                        Some(k) => format!("{k}: {}", e.message),
                        None => e.message,
                    },
                };
                self.skipped.push((path.to_owned(), r.to_string()));
                continue;
            }
            for mut rule in one.rules {
                // The Sigma rule's line, not the generated TOML's.
                rule.line = t.line;
                let line = rule.line;
                self.push(rule, line)?;
            }
        }
        Ok(())
    }

    fn push(&mut self, rule: Rule, line: usize) -> Result<(), RuleError> {
        if let Some(other) = self.rules.iter().find(|r| r.name == rule.name) {
            return Err(RuleError {
                line: Some(line),
                rule: Some(rule.name.clone()),
                key: Some("name".into()),
                ..RuleError::file(
                    &rule.origin,
                    format!("a rule of that name is already defined in {}", other.origin),
                )
            });
        }
        self.rules.push(rule);
        Ok(())
    }
}

/// What follows the config's name in the origin of its inline rules.
pub const INLINE_SUFFIX: &str = " [[rule]]";

/// Names under `[actions]` in the config.
fn action_names(config: &Config) -> Vec<String> {
    config.actions.keys().cloned().collect()
}

/// The Sigma mapping of `config`; an error names the config's key and line.
fn load_mapping(config: &Config, cfg_origin: &str) -> Result<crate::sigma::Mapping, RuleError> {
    crate::sigma::Mapping::load(config).map_err(|e| RuleError {
        line: e.key.as_deref().and_then(|k| config.key_line(k)),
        key: Some(e.key.unwrap_or_else(|| "sigma".into())),
        ..RuleError::file(cfg_origin, e.message)
    })
}
