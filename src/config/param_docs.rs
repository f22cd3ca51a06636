//! What `cfrun ops OP` says of each parameter: its type, whether a stage must write it, its
//! default and its doc comment, all read from the JSON Schema that `schemars` derives from the
//! op's parameter struct. The help is made from the struct that parses the stage, so the two
//! cannot drift apart.

use serde::Serialize;
use serde_json::{Map, Value as Json};

/// One parameter as `cfrun ops OP` describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamDoc {
    /// As written in a stage; `claims[].expect` for a field of each table in a list.
    pub name: String,
    /// What it takes, in words: `integer >= 0`, `"cosine" | "step" | "constant"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether a stage must write it.
    pub required: bool,
    /// What a stage that leaves it out gets; `None` when it is required or left unset.
    pub default: Option<Json>,
    /// Where the value of a stage that leaves it out comes from, when not from the op (a seed
    /// from the experiment's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_from: Option<String>,
    /// The field's doc comment as one paragraph.
    pub doc: String,
    /// The range a number (or each number of a list) must lie in, where the op checks one.
    #[serde(skip_serializing_if = "Bounds::is_open")]
    pub bounds: Bounds,
    /// For a list, what each item takes, in words (`integer from 1 to 8192`).
    #[serde(skip)]
    pub item_kind: Option<String>,
}

/// The range of a number field as its schema states it: JSON Schema's four keywords.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Bounds {
    /// The least value allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    /// Every value must be above this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclusive_minimum: Option<f64>,
    /// The greatest value allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
    /// Every value must be below this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclusive_maximum: Option<f64>,
}

impl Bounds {
    /// The bounds `schema` states (of its items, for a list).
    fn of(schema: &Json) -> Bounds {
        let schema = schema.get("items").unwrap_or(schema);
        let at = |key: &str| schema.get(key).and_then(Json::as_f64);
        Bounds {
            minimum: at("minimum"),
            exclusive_minimum: at("exclusiveMinimum"),
            maximum: at("maximum"),
            exclusive_maximum: at("exclusiveMaximum"),
        }
    }

    /// Whether no bound is stated.
    pub fn is_open(&self) -> bool {
        *self == Bounds::default()
    }

    /// `>= 0`, `from 2 to 20`, `in (0, 1]`: the bounds in words, after a type's name.
    fn words(&self, integer: bool) -> String {
        let low = self.minimum.map(|m| ('[', m)).or(self.exclusive_minimum.map(|m| ('(', m)));
        let high = self.maximum.map(|m| (']', m)).or(self.exclusive_maximum.map(|m| (')', m)));
        match (low, high) {
            (Some(('[', lo)), Some((']', hi))) if integer => format!(" from {lo} to {hi}"),
            (Some((open, lo)), Some((close, hi))) => format!(" in {open}{lo}, {hi}{close}"),
            (Some((open, lo)), None) => format!(" {} {lo}", if open == '[' { ">=" } else { ">" }),
            (None, Some((close, hi))) => format!(" {} {hi}", if close == ']' { "<=" } else { "<" }),
            (None, None) => String::new(),
        }
    }
}

/// The parameters of `P` in the order `order` names them (fields the schema has and `order`
/// lacks follow by name), each followed by the fields of the tables it holds, if any: their
/// required fields first, in the struct's order, then the others by name.
pub fn describe<P: schemars::JsonSchema>(order: &[&str]) -> Vec<ParamDoc> {
    let schema = schemars::schema_for!(P);
    let root = schema.as_value();
    let defs = root.get("$defs").and_then(Json::as_object).cloned().unwrap_or_default();
    let mut out = Vec::new();
    // A transparent wrapper's schema is a reference to the struct it wraps.
    fields(resolve(root, &defs), &defs, "", Some(order), &mut out);
    out
}

/// Appends the documented fields of the object schema `object`, names prefixed by `prefix`.
fn fields(object: &Json, defs: &Map<String, Json>, prefix: &str, order: Option<&[&str]>, out: &mut Vec<ParamDoc>) {
    let Some(properties) = object.get("properties").and_then(Json::as_object) else { return };
    let required: Vec<&str> =
        object.get("required").and_then(Json::as_array).into_iter().flatten().filter_map(Json::as_str).collect();
    // A nested table's schema lists its properties sorted by name, but its required ones in the
    // struct's order: those first, then the rest by name.
    let order = order.map_or_else(|| required.clone(), <[&str]>::to_vec);
    let mut names: Vec<&str> = order.into_iter().filter(|n| properties.contains_key(*n)).collect();
    names.extend(properties.keys().map(String::as_str).filter(|n| !names.contains(n)).collect::<Vec<_>>());
    for name in names {
        let field = &properties[name];
        let value = resolve(field, defs);
        let is_required = required.contains(&name);
        let default = match field.get("default") {
            // A null default is an optional field left unset.
            Some(given) => Some(given.clone()).filter(|d| !d.is_null()),
            None if is_required => None,
            None => empty_default(value),
        };
        out.push(ParamDoc {
            name: format!("{prefix}{name}"),
            kind: type_name(value, defs),
            required: is_required,
            default,
            default_from: None,
            doc: paragraph(field),
            bounds: Bounds::of(value),
            item_kind: value.get("items").map(|i| type_name(i, defs)),
        });
        // A list of tables, or one table, documents its own fields under this one's name.
        let items = value.get("items").map(|i| (resolve(i, defs), "[]"));
        if let Some((table, suffix)) = items.or(Some((value, ""))).filter(|(t, _)| t.get("properties").is_some()) {
            fields(table, defs, &format!("{prefix}{name}{suffix}."), None, out);
        }
    }
}

/// `schema` with a `$ref` (also one beside `null` in `anyOf`, an optional nested type) replaced
/// by its definition.
fn resolve<'a>(schema: &'a Json, defs: &'a Map<String, Json>) -> &'a Json {
    if let Some(name) = schema.get("$ref").and_then(Json::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
        return defs.get(name).map_or(schema, |d| resolve(d, defs));
    }
    if let Some(options) = schema.get("anyOf").and_then(Json::as_array) {
        let not_null: Vec<&Json> = options.iter().filter(|o| o.get("type") != Some(&Json::from("null"))).collect();
        if let [one] = not_null.as_slice() {
            return resolve(one, defs);
        }
    }
    schema
}

/// What serde's `default` gives a list or a table left out that the schema gives no default
/// for (it is left out of the canonical form when empty): empty. Anything else is unset.
fn empty_default(schema: &Json) -> Option<Json> {
    match schema.get("type").and_then(Json::as_str) {
        Some("array") => Some(Json::Array(Vec::new())),
        Some("object") => Some(Json::Object(Map::new())),
        _ => None,
    }
}

/// The JSON types a schema allows, `null` left out (an optional field says so by `required`).
fn types(schema: &Json) -> Vec<&str> {
    match schema.get("type") {
        Some(Json::String(t)) => vec![t.as_str()],
        Some(Json::Array(ts)) => ts.iter().filter_map(Json::as_str).filter(|t| *t != "null").collect(),
        _ => Vec::new(),
    }
}

/// The type of `schema` in words, as a stage's TOML would write it.
fn type_name(schema: &Json, defs: &Map<String, Json>) -> String {
    let schema = resolve(schema, defs);
    // One of several shapes (a number, or a table of numbers by name).
    if let Some(options) = schema.get("anyOf").and_then(Json::as_array) {
        let names: Vec<String> =
            options.iter().filter(|o| o.get("type") != Some(&Json::from("null"))).map(|o| type_name(o, defs)).collect();
        return names.join(", or ");
    }
    let choices = schema.get("oneOf").or_else(|| schema.get("enum")).and_then(Json::as_array);
    if let Some(choices) = choices {
        let names: Vec<String> = choices
            .iter()
            .map(|c| c.get("const").unwrap_or(c))
            .map(|c| if c.is_object() { type_name(c, defs) } else { c.to_string() })
            .collect();
        return names.join(" | ");
    }
    let kinds = types(schema);
    let Some(&kind) = kinds.first() else { return "any value".to_string() };
    if kinds.len() > 1 {
        return kinds.join(" or ");
    }
    match kind {
        "integer" | "number" => format!("{kind}{}", Bounds::of(schema).words(kind == "integer")),
        "array" => {
            let items = schema.get("items").map_or_else(|| "any value".to_string(), |i| type_name(i, defs));
            let count = match (schema.get("minItems"), schema.get("maxItems")) {
                (Some(lo), Some(hi)) if lo == hi => format!("{lo} "),
                (Some(lo), Some(hi)) => format!("{lo} to {hi} "),
                _ => String::new(),
            };
            format!("array of {count}{}", plural(&items))
        }
        "object" if schema.get("properties").is_some() => "table (fields below)".to_string(),
        "object" => match schema.get("additionalProperties") {
            Some(v @ Json::Object(_)) => format!("table of {}", plural(&type_name(v, defs))),
            _ => "table".to_string(),
        },
        other => other.to_string(),
    }
}

/// `integer >= 0` as `integers >= 0`; a list of choices kept as it is.
fn plural(kind: &str) -> String {
    match kind.split_once(' ') {
        _ if kind.contains('|') => format!("({kind})"),
        Some((head, rest)) if !head.ends_with('s') => format!("{head}s {rest}"),
        None if !kind.ends_with('s') => format!("{kind}s"),
        _ => kind.to_string(),
    }
}

/// A field's doc comment (schemars' title and description) as one line of text.
fn paragraph(field: &Json) -> String {
    let text = |key: &str| field.get(key).and_then(Json::as_str).unwrap_or_default().to_string();
    let joined = [text("title"), text("description")].into_iter().filter(|t| !t.is_empty()).collect::<Vec<_>>();
    joined.join(". ").split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    /// How the mode is chosen.
    #[derive(Serialize, Deserialize, schemars::JsonSchema)]
    #[serde(rename_all = "snake_case")]
    #[allow(dead_code)]
    enum Mode {
        /// Quickly.
        Fast,
        /// Carefully.
        Slow,
    }

    /// One row.
    #[derive(Serialize, Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Row {
        /// The row's name.
        name: String,
        /// Its weight.
        #[serde(default = "one")]
        weight: f64,
    }

    /// A demonstration.
    #[derive(Serialize, Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Demo {
        /// Clusters, at least 2.
        k: usize,
        /// How: fast or slow.
        #[serde(default = "slow")]
        mode: Mode,
        /// Widths of the four stages,
        /// overriding the preset.
        #[serde(default)]
        widths: Option<[usize; 4]>,
        /// Rows to compare.
        #[serde(default)]
        rows: Vec<Row>,
        /// Names shown.
        #[serde(default)]
        labels: std::collections::BTreeMap<String, String>,
        /// Anything at all.
        #[serde(default)]
        extra: Json,
    }

    fn one() -> f64 {
        1.0
    }
    fn slow() -> Mode {
        Mode::Slow
    }

    #[test]
    fn types_defaults_and_docs_come_from_the_struct_in_the_given_order() {
        let docs = describe::<Demo>(&["mode", "k"]);
        let row = |name: &str| docs.iter().find(|d| d.name == name).unwrap_or_else(|| panic!("{name}: {docs:?}"));
        let names: Vec<&str> = docs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(&names[..2], ["mode", "k"], "the given order first");
        assert_eq!(names.len(), 8, "six fields and the two of each row: {names:?}");
        let at = |name: &str| names.iter().position(|n| *n == name).unwrap();
        assert_eq!(at("rows[].name"), at("rows") + 1, "a table's fields follow it, required first: {names:?}");

        assert_eq!((row("k").kind.as_str(), row("k").required, &row("k").default), ("integer >= 0", true, &None));
        assert_eq!(row("k").doc, "Clusters, at least 2.");
        assert_eq!(row("mode").kind, "\"fast\" | \"slow\"");
        assert_eq!(row("mode").default, Some(json!("slow")));
        assert_eq!(row("widths").kind, "array of 4 integers >= 0");
        assert_eq!((row("widths").required, &row("widths").default), (false, &None), "unset, not required");
        assert_eq!(row("widths").doc, "Widths of the four stages, overriding the preset.");
        assert_eq!(row("rows").kind, "array of tables (fields below)");
        assert_eq!(row("rows").default, Some(json!([])));
        assert_eq!((row("rows[].name").kind.as_str(), row("rows[].name").required), ("string", true));
        assert_eq!(row("rows[].weight").default, Some(json!(1.0)));
        assert_eq!(row("labels").kind, "table of strings");
        assert_eq!(row("labels").default, Some(json!({})));
        assert_eq!(row("extra").kind, "any value");
    }
}
