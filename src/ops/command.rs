//! `command`: any program as a stage. The stage declares its inputs (a table of slot name to
//! `"STAGE.OUTPUT"`), its outputs with their kinds, the command line, the files that are its code
//! and, optionally, its environment; cfrun keys, runs, checks and publishes it like a built-in op.
//!
//! ```toml
//! [stages.sk_probe]
//! op = "command"
//! argv = ["python3", "examples/python/sk_probe.py", "{in.features}", "{in.labels}", "{out.metrics}", "--c={param.c}", "--seed={seed}"]
//! code = ["examples/python/sk_probe.py", "examples/python/cfrun_io.py"]
//! env_probe = ["python3", "examples/python/env.py"]
//! inputs = { features = "feats.features", labels = "fashion.labels" }
//! outputs = { metrics = "metrics" }
//! params = { c = 1.0 }
//! ```
//!
//! # What is in the recipe key
//! | in the key | how |
//! |---|---|
//! | `argv`, with its placeholders as written | a changed flag reruns |
//! | `params` and `seed` | as any op's parameters (`${axis}` substituted) |
//! | the output digest of every input | as any op's inputs (early cutoff applies) |
//! | the bytes of every file in `code` | hashed when the plan is made: an edit reruns the stage, an edit elsewhere does not |
//! | `env_key` | a literal you bump by hand |
//! | the stdout of `env_probe` | run once per plan, e.g. the Python version and package versions; run again just before and after the command, which fails if either differs |
//! | `outputs`, `timeout`, `match_rows` | every field is part of the key |
//!
//! # What is not
//! Files the command reads that are not listed in `code` (the scratch folder holds only `code`,
//! `in/` and `out/`, but it is no sandbox: absolute paths, and relative ones climbing out of it
//! into the cache around it, still reach files), programs found on `PATH` and installed
//! libraries (unless `env_probe` reports them), environment variables, the stage's name, the
//! device and the machine. A stage without `env_probe` or `env_key` is not rerun when, say,
//! scikit-learn is upgraded.

mod child;
pub use child::{ChildError, StderrTail};
mod probes;
mod scratch;
pub mod watcher;

use std::collections::BTreeMap;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{InputFacts, InputSpec, Kind, OpError, OpSpec, Site, StageCtx, StageKind};
use crate::artifact::validate;
use crate::config::params::{self, ParamError, Params};
use probes::{probe_env, recheck, ProbeFailure};

impl Params for RawParams {}

/// Canonical parameters read back from a job spec are checked for what `run` relies on (a
/// program, a timeout a `Duration` holds, outputs of known kinds): nothing is hashed or probed.
impl Params for CommandParams {
    fn validate(&self) -> Result<(), ParamError> {
        check_program_and_timeout(&self.argv, self.timeout)?;
        if self.outputs.is_empty() {
            return Err(ParamError::field("outputs", "the command declares no outputs", None));
        }
        match self.outputs.iter().find(|(name, kind)| !valid_name(name) || parse_kind(kind).is_none()) {
            Some((name, kind)) => {
                Err(ParamError::field("outputs", format!("output `{name}` = \"{kind}\" is not a valid output"), None))
            }
            None => Ok(()),
        }
    }
}

/// The stage fields as written.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawParams {
    /// The command line: words with placeholders `{in.NAME}`, `{out.NAME}`, `{param.NAME}` and
    /// `{seed}`; a number or boolean is the word it reads as.
    #[serde(deserialize_with = "words")]
    argv: Vec<String>,
    /// Files that are the command's code (paths relative to where cfrun runs): their bytes are
    /// in the recipe key, and the scratch folder holds copies at the same paths.
    #[serde(default)]
    code: Vec<String>,
    /// A label you change by hand when something outside `code` changed (a library, a variable).
    #[serde(default)]
    env_key: Option<String>,
    /// A command run once per plan whose output (e.g. package versions) is in the recipe key.
    #[serde(default, deserialize_with = "words")]
    env_probe: Vec<String>,
    /// Each output's name and kind (`metrics`, `features`, `labels`, `model`, ...), checked
    /// against the kind's format before it is published.
    outputs: BTreeMap<String, String>,
    /// Values for `{param.NAME}`: sweepable like any parameter.
    #[serde(default)]
    params: serde_json::Map<String, Json>,
    /// Seconds before the command is killed.
    #[serde(default = "default_timeout")]
    #[schemars(range(max = MAX_TIMEOUT_S), extend("exclusiveMinimum" = 0))]
    timeout: f64,
    /// Whether per-example outputs must have as many rows as the per-example inputs.
    #[serde(default = "yes")]
    match_rows: bool,
    /// Whether the program draws random numbers: `false` runs it once, shared by every
    /// replicate (a deterministic preprocessing step), and refuses `{seed}` in `argv`.
    #[serde(default = "yes")]
    seeded: bool,
    /// The stage's seed, for `{seed}` (the experiment's unless set; one per replicate).
    seed: u64,
}

/// A command line's words: strings, and numbers or booleans as the text they read as, so that
/// `"${lr}"` of a numeric sweep axis is the word `0.1`, as `"--lr=${lr}"` is `--lr=0.1`.
fn words<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Word {
        Text(String),
        Number(serde_json::Number),
        Bool(bool),
    }
    let words = Vec::<Word>::deserialize(d)?;
    Ok(words
        .into_iter()
        .map(|w| match w {
            Word::Text(s) => s,
            Word::Number(n) => n.to_string(),
            Word::Bool(b) => b.to_string(),
        })
        .collect())
}

/// Longest a command may run, in seconds: a week.
const MAX_TIMEOUT_S: f64 = 7.0 * 86_400.0;

/// A program's `timeout` when the stage sets none, in seconds: an hour.
const DEFAULT_TIMEOUT_S: f64 = 3600.0;

/// What a `command` job is given beyond its program's `timeout`, in minutes: staging its inputs
/// and verifying and publishing its outputs take time too.
pub const JOB_SLACK_MIN: u32 = 10;

fn default_timeout() -> f64 {
    DEFAULT_TIMEOUT_S
}

fn yes() -> bool {
    true
}

/// Whether `b` is true: a default left out of the canonical form, so older keys stay.
fn is_true(b: &bool) -> bool {
    *b
}

/// The canonical parameters: what goes into the recipe key and what [`Command::run`] reads.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CommandParams {
    /// The command line, placeholders unexpanded.
    pub argv: Vec<String>,
    /// Each code file (relative path) to the blake3 of its bytes when the plan was made.
    pub code: BTreeMap<String, String>,
    /// A declared environment label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_key: Option<String>,
    /// The environment probe's command line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_probe: Vec<String>,
    /// What the probe printed (kept whole, so `status` shows what changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Output name to its kind, as written (`metrics`, `features`, ...).
    pub outputs: BTreeMap<String, String>,
    /// Values for `{param.NAME}`.
    pub params: serde_json::Map<String, Json>,
    /// Seconds before the command is killed.
    pub timeout: f64,
    /// Whether per-example outputs must have as many rows as the per-example inputs.
    pub match_rows: bool,
    /// Whether it runs per replicate; left out of the key when it does, as before the field.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub seeded: bool,
    /// For `{seed}`.
    pub seed: u64,
}

/// The `command` op.
pub struct Command;

const KINDS: &[Kind] = &[
    Kind::Images,
    Kind::Clips,
    Kind::Labels,
    Kind::Features,
    Kind::Model,
    Kind::Metrics,
    Kind::Report,
    Kind::Permutations,
    Kind::MultiLabels,
];

/// The slot every entry of a command's `inputs` table is checked against: any kind, one artifact.
pub const ANY_INPUT: InputSpec =
    InputSpec { name: "inputs", kinds: KINDS, required: false, gather: false, doc: "a declared input" };

fn parse_kind(s: &str) -> Option<Kind> {
    KINDS.iter().copied().find(|k| k.to_string() == s)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl StageKind for Command {
    type Params = CommandParams;
    /// A job limit below the program's own timeout would kill it first, with Slurm's TIMEOUT
    /// instead of cfrun's message naming the stage's `timeout`: the job gets that timeout and
    /// [`JOB_SLACK_MIN`] for staging and publishing.
    fn job_minutes(&self, params: &Json) -> u32 {
        let seconds = params.get("timeout").and_then(Json::as_f64).unwrap_or(DEFAULT_TIMEOUT_S);
        ((seconds / 60.0).ceil() as u32).saturating_add(JOB_SLACK_MIN)
    }
    const SPEC: &'static OpSpec = &OpSpec {
        name: "command",
        version: 1,
        summary: "runs any program on declared inputs in a scratch folder; its declared outputs are checked against their kinds' formats, then published",
        inputs: &[],
        outputs: &[],
        metrics: &[],
    };

    fn param_fields(&self) -> Vec<&'static str> {
        RawParams::fields()
    }
    /// Per replicate unless the stage says it draws nothing (`seeded = false`, written as such).
    fn replicated(&self, raw: &serde_json::Map<String, Json>) -> bool {
        raw.get("seeded") != Some(&Json::Bool(false))
    }
    fn param_docs(&self) -> Vec<crate::config::param_docs::ParamDoc> {
        RawParams::docs()
    }
    fn input_table(&self) -> Option<&'static str> {
        Some("inputs")
    }
    fn output_kind(&self, params: &Json, name: &str) -> Option<Kind> {
        params.get("outputs")?.get(name)?.as_str().and_then(parse_kind)
    }
    fn output_names(&self, params: &Json) -> Vec<String> {
        params.get("outputs").and_then(Json::as_object).map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }
    /// Where the stage will run, its program must be there: a bare name (or a `{param.NAME}`
    /// holding one) that no folder on PATH holds would fail every instance after its inputs
    /// were computed. Checked for the instances a run computes, not by commands that only read.
    fn preflight(&self, p: &CommandParams, _fed: &InputFacts, _site: &Site) -> Result<(), ParamError> {
        let Some((program, _)) = program(&p.argv, &p.params) else { return Ok(()) };
        if let Some(folder) = found_apart(program, &p.code) {
            return Err(ParamError::field(
                "argv",
                format!(
                    "`argv[0]` = \"{}\": `{program}` is in `{folder}`, a relative folder on PATH, as seen from the \
                     folder cfrun runs in (where `env_probe` runs), but the command runs in its scratch folder, \
                     which holds only the `code` files: it would run another program than the key describes",
                    p.argv[0]
                ),
                Some(format!(
                    "write that folder on PATH as an absolute path, or list the program in `code` and name it by \
                     its path, e.g. argv = [\"./{}\"]",
                    Path::new(&folder).join(program).display()
                )),
            ));
        }
        let Some(why) = not_on_path(program) else { return Ok(()) };
        Err(ParamError::field(
            "argv",
            format!("`argv[0]` = \"{}\": `{program}` is not a program on PATH ({why})", p.argv[0]),
            Some(
                "the command is started with cfrun's PATH: is the stage's environment active? A script of the \
                 stage's own is listed in `code` and named by its path, e.g. argv = [\"./probe.sh\"]"
                    .into(),
            ),
        ))
    }
    fn check_inputs(&self, raw: &Json, slots: &[&str]) -> Result<(), ParamError> {
        // Whether the stage runs per replicate is settled before sweeps expand.
        if raw.get("seeded").and_then(Json::as_str).is_some_and(|s| s.contains("${")) {
            return Err(ParamError::field(
                "seeded",
                "`seeded` is swept, but whether a stage runs per replicate is settled before sweeps expand",
                Some("write `seeded = false` or `true`, or split the stage in two".into()),
            ));
        }
        let Some(argv) = raw.get("argv").and_then(Json::as_array) else { return Ok(()) };
        for (i, arg) in argv.iter().enumerate() {
            for ph in placeholders(arg.as_str().unwrap_or_default())
                .map_err(|e| ParamError::field("argv", format!("`argv[{i}]`: {e}"), None))?
            {
                if let Some(slot) = ph.strip_prefix("in.") {
                    if !slots.contains(&slot) {
                        return Err(ParamError::field(
                            "argv",
                            format!("`argv[{i}]` uses {{{ph}}}, but the stage has no input `{slot}`"),
                            Some(format!("declared inputs: {}; add it to `inputs`", list(slots))),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
    fn normalize(&self, raw: &Json) -> Result<CommandParams, ParamError> {
        canonical(params::parse::<RawParams>(raw)?)
    }
    fn warm_up(&self, raw: &Json) -> Option<Box<dyn FnOnce() + Send>> {
        let argv = literal_probe(raw)?;
        Some(Box::new(move || {
            // The result is remembered; errors are reported when the stage is typed.
            let _ = probe_env(&argv);
        }))
    }
    fn run(&self, p: CommandParams, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let stage = ctx.name.to_string();
        let dir = scratch::Scratch::create(ctx.staging)?;
        dir.copy_code(&p.code)?;
        let mut rows = BTreeMap::new();
        for (slot, artifacts) in &ctx.inputs {
            let Some(artifact) = artifacts.first() else { continue };
            dir.copy_input(slot, &artifact.dir)?;
            if let Some(r) = validate::rows(&artifact.dir, artifact.kind) {
                rows.insert(r, slot.clone());
            }
        }
        dir.make_outputs(p.outputs.keys())?;
        let argv = expand(&p)?;
        let run = child::Spec {
            argv: &argv,
            cwd: dir.path(),
            timeout: std::time::Duration::from_secs_f64(p.timeout),
            env: vec![("CFRUN_SEED".into(), p.seed.to_string()), ("CFRUN_INSTANCE".into(), stage.clone())],
        };
        let recheck_env = |when: &str| match &p.env {
            Some(hashed) => recheck(&p.env_probe, hashed, when).map_err(OpError::Invalid),
            None => Ok(()),
        };
        recheck_env("before the command ran")?;
        let printed = child::run(&run).map_err(|why| OpError::Program { program: argv[0].clone(), why })?;
        note_output(ctx, &printed);
        // After too: a change while it ran (a package upgraded under it) taints what it wrote.
        recheck_env("after the command ran")?;
        dir.seal_outputs()?;
        dir.check_undeclared(p.outputs.keys())?;
        // Per-example inputs that agree on their rows fix the rows of per-example outputs.
        let want = (p.match_rows && rows.len() == 1).then(|| *rows.keys().next().expect("one"));
        for (name, kind) in &p.outputs {
            let out = dir.output(name);
            let kind = parse_kind(kind).ok_or_else(|| OpError::Invalid(format!("unknown kind `{kind}`")))?;
            validate::validate(&out, kind, want).map_err(|source| OpError::MalformedOutput {
                output: name.clone(),
                kind,
                source,
            })?;
        }
        for name in p.outputs.keys() {
            let target = ctx.output_dir(name);
            std::fs::rename(dir.output(name), &target).map_err(OpError::io(format!("publishing output `{name}`")))?;
        }
        Ok(())
    }
}

/// What the command printed, kept with its result: its last lines of each stream in the
/// provenance (`cfrun show`, the report), and a log line saying so, since a result served from
/// the cache later runs nothing and would otherwise say nothing of a warning it printed.
fn note_output(ctx: &mut StageCtx<'_>, printed: &child::Printed) {
    let (out, err) = (&printed.stdout, &printed.stderr);
    if out.count + err.count == 0 {
        return;
    }
    let stream = |t: &child::Tail| serde_json::json!({"lines": t.count, "last": t.lines});
    ctx.notes.insert("output".into(), serde_json::json!({"stdout": stream(out), "stderr": stream(err)}));
    let last = err.lines.back().or(out.lines.back()).map(String::as_str).unwrap_or_default();
    tracing::info!(
        "{}: the command printed {} line{} on stdout and {} on stderr (the last ones are kept: `cfrun show`); last: {last}",
        ctx.name,
        out.count,
        if out.count == 1 { "" } else { "s" },
        err.count
    );
}

/// One stream of a command's output as its result's provenance keeps it (`output.STREAM`, written
/// by [`note_output`]).
#[derive(Debug, PartialEq)]
pub struct KeptOutput {
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// How many lines it had.
    pub count: u64,
    /// The last ones, made safe to print again (a record may have been edited by hand).
    pub last: Vec<String>,
}

/// The streams of a command's output a provenance keeps, those that printed anything.
pub fn kept_output(provenance: &Json) -> Vec<KeptOutput> {
    ["stdout", "stderr"]
        .into_iter()
        .filter_map(|stream| {
            let s = provenance.get("output")?.get(stream)?;
            let count = s.get("lines").and_then(Json::as_u64).filter(|&n| n > 0)?;
            let lines = s.get("last").and_then(Json::as_array).into_iter().flatten().filter_map(Json::as_str);
            let last = lines.map(|l| crate::human::printable_cut(l, usize::MAX)).collect();
            Some(KeptOutput { stream, count, last })
        })
        .collect()
}

impl KeptOutput {
    /// `31 lines, the last 20:` (or `1 line:` when every line was kept).
    pub fn heading(&self) -> String {
        if self.last.len() as u64 == self.count {
            format!("{} line{}:", self.count, if self.count == 1 { "" } else { "s" })
        } else {
            format!("{} lines, the last {}:", self.count, self.last.len())
        }
    }
}

fn list(items: &[&str]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(", ")
    }
}

/// A piece of one `argv` argument: literal text, or the name inside a `{...}` placeholder.
enum Segment<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

/// One argument cut into text and placeholders; `{{` and `}}` are literal braces. The one
/// reading of the syntax, for the checks and for the expansion alike.
fn segments(arg: &str) -> Result<Vec<Segment<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = arg;
    while let Some(i) = rest.find(['{', '}']) {
        if i > 0 {
            out.push(Segment::Text(&rest[..i]));
        }
        let (c, after) = (rest.as_bytes()[i] as char, &rest[i + 1..]);
        if after.starts_with(c) {
            out.push(Segment::Text(&rest[i..=i]));
            rest = &after[1..];
            continue;
        }
        if c == '}' {
            return Err(format!("`{arg}` has an unmatched `}}` (write `}}}}` for a literal brace)"));
        }
        let end = after.find('}').ok_or_else(|| format!("`{arg}` has an unclosed `{{`"))?;
        out.push(Segment::Placeholder(&after[..end]));
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        out.push(Segment::Text(rest));
    }
    Ok(out)
}

/// Why `program`, a bare name, would not start: none of PATH's folders holds it (PATH named), or
/// one holds it but not executable. A relative folder on PATH is looked up from the scratch
/// folder the command runs in, so a PATH holding one is taken on trust ([`found_apart`] checks
/// it).
fn not_on_path(program: &str) -> Option<String> {
    if !searched_on_path(program) {
        return None;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| dir.is_relative()) || crate::shell::find_on_path(program).is_some() {
        return None;
    }
    let lacking_x = std::env::split_paths(&path).map(|dir| dir.join(program)).find(|f| f.is_file());
    Some(match lacking_x {
        Some(file) => format!("{} is there but not executable", file.display()),
        None => format!("PATH={}", path.to_string_lossy()),
    })
}

/// The relative PATH folder (or `.` for an empty entry) in which `program`, a bare name, is
/// found from cfrun's folder, where `env_probe` searches, but not from the scratch folder, where
/// the command searches: there a relative folder holds only the listed `code` copies, so the
/// command would find a later folder's program, or none (found by a stale-cache review: the key
/// held one program's version while another ran). `None` when both find the same.
fn found_apart(program: &str, code: &BTreeMap<String, String>) -> Option<String> {
    if !searched_on_path(program) {
        return None;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let file = dir.join(program);
        if dir.is_absolute() {
            if crate::shell::is_executable(&file) {
                return None;
            }
            continue;
        }
        if code.contains_key(&plain(&file)) {
            return None;
        }
        if crate::shell::is_executable(&file) {
            let shown = dir.display().to_string();
            return Some(if shown.is_empty() { ".".to_string() } else { shown });
        }
    }
    None
}

/// Whether `program` is a bare name that the checks of PATH look up: no `/`, and no placeholder
/// (an `argv[0]` that is a whole `{param.NAME}` arrives resolved; one with a placeholder inside
/// is taken on trust).
fn searched_on_path(program: &str) -> bool {
    !program.is_empty() && !program.contains(['/', '{'])
}

/// A relative path as `code` keys it: `/`-separated, without `.` parts (`./w.sh` is `w.sh`).
fn plain(path: &Path) -> String {
    let parts: Vec<String> = path
        .components()
        .filter(|c| *c != Component::CurDir)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

/// The `{...}` placeholders of one argument.
fn placeholders(arg: &str) -> Result<Vec<String>, String> {
    Ok(segments(arg)?
        .into_iter()
        .filter_map(|s| match s {
            Segment::Placeholder(ph) => Some(ph.to_string()),
            Segment::Text(_) => None,
        })
        .collect())
}

/// A program to start, and a timeout from a moment to a week.
fn check_program_and_timeout(argv: &[String], timeout: f64) -> Result<(), ParamError> {
    if argv.first().is_none_or(|program| program.trim().is_empty()) {
        let what = if argv.is_empty() { "`argv` is empty" } else { "`argv[0]`, the program, is empty" };
        return Err(ParamError::field("argv", what, Some("e.g. argv = [\"python3\", \"probe.py\"]".into())));
    }
    if !(timeout > 0.0 && timeout <= MAX_TIMEOUT_S) {
        return Err(ParamError::range("timeout", timeout, "a positive number of seconds (at most a week)"));
    }
    Ok(())
}

/// The canonical form: kinds parsed, placeholders checked, code hashed, the environment probed.
fn canonical(p: RawParams) -> Result<CommandParams, ParamError> {
    check_program_and_timeout(&p.argv, p.timeout)?;
    let mut outputs = BTreeMap::new();
    for (name, kind) in &p.outputs {
        if !valid_name(name) {
            return Err(ParamError::field(
                "outputs",
                format!("output name `{name}` is not valid"),
                Some("use letters, digits, `_` and `-`".into()),
            ));
        }
        let kind = parse_kind(kind).ok_or_else(|| {
            let kinds: Vec<String> = KINDS.iter().map(|k| k.to_string()).collect();
            ParamError::field(
                &format!("outputs.{name}"),
                format!("`outputs.{name}` = \"{kind}\" is not a kind"),
                Some(format!("valid kinds: {}", kinds.join(", "))),
            )
        })?;
        outputs.insert(name.clone(), kind.to_string());
    }
    if outputs.is_empty() {
        return Err(ParamError::field(
            "outputs",
            "the command declares no outputs",
            Some("e.g. outputs = { metrics = \"metrics\" }".into()),
        ));
    }
    let outs: Vec<&str> = outputs.keys().map(String::as_str).collect();
    let pars: Vec<&str> = p.params.keys().map(String::as_str).collect();
    for (i, arg) in p.argv.iter().enumerate() {
        for ph in placeholders(arg).map_err(|e| ParamError::field("argv", format!("`argv[{i}]`: {e}"), None))? {
            // A slot that is merely missing is said the way `check_inputs` says a missing input.
            let (message, help) = match ph.split_once('.') {
                Some(("in", _)) => continue, // checked against the input slots by `check_inputs`
                Some(("out", name)) if outputs.contains_key(name) => continue,
                Some(("param", name)) if p.params.contains_key(name) => continue,
                _ if ph == "seed" && p.seeded => continue,
                _ if ph == "seed" => (
                    format!("`argv[{i}]` uses {{seed}}, but the stage has `seeded = false`"),
                    "a stage that draws no random numbers runs once for every replicate, so one seed would stand \
                     for all of them: set `seeded = true` (the default), or leave {seed} out"
                        .to_string(),
                ),
                Some(("out", name)) => (
                    format!("`argv[{i}]` uses {{{ph}}}, but the stage declares no output `{name}`"),
                    format!("declared outputs: {}; add it to `outputs`", list(&outs)),
                ),
                Some(("param", name)) => (
                    format!("`argv[{i}]` uses {{{ph}}}, but `params` has no `{name}`"),
                    format!("declared params: {}; add it to `params`", list(&pars)),
                ),
                _ => (
                    format!("`argv[{i}]` uses an unknown placeholder {{{ph}}}"),
                    format!(
                        "valid: {{in.INPUT}}, {{out.OUTPUT}} (outputs: {}), {{param.NAME}} (params: {}), {{seed}}; \
                         `{{{{` and `}}}}` are literal braces",
                        list(&outs),
                        list(&pars)
                    ),
                ),
            };
            return Err(ParamError::field("argv", message, Some(help)));
        }
    }
    refuse_program_shadowed_on_path(&p)?;
    let mut code = BTreeMap::new();
    for (i, path) in p.code.iter().enumerate() {
        // Keyed as a plain relative path: `./w.sh` and `w.sh` are one file, one key.
        code.insert(
            plain(Path::new(path)),
            hash_code(path).map_err(|e| ParamError::field("code", format!("`code[{i}]` = \"{path}\": {e}"), None))?,
        );
    }
    let env = if p.env_probe.is_empty() {
        None
    } else {
        let (e, help) = match probe_env(&p.env_probe) {
            Ok(env) => (Ok(env), ""),
            Err(ProbeFailure::TooMany(e)) => (
                Err(e),
                "probe what the sweep values share (no `${axis}` in `env_probe`), or name the value in `env_key`",
            ),
            Err(ProbeFailure::Failed(e)) => (
                Err(e),
                "it runs in the directory cfrun is started in, with cfrun's PATH: is the stage's environment active?",
            ),
            Err(ProbeFailure::TimedOut(e)) => (
                Err(e),
                "a probe holds the plan until it ends: make it print what the key needs (versions, say) and exit",
            ),
            Err(ProbeFailure::NotRun(e)) => (Err(e), "make the probe that timed out end, and this one is run"),
        };
        Some(e.map_err(|e| ParamError::field("env_probe", e, Some(help.into())))?)
    };
    Ok(CommandParams {
        argv: p.argv,
        code,
        env_key: p.env_key,
        env_probe: p.env_probe,
        env,
        outputs,
        params: p.params,
        timeout: p.timeout,
        match_rows: p.match_rows,
        seeded: p.seeded,
        // A stage that draws nothing has no seed: the experiment's (or one written here) would
        // key it, and a new experiment seed would run it again for nothing.
        seed: if p.seeded { p.seed } else { 0 },
    })
}

/// The program `argv[0]` names, as written, and the parameter that holds it when `argv[0]` is only
/// `{param.NAME}` (`None` when that parameter is not text).
fn program<'p>(argv: &'p [String], params: &'p serde_json::Map<String, Json>) -> Option<(&'p str, Option<&'p str>)> {
    let first = argv.first()?;
    match first.strip_prefix("{param.").and_then(|n| n.strip_suffix('}')) {
        Some(name) => params.get(name).and_then(Json::as_str).map(|p| (p, Some(name))),
        None => Some((first.as_str(), None)),
    }
}

/// A bare `argv[0]` (no `/`) is looked up on PATH, so when it is also the name of a `code` file
/// in the directory cfrun runs in, the program that runs is PATH's, out of the key, while the
/// hashed file is never run: an edit to the one that ran would be served from the cache.
fn refuse_program_shadowed_on_path(p: &RawParams) -> Result<(), ParamError> {
    let Some((program, param)) = program(&p.argv, &p.params) else { return Ok(()) };
    if program.is_empty() || program.contains('/') {
        return Ok(());
    }
    let listed = p.code.iter().any(|path| plain(Path::new(path)) == program);
    if !listed {
        return Ok(());
    }
    let (field, write) = match param {
        Some(name) => (format!("params.{name}"), format!("params.{name} = \"./{program}\"")),
        None => ("argv".to_string(), format!("argv[0] = \"./{program}\"")),
    };
    Err(ParamError::field(
        &field,
        format!(
            "`argv[0]` = \"{}\" is looked up on PATH, but `{program}` is also a `code` file: the file is hashed and \
             never run, and whatever PATH holds under that name runs outside the key",
            p.argv[0]
        ),
        Some(format!("write {write} to run the listed file (it is copied and hashed)")),
    ))
}

/// A relative path that stays below the directory cfrun runs in, so it can be copied into the
/// scratch folder at the same place.
fn check_relative(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    let parts: Vec<Component> = p.components().filter(|c| *c != Component::CurDir).collect();
    if parts.is_empty() || !parts.iter().all(|c| matches!(c, Component::Normal(_))) {
        return Err("must be a relative path below the directory cfrun runs in (not absolute, no `..`)".into());
    }
    // The scratch folder keeps these for the inputs, the outputs and TMPDIR: a code file there
    // would sit inside an input's checked copy or be published as an output.
    const RESERVED: [(&str, &str); 3] = [("in", "the inputs"), ("out", "the outputs"), ("tmp", "TMPDIR")];
    if let Some(Component::Normal(top)) = parts.first() {
        if let Some((name, kept_for)) = RESERVED.iter().find(|(name, _)| top == name) {
            return Err(format!(
                "lies under `{name}/`, which the scratch folder keeps for {kept_for}; move it elsewhere"
            ));
        }
    }
    Ok(())
}

fn hash_code(path: &str) -> Result<String, String> {
    check_relative(path)?;
    // The code is hashed without following links, like every file cfrun reads for a key.
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err("is a symbolic link; list the file it points to".into());
    }
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read it ({e}; `code` paths are relative to the directory cfrun runs in)"))?;
    if !meta.is_file() {
        return Err("is not a file (list each file of the code)".into());
    }
    let (_, digest) = crate::cache::fsutil::hash_file(Path::new(path)).map_err(|e| e.to_string())?;
    Ok(digest.to_string())
}

/// The environment probe a stage's raw parameters name, when it is a plain list of strings
/// without placeholders (one with `${axis}` is probed per instance, as it is typed).
fn literal_probe(raw: &Json) -> Option<Vec<String>> {
    let argv: Vec<String> =
        raw.get("env_probe")?.as_array()?.iter().map(|a| a.as_str().map(str::to_string)).collect::<Option<_>>()?;
    (!argv.is_empty() && !argv.iter().any(|a| a.contains("${"))).then_some(argv)
}

/// The command line with its placeholders replaced by paths relative to the scratch folder and
/// by parameter values. `canonical` has checked every placeholder; one it does not know is an
/// error here too, never a guess.
fn expand(p: &CommandParams) -> Result<Vec<String>, OpError> {
    p.argv
        .iter()
        .map(|arg| {
            let mut out = String::new();
            for segment in segments(arg).map_err(OpError::Invalid)? {
                match segment {
                    Segment::Text(text) => out.push_str(text),
                    Segment::Placeholder("seed") => out.push_str(&p.seed.to_string()),
                    Segment::Placeholder(ph) => match ph.split_once('.') {
                        Some(("in", slot)) => out.push_str(&format!("in/{slot}")),
                        Some(("out", name)) => out.push_str(&format!("out/{name}")),
                        Some(("param", name)) => match p.params.get(name) {
                            Some(Json::String(s)) => out.push_str(s),
                            Some(v) => out.push_str(&v.to_string()),
                            None => return Err(OpError::Invalid(format!("no parameter `{name}`"))),
                        },
                        _ => return Err(OpError::Invalid(format!("unknown placeholder {{{ph}}} in `{arg}`"))),
                    },
                }
            }
            Ok(out)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The timeout's range as `cfrun ops command` states it is the one the check applies (the
    /// repository-wide range test plans no command stage: their environment probes need numpy).
    #[test]
    fn the_documented_timeout_range_is_the_one_checked() {
        let docs = crate::ops::Op::param_docs(&Command);
        let timeout = docs.iter().find(|d| d.name == "timeout").expect("documented");
        let (low, high) = (timeout.bounds.exclusive_minimum, timeout.bounds.maximum);
        assert_eq!((low, high), (Some(0.0), Some(MAX_TIMEOUT_S)), "{}", timeout.kind);
        let with = |t: f64| {
            crate::ops::Op::normalize(
                &Command,
                &json!({"argv": ["true"], "outputs": {"m": "metrics"}, "seed": 0, "timeout": t}),
            )
        };
        assert_eq!(with(MAX_TIMEOUT_S).err(), None);
        assert_eq!(with(1e-3).err(), None);
        for outside in [0.0, -1.0, MAX_TIMEOUT_S + 1.0] {
            assert_eq!(with(outside).unwrap_err().path, "timeout", "{outside}");
        }
    }

    /// One assertion per input of the key, and the exclusions (see the module doc).
    #[test]
    fn each_input_of_the_key_changes_the_canonical_parameters() {
        // Code paths are relative to the working directory: the package root under cargo test.
        let dir = format!("target/command-key-test-{}", std::process::id());
        std::fs::create_dir_all(&dir).unwrap();
        let code = format!("{dir}/probe.py");
        std::fs::write(&code, "print(1)\n").unwrap();
        let base = json!({"argv": ["python3", "{param.c}"], "code": [code], "env_key": "py3.11",
                          "env_probe": ["echo", "numpy 2.0"], "outputs": {"m": "metrics"}, "params": {"c": 1}, "seed": 0});
        let canon = |raw: &Json| crate::ops::Op::normalize(&Command, raw).unwrap();
        let before = canon(&base);
        assert_eq!(before["env"], "numpy 2.0\n");
        for (field, value) in [
            ("argv", json!(["python3", "-O", "{param.c}"])),
            ("params", json!({"c": 2})),
            ("seed", json!(1)),
            ("env_key", json!("py3.12")),
            ("env_probe", json!(["echo", "numpy 2.1"])),
            ("outputs", json!({"m": "report"})),
            ("timeout", json!(60.0)),
        ] {
            let mut raw = base.clone();
            raw[field] = value;
            assert_ne!(canon(&raw), before, "{field}");
        }
        std::fs::write(&code, "print(2)\n").unwrap();
        assert_ne!(canon(&base), before, "the bytes of a code file");
        std::fs::write(&code, "print(1)\n").unwrap();
        std::fs::write(format!("{dir}/notes.txt"), "not code").unwrap();
        assert_eq!(canon(&base), before, "a file that is not in `code`");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn placeholders_are_found_and_braces_escape() {
        assert_eq!(placeholders("--x={in.a}/{out.b}").unwrap(), vec!["in.a", "out.b"]);
        assert_eq!(placeholders("{{literal}}").unwrap(), Vec::<String>::new());
        assert!(placeholders("{open").is_err());
        assert!(placeholders("close}").is_err());
    }

    /// The expansion reads the syntax the checks read: literal braces survive, and a placeholder
    /// nobody checked (a hand-written job spec, say) is an error, not silently the seed.
    #[test]
    fn expansion_keeps_literal_braces_and_refuses_what_it_does_not_know() {
        let raw = json!({"argv": ["echo", "{{x}}={seed}", "a{out.m}b"], "outputs": {"m": "metrics"}, "seed": 7});
        let mut p: CommandParams = serde_json::from_value(crate::ops::Op::normalize(&Command, &raw).unwrap()).unwrap();
        assert_eq!(expand(&p).unwrap(), ["echo", "{x}=7", "aout/mb"]);
        p.argv.push("{sed}".into());
        let e = expand(&p).unwrap_err().to_string();
        assert!(e.contains("unknown placeholder {sed}"), "{e}");
    }

    #[test]
    fn canonical_parameters_read_back_are_checked_without_hashing() {
        let raw = json!({"argv": ["true", "{out.m}"], "outputs": {"m": "metrics"}, "code": ["Cargo.toml"], "seed": 1});
        let canon = crate::ops::Op::normalize(&Command, &raw).unwrap();
        crate::ops::Op::check_canonical(&Command, &canon).unwrap();
        let edited = |field: &str, value: Json| {
            let mut bad = canon.clone();
            bad[field] = value;
            crate::ops::Op::check_canonical(&Command, &bad).unwrap_err().message
        };
        // Each would panic in `run` (a Duration of -1 s, the program of an empty argv).
        assert!(edited("timeout", json!(-1.0)).contains("timeout"));
        assert!(edited("argv", json!([])).contains("`argv` is empty"));
        assert!(edited("outputs", json!({"m": "nonsense"})).contains("is not a valid output"));
        assert!(edited("outputs", json!({})).contains("declares no outputs"));
    }

    #[test]
    fn normalize_hashes_code_and_rejects_unknown_placeholders() {
        let raw = json!({"argv": ["true", "{out.m}", "{param.c}", "{seed}"], "outputs": {"m": "metrics"},
                         "params": {"c": 2}, "code": ["Cargo.toml"], "seed": 1});
        let canon = crate::ops::Op::normalize(&Command, &raw).unwrap();
        assert!(canon["code"]["Cargo.toml"].as_str().unwrap().starts_with("blake3:"));
        // The same file written `./Cargo.toml`, or `.//src/./lib.rs`, keys as written plainly.
        let dotted = json!({"argv": ["true", "{out.m}", "{param.c}", "{seed}"], "outputs": {"m": "metrics"},
                            "params": {"c": 2}, "code": ["./Cargo.toml"], "seed": 1});
        assert_eq!(crate::ops::Op::normalize(&Command, &dotted).unwrap(), canon);
        let nested = json!({"argv": ["true"], "outputs": {"m": "metrics"}, "code": [".//src/./lib.rs"], "seed": 1});
        let keys: Vec<String> = crate::ops::Op::normalize(&Command, &nested).unwrap()["code"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["src/lib.rs"]);
        assert_eq!(canon["outputs"]["m"], "metrics");
        let p: CommandParams = serde_json::from_value(canon).unwrap();
        assert_eq!(expand(&p).unwrap(), vec!["true", "out/m", "2", "1"]);
        // A whole-word `${axis}` of a numeric axis arrives as a number: it is the word it reads as.
        let raw =
            json!({"argv": ["echo", 1, 0.5, true], "env_probe": ["echo", 2], "outputs": {"m": "metrics"}, "seed": 1});
        let p: CommandParams = serde_json::from_value(crate::ops::Op::normalize(&Command, &raw).unwrap()).unwrap();
        assert_eq!(p.argv, ["echo", "1", "0.5", "true"]);
        assert_eq!(expand(&p).unwrap(), ["echo", "1", "0.5", "true"]);
        // A missing output or param is named as a missing input is; anything else is no placeholder.
        let refused = |argv: Json| {
            let raw = json!({"argv": argv, "outputs": {"m": "metrics"}, "params": {"c": 2}, "seed": 1});
            let e = crate::ops::Op::normalize(&Command, &raw).unwrap_err();
            (e.message, e.help.unwrap_or_default())
        };
        let (m, h) = refused(json!(["true", "{out.nope}"]));
        assert_eq!(m, "`argv[1]` uses {out.nope}, but the stage declares no output `nope`");
        assert_eq!(h, "declared outputs: m; add it to `outputs`");
        let (m, h) = refused(json!(["true", "{param.d}"]));
        assert_eq!(m, "`argv[1]` uses {param.d}, but `params` has no `d`");
        assert_eq!(h, "declared params: c; add it to `params`");
        let (m, h) = refused(json!(["true", "{inn.x}"]));
        assert_eq!(m, "`argv[1]` uses an unknown placeholder {inn.x}");
        assert!(h.starts_with("valid: {in.INPUT}, {out.OUTPUT} (outputs: m), {param.NAME} (params: c)"), "{h}");
        let bad = json!({"argv": ["true"], "outputs": {"m": "tables"}, "seed": 1});
        assert!(crate::ops::Op::normalize(&Command, &bad).unwrap_err().message.contains("is not a kind"));
        let bad = json!({"argv": ["true"], "outputs": {"m": "metrics"}, "code": ["../x.py"], "seed": 1});
        assert!(crate::ops::Op::normalize(&Command, &bad).unwrap_err().message.contains("no `..`"));
        let message = |argv: Json| {
            let raw = json!({"argv": argv, "outputs": {"m": "metrics"}, "seed": 1});
            crate::ops::Op::normalize(&Command, &raw).unwrap_err().message
        };
        assert!(message(json!(["", "x"])).contains("`argv[0]`, the program, is empty"));
        assert!(message(json!(["sh", "x{"])).contains("`argv[1]`: `x{` has an unclosed `{`"));
        // `./x` is the same relative path; the scratch folder's own folders are refused.
        assert!(check_relative("./src/x.py").is_ok());
        for (path, why) in [("in/images/x", "the inputs"), ("./out", "the outputs"), ("tmp/a", "TMPDIR")] {
            assert!(check_relative(path).unwrap_err().contains(why), "{path}");
        }
    }
}
