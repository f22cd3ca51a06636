//! The experiment model after the first pass: metadata, sweep axes and stage declarations, each
//! with the spans needed to report later errors. Stage fields stay untyped here; each op types
//! its own parameters (see [`super::params`]).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value as Json;

use super::error::ConfigError;
use super::executor::{parse_executor, ExecutorSettings, EXECUTOR_TABLE};
use super::limits::{MAX_AXIS_VALUES, MAX_NAME_CHARS, MAX_STAGES};
use super::messages::{node_text, type_error, unknown_key};
use super::overrides::{apply_overrides, Override};
use super::source::{parse_document, Entry, Node, NodeValue, Origin, SourceFile};

/// One sweep axis: a name and the values a stage using it is expanded over.
#[derive(Debug, Clone)]
pub struct Axis {
    /// The axis name, used as `${name}` in stage fields.
    pub name: String,
    /// Its values, in the order written.
    pub values: Vec<Json>,
    /// Where the axis was declared.
    pub origin: Origin,
}

/// A `[stages.NAME]` table before typing.
#[derive(Debug, Clone)]
pub struct StageDecl {
    /// The stage name.
    pub name: String,
    /// Where the stage's table begins (its name in the header).
    pub origin: Origin,
    /// The `op` value.
    pub op: String,
    /// Where `op` was written.
    pub op_origin: Origin,
    /// Every field but `op`: inputs and parameters.
    pub fields: BTreeMap<String, Entry>,
}

/// A parsed, structurally valid experiment file.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// The file, kept for error rendering.
    pub file: SourceFile,
    /// `experiment.name`: names the run records of this experiment in the cache.
    pub name: String,
    /// `experiment.description`.
    pub description: String,
    /// `experiment.seed`: the default seed of every stage that draws random numbers.
    pub seed: u64,
    /// `experiment.replicates`: how many times every stage that draws random numbers runs, each
    /// time with its own seed (see [`crate::graph::expand`]). With more than one, the axes include
    /// [`REPLICATE_AXIS`].
    pub replicates: u32,
    /// Sweep axes, sorted by name.
    pub axes: Vec<Axis>,
    /// Stages, sorted by name.
    pub stages: Vec<StageDecl>,
    /// The `[executor]` table (where instances run; not part of any key).
    pub executor: ExecutorSettings,
    /// The values the `--set` overrides replaced, as the file had them: a sweep axis that only
    /// they used is fixed for this run, not unused by the file.
    pub replaced: Vec<serde_json::Value>,
}

const TOP_LEVEL: &[&str] = &["experiment", "sweep", "stages", EXECUTOR_TABLE];
const EXPERIMENT_FIELDS: &[&str] = &["name", "description", "seed", "replicates"];

/// The axis that numbers replicates; reserved, so no `[sweep]` axis may take its name.
pub const REPLICATE_AXIS: &str = "replicate";

/// Names no sweep axis may take: tables and plots use `source` and `metric` as dimensions, and
/// the replicate axis is cfrun's own.
pub const RESERVED_AXES: &[&str] = &["source", "metric", REPLICATE_AXIS];

/// The most replicates an experiment may ask for (each one multiplies every stochastic stage).
pub const MAX_REPLICATES: i64 = 1000;

impl Experiment {
    /// Reads, parses and structurally checks an experiment file, applying `--set` overrides.
    pub fn load(path: &Path, overrides: &[Override]) -> Result<Self, ConfigError> {
        let file = SourceFile::read(path)?;
        Self::parse(file, overrides)
    }

    /// Like [`Experiment::load`] on text already in memory.
    pub fn parse(file: SourceFile, overrides: &[Override]) -> Result<Self, ConfigError> {
        let mut doc = parse_document(&file)?;
        let replaced = apply_overrides(&file, &mut doc, overrides)?;
        let mut errors = Vec::new();
        for (key, entry) in &doc {
            if !TOP_LEVEL.contains(&key.as_str()) {
                errors.push(unknown_key(&file, entry, key, "top-level table", TOP_LEVEL));
            }
        }
        let meta = parse_meta(&file, doc.get("experiment"), &mut errors);
        let mut axes = parse_sweep(&file, doc.get("sweep"), &mut errors);
        let stages = parse_stages(&file, doc.get("stages"), &mut errors);
        let executor = parse_executor(&file, doc.get(EXECUTOR_TABLE), &mut errors);
        ConfigError::collect(errors)?;
        if meta.replicates > 1 {
            axes.push(Axis {
                name: REPLICATE_AXIS.to_string(),
                values: (0..meta.replicates).map(Json::from).collect(),
                origin: meta.replicates_origin.clone(),
            });
            axes.sort_by(|a, b| a.name.cmp(&b.name));
        }
        let Meta { name, description, seed, replicates, .. } = meta;
        Ok(Experiment { file, name, description, seed, replicates, axes, stages, executor, replaced })
    }

    /// The stage declaration called `name`.
    pub fn stage(&self, name: &str) -> Option<&StageDecl> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The axis called `name`.
    pub fn axis(&self, name: &str) -> Option<&Axis> {
        self.axes.iter().find(|a| a.name == name)
    }

    /// Shorthand for an error at `origin` in this file.
    pub fn error(&self, origin: &Origin, message: String, help: Option<String>) -> ConfigError {
        ConfigError::at(&self.file, origin.clone(), message, help)
    }
}

fn expect_table<'a>(
    file: &SourceFile,
    node: &'a Node,
    what: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<&'a BTreeMap<String, Entry>> {
    let table = node.as_table();
    if table.is_none() {
        errors.push(ConfigError::at(
            file,
            node.origin.clone(),
            format!("`{what}` must be a table, found {}", node.value.type_name()),
            Some(format!("write it as [{what}] followed by key = value lines")),
        ));
    }
    table
}

/// The `[experiment]` table's values.
struct Meta {
    name: String,
    description: String,
    seed: u64,
    replicates: u32,
    replicates_origin: Origin,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            name: String::new(),
            description: String::new(),
            seed: 0,
            replicates: 1,
            replicates_origin: Origin::File(0..0),
        }
    }
}

fn parse_meta(file: &SourceFile, entry: Option<&Entry>, errors: &mut Vec<ConfigError>) -> Meta {
    let Some(entry) = entry else {
        errors.push(ConfigError::at(
            file,
            Origin::File(0..0),
            "missing [experiment] table".into(),
            Some("start the file with [experiment] and name = \"...\", seed = 0".into()),
        ));
        return Default::default();
    };
    let Some(table) = expect_table(file, &entry.node, "experiment", errors) else {
        return Default::default();
    };
    for (key, e) in table {
        if !EXPERIMENT_FIELDS.contains(&key.as_str()) {
            errors.push(unknown_key(file, e, key, "field in [experiment]", EXPERIMENT_FIELDS));
        }
    }
    let name = match table.get("name").map(|e| &e.node) {
        Some(Node { value: NodeValue::Str(s), origin }) => {
            if s.chars().count() > MAX_NAME_CHARS {
                errors.push(ConfigError::at(
                    file,
                    origin.clone(),
                    format!("experiment.name is longer than {MAX_NAME_CHARS} characters"),
                    Some("it names a folder in the cache; use a short name".into()),
                ));
            } else if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                errors.push(ConfigError::at(
                    file,
                    origin.clone(),
                    format!("experiment.name `{s}` is not a valid name"),
                    Some("use letters, digits, `_` and `-` only (it names a folder in the cache)".into()),
                ));
            }
            s.clone()
        }
        Some(other) => {
            errors.push(type_error(file, other, "experiment.name", "a string"));
            String::new()
        }
        None => {
            errors.push(ConfigError::at(
                file,
                entry.key_origin.clone(),
                "missing required field `name` in [experiment]".into(),
                Some("add name = \"my_study\"".into()),
            ));
            String::new()
        }
    };
    let description = match table.get("description").map(|e| &e.node) {
        // The description is printed and written into the HTML report, like parameter text.
        Some(Node { value: NodeValue::Str(s), origin })
            if s.chars().any(|c| crate::config::error::unsafe_to_print(c) && !matches!(c, '\n' | '\r' | '\t')) =>
        {
            errors.push(ConfigError::at(
                file,
                origin.clone(),
                "experiment.description contains a control character (or one that reorders text)".into(),
                Some("it is printed and written into the report; remove it (newlines and tabs are text)".into()),
            ));
            String::new()
        }
        Some(Node { value: NodeValue::Str(s), .. }) => s.clone(),
        Some(other) => {
            errors.push(type_error(file, other, "experiment.description", "a string"));
            String::new()
        }
        None => String::new(),
    };
    let seed = match table.get("seed").map(|e| &e.node) {
        Some(Node { value: NodeValue::Int(i), .. }) if *i >= 0 => *i as u64,
        Some(other) => {
            errors.push(type_error(file, other, "experiment.seed", "a non-negative integer"));
            0
        }
        None => 0,
    };
    let (replicates, replicates_origin) = match table.get("replicates").map(|e| &e.node) {
        Some(Node { value: NodeValue::Int(i), origin }) if (1..=MAX_REPLICATES).contains(i) => {
            (*i as u32, origin.clone())
        }
        Some(other) => {
            errors.push(ConfigError::at(
                file,
                other.origin.clone(),
                format!(
                    "`experiment.replicates` must be an integer from 1 to {MAX_REPLICATES}, found {}",
                    node_text(other)
                ),
                Some(
                    "replicates = 3 runs every stage that draws random numbers three times, each with its own seed"
                        .into(),
                ),
            ));
            (1, other.origin.clone())
        }
        None => (1, entry.key_origin.clone()),
    };
    Meta { name, description, seed, replicates, replicates_origin }
}

/// A name longer than [`MAX_NAME_CHARS`] (the key is not quoted: it may be megabytes long).
fn too_long(file: &SourceFile, entry: &Entry, what: &str) -> ConfigError {
    ConfigError::at(
        file,
        entry.key_origin.clone(),
        format!("{what} is longer than {MAX_NAME_CHARS} characters"),
        Some("names become parts of instance names and file names; use a short one".into()),
    )
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_sweep(file: &SourceFile, entry: Option<&Entry>, errors: &mut Vec<ConfigError>) -> Vec<Axis> {
    let Some(entry) = entry else { return Vec::new() };
    let Some(table) = expect_table(file, &entry.node, "sweep", errors) else { return Vec::new() };
    let mut axes = Vec::new();
    for (name, e) in table {
        if name.chars().count() > MAX_NAME_CHARS {
            errors.push(too_long(file, e, "sweep axis name"));
            continue;
        }
        if !is_identifier(name) {
            errors.push(ConfigError::at(
                file,
                e.key_origin.clone(),
                format!("sweep axis name `{name}` is not an identifier"),
                Some("use letters, digits and `_`, starting with a letter".into()),
            ));
            continue;
        }
        if RESERVED_AXES.contains(&name.as_str()) {
            errors.push(ConfigError::at(
                file,
                e.key_origin.clone(),
                format!("sweep axis name `{name}` is reserved"),
                Some(format!(
                    "{} are dimensions of tables, plots and claims (declare replicates with [experiment] replicates = N); rename the axis",
                    RESERVED_AXES.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
                )),
            ));
            continue;
        }
        let NodeValue::Array(items) = &e.node.value else {
            errors.push(type_error(file, &e.node, &format!("sweep.{name}"), "an array of values, e.g. [10, 50]"));
            continue;
        };
        if items.is_empty() {
            errors.push(ConfigError::at(
                file,
                e.node.origin.clone(),
                format!("sweep axis `{name}` has no values"),
                Some("give at least one value, e.g. [10, 50]".into()),
            ));
            continue;
        }
        if items.len() > MAX_AXIS_VALUES {
            errors.push(ConfigError::at(
                file,
                e.node.origin.clone(),
                format!("sweep axis `{name}` has {} values, more than the {MAX_AXIS_VALUES} allowed", items.len()),
                Some("sweep fewer values; every value multiplies the instances of each stage using it".into()),
            ));
            continue;
        }
        let mut values: Vec<Json> = Vec::new();
        // Values are told apart by the text they put in instance names: `1` and `"1"` would
        // both name `k=1`, so they are duplicates too.
        let mut names: HashMap<String, Json> = HashMap::new();
        for item in items {
            match &item.value {
                NodeValue::Str(_) | NodeValue::Int(_) | NodeValue::Float(_) | NodeValue::Bool(_) => {
                    let v = item.to_json();
                    let text = match &v {
                        Json::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    if text.chars().any(crate::config::error::unsafe_to_print) {
                        errors.push(ConfigError::at(
                            file,
                            item.origin.clone(),
                            format!(
                                "a value of sweep axis `{name}` contains a control character (or one that reorders \
                                 text, or a noncharacter)"
                            ),
                            Some("axis values become part of instance names, printed in logs and tables".into()),
                        ));
                    } else if text.chars().count() > MAX_NAME_CHARS {
                        errors.push(ConfigError::at(
                            file,
                            item.origin.clone(),
                            format!("a value of sweep axis `{name}` is longer than {MAX_NAME_CHARS} characters"),
                            Some("axis values become part of instance names; use a short one".into()),
                        ));
                    } else if let Some(first) = names.get(&text) {
                        let message = if *first == v {
                            format!("duplicate value {v} in sweep axis `{name}`")
                        } else {
                            format!("values {first} and {v} of sweep axis `{name}` would both name instances `{name}={text}`")
                        };
                        errors.push(ConfigError::at(
                            file,
                            item.origin.clone(),
                            message,
                            Some("each value of an axis names one instance; list it once".into()),
                        ));
                    } else {
                        names.insert(text, v.clone());
                    }
                    values.push(v);
                }
                _ => errors.push(type_error(file, item, &format!("sweep.{name}"), "a string, number or boolean")),
            }
        }
        axes.push(Axis { name: name.clone(), values, origin: e.key_origin.clone() });
    }
    axes
}

fn parse_stages(file: &SourceFile, entry: Option<&Entry>, errors: &mut Vec<ConfigError>) -> Vec<StageDecl> {
    let Some(entry) = entry else {
        errors.push(ConfigError::at(
            file,
            Origin::File(0..0),
            "the experiment has no stages".into(),
            Some("add at least one [stages.NAME] table with an `op`".into()),
        ));
        return Vec::new();
    };
    let Some(table) = expect_table(file, &entry.node, "stages", errors) else { return Vec::new() };
    if table.is_empty() {
        // An empty `[stages]` table declares as little as no table: a run would do nothing.
        errors.push(ConfigError::at(
            file,
            entry.key_origin.clone(),
            "the experiment has no stages".into(),
            Some("add at least one [stages.NAME] table with an `op`".into()),
        ));
        return Vec::new();
    }
    if table.len() > MAX_STAGES {
        errors.push(ConfigError::at(
            file,
            entry.key_origin.clone(),
            format!("the experiment declares {} stages, more than the {MAX_STAGES} allowed", table.len()),
            Some("sweep axes expand one stage into many instances; use them instead of copies".into()),
        ));
        return Vec::new();
    }
    let mut stages = Vec::new();
    for (name, e) in table {
        if name.chars().count() > MAX_NAME_CHARS {
            errors.push(too_long(file, e, "stage name"));
            continue;
        }
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            errors.push(ConfigError::at(
                file,
                e.key_origin.clone(),
                format!("stage name `{name}` is not valid"),
                Some("use letters, digits, `_` and `-` (a dot would be read as `stage.output`)".into()),
            ));
            continue;
        }
        let Some(fields) = expect_table(file, &e.node, &format!("stages.{name}"), errors) else { continue };
        let mut fields = fields.clone();
        let Some(op_entry) = fields.remove("op") else {
            errors.push(ConfigError::at(
                file,
                e.key_origin.clone(),
                format!("stage `{name}` has no `op`"),
                Some(format!("add op = \"...\" to [stages.{name}]; `cfrun ops` lists the kinds")),
            ));
            continue;
        };
        let Some(op) = op_entry.node.as_str() else {
            errors.push(type_error(file, &op_entry.node, &format!("stages.{name}.op"), "a string"));
            continue;
        };
        stages.push(StageDecl {
            name: name.clone(),
            origin: e.key_origin.clone(),
            op: op.to_string(),
            op_origin: op_entry.node.origin.clone(),
            fields,
        });
    }
    stages
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(text: &str) -> Result<Experiment, ConfigError> {
        Experiment::parse(SourceFile::from_text(Path::new("e.toml"), text.to_string()), &[])
    }

    /// A description is printed and written into the report: control characters and those that
    /// reorder text are refused, but a file saved with Windows line ends keeps its multi-line
    /// description (a review found a first version refusing its `\r`).
    #[test]
    fn a_description_refuses_what_is_unsafe_to_print_and_keeps_line_ends() {
        let with = |d: &str| {
            format!(
                "[experiment]\nname = \"e\"\ndescription = {d}\n[stages.s]\nop = \"dataset\"\nname = \"synthetic\"\n"
            )
        };
        let crlf = with("\"\"\"one\ntwo\"\"\"").replace('\n', "\r\n");
        assert!(parse(&crlf).is_ok_and(|e| e.description == "one\r\ntwo"), "{:?}", parse(&crlf).err());
        assert!(parse(&with("\"\"\"one\n\ttwo\"\"\"")).is_ok());
        for bad in [
            "\"a \\u0007 bell\"",
            "\"an \\u001b[31m escape\"",
            "\"a \\u202e reversal\"",
            "\"an \\u061c arabic letter mark\"",
            "\"a \\u2028 line separator\"",
        ] {
            let err = parse(&with(bad)).unwrap_err().to_string();
            assert!(err.contains("experiment.description contains a control character"), "{bad}: {err}");
        }
    }
}
