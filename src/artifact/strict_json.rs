//! JSON written by someone else's code, read without guessing: a key given twice in one object
//! is an error, where `serde_json` would keep the last value without a word.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// `Ok` when `text` is JSON in which no object names a key twice; otherwise the first key
/// found twice, with the path to its object (`$.values`), or the parse error.
pub fn distinct_keys(text: &[u8]) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(text);
    de::DeserializeSeed::deserialize(Walk { path: "$".into() }, &mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())
}

/// Visits one value at `path`, recursing into arrays and objects.
struct Walk {
    path: String,
}

impl<'de> de::DeserializeSeed<'de> for Walk {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        while seq.next_element_seed(Walk { path: format!("{}[{i}]", self.path) })?.is_some() {
            i += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = format!("{}.{key}", self.path);
            if !seen.insert(key) {
                map.next_value::<IgnoredAny>()?;
                return Err(de::Error::custom(format_args!(
                    "`{}` is given twice in one object (keep one: which would count depends on the reader)",
                    path.escape_debug()
                )));
            }
            map.next_value_seed(Walk { path })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::distinct_keys;

    #[test]
    fn a_key_twice_in_one_object_is_named_with_its_path() {
        let e = distinct_keys(br#"{"values": {"top1": 1, "top1": 2}, "details": {}}"#).unwrap_err();
        assert!(e.contains("`$.values.top1` is given twice"), "{e}");
        let e = distinct_keys(br#"{"a": [{"x": 1}, {"x": 2, "x": 3}]}"#).unwrap_err();
        assert!(e.contains("`$.a[1].x` is given twice"), "{e}");
    }

    #[test]
    fn the_same_key_in_different_objects_and_ordinary_json_pass() {
        distinct_keys(br#"{"a": {"x": 1}, "b": {"x": [1, 2.5, "s", null, true]}, "x": -3}"#).unwrap();
        distinct_keys(b"[]").unwrap();
        distinct_keys(b"12").unwrap();
    }

    #[test]
    fn broken_json_and_trailing_bytes_are_errors() {
        assert!(distinct_keys(br#"{"a": 1"#).is_err());
        assert!(distinct_keys(br#"{"a": 1} x"#).is_err());
        // Nesting past serde_json's recursion limit is an error, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(distinct_keys(deep.as_bytes()).is_err());
    }
}
