//! Typed op parameters: each op declares a serde struct; this module turns the untyped stage
//! fields into that struct (defaults filled in), checks ranges, and re-serialises it as the
//! canonical JSON that goes into the recipe key. Unknown fields are found by comparing against
//! [`Params::fields`]: by default the struct's field list, which serde hands to
//! `deserialize_struct` (captured by [`field_names`]); a struct that flattens shared parameter
//! groups (`#[serde(flatten)]`, which serde deserialises as a map) lists its fields itself.

use serde::de::{self, DeserializeOwned, Visitor};
use serde::Serialize;
use serde_json::Value as Json;

use super::suggest::{did_you_mean_choice_help, did_you_mean_help};

/// A parameter problem, located by its field path inside the stage (`k`, `schedule.gamma`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    /// Dotted path of the field inside the stage table; empty for the table itself.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// What would be valid.
    pub help: Option<String>,
    /// For a value of the wrong type, what was written, in words (`the string "11"`), so the
    /// message can be restated with the range the op documents.
    pub found: Option<String>,
    /// Whether the field itself is unknown (a misspelt key), not its value wrong: such an error
    /// points at the key and at `cfrun ops OP`.
    pub unknown_field: bool,
    /// What a later layer may explain better than the place that found the error.
    pub about: Option<Box<About>>,
}

/// The name an error is about, for the help a caller with more context gives.
#[derive(Debug, Clone, PartialEq)]
pub enum About {
    /// A required field left out, by its full path (`claims[1].expect`): the help gives what
    /// the op documents it takes.
    Missing(String),
    /// A stage an aggregating op names but does not gather: the plan, which knows the file's
    /// stages, says how to gather it.
    Ungathered(String),
}

impl ParamError {
    /// An error about one field.
    pub fn field(path: &str, message: impl Into<String>, help: impl Into<Option<String>>) -> Self {
        ParamError {
            path: path.to_string(),
            message: message.into(),
            help: help.into(),
            found: None,
            unknown_field: false,
            about: None,
        }
    }

    /// "unknown field `name`" for a key the op (or a nested table of it) does not take.
    fn unknown_field(path: &str, name: &str, help: String) -> Self {
        ParamError { unknown_field: true, ..ParamError::field(path, format!("unknown field `{name}`"), Some(help)) }
    }

    /// "unknown WHAT `got`" for a name outside a closed list, with the valid names and the closest
    /// one (the help serde's enums get, for the choices checked in `validate`).
    pub fn unknown_name(path: &str, what: &str, got: &str, valid: &[&str]) -> Self {
        let help = did_you_mean_choice_help(got, valid, format!("valid: {}", valid.join(", ")));
        ParamError::field(path, format!("unknown {what} `{got}`"), Some(help))
    }

    /// A range check: `field` must satisfy `valid` (e.g. "at least 2").
    pub fn range(path: &str, got: impl std::fmt::Display, valid: &str) -> Self {
        ParamError::field(path, format!("`{path}` is {got}, but must be {valid}"), None)
    }
}

/// Parameters of one op.
pub trait Params: DeserializeOwned + Serialize + schemars::JsonSchema {
    /// Every parameter name, in the order help texts list them. The default reads the struct's
    /// fields; a struct that flattens shared groups names its own and theirs ([`with_groups`]).
    fn fields() -> Vec<&'static str> {
        field_names::<Self>().to_vec()
    }

    /// Checks on the raw parameters before they are typed: each flattened group on its own
    /// (serde loses the field path inside a flattened struct, so a type error could not name its
    /// field), or a likely slip that serde's message would leave unexplained.
    fn check_groups(_raw: &Json) -> Result<(), ParamError> {
        Ok(())
    }

    /// Range and consistency checks beyond what the types say.
    fn validate(&self) -> Result<(), ParamError> {
        Ok(())
    }

    /// Each parameter's type, default and doc comment, in the order of [`Params::fields`].
    fn docs() -> Vec<super::param_docs::ParamDoc> {
        super::param_docs::describe::<Self>(&Self::fields())
    }
}

/// The fields of a struct that flattens `groups` beside its `own` fields.
pub fn with_groups(groups: &[&[&'static str]], own: &[&'static str]) -> Vec<&'static str> {
    groups.iter().flat_map(|g| g.iter()).chain(own).copied().collect()
}

/// Types a shared group of parameters from the whole stage table (other fields are the
/// including struct's business), so its type errors keep their field path.
pub fn check_group<G: DeserializeOwned>(raw: &Json) -> Result<(), ParamError> {
    deserialize::<G>(raw).map(drop)
}

/// Types and validates `raw` (a JSON object of the stage's parameters) as `P`, returning the
/// canonical JSON with every default filled in.
pub fn normalize<P: Params>(raw: &Json) -> Result<Json, ParamError> {
    canonical(&typed::<P>(raw)?)
}

/// Types `raw` as `P` and runs its range checks.
pub fn typed<P: Params>(raw: &Json) -> Result<P, ParamError> {
    let typed: P = parse::<P>(raw)?;
    typed.validate()?;
    Ok(typed)
}

/// The canonical JSON of typed parameters: what the recipe key hashes.
pub fn canonical<P: Serialize>(typed: &P) -> Result<Json, ParamError> {
    let canonical = serde_json::to_value(typed)
        .map_err(|e| ParamError::field("", format!("cannot encode parameters: {e}"), None))?;
    if let Some(path) = control_character(&canonical, "") {
        return Err(ParamError::field(
            &path,
            format!("`{path}` contains a control character (or one that reorders text, or a noncharacter)"),
            Some(
                "parameter text ends up in names, logs, tables and figures; remove it (newlines and tabs are text)"
                    .into(),
            ),
        ));
    }
    Ok(canonical)
}

/// The path of the first string holding a character unsafe to print (newlines and tabs are text):
/// one that reorders the text around it would reorder a table title or a name on the page too.
fn control_character(v: &Json, path: &str) -> Option<String> {
    match v {
        Json::String(s) => {
            s.chars().any(|c| crate::human::unsafe_to_print(c) && c != '\n' && c != '\t').then(|| path.to_string())
        }
        Json::Array(items) => {
            items.iter().enumerate().find_map(|(i, item)| control_character(item, &format!("{path}[{i}]")))
        }
        Json::Object(map) => map.iter().find_map(|(k, i)| {
            let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            control_character(i, &p)
        }),
        _ => None,
    }
}

/// Types `raw` as `P` (unknown fields rejected with a suggestion).
pub fn parse<P: Params>(raw: &Json) -> Result<P, ParamError> {
    let fields = P::fields();
    if let Json::Object(map) = raw {
        for key in map.keys() {
            if !fields.contains(&key.as_str()) {
                let help = did_you_mean_help(key, &fields, format!("valid parameters: {}", fields.join(", ")));
                return Err(ParamError::unknown_field(key, key, help));
            }
        }
    }
    P::check_groups(raw).map_err(documented_type::<P>)?;
    deserialize::<P>(raw).map_err(documented_type::<P>)
}

/// A wrong-typed number restated with the type and range `cfrun ops OP` gives the field (the
/// range the op checks): the Rust type alone says "0 or more" of a field that refuses 0.
fn documented_type<P: Params>(e: ParamError) -> ParamError {
    if let Some(About::Missing(full)) = e.about.as_deref() {
        let Some(doc) = P::docs().into_iter().find(|d| d.name == documented_name(full)) else { return e };
        let help = e.help.as_ref().map(|h| format!("{h}: it takes {}", doc.kind.trim_end_matches(", required")));
        return ParamError { help, ..e };
    }
    let Some(found) = &e.found else { return e };
    let name = documented_name(&e.path);
    let docs = P::docs();
    let kind = if let Some(doc) = docs.iter().find(|d| d.name == name) {
        doc.kind.clone()
    } else if let Some(list) = name.strip_suffix("[]").and_then(|l| docs.iter().find(|d| d.name == l)) {
        // An item of a list: what each item takes.
        let Some(item) = &list.item_kind else { return e };
        format!("{item} (each item of `{}`)", list.name)
    } else {
        return e;
    };
    let article = if kind.starts_with("integer") {
        "an"
    } else if kind.starts_with("number") {
        "a"
    } else if kind.starts_with('"') {
        "one of"
    } else {
        return e;
    };
    let message = format!("`{}` must be {article} {kind}, found {found}", e.path);
    ParamError { message, ..e }
}

/// A field's path as `cfrun ops OP` documents it: `claims[0].margin` is `claims[].margin`.
fn documented_name(path: &str) -> String {
    let mut name = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => in_index = true,
            ']' => {
                in_index = false;
                name.push_str("[]");
            }
            c if !in_index => name.push(c),
            _ => {}
        }
    }
    name
}

/// Deserialises `raw` as `T`, turning serde's message into one that names the field.
fn deserialize<T: DeserializeOwned>(raw: &Json) -> Result<T, ParamError> {
    serde_path_to_error::deserialize::<_, T>(raw.clone()).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = e.into_inner().to_string();
        if let Some((got, valid)) = unknown_variant(&inner) {
            let field = path.rsplit('.').next().unwrap_or(&path);
            return ParamError::unknown_name(&path, field, &got, &valid);
        }
        if let Some((got, valid)) = unknown_field(&inner) {
            // A field of a nested table (a claim's): the stage's own are caught in `parse`.
            let help = did_you_mean_help(&got, &valid, format!("valid fields here: {}", valid.join(", ")));
            return ParamError::unknown_field(&path, &got, help);
        }
        if let Some(missing) = inner.strip_prefix("missing field ") {
            let name = missing.trim_matches('`');
            let (full, table) = if path.is_empty() {
                (name.to_string(), "this stage".to_string())
            } else {
                (format!("{path}.{name}"), format!("the table `{path}`"))
            };
            return ParamError {
                about: Some(Box::new(About::Missing(full.clone()))),
                ..ParamError::field(
                    &path,
                    format!("missing required field `{full}`"),
                    Some(format!("add `{name} = ...` to {table}")),
                )
            };
        }
        match plain_type_message(&inner) {
            Some((expected, found)) => ParamError {
                found: Some(found.clone()),
                ..ParamError::field(&path, format!("`{path}` must be {expected}, found {found}"), None)
            },
            None => ParamError::field(&path, format!("`{path}`: {inner}"), None),
        }
    })
}

/// Serde's "invalid type: string \"ten\", expected usize" in a researcher's words: what the
/// field takes and what was written (`None` for a message of another shape).
fn plain_type_message(message: &str) -> Option<(String, String)> {
    let rest = message.strip_prefix("invalid type: ").or_else(|| message.strip_prefix("invalid value: "))?;
    let (found, expected) = rest.rsplit_once(", expected ")?;
    let expected = match expected {
        "usize" | "u64" => "a whole number, 0 or more".to_string(),
        "u32" => format!("a whole number from 0 to {}", u32::MAX),
        "u16" => format!("a whole number from 0 to {}", u16::MAX),
        "u8" => format!("a whole number from 0 to {}", u8::MAX),
        "i64" | "isize" | "i32" => "a whole number".to_string(),
        "f64" | "f32" => "a number".to_string(),
        "a boolean" => "true or false".to_string(),
        "a string" | "a borrowed string" => "a string in quotes".to_string(),
        "a sequence" => "a list, like [1, 2]".to_string(),
        // A closed choice (a serde enum): its names come from the field's documentation.
        "string or map" | "map with a single key" => "a name in quotes".to_string(),
        _ => return None,
    };
    let quoted = |prefix: &str| found.strip_prefix(prefix).map(|v| v.trim_matches('`').to_string());
    let found = if let Some(v) = found.strip_prefix("string ") {
        format!("the string {v}")
    } else if let Some(v) = quoted("integer ").or_else(|| quoted("floating point ")).or_else(|| quoted("boolean ")) {
        v
    } else {
        match found {
            "sequence" => "a list".to_string(),
            "map" => "a table".to_string(),
            other => other.to_string(),
        }
    };
    Some((expected, found))
}

/// The name and the valid names of serde's "unknown field `x`, expected one of `a`, `b`" (or
/// "expected `a` or `b`") message, as `deny_unknown_fields` gives it for a nested table.
fn unknown_field(message: &str) -> Option<(String, Vec<&str>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (got, expected) = rest.split_once("`, ")?;
    let valid: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    (!valid.is_empty()).then(|| (got.to_string(), valid))
}

/// The value and the valid names of serde's "unknown variant `x`, expected ..." message (a
/// closed choice such as a schedule, written as a serde enum).
fn unknown_variant(message: &str) -> Option<(String, Vec<&str>)> {
    let rest = message.strip_prefix("unknown variant `")?;
    let (got, expected) = rest.split_once("`, expected ")?;
    let valid: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    Some((got.to_string(), valid))
}

/// The field names of a struct deserialised by serde derive (empty for non-structs).
pub fn field_names<P: DeserializeOwned>() -> &'static [&'static str] {
    let mut capture = FieldCapture(None);
    let _ = P::deserialize(&mut capture);
    capture.0.unwrap_or(&[])
}

struct FieldCapture(Option<&'static [&'static str]>);

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field capture")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> de::Deserializer<'de> for &mut FieldCapture {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        self.0 = Some(fields);
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Demo {
        #[schemars(range(min = 2))]
        k: usize,
        #[serde(default = "ten")]
        iterations: usize,
        #[serde(default)]
        #[schemars(inner(range(min = 1, max = 64)))]
        sizes: Vec<u32>,
    }

    fn ten() -> usize {
        10
    }

    impl Params for Demo {
        fn validate(&self) -> Result<(), ParamError> {
            if self.k < 2 {
                return Err(ParamError::range("k", self.k, "at least 2"));
            }
            Ok(())
        }
    }

    #[test]
    fn fills_defaults_and_checks() {
        let out = normalize::<Demo>(&serde_json::json!({"k": 5})).unwrap();
        assert_eq!(out, serde_json::json!({"k": 5, "iterations": 10, "sizes": []}));
        assert_eq!(field_names::<Demo>(), &["k", "iterations", "sizes"]);
        let e = normalize::<Demo>(&serde_json::json!({"k": 1})).unwrap_err();
        assert_eq!(e.path, "k");
        let e = normalize::<Demo>(&serde_json::json!({"k": 5, "iteratons": 3})).unwrap_err();
        assert!(e.help.unwrap().contains("did you mean `iterations`"));
        let e = normalize::<Demo>(&serde_json::json!({})).unwrap_err();
        assert!(e.message.contains("missing required field `k`"), "{}", e.message);
        let e = normalize::<Demo>(&serde_json::json!({"k": "many"})).unwrap_err();
        assert_eq!(e.path, "k");
        // The range `cfrun ops` documents, which the check applies, not the Rust type's.
        assert_eq!(e.message, "`k` must be an integer >= 2, found the string \"many\"");
        let e = normalize::<Demo>(&serde_json::json!({"k": -5})).unwrap_err();
        assert_eq!(e.message, "`k` must be an integer >= 2, found -5");
        let e = normalize::<Demo>(&serde_json::json!({"k": 2.5})).unwrap_err();
        assert_eq!(e.message, "`k` must be an integer >= 2, found 2.5");
        let e = normalize::<Demo>(&serde_json::json!({"k": [1]})).unwrap_err();
        assert_eq!(e.message, "`k` must be an integer >= 2, found a list");
        // An item of a list of numbers: the items' documented bounds.
        let e = normalize::<Demo>(&serde_json::json!({"k": 5, "sizes": [4, "x"]})).unwrap_err();
        assert_eq!(
            e.message,
            "`sizes[1]` must be an integer from 1 to 64 (each item of `sizes`), found the string \"x\""
        );
        // Without a documented type, the Rust type's words.
        assert_eq!(
            plain_type_message("invalid type: string \"x\", expected usize").unwrap().0,
            "a whole number, 0 or more"
        );
    }
}
