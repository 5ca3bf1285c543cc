//! Loading a [`RuleSet`]: the files of `[rules] paths` (globs, relative to
//! the config file's directory), then the config's inline `[[rule]]`s.

use siemstress_common::config::Config;

use super::def;
use super::error::RuleError;
use super::validate::validate;
use super::{Rule, RuleSet};

impl RuleSet {
    /// Loads the rules a config names: files matched by `[rules] paths`,
    /// then inline `[[rule]]`s.
    pub fn load(config: &Config) -> Result<Self, RuleError> {
        let cfg_origin = config.origin_name();
        let base = config.base_dir();
        let actions = action_names(config);
        let mut set = RuleSet::default();
        for pattern in &config.rules.paths {
            let paths =
                siemstress_common::paths::expand(&base, pattern).map_err(|m| RuleError {
                    key: Some("rules.paths".into()),
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
                    set.skipped
                        .push((path, "Sigma rules are not supported yet".into()));
                    continue;
                }
                let origin = path.display().to_string();
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| RuleError::file(&origin, format!("cannot read rule file: {e}")))?;
                set.add_text(&text, &origin, true, &actions)?;
            }
        }
        if config.rule.is_some() {
            let origin = format!("{cfg_origin} [[rule]]");
            set.add_text(&config.text, &origin, false, &actions)?;
        }
        Ok(set)
    }

    /// Parses the text of one rule file (`origin` names it in errors);
    /// `actions` are the action names configured (`[actions.NAME]`).
    #[cfg(test)]
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
            let rule = validate(read.def, origin, &read.lines, actions)?;
            self.push(rule, read.lines.of("name"))?;
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

/// Names under `[actions]` in the config.
fn action_names(config: &Config) -> Vec<String> {
    config.actions.keys().cloned().collect()
}
