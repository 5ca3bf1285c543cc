//! The shipped rule pack (`config/rules/`), compiled into the binary: it
//! runs when the config names no rules (see [`super::RuleSet::load`]).

/// (path in the repository, text) of every file of `config/rules/`, as
/// `--list-rules` names them; a test keeps the list in step with the directory.
pub const FILES: &[(&str, &str)] = &[
    (
        "config/rules/accounts.toml",
        include_str!("../../../config/rules/accounts.toml"),
    ),
    (
        "config/rules/cisco.toml",
        include_str!("../../../config/rules/cisco.toml"),
    ),
    (
        "config/rules/general.toml",
        include_str!("../../../config/rules/general.toml"),
    ),
    (
        "config/rules/portscan.toml",
        include_str!("../../../config/rules/portscan.toml"),
    ),
    (
        "config/rules/privilege.toml",
        include_str!("../../../config/rules/privilege.toml"),
    ),
    (
        "config/rules/sessions.toml",
        include_str!("../../../config/rules/sessions.toml"),
    ),
    (
        "config/rules/snapshots.toml",
        include_str!("../../../config/rules/snapshots.toml"),
    ),
    (
        "config/rules/snort.toml",
        include_str!("../../../config/rules/snort.toml"),
    ),
    (
        "config/rules/ssh.toml",
        include_str!("../../../config/rules/ssh.toml"),
    ),
];
