use std::collections::BTreeMap;

use siemstress_common::snapshot::diff::ChangeKind;

use super::error::RuleError;
use super::validate::{SNAPSHOT_DEFAULT_KEY, SNAPSHOT_DEFAULT_MESSAGE};
use super::*;

fn one(text: &str) -> Result<Rule, RuleError> {
    RuleSet::from_file_text(text, "r.toml", &["mail".into()]).map(|s| s.rules[0].clone())
}

#[test]
fn errors_name_file_rule_and_key() {
    let e = one("[[rule]]\nname = \"a\"\ntype = \"thresh\"\n").unwrap_err();
    assert_eq!(e.key.as_deref(), Some("type"));
    let s = e.to_string();
    assert!(
        s.contains("r.toml") && s.contains("\"a\"") && s.contains("thresh"),
        "{s}"
    );

    let e = one("[[rule]]\nname = \"a\"\ntype = \"threshold\"\nthreshold = 2\nmatch = { process = \"sshd\" }\n").unwrap_err();
    assert_eq!(e.key.as_deref(), Some("window"));

    let e = one("[[rule]]\nname = \"a\"\ntype = \"single\"\nmatch = { regex = '(?P<x' }\n")
        .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("match.regex"), "{e}");

    let e = one(
        "[[rule]]\nname = \"a\"\ntype = \"single\"\nmatch = { regex = '(?P<ip>\\S+)' }\nkey = \"{ipp}\"\n",
    )
    .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("key"));
    assert!(e.to_string().contains("{ipp}"), "{e}");

    let e = one(
        "[[rule]]\nname = \"a\"\ntype = \"single\"\nmatch = { process = \"x\" }\nmessage = \"{nope}\"\n",
    )
    .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("message"));

    let e =
        one("[[rule]]\nname = \"a\"\ntype = \"single\"\nmatch = { proces = \"x\" }\n").unwrap_err();
    assert_eq!(e.key.as_deref(), Some("match.proces"));

    let e = one("[[rule]]\nname = \"a\"\ntype = \"single\"\nmatch = {}\nactions = [\"pager\"]\n")
        .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("actions"));

    // Unknown rule keys come from toml with the line.
    let e =
        one("[[rule]]\nname = \"a\"\ntype = \"single\"\nmatch = {}\nwindw = \"5s\"\n").unwrap_err();
    assert!(
        e.to_string().contains("windw") && e.to_string().contains("line 5"),
        "{e}"
    );
}

#[test]
fn errors_name_the_line_of_the_key() {
    // Each error names the line of its key, in a file of several rules.
    let ok = "[[rule]]\nname = \"ok\"\ntype = \"single\"\nmatch = {}\n\n";
    for (body, key, line) in [
        (
            "type = \"single\"\nmatch = {}\nwindow = \"5s\"",
            "window",
            10,
        ),
        (
            "type = \"threshold\"\nwindow = \"1m\"\nthreshold = \"x\"\nmatch = {}",
            "threshold",
            10,
        ),
        (
            "type = \"threshold\"\nwindow = \"1m\"\nthreshold = 0\nmatch = {}",
            "threshold",
            10,
        ),
        (
            "type = \"single\"\nmatch = { regex = 'a(' }",
            "match.regex",
            9,
        ),
        (
            "type = \"single\"\nseverity = \"dire\"\nmatch = {}",
            "severity",
            9,
        ),
        ("type = \"single\"\nmatch = {}\nkey = 5", "key", 10),
        ("type = \"single\"", "match", 6),
        ("type = 3", "type", 8),
    ] {
        let e = RuleSet::from_file_text(
            &format!("{ok}[[rule]]\nname = \"b\"\n{body}\n"),
            "r.toml",
            &[],
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{body}: {e}");
        assert_eq!(e.line, Some(line), "{body}: {e}");
        assert!(
            e.to_string()
                .starts_with(&format!("r.toml, line {line}: rule \"b\"")),
            "{e}"
        );
    }
    // A duplicate name, and a key outside [[rule]] in a rule file.
    let e = RuleSet::from_file_text(&format!("{ok}{ok}"), "r.toml", &[]).unwrap_err();
    assert_eq!((e.key.as_deref(), e.line), (Some("name"), Some(7)), "{e}");
    let e = RuleSet::from_file_text(&format!("{ok}[other]\nx = 1\n"), "r.toml", &[]).unwrap_err();
    assert_eq!((e.key.as_deref(), e.line), (Some("other"), Some(6)), "{e}");
}

#[test]
fn match_vocabulary_builds_filter() {
    let r = one(
        "[[rule]]\nname = \"a\"\ntype = \"single\"\nmatch = { process = [\"sshd\", \"su\"], rshost = \"10.0.0.1\", dport = [22, \"80\"], grep = \"x\", rregex = 'y' }\n",
    )
    .unwrap();
    let Kind::Single(Single { matcher: m, .. }) = r.kind else {
        panic!("{r:?}")
    };
    assert_eq!(m.filter.process.include, ["sshd", "su"]);
    assert_eq!(m.filter.source_host.exclude, ["10.0.0.1"]);
    assert_eq!(m.filter.dest_port.include, [22, 80]);
    assert_eq!(m.filter.grep.include, ["x"]);
    assert_eq!(m.rregex.len(), 1);
}

#[test]
fn pair_backrefs() {
    let r = one("[[rule]]\nname = \"p\"\ntype = \"pair\"\nwindow = \"1m\"\n\
         first = { regex = 'opened for (?P<u>\\w+)' }\n\
         second = { regex = 'closed for {u}$' }\nkey = \"{u}\"\n")
    .unwrap();
    let Kind::Pair(Pair { second: s, .. }) = r.kind else {
        panic!("{r:?}")
    };
    assert!(s.has_backrefs());
    let vars = BTreeMap::from([("u".to_owned(), "a.b".to_owned())]);
    assert!(s.check_with("closed for a.b", &vars).is_some());
    assert!(s.check_with("closed for axb", &vars).is_none());
    // A back-reference to a name `first` does not capture is an error.
    let e = one("[[rule]]\nname = \"p\"\ntype = \"pair\"\nwindow = \"1m\"\n\
         first = { regex = 'opened for (?P<u>\\w+)' }\n\
         second = { regex = 'closed for {v}' }\n")
    .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("second.regex"), "{e}");
}

#[test]
fn fingerprints_of_existing_rules_do_not_change() {
    // Keys added for snapshot_change rules stay out of the canonical
    // form when absent: an upgrade must not drop every rule's windows.
    let r = one("[[rule]]\nname = \"a\"\ntype = \"single\"\nmatch = { process = \"sshd\" }\nkey = \"{host}\"\n")
        .unwrap();
    assert_eq!(r.fingerprint, "152c83dfb4ed3f83");
}

/// Fingerprints of the shipped rules as the bag-of-options model computed
/// them (before rules became an enum): every type and most keys.
const SHIPPED: [(&str, &str); 27] = [
    ("new-user", "88b4014cb96eea7a"),
    ("new-group", "d356fa07dd393655"),
    ("cisco-acl-deny-burst", "58bcf068f458fc80"),
    ("cisco-config-change", "be6e28a5253e0fe1"),
    ("disk-full", "d2b935063aa3fb4b"),
    ("oom-killer", "8b879c406b92e9f2"),
    ("segfault", "86eb9ddedeb70261"),
    ("service-restart-loop", "a6eb8a4ebeff3d45"),
    ("port-scan", "18d8ee006b2e997e"),
    ("host-sweep", "cf6a48d80958b3c3"),
    ("sudo-to-root", "bc87fb6cbe67f6c1"),
    ("su-to-root", "6fa543a0baa2a925"),
    ("session-without-close", "7e1c52a05a7fc1f6"),
    ("new-listening-port", "5e3a3e695ad66a2b"),
    ("user-added-or-removed", "f5b31c3aa60ea994"),
    ("etc-file-content-changed", "34102286bfa31ebb"),
    ("new-suid-binary", "790f13744ce32bff"),
    ("unverified-listening-port", "1f48cea484e29554"),
    ("new-uid0-account", "8895cbb82ab25fe0"),
    ("package-file-changed", "defd98c1b5df5d23"),
    ("secret-file-changed", "a91ea2ccdb852b57"),
    ("ids-priority-1", "e59a11c551f1411f"),
    ("ids-many-signatures", "6a11005d12cb78fc"),
    ("ssh-bruteforce", "a53c5175670714c2"),
    ("ssh-password-spraying", "1e92a771cac841a5"),
    ("ssh-success-after-failures", "a6a6355c88b53f6b"),
    ("root-login", "dc72829de5b02ebd"),
];

#[test]
fn fingerprints_of_the_shipped_rules_survive_the_enum() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/rules");
    let mut got = BTreeMap::new();
    for f in std::fs::read_dir(dir).unwrap() {
        let p = f.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let set = RuleSet::from_file_text(&text, "x", &["mail".into()]).unwrap();
        for r in set.rules {
            got.insert(r.name, r.fingerprint);
        }
    }
    for (name, fp) in SHIPPED {
        assert_eq!(got.get(name).map(String::as_str), Some(fp), "{name}");
    }
}

#[test]
fn snapshot_change_rules() {
    let base = "[[rule]]\nname = \"s\"\ntype = \"snapshot_change\"\n";
    let r = one(&format!("{base}snapshot = \"listenports\"\n")).unwrap();
    let s = r.snapshot().unwrap();
    assert_eq!(s.snapshot, "listenports");
    assert_eq!(
        s.change,
        [ChangeKind::Added, ChangeKind::Removed, ChangeKind::Changed]
    );
    assert_eq!(r.key.source, SNAPSHOT_DEFAULT_KEY);
    assert_eq!(r.message.source, SNAPSHOT_DEFAULT_MESSAGE);
    let r = one(&format!(
        "{base}snapshot = \"users\"\nchange = \"added\"\nexclude = [\"users.*.last_change\"]\n         include = [\"users.*\"]\nkey = \"{{host}}:{{key}}\"\n         message = \"{{snapshot}}: {{change}} {{key}} {{column}} {{old}} -> {{new}} ({{count}}, {{first_ts}})\"\n"
    ))
    .unwrap();
    let s = r.snapshot().unwrap();
    assert_eq!(s.change, [ChangeKind::Added]);
    assert_eq!(s.include, ["users.*"]);
    for (body, key) in [
        ("", "snapshot"),
        ("snapshot = \"a.b\"", "snapshot"),
        ("snapshot = \"u\"\nchange = [\"added\", \"gone\"]", "change"),
        ("snapshot = \"u\"\nchange = []", "change"),
        ("snapshot = \"u\"\nexclude = [\"a[b\"]", "exclude"),
        ("snapshot = \"u\"\ninclude = [\"a[b\"]", "include"),
        ("snapshot = \"u\"\ntable = \"auth\"", "table"),
        ("snapshot = \"u\"\nwindow = \"1m\"", "window"),
        ("snapshot = \"u\"\nmatch = {}", "match"),
        ("snapshot = \"u\"\nmessage = \"{process}\"", "message"),
        ("snapshot = \"u\"\nkey = \"{count}\"", "key"),
    ] {
        let e = one(&format!("{base}{body}\n")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{body}: {e}");
        assert!(e.to_string().contains("r.toml") && e.to_string().contains("\"s\""));
    }
    // change/include only for snapshot_change rules.
    let e = one("[[rule]]\nname = \"a\"\ntype = \"single\"\nmatch = {}\nchange = \"added\"\n")
        .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("change"));
}

#[test]
fn the_builtin_pack_is_every_file_of_config_rules() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/rules");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .map(|n| format!("config/rules/{n}"))
        .collect();
    on_disk.sort();
    let compiled: Vec<String> = super::builtin::FILES
        .iter()
        .map(|(f, _)| (*f).to_owned())
        .collect();
    assert_eq!(compiled, on_disk, "add the new file to rules/builtin.rs");
    for (f, text) in super::builtin::FILES {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(f);
        assert_eq!(*text, std::fs::read_to_string(path).unwrap(), "{f}");
    }
}
