//! SQL identifier validation: the only way a name reaches SQL text unbound.

use crate::Error;

/// A table or column name that matched `^[A-Za-z_][A-Za-z0-9_]{0,63}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ident(String);

impl Ident {
    /// Validates `name`; `what` names its origin for the error (e.g. "table of section auth").
    pub fn new(name: &str, what: &str) -> Result<Self, Error> {
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if first_ok && rest_ok && name.len() <= 64 {
            Ok(Self(name.to_owned()))
        } else {
            Err(Error::BadIdentifier {
                what: what.to_owned(),
                name: name.to_owned(),
            })
        }
    }

    /// The validated name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Ident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        assert!(Ident::new("auth", "t").is_ok());
        assert!(Ident::new("_x9", "t").is_ok());
        assert!(Ident::new(&"a".repeat(64), "t").is_ok());
        for bad in ["", "9a", "a-b", "a b", "a;drop", "é", &"a".repeat(65)] {
            assert!(Ident::new(bad, "t").is_err(), "{bad}");
        }
    }
}
