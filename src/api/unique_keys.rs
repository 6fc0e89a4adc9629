//! Reading a document while refusing duplicate object keys.
//!
//! Documents are canonicalized with RFC 8785, which presumes I-JSON (RFC 7493): every object's
//! keys unique. `serde_json::Value` keeps the last of duplicate keys without a word, so a
//! document would silently lose data; reading it through [`value`] refuses it instead, naming
//! the key and where it is (a JSON pointer).

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Deserializes a JSON value whose objects, at every depth, have unique keys (for
/// `#[serde(deserialize_with = …)]`).
pub fn value<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    deserializer.deserialize_any(Strict { pointer: "" })
}

/// A value at `pointer` (RFC 6901) inside the document.
#[derive(Clone, Copy)]
struct Strict<'p> {
    pointer: &'p str,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
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

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("the number at {:?} is not finite", self.pointer)))
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

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let pointer = format!("{}/{}", self.pointer, items.len());
            match seq.next_element_seed(Strict { pointer: &pointer })? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let pointer = format!("{}/{}", self.pointer, escape(&key));
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "the document has the key {key:?} twice (at {pointer:?}): object keys must \
                     be unique (I-JSON, RFC 7493)"
                )));
            }
            let value = map.next_value_seed(Strict { pointer: &pointer })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Body {
        #[serde(deserialize_with = "value")]
        document: Value,
    }

    fn read(json: &str) -> Result<Value, String> {
        serde_json::from_str::<Body>(json)
            .map(|b| b.document)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert_eq!(
            read(r#"{"document": {"a": [1, {"b": null}], "c": 1.5}}"#).unwrap(),
            serde_json::json!({"a": [1, {"b": null}], "c": 1.5})
        );
        let e = read(r#"{"document": {"a": 1, "a": 2}}"#).unwrap_err();
        assert!(e.contains("key \"a\" twice (at \"/a\")"), "{e}");
        let e = read(r#"{"document": {"x": [{}, {"k/~": 1, "k/~": 2}]}}"#).unwrap_err();
        assert!(e.contains("at \"/x/1/k~1~0\""), "{e}");
    }
}
