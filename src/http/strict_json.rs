//! JSON parsing that refuses an object holding the same key twice.
//!
//! RFC 8259 leaves duplicate keys to the parser, and `serde_json::Value`
//! keeps the last one: `{"script": "a", "script": "b"}` would run `b`
//! without a word. A client that sent two values meant one of them, so the
//! body is refused, naming the key and where it stands (`files["a.csv"]`).
//! Everything else parses exactly as `serde_json::from_slice` parses it
//! (the same numbers, strings and recursion limit), since this only swaps
//! the visitor that builds the tree.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a body did not parse.
#[derive(Debug)]
pub enum StrictJsonError {
    /// Not JSON at all (serde_json's own message, with line and column).
    Syntax(serde_json::Error),
    /// Valid JSON with a key twice in one object; the path of that key.
    DuplicateKey(String),
}

/// Parses `body` as JSON, refusing duplicate keys at any depth.
///
/// # Errors
/// [`StrictJsonError::DuplicateKey`] with the path of the first repeated
/// key, else [`StrictJsonError::Syntax`].
pub fn from_slice(body: &[u8]) -> Result<Value, StrictJsonError> {
    let duplicate = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = ValueSeed { path: &Path::Root, duplicate: &duplicate }
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    match (parsed, duplicate.into_inner()) {
        (_, Some(path)) => Err(StrictJsonError::DuplicateKey(path)),
        (Ok(value), None) => Ok(value),
        (Err(e), None) => Err(StrictJsonError::Syntax(e)),
    }
}

/// Where a value stands, as a chain on the stack: built without allocating,
/// rendered only for the error.
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Key(Path::Root, key) => write!(f, "{key:?}"),
            Path::Key(parent, key) => write!(f, "{parent}[{key:?}]"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

struct ValueSeed<'p, 'd> {
    path: &'p Path<'p>,
    duplicate: &'d RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON has no NaN or infinity, so from_f64 always has a number.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        loop {
            let path = Path::Index(self.path, items.len());
            match seq.next_element_seed(ValueSeed { path: &path, duplicate: self.duplicate })? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = Path::Key(self.path, &key);
            if object.contains_key(&key) {
                *self.duplicate.borrow_mut() = Some(path.to_string());
                return Err(de::Error::custom(format!("duplicate key {path}")));
            }
            let value = map.next_value_seed(ValueSeed { path: &path, duplicate: self.duplicate })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duplicate(body: &str) -> String {
        match from_slice(body.as_bytes()) {
            Err(StrictJsonError::DuplicateKey(path)) => path,
            other => panic!("expected a duplicate key, got {other:?}"),
        }
    }

    #[test]
    fn a_repeated_key_is_named_with_its_path() {
        assert_eq!(duplicate(r#"{"script": "a", "script": "b"}"#), r#""script""#);
        assert_eq!(duplicate(r#"{"files": {"a.csv": "", "a.csv": ""}}"#), r#""files"["a.csv"]"#);
        assert_eq!(duplicate(r#"{"x": [1, {"k": 1, "k": 2}]}"#), r#""x"[1]["k"]"#);
        // An escaped spelling is the same key.
        assert_eq!(duplicate(r#"{"a": 1, "\u0061": 2}"#), r#""a""#);
    }

    #[test]
    fn everything_else_parses_as_serde_json_parses_it() {
        for body in [
            r#"{"script": "x", "timeout": 1.5, "memory": 64, "files": {"a": "", "b": ""}}"#,
            r#"[1, -2, 3.25, 1e300, 18446744073709551615, null, true, "\u00e9", {"a": {"a": 1}}]"#,
            "  \"plain\"  ",
        ] {
            let ours = from_slice(body.as_bytes()).expect("valid");
            let theirs: Value = serde_json::from_str(body).expect("valid");
            assert_eq!(ours, theirs, "{body}");
        }
    }

    #[test]
    fn broken_json_is_a_syntax_error_as_before() {
        for body in ["", "{", r#"{"a": 1} trailing"#, r#"{"a": 1,}"#, &"[".repeat(200)] {
            assert!(matches!(from_slice(body.as_bytes()), Err(StrictJsonError::Syntax(_))), "{body}");
        }
    }
}
