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
        let mut table = &mut *doc;
        let mut walked = Vec::new();
        for seg in parents {
            if creatable(&walked, seg) && !table.contains_key(seg) {
                let empty = Node { value: NodeValue::Table(BTreeMap::new()), origin: origin.clone() };
                table.insert(seg.clone(), Entry { key_origin: origin.clone(), node: empty });
            }
            let keys: Vec<String> = table.keys().cloned().collect();
            let Some(entry) = table.get_mut(seg) else {
                let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
                let help = did_you_mean_help(seg, &refs, format!("existing keys here: {}", refs.join(", ")));
                walked.push(seg.as_str());
                return Err(ConfigError::at(
                    file,
                    origin,
                    format!("--set {}: there is no `{}` in the experiment file", ov.path.join("."), walked.join(".")),
                    Some(help),
                ));
            };
            walked.push(seg.as_str());
            let NodeValue::Table(inner) = &mut entry.node.value else {
                return Err(ConfigError::at(
                    file,
                    origin,
                    format!("--set {}: `{}` is not a table", ov.path.join("."), walked.join(".")),
                    None,
                ));
            };
            table = inner;
        }
        if let Some(old) = table.insert(last.clone(), Entry { key_origin: origin.clone(), node }) {
            replaced.push(old.node.to_json());
        }
    }
    Ok(replaced)
}

/// Tables that `--set` may create because they are optional settings, not names a typo could
/// invent: `[executor]`, and any table inside an existing stage (`resources`, a `labels` map the
/// file leaves out), whose fields the op checks by name like the file's.
fn creatable(walked: &[&str], seg: &str) -> bool {
    matches!((walked, seg), ([], "executor") | (["stages", _, ..], _))
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
    }

    fn apply(text: &str, set: &str) -> Result<serde_json::Value, String> {
        let file = SourceFile { path: "e.toml".into(), text: text.into() };
        let mut doc = crate::config::source::parse_document(&file).map_err(|e| e.to_string())?;
        apply_overrides(&file, &mut doc, &[set.parse().unwrap()]).map_err(|e| e.to_string())?;
        Ok(doc["stages"].node.to_json())
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
    }
}
