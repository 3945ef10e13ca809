//! Identifiers of users, vendors and entities: short printable strings.

use std::fmt;

/// Longest accepted id, in characters. Ids are room names: they must stay small.
pub const MAX_ID_CHARS: usize = 128;

/// A validated identifier: 1 to 128 characters, no control characters.
/// A JSON integer is accepted where an id is expected and read as its decimal string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Id(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_ID_CHARS} characters")]
    TooLong,
    #[error("must not contain control characters")]
    ControlChar,
    #[error("must be a string or an integer")]
    WrongType,
}

impl Id {
    pub fn new(s: impl Into<String>) -> Result<Id, IdError> {
        let s = s.into();
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.chars().count() > MAX_ID_CHARS {
            return Err(IdError::TooLong);
        }
        if s.chars().any(char::is_control) {
            return Err(IdError::ControlChar);
        }
        Ok(Id(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// 2^53: every integer up to it is exact in a double.
const MAX_EXACT_DOUBLE: f64 = 9_007_199_254_740_992.0;

/// Reads an id from JSON: a string, or an integer as its decimal string. JSON has one
/// number type, so `42.0` is the integer 42 (as JSON Schema says), within `i64`/`u64`.
pub fn from_json(v: &serde_json::Value) -> Result<Id, IdError> {
    match v {
        serde_json::Value::String(s) => Id::new(s.as_str()),
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => Id::new(n.to_string()),
        // Only where a double is exact (|n| <= 2^53): a larger `1e19` may not be the
        // integer its writer meant. Larger integers are written as integers.
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() <= MAX_EXACT_DOUBLE =>
            {
                #[allow(clippy::cast_possible_truncation)]
                Id::new((f as i64).to_string())
            }
            _ => Err(IdError::WrongType),
        },
        _ => Err(IdError::WrongType),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_and_integers_are_ids_other_values_are_not() {
        assert_eq!(from_json(&json!("u1")).unwrap().as_str(), "u1");
        assert_eq!(from_json(&json!(123)).unwrap().as_str(), "123");
        assert_eq!(from_json(&json!(1.5)), Err(IdError::WrongType));
        assert_eq!(from_json(&json!(-496.0)).unwrap().as_str(), "-496");
        assert_eq!(from_json(&json!(9_007_199_254_740_992.0)).unwrap().as_str(), "9007199254740992");
        assert_eq!(from_json(&json!(1.0e19)), Err(IdError::WrongType));
        assert_eq!(from_json(&json!(u64::MAX)).unwrap().as_str(), "18446744073709551615");
        // Parsed exactly (serde_json's float_roundtrip; its fast path made this ...169.5).
        let parsed: serde_json::Value = serde_json::from_str("-4280723595317170.0").unwrap();
        assert_eq!(from_json(&parsed).unwrap().as_str(), "-4280723595317170");
        assert_eq!(from_json(&json!(null)), Err(IdError::WrongType));
        assert_eq!(from_json(&json!("")), Err(IdError::Empty));
        assert_eq!(from_json(&json!("a\nb")), Err(IdError::ControlChar));
        assert_eq!(from_json(&json!("x".repeat(129))), Err(IdError::TooLong));
        assert!(from_json(&json!("é".repeat(128))).is_ok());
    }
}
