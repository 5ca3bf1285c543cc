//! A JSON document from a third-party gatherer to snapshot rows.
//!
//! - An object of objects (as sec-tools prints): each member is a row, keyed
//!   by its member name.
//! - An array: each element is a row. With key fields (`--key FIELD`, may
//!   repeat) the key is those fields' values joined by `|`; without, it is
//!   the element's whole content as canonical JSON (sorted members), so a
//!   changed element shows as one removed and one added row.
//!
//! Duplicate keys get a ` #2`, ` #3`, ... suffix (see [`super::dedupe_keys`]).

use serde_json::Value;

use super::Row;

/// Why a document could not become rows.
#[derive(Debug, thiserror::Error)]
#[error("snapshot input: {0}")]
pub struct InputError(pub String);

/// Separator of the values of several `--key` fields.
pub const KEY_JOIN: &str = "|";

/// Parses `text` into rows; `keys` are the `--key` fields for an array.
pub fn rows_from_json(text: &str, keys: &[String]) -> Result<Vec<Row>, InputError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let mut rows = match doc {
        Value::Object(map) => {
            if !keys.is_empty() {
                return Err(bad(
                    "--key applies to an array; an object of objects is keyed by its member names"
                        .into(),
                ));
            }
            map.into_iter().map(|(k, v)| Row::new(k, v)).collect()
        }
        Value::Array(items) => {
            let mut rows = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let key = if keys.is_empty() {
                    canonical(&item)
                } else {
                    let Value::Object(obj) = &item else {
                        return Err(bad(format!(
                            "element {i} of the array is not an object, so it has no field {:?}",
                            keys[0]
                        )));
                    };
                    let mut parts = Vec::with_capacity(keys.len());
                    for k in keys {
                        match obj.get(k) {
                            Some(v) => parts.push(scalar_text(v)),
                            None => {
                                return Err(bad(format!(
                                    "element {i} of the array has no field {k:?} (from --key)"
                                )));
                            }
                        }
                    }
                    parts.join(KEY_JOIN)
                };
                rows.push(Row::new(key, item));
            }
            rows
        }
        other => {
            return Err(bad(format!(
                "expected an array of objects or an object of objects, got {}",
                type_name(&other)
            )));
        }
    };
    super::dedupe_keys(&mut rows);
    Ok(rows)
}

/// The text of a value used in a key: strings bare, anything else as JSON.
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => canonical(other),
    }
}

/// Compact JSON with object members sorted (serde_json's map is ordered).
pub fn canonical(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn bad(message: String) -> InputError {
    InputError(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(rows: &[Row]) -> Vec<&str> {
        rows.iter().map(|r| r.key.as_str()).collect()
    }

    #[test]
    fn object_of_objects_keyed_by_member() {
        let rows =
            rows_from_json(r#"{"alice": {"uid": 1000}, "bob": {"uid": 1001}}"#, &[]).unwrap();
        assert_eq!(keys(&rows), ["alice", "bob"]);
        assert_eq!(rows[0].value["uid"], 1000);
    }

    #[test]
    fn array_with_keys_and_without() {
        let doc = r#"[{"proto":"tcp","port":22,"p":"sshd"},{"proto":"udp","port":53,"p":"dns"}]"#;
        let k = vec!["proto".to_owned(), "port".to_owned()];
        assert_eq!(
            keys(&rows_from_json(doc, &k).unwrap()),
            ["tcp|22", "udp|53"]
        );
        let whole = rows_from_json(doc, &[]).unwrap();
        assert_eq!(whole[0].key, r#"{"p":"sshd","port":22,"proto":"tcp"}"#);
        let err = rows_from_json(doc, &["nope".to_owned()]).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn rejects_scalars_and_garbage() {
        assert!(rows_from_json("42", &[]).is_err());
        assert!(rows_from_json("{", &[]).is_err());
        assert!(rows_from_json(r#"{"a":{}}"#, &["x".to_owned()]).is_err());
    }
}
