//! Retention: how long event rows, alerts and snapshot runs are kept
//! (`siemparse --prune`, and a following or listening siemparse once an
//! hour). Nothing is ever deleted unless the config says so.
//!
//! ```toml
//! [section.auth]
//! retention = "90d"             # this section's table
//!
//! [retention]
//! default = "180d"              # every other event table
//! alerts = "1y"                 # alerts (their events, their action runs)
//! snapshots = { keep_runs = 30, max_age = "1y" }
//! archive = "/var/lib/siemstress/archive"  # pruned event rows written here first
//! ```
//!
//! A period is a duration (`90d`, `12w`, `1y`: humantime's units) or
//! `"forever"`.

use std::time::Duration;

use serde::Deserialize;

use crate::Error;

/// `[retention]` as written in the file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Event tables of sections without their own `retention`.
    pub default: Option<String>,
    /// Alerts, by their event time (`ts`).
    pub alerts: Option<String>,
    /// Snapshot runs.
    pub snapshots: Option<SnapshotsConfig>,
    /// Directory that pruned event rows are archived into before they are
    /// deleted (`siemparse --prune --archive DIR` overrides); relative to
    /// the config file's directory.
    pub archive: Option<std::path::PathBuf>,
}

/// `[retention] snapshots = { keep_runs = N, max_age = "1y" }`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotsConfig {
    /// The diffs of the latest N successful runs of each name and host are kept.
    pub keep_runs: Option<u32>,
    /// Runs taken longer ago are removed.
    pub max_age: Option<String>,
}

/// How long something is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Keep {
    /// For this long after its time.
    For(Duration),
    /// Never deleted.
    Forever,
}

/// The longest retention that is not "forever": 100 years (36,525 days).
const MAX_RETENTION: std::time::Duration = std::time::Duration::from_secs(36_525 * 86_400);

impl Keep {
    /// Parses `"90d"` or `"forever"`; errors name `key`.
    pub fn parse(text: &str, key: &str) -> Result<Self, Error> {
        if text.trim().eq_ignore_ascii_case("forever") {
            return Ok(Keep::Forever);
        }
        let d = crate::time::parse_duration(text).map_err(|e| Error::ConfigValue {
            key: key.to_owned(),
            message: format!("{e}; or \"forever\""),
        })?;
        if d.is_zero() {
            return Err(Error::ConfigValue {
                key: key.to_owned(),
                message: format!("{text:?}: a retention of zero would delete everything"),
            });
        }
        // Longer reaches back before the epoch: no date to cut at.
        if d > MAX_RETENTION {
            return Err(Error::ConfigValue {
                key: key.to_owned(),
                message: format!("{text:?}: longer than 100 years; use \"forever\""),
            });
        }
        Ok(Keep::For(d))
    }

    /// The cutoff for `now` (UTC epoch ms): what is older is past
    /// retention. `None` for [`Keep::Forever`].
    pub fn cutoff(self, now_ms: i64) -> Option<i64> {
        match self {
            Keep::Forever => None,
            Keep::For(d) => {
                Some(now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
            }
        }
    }
}

impl std::fmt::Display for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Keep::Forever => f.write_str("forever"),
            // Whole days as days: humantime would show 60d in its
            // 30.44-day months (`1month 29days 13h 26m 24s`).
            Keep::For(d) if d.as_secs() % 86_400 == 0 && d.subsec_nanos() == 0 => {
                write!(f, "{}d", d.as_secs() / 86_400)
            }
            Keep::For(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

/// Snapshot cleanup, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotKeep {
    /// Keep the diffs of the latest N successful runs (`None`: any number).
    pub keep_runs: Option<u32>,
    pub max_age: Keep,
}

impl SnapshotKeep {
    /// True if this removes nothing.
    pub fn keeps_all(&self) -> bool {
        self.keep_runs.is_none() && self.max_age == Keep::Forever
    }
}

/// `[retention]`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub default: Keep,
    pub alerts: Keep,
    pub snapshots: SnapshotKeep,
}

/// Retention of everything: `[retention]` and each event table's period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub retention: Retention,
    /// Event tables that sections name, with their period.
    pub tables: std::collections::BTreeMap<String, Keep>,
    /// `[retention] archive`: where pruned event rows are archived first.
    pub archive: Option<std::path::PathBuf>,
}

impl Policy {
    /// How long the rows of event table `table` are kept.
    pub fn table(&self, table: &str) -> Keep {
        self.tables
            .get(table)
            .copied()
            .unwrap_or(self.retention.default)
    }

    /// True if this policy may delete something.
    pub fn prunes_anything(&self) -> bool {
        self.retention.default != Keep::Forever
            || self.retention.alerts != Keep::Forever
            || !self.retention.snapshots.keeps_all()
            || self.tables.values().any(|k| *k != Keep::Forever)
    }
}

impl RetentionConfig {
    /// Parses every period; errors name the key.
    pub fn resolve(&self) -> Result<Retention, Error> {
        let keep = |v: &Option<String>, key: &str| {
            v.as_deref()
                .map_or(Ok(Keep::Forever), |t| Keep::parse(t, key))
        };
        if self
            .archive
            .as_ref()
            .is_some_and(|a| a.as_os_str().is_empty())
        {
            return Err(Error::ConfigValue {
                key: "retention.archive".into(),
                message: "an empty path: name a directory, or leave the key out".into(),
            });
        }
        let snapshots = match &self.snapshots {
            None => SnapshotKeep {
                keep_runs: None,
                max_age: Keep::Forever,
            },
            Some(s) => {
                if s.keep_runs == Some(0) {
                    return Err(Error::ConfigValue {
                        key: "retention.snapshots.keep_runs".into(),
                        message: "0: at least the latest run is always kept; use 1 or more".into(),
                    });
                }
                SnapshotKeep {
                    keep_runs: s.keep_runs,
                    max_age: keep(&s.max_age, "retention.snapshots.max_age")?,
                }
            }
        };
        Ok(Retention {
            default: keep(&self.default, "retention.default")?,
            alerts: keep(&self.alerts, "retention.alerts")?,
            snapshots,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        assert_eq!(
            Keep::parse("90d", "k").unwrap(),
            Keep::For(Duration::from_secs(90 * 86400))
        );
        assert_eq!(Keep::parse("Forever", "k").unwrap(), Keep::Forever);
        let e = Keep::parse("99999999999999d", "retention.default").unwrap_err();
        assert!(e.to_string().contains("longer than 100 years"), "{e}");
        assert!(Keep::parse("36525d", "retention.default").is_ok());
        let e = Keep::parse("90 dayz", "section.auth.retention").unwrap_err();
        assert!(e.to_string().contains("section.auth.retention"), "{e}");
        assert!(Keep::parse("0s", "k").is_err());
        assert!(Keep::Forever > Keep::For(Duration::from_secs(1)));
        assert_eq!(
            Keep::For(Duration::from_secs(10)).cutoff(100_000),
            Some(90_000)
        );
        assert_eq!(Keep::Forever.cutoff(1), None);
    }

    #[test]
    fn periods_print_as_written() {
        for (text, shown) in [
            ("60d", "60d"),
            ("12w", "84d"),
            ("1y", "1year"),
            ("36h", "1day 12h"),
            ("forever", "forever"),
        ] {
            assert_eq!(Keep::parse(text, "k").unwrap().to_string(), shown, "{text}");
        }
    }
}
