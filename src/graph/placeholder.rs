//! `${axis}` placeholders in stage fields: finding the axes a stage uses, and substituting values.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;

use super::instance::axis_value_text;

/// Axis names referenced anywhere inside `v`.
pub fn axes_used(v: &Json, out: &mut BTreeSet<String>) {
    match v {
        Json::String(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else { break };
                out.insert(after[..end].trim().to_string());
                rest = &after[end + 1..];
            }
        }
        Json::Array(items) => items.iter().for_each(|i| axes_used(i, out)),
        Json::Object(map) => map.values().for_each(|i| axes_used(i, out)),
        _ => {}
    }
}

/// The path of the first value under `v` that uses `${axis}` (`claims[1].statement`, from
/// `path`), for an error to point at that value rather than at the field holding it.
pub fn where_used(v: &Json, axis: &str, path: &str) -> Option<String> {
    match v {
        Json::String(_) => {
            let mut used = BTreeSet::new();
            axes_used(v, &mut used);
            used.contains(axis).then(|| path.to_string())
        }
        Json::Array(items) => {
            items.iter().enumerate().find_map(|(i, item)| where_used(item, axis, &format!("{path}[{i}]")))
        }
        Json::Object(map) => map.iter().find_map(|(k, item)| {
            let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            where_used(item, axis, &p)
        }),
        _ => None,
    }
}

/// Replaces placeholders: a string that is exactly `${x}` becomes the axis value with its type
/// (so `k = "${k}"` is an integer); placeholders inside longer strings are interpolated as text.
pub fn substitute(v: &Json, values: &BTreeMap<String, Json>) -> Json {
    match v {
        Json::String(s) => {
            let trimmed = s.trim();
            if let Some(name) = trimmed.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
                if !name.contains("${") {
                    if let Some(value) = values.get(name.trim()) {
                        return value.clone();
                    }
                }
            }
            Json::String(interpolate(s, values))
        }
        Json::Array(items) => Json::Array(items.iter().map(|i| substitute(i, values)).collect()),
        Json::Object(map) => Json::Object(map.iter().map(|(k, i)| (k.clone(), substitute(i, values))).collect()),
        other => other.clone(),
    }
}

/// `s` with each `${name}` (spaces inside the braces allowed, as [`axes_used`] reads them) of a
/// known axis replaced by its value as text; anything else is kept as written.
fn interpolate(s: &str, values: &BTreeMap<String, Json>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        out.push_str(&rest[..start]);
        match values.get(after[..end].trim()) {
            Some(value) => out.push_str(&axis_value_text(value)),
            None => out.push_str(&rest[start..start + 2 + end + 1]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn whole_placeholders_keep_their_type() {
        let mut vals = BTreeMap::new();
        vals.insert("k".to_string(), json!(50));
        vals.insert("t".to_string(), json!("mnist"));
        assert_eq!(substitute(&json!("${k}"), &vals), json!(50));
        assert_eq!(substitute(&json!("run-${k}-${t}"), &vals), json!("run-50-mnist"));
        assert_eq!(substitute(&json!({"a": ["${t}"]}), &vals), json!({"a": ["mnist"]}));
        // Spaces inside the braces read the same everywhere: the axis is used, so it is replaced.
        assert_eq!(substitute(&json!("run-${ k }-${t }"), &vals), json!("run-50-mnist"));
        assert_eq!(substitute(&json!(" ${ k } "), &vals), json!(50));
        assert_eq!(substitute(&json!("${x}-${k"), &vals), json!("${x}-${k"));
        let mut used = BTreeSet::new();
        axes_used(&json!({"a": "${k}", "b": ["x${t}y"]}), &mut used);
        assert_eq!(used.into_iter().collect::<Vec<_>>(), vec!["k", "t"]);
    }
}
