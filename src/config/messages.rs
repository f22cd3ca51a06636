//! The messages the structure checks of every table share: a value of the wrong type, a key
//! that is not one of the valid ones.

use super::error::ConfigError;
use super::source::{Entry, Node, NodeValue, SourceFile};
use super::suggest::did_you_mean_help;

/// "unknown field" with the valid choices and the closest one.
pub fn unknown_key(file: &SourceFile, entry: &Entry, key: &str, what: &str, valid: &[&str]) -> ConfigError {
    let help = did_you_mean_help(key, valid, format!("valid: {}", valid.join(", ")));
    ConfigError::at(file, entry.key_origin.clone(), format!("unknown {what} `{key}`"), Some(help))
}

/// "`field` must be X, found Y" at the value.
pub fn type_error(file: &SourceFile, node: &Node, field: &str, expected: &str) -> ConfigError {
    ConfigError::at(file, node.origin.clone(), format!("`{field}` must be {expected}, found {}", node_text(node)), None)
}

/// A value as error messages quote it: numbers bare (a float with its point: `3.0` where an
/// integer is wanted read as `3`), strings quoted, anything else by its type.
pub fn node_text(node: &Node) -> String {
    match &node.value {
        NodeValue::Int(i) => format!("{i}"),
        NodeValue::Float(f) => format!("{f:?}"),
        NodeValue::Str(s) => format!("\"{s}\""),
        other => other.type_name().to_string(),
    }
}
