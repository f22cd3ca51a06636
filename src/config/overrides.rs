//! `--set PATH=VALUE` overrides, applied to the parsed document before any checking, so that an
//! override is validated and hashed exactly like the same edit made in the file.

use std::collections::BTreeMap;

use super::error::ConfigError;
use super::limits::MAX_SET_PATH;
use super::source::{parse_override_value, Entry, Node, NodeValue, Origin, SourceFile};
use super::suggest::did_you_mean_help;

/// One `--set` argument, split into its dotted path and its raw value text.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// e.g. `["stages", "clusters", "k"]`.
    pub path: Vec<String>,
    /// The text after `=`, parsed as a TOML value (bare words become strings).
    pub value: String,
}

impl std::str::FromStr for Override {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (path, value) =
            s.split_once('=').ok_or_else(|| format!("`{s}` is not PATH=VALUE (e.g. stages.clusters.k=50)"))?;
        let path: Vec<String> = path.trim().split('.').map(|p| p.trim().to_string()).collect();
        if path.len() > MAX_SET_PATH {
            return Err(format!(
                "`--set` path of {} keys: at most {MAX_SET_PATH} (no cfrun field is more than a few levels deep)",
                path.len()
            ));
        }
        if path.len() < 2 || path.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "`{s}`: the path must name a table and a field, e.g. stages.clusters.k=50 or experiment.seed=1"
            ));
        }
        Ok(Override { path, value: value.trim().to_string() })
    }
}

/// `PATH=VALUE` as written, which parses back to the same override: how a run's settings are
/// recorded for `gc`.
impl std::fmt::Display for Override {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.path.join("."), self.value)
    }
}

/// Writes every override into `doc`; the parent tables must exist (a typo in a stage name is an
/// error, not a new stage), the last key may be new. Returns the values the overrides replaced.
pub fn apply_overrides(
    file: &SourceFile,
    doc: &mut BTreeMap<String, Entry>,
    overrides: &[Override],
) -> Result<Vec<serde_json::Value>, ConfigError> {
    let mut replaced = Vec::new();
    for (index, ov) in overrides.iter().enumerate() {
        let origin = Origin::Override(index);
        let node = parse_override_value(&ov.value, index);
        let (last, parents) = ov.path.split_last().expect("FromStr guarantees two segments");
        let shown = ov.path.join(".");
        let fail = |why: String, help: Option<String>| {
            ConfigError::at(file, origin.clone(), format!("--set {shown}: {why}"), help)
        };
        let plain = |why: String| fail(why, None);
        let missing = |(why, help): (String, String)| fail(why, Some(help));
        let mut table = &mut *doc;
        // The keys walked (for `creatable`), and the path as written up to here (for messages).
        let (mut walked, mut prefix) = (Vec::new(), String::new());
        let join =
            |prefix: &str, seg: &str| if prefix.is_empty() { seg.to_string() } else { format!("{prefix}.{seg}") };
        for seg in parents {
            let (key, indices) = split_indices(seg).map_err(plain)?;
            if indices.is_empty() && creatable(&walked, key) && !table.contains_key(key) {
                let empty = Node { value: NodeValue::Table(BTreeMap::new()), origin: origin.clone() };
                table.insert(key.to_string(), Entry { key_origin: origin.clone(), node: empty });
            }
            walked.push(key);
            let at_key = join(&prefix, key);
            let entry = existing(table, key, &at_key).map_err(missing)?;
            let node = item(&mut entry.node, &indices, &at_key).map_err(plain)?;
            prefix = join(&prefix, seg);
            let NodeValue::Table(inner) = &mut node.value else {
                return Err(plain(format!("`{prefix}` is not a table")));
            };
            table = inner;
        }
        let (key, indices) = split_indices(last).map_err(plain)?;
        let old = match indices.split_last() {
            None => table.insert(key.to_string(), Entry { key_origin: origin.clone(), node }).map(|old| old.node),
            // An item of an array: the array and the item must exist (`claims[0]` is not made).
            Some((&at, outer)) => {
                let at_key = join(&prefix, key);
                let entry = existing(table, key, &at_key).map_err(missing)?;
                let parent = item(&mut entry.node, outer, &at_key).map_err(plain)?;
                let slot = item(parent, &[at], &indexed(&at_key, outer)).map_err(plain)?;
                Some(std::mem::replace(slot, node))
            }
        };
        replaced.extend(old.map(|n| n.to_json()));
    }
    Ok(replaced)
}

/// The entry `key` of `table` (named `at_key` in messages), or why there is none and the keys
/// there are.
fn existing<'a>(
    table: &'a mut BTreeMap<String, Entry>,
    key: &str,
    at_key: &str,
) -> Result<&'a mut Entry, (String, String)> {
    if !table.contains_key(key) {
        let refs: Vec<&str> = table.keys().map(String::as_str).collect();
        let help = did_you_mean_help(key, &refs, format!("existing keys here: {}", refs.join(", ")));
        return Err((format!("there is no `{at_key}` in the experiment file"), help));
    }
    Ok(table.get_mut(key).expect("just looked up"))
}

/// `claims[0][1]` as `("claims", [0, 1])`: a key and the array indices after it.
fn split_indices(seg: &str) -> Result<(&str, Vec<usize>), String> {
    let Some(open) = seg.find('[') else { return Ok((seg, Vec::new())) };
    let (key, mut rest) = seg.split_at(open);
    let mut indices = Vec::new();
    while !rest.is_empty() {
        let index = rest
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .filter(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|(n, after)| n.parse::<usize>().ok().map(|n| (n, after)));
        let Some((n, after)) = index else {
            return Err(format!("`{seg}`: an index is a number in brackets after a key, as in `claims[0]`"));
        };
        indices.push(n);
        rest = after;
    }
    if key.is_empty() {
        return Err(format!("`{seg}`: an index follows the key of an array, as in `claims[0]`"));
    }
    Ok((key, indices))
}

/// The item of `node` at `indices`, one array level each; `here` names `node` for messages.
fn item<'a>(mut node: &'a mut Node, indices: &[usize], here: &str) -> Result<&'a mut Node, String> {
    for (depth, &i) in indices.iter().enumerate() {
        let here = indexed(here, &indices[..depth]);
        let NodeValue::Array(items) = &mut node.value else {
            return Err(format!("`{here}` is not an array, so `[{i}]` names nothing"));
        };
        let len = items.len();
        node = items
            .get_mut(i)
            .ok_or_else(|| format!("`{here}` has {len} items, so `[{i}]` is past its end (the first is [0])"))?;
    }
    Ok(node)
}

/// `stages.v.claims[0]`: a path, then indices.
fn indexed(path: &str, indices: &[usize]) -> String {
    let tail: String = indices.iter().map(|i| format!("[{i}]")).collect();
    format!("{path}{tail}")
}

/// Tables that `--set` may create because they are optional, not names a typo could invent:
/// `[executor]`, `[sweep]` (an axis, which a stage's field must then name, as in the file) and any
/// table inside an existing stage (`resources`, a `labels` map the file leaves out), whose fields
/// the op checks by name like the file's.
fn creatable(walked: &[&str], seg: &str) -> bool {
    matches!((walked, seg), ([], "executor" | "sweep") | (["stages", _, ..], _))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_path_and_value() {
        // Deeper paths made tables inside tables that the checks then walked until the stack
        // overflowed (10,000 keys).
        let deep = format!("stages.a.{}b=1", "a.".repeat(MAX_SET_PATH));
        assert!(deep.parse::<Override>().unwrap_err().contains("at most"));
        let o: Override = "stages.clusters.k=50".parse().unwrap();
        assert_eq!(o.path, vec!["stages", "clusters", "k"]);
        assert_eq!(o.value, "50");
        assert!("k=50".parse::<Override>().is_err());
        assert!("stages.k".parse::<Override>().is_err());
        // Written back as it parses: `gc` re-applies a run's recorded settings from this text.
        for text in ["stages.clusters.k=50", "claims[0].within = 1.5", "stages.a.b=\"x = y\""] {
            let o: Override = text.parse().unwrap();
            assert_eq!(o.to_string().parse::<Override>().unwrap(), o, "{text}");
        }
    }

    fn apply(text: &str, set: &str) -> Result<serde_json::Value, String> {
        let file = SourceFile { path: "e.toml".into(), text: text.into() };
        let mut doc = crate::config::source::parse_document(&file).map_err(|e| e.to_string())?;
        apply_overrides(&file, &mut doc, &[set.parse().unwrap()]).map_err(|e| e.to_string())?;
        Ok(doc["stages"].node.to_json())
    }

    /// `claims[0].margin` reaches a field of an array's table; an index past the end, into
    /// something that is not an array, or malformed, is refused naming the path.
    #[test]
    fn an_index_reaches_into_an_array() {
        let text = "[stages.v]\nop = \"claims\"\nk = [1, 2]\n[[stages.v.claims]]\nname = \"a\"\n[[stages.v.claims]]\nname = \"b\"\n";
        let v = apply(text, "stages.v.claims[1].margin=2.5").unwrap();
        assert_eq!(v["v"]["claims"][1]["margin"], 2.5, "{v}");
        assert_eq!(v["v"]["claims"][1]["name"], "b", "{v}");
        assert!(v["v"]["claims"][0].get("margin").is_none(), "{v}");
        let v = apply(text, "stages.v.k[0]=7").unwrap();
        assert_eq!(v["v"]["k"], serde_json::json!([7, 2]), "{v}");
        for (set, said) in [
            ("stages.v.claims[2].margin=1", "`stages.v.claims` has 2 items, so `[2]` is past its end"),
            ("stages.v.op[0]=1", "`stages.v.op` is not an array"),
            ("stages.v.claims[x].margin=1", "an index is a number in brackets"),
            ("stages.v.claims[0]x.margin=1", "an index is a number in brackets"),
            ("stages.v.k[0].margin=1", "`stages.v.k[0]` is not a table"),
            ("stages.v.claims[0].name.x=1", "`stages.v.claims[0].name` is not a table"),
            ("stages.v.claims[+1].name=1", "an index is a number in brackets"),
            ("stages.v.claimz[0]=1", "there is no `stages.v.claimz`"),
        ] {
            let err = apply(text, set).unwrap_err();
            assert!(err.contains(said), "{set}: {err}");
        }
    }

    #[test]
    fn a_table_inside_an_existing_stage_is_created_and_a_missing_stage_is_not() {
        let text = "[stages.v]\nop = \"claims\"\n";
        let v = apply(text, "stages.v.labels.noisy=\"N\"").unwrap();
        assert_eq!(v["v"]["labels"]["noisy"], "N", "{v}");
        let v = apply(text, "stages.v.resources.cpus=2").unwrap();
        assert_eq!(v["v"]["resources"]["cpus"], 2, "{v}");
        // A misspelt stage is an error, not a new stage.
        let err = apply(text, "stages.w.labels.noisy=\"N\"").unwrap_err();
        assert!(err.contains("there is no `stages.w`"), "{err}");
        // A file without axes gets one; a misspelt top-level table is still an error.
        let file = SourceFile { path: "e.toml".into(), text: text.into() };
        let mut doc = crate::config::source::parse_document(&file).unwrap();
        apply_overrides(&file, &mut doc, &["sweep.k=[4,16]".parse().unwrap()]).unwrap();
        assert_eq!(doc["sweep"].node.to_json(), serde_json::json!({"k": [4, 16]}));
        let err = apply(text, "sweeps.k=[4,16]").unwrap_err();
        assert!(err.contains("there is no `sweeps`"), "{err}");
    }
}
