//! Runs every decoder's examples through the whole set, as ingest would
//! decode them (`siemparse --check-decoders`, and the test suite).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Decoders, ExampleInput};
use crate::parse::LineParser;
use crate::time::Zone;

/// An example that did not give what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// File of the decoder that owns the example.
    pub origin: String,
    pub decoder: String,
    /// Index of the example in its decoder (0-based, as `example[N]` in errors).
    pub example: usize,
    /// The example's message or line.
    pub input: String,
    pub problem: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: decoder {:?}: example[{}] {:?}: {}",
            self.origin, self.decoder, self.example, self.input, self.problem
        )
    }
}

/// Outcome of a check: how many examples ran, and which failed.
#[derive(Debug, Default)]
pub struct Report {
    pub examples: usize,
    pub forged: usize,
    pub failures: Vec<Failure>,
}

/// Decodes every example of every decoder in `set` and compares the fields.
pub fn run(set: &Arc<Decoders>) -> Report {
    let mut report = Report::default();
    for d in set.list() {
        for (i, x) in d.examples.iter().enumerate() {
            report.examples += 1;
            report.forged += usize::from(x.forged);
            let (input, got) = match &x.input {
                ExampleInput::Message { program, message } => {
                    let got = set
                        .decode(program.as_deref(), message)
                        .map(|m| (m.decoder.name.clone(), m.fields.pairs()));
                    (message.clone(), got)
                }
                ExampleInput::Line(line) => {
                    let mut p =
                        LineParser::new(Zone::parse("UTC").expect("UTC"), Some(2000), "check")
                            .with_decoders(set.clone());
                    let ev = p.parse(line.as_bytes(), 0);
                    let got = set
                        .decode(ev.process.as_deref(), &ev.message)
                        .map(|m| (m.decoder.name.clone(), m.fields.pairs()));
                    (line.clone(), got)
                }
            };
            let want_decoder = x
                .decoder
                .clone()
                .or_else(|| (!x.fields.is_empty()).then(|| d.name.clone()));
            let got_fields: BTreeMap<String, String> = got
                .as_ref()
                .map(|(_, f)| f.iter().cloned().collect())
                .unwrap_or_default();
            let mut problems = Vec::new();
            if let Some(want) = &want_decoder {
                let by = got.as_ref().map_or("no decoder", |(n, _)| n.as_str());
                if by != want {
                    problems.push(format!("decoded by {by}, expected {want}"));
                }
            }
            if got_fields != x.fields {
                problems.push(format!(
                    "fields {}, expected {}",
                    show(&got_fields),
                    show(&x.fields)
                ));
            }
            if !problems.is_empty() {
                report.failures.push(Failure {
                    origin: d.origin.clone(),
                    decoder: d.name.clone(),
                    example: i,
                    input,
                    problem: problems.join("; "),
                });
            }
        }
    }
    report
}

fn show(fields: &BTreeMap<String, String>) -> String {
    if fields.is_empty() {
        return "{}".into();
    }
    let inner: Vec<String> = fields.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
    format!("{{ {} }}", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_example_passes() {
        let set = Decoders::builtin().expect("built-in decoders compile");
        let report = run(&set);
        let lines: Vec<String> = report.failures.iter().map(ToString::to_string).collect();
        assert!(lines.is_empty(), "{}", lines.join("\n"));
        assert!(report.examples > 100, "{}", report.examples);
    }
}
