//! The canonical byte encoding that recipe keys hash.
//!
//! JSON with object keys sorted bytewise at every level, no whitespace, integers as integers and
//! floats in Rust's shortest round-trip form (what serde_json writes). The encoding must never
//! change silently: `key::tests::pinned_key` fixes one known hash, and changing the encoding means
//! bumping [`super::key::RECIPE_FORMAT`].

use serde_json::Value as Json;

/// Canonical encoding of a JSON value.
pub fn encode(v: &Json) -> Vec<u8> {
    let mut out = Vec::new();
    write(v, &mut out);
    out
}

fn write(v: &Json, out: &mut Vec<u8>) {
    match v {
        Json::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Json::String((*k).clone()).to_string().as_bytes());
                out.push(b':');
                write(&map[*k], out);
            }
            out.push(b'}');
        }
        Json::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter() {
        let a = json!({"b": 1, "a": {"y": [1, 2.5], "x": "s"}});
        let b = json!({"a": {"x": "s", "y": [1, 2.5]}, "b": 1});
        assert_eq!(encode(&a), encode(&b));
        assert_eq!(String::from_utf8(encode(&a)).unwrap(), r#"{"a":{"x":"s","y":[1,2.5]},"b":1}"#);
    }
}
