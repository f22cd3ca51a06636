//! The experiment file as text plus a spanned value tree.
//!
//! The TOML is parsed once into [`Node`]s that keep the byte span of every key and value, so that
//! errors found in later passes (typed parameters, references, cycles) still point at a line and
//! column of the file the user wrote.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value as Json;
use toml::de::{DeTable, DeValue};

use super::error::ConfigError;
pub use super::file::{Origin, SourceFile};

/// A TOML value with the span of its text.
#[derive(Debug, Clone)]
pub struct Node {
    /// The value.
    pub value: NodeValue,
    /// Where the value was written.
    pub origin: Origin,
}

/// A table entry: the key's own origin (for "unknown field" errors) and its value.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Where the key was written.
    pub key_origin: Origin,
    /// The value.
    pub node: Node,
}

/// The TOML data model, minus datetimes (no op takes one).
#[derive(Debug, Clone)]
pub enum NodeValue {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// An array.
    Array(Vec<Node>),
    /// A table; keys sorted so that key order in the file never matters.
    Table(BTreeMap<String, Entry>),
}

impl NodeValue {
    /// The TOML type name, for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            NodeValue::Str(_) => "string",
            NodeValue::Int(_) => "integer",
            NodeValue::Float(_) => "float",
            NodeValue::Bool(_) => "boolean",
            NodeValue::Array(_) => "array",
            NodeValue::Table(_) => "table",
        }
    }
}

impl Node {
    /// The value as JSON (the form typed parameters are deserialised from and hashed in).
    pub fn to_json(&self) -> Json {
        match &self.value {
            NodeValue::Str(s) => Json::String(s.clone()),
            NodeValue::Int(i) => Json::from(*i),
            NodeValue::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
            NodeValue::Bool(b) => Json::Bool(*b),
            NodeValue::Array(items) => Json::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Table(t) => Json::Object(t.iter().map(|(k, e)| (k.clone(), e.node.to_json())).collect()),
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The table, if this is one.
    pub fn as_table(&self) -> Option<&BTreeMap<String, Entry>> {
        match &self.value {
            NodeValue::Table(t) => Some(t),
            _ => None,
        }
    }
}

/// Parses TOML text into a spanned table.
pub fn parse_document(file: &SourceFile) -> Result<BTreeMap<String, Entry>, ConfigError> {
    let doc = DeTable::parse(&file.text).map_err(|e| {
        ConfigError::at(
            file,
            Origin::File(e.span().unwrap_or_else(|| deepest_key_line(&file.text))),
            format!("invalid TOML: {}", e.message()),
            Some(if e.message().contains("recursion") {
                "nest keys, arrays and tables less deeply: no cfrun field is more than a few levels deep".into()
            } else {
                "see https://toml.io for the syntax; strings need quotes, tables look like [stages.NAME]".into()
            }),
        )
    })?;
    convert_table(file, "", doc.get_ref())
}

/// The line whose key has the most dotted parts: where the parser gives up on a key nested past
/// its recursion limit, an error it raises without a span (it would point at line 1). Keys are
/// looked for anywhere on a line (an inline table's too), never in strings or comments.
fn deepest_key_line(text: &str) -> std::ops::Range<usize> {
    let mut best = (1, 0..0);
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        let parts = most_dotted_parts(line);
        if parts > best.0 {
            best = (parts, start..start + line.trim_end().len());
        }
        start += line.len();
    }
    best.1
}

/// The most dot-separated parts of one bare run of key characters on `line`, outside strings
/// and comments.
fn most_dotted_parts(line: &str) -> usize {
    let (mut most, mut parts, mut in_run) = (0, 0, false);
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                if c == '\\' && q == '"' {
                    chars.next();
                } else if c == q {
                    quote = None;
                }
                continue;
            }
            None if c == '#' => break,
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                // A quoted part of a dotted key (`a."b".c`) continues the run.
                continue;
            }
            None => {}
        }
        if c == '.' {
            parts += 1;
            in_run = true;
        } else if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            if !in_run {
                parts = 1;
                in_run = true;
            }
        } else if !c.is_whitespace() {
            in_run = false;
        }
        most = most.max(parts);
        if !in_run {
            parts = 0;
        }
    }
    most
}

/// Parses one TOML value written on the command line (`--set stages.k.k=50`).
/// Bare words that are not valid TOML are taken as strings, as a shell user expects.
pub fn parse_override_value(text: &str, index: usize) -> Node {
    let origin = Origin::Override(index);
    let file = SourceFile::from_text(Path::new("--set"), text.to_string());
    match DeValue::parse(text) {
        Ok(v) => match convert_value(&file, "--set", &v) {
            Ok(mut node) => {
                relabel(&mut node, &origin);
                node
            }
            Err(_) => Node { value: NodeValue::Str(text.to_string()), origin },
        },
        Err(_) => Node { value: NodeValue::Str(text.to_string()), origin },
    }
}

fn relabel(node: &mut Node, origin: &Origin) {
    node.origin = origin.clone();
    match &mut node.value {
        NodeValue::Array(items) => items.iter_mut().for_each(|n| relabel(n, origin)),
        NodeValue::Table(t) => t.values_mut().for_each(|e| {
            e.key_origin = origin.clone();
            relabel(&mut e.node, origin)
        }),
        _ => {}
    }
}

/// `path` is the dotted path of `table` (empty for the document).
fn convert_table(file: &SourceFile, path: &str, table: &DeTable<'_>) -> Result<BTreeMap<String, Entry>, ConfigError> {
    let mut out = BTreeMap::new();
    for (key, value) in table.iter() {
        let field = if path.is_empty() { key.get_ref().to_string() } else { format!("{path}.{}", key.get_ref()) };
        let node = convert_value(file, &field, value)?;
        out.insert(key.get_ref().to_string(), Entry { key_origin: Origin::File(key.span()), node });
    }
    Ok(out)
}

/// `key` is the field's dotted path (an array's items share their array's), which names it in
/// the errors raised here, before any field is typed.
fn convert_value(file: &SourceFile, key: &str, v: &toml::Spanned<DeValue<'_>>) -> Result<Node, ConfigError> {
    let origin = Origin::File(v.span());
    let number_error = |what: &str, range: String| {
        ConfigError::at(
            file,
            origin.clone(),
            format!("`{key}`: {what} out of range"),
            Some(format!("TOML {what}s run {range}; no cfrun field takes a value this large")),
        )
    };
    let int_range = || format!("from {} to {}", i64::MIN, i64::MAX);
    let float_range = || format!("to about ±{:e}", f64::MAX);
    let value = match v.get_ref() {
        DeValue::String(s) => NodeValue::Str(s.to_string()),
        DeValue::Integer(_) => NodeValue::Int(
            i64::deserialize(toml::de::ValueDeserializer::from(v.clone()))
                .map_err(|_| number_error("integer", int_range()))?,
        ),
        DeValue::Float(_) => {
            let f = f64::deserialize(toml::de::ValueDeserializer::from(v.clone()))
                .map_err(|_| number_error("float", float_range()))?;
            // JSON, and so a recipe, has no NaN or infinity: serde_json would turn them into
            // null, which an optional field reads as "unset". Refused here, where the span is.
            if !f.is_finite() {
                return Err(ConfigError::at(
                    file,
                    origin,
                    format!("`{key}`: `{f}` is not a number any cfrun field takes"),
                    Some("write a finite number".into()),
                ));
            }
            NodeValue::Float(f)
        }
        DeValue::Boolean(b) => NodeValue::Bool(b.to_owned()),
        DeValue::Datetime(_) => {
            return Err(ConfigError::at(
                file,
                origin,
                format!("`{key}`: dates and times are not used by any cfrun field"),
                Some("write the value as a string or number".into()),
            ))
        }
        DeValue::Array(items) => {
            NodeValue::Array(items.iter().map(|item| convert_value(file, key, item)).collect::<Result<_, _>>()?)
        }
        DeValue::Table(t) => NodeValue::Table(convert_table(file, key, &t.clone())?),
    };
    Ok(Node { value, origin })
}

#[cfg(test)]
mod tests {
    use super::{deepest_key_line, most_dotted_parts};

    /// The deepest key is found in an inline table too, and dots in comments and strings do not
    /// count (a review's comment line `see docs.example.com/a.b.c` won over the key below it).
    #[test]
    fn the_deepest_key_is_found_outside_strings_and_comments() {
        let deep = format!("x = {{{} = 1}}", vec!["a"; 200].join("."));
        let text = format!("# see docs.example.com/a.b.c.d.e.f for help\nurl = \"a.b.c.d.e.f.g.h\"\n{deep}\ny = 1.5\n");
        let line = &text[deepest_key_line(&text)];
        assert_eq!(line, deep);
        assert_eq!(most_dotted_parts("a.\"b.c.d\".e = 1"), 3);
        assert_eq!(most_dotted_parts("k = 'a.b.c' # x.y.z.w"), 1);
        assert_eq!(most_dotted_parts("a . b . c = 1"), 3);
    }
}
