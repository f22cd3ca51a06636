//! Stage kinds. Each op lives in its own file as a [`StageKind`] (its typed parameters, its
//! [`OpSpec`] and its `run`); one generic implementation turns that into the [`Op`] the rest of
//! cfrun sees. [`registry`] lists them all; `cfrun ops` prints from it (the README's stage
//! table is written by hand).

use serde_json::Value as Json;

use crate::config::param_docs::ParamDoc;
use crate::config::params::{self, ParamError, Params};

mod canvas;
pub mod claims;
pub mod command;
mod concat;
mod context;
pub mod dataset;
pub mod extract;
mod extract_memo;
pub mod facts;
pub mod gathered;
pub mod job_shape;
pub mod kmeans;
pub mod label_noise;
pub mod linear_probe;
mod map_probe;
pub mod metric_spec;
pub mod per_label_kmeans;
mod permutations;
pub mod plot;
mod pretext;
pub mod prototype;
mod random_net;
pub mod ranges;
pub mod site;
pub mod table;
pub mod train;
pub mod training;
pub mod video;
pub mod weak_tags;

pub use crate::artifact::Kind;
pub use context::{InputArtifact, StageCtx, StageProgress};
pub use facts::{Examples, Facts, InputFacts, OutputFacts};
pub use gathered::Gathered;
pub use job_shape::JobShape;
pub use metric_spec::{MetricSpec, Written};
pub use site::{Memory, Site};

/// An input slot of an op.
#[derive(Debug, Clone, Copy)]
pub struct InputSpec {
    /// The field name in the stage table.
    pub name: &'static str,
    /// Kinds of output this input accepts.
    pub kinds: &'static [Kind],
    /// Whether the stage must set it.
    pub required: bool,
    /// Aggregating input: takes a list of stage outputs and gathers every instance of each.
    pub gather: bool,
    /// One line for `cfrun ops`.
    pub doc: &'static str,
}

/// An output of an op.
#[derive(Debug, Clone, Copy)]
pub struct OutputSpec {
    /// The name other stages reference as `stage.NAME`.
    pub name: &'static str,
    /// What it holds.
    pub kind: Kind,
    /// One line for `cfrun ops`.
    pub doc: &'static str,
}

/// A failure while running a stage; it fails that stage only.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The stage's inputs or parameters cannot work together (e.g. K above the number of points).
    #[error("{0}")]
    Invalid(String),
    /// The recipe's parameters do not type as this op's (a job file from another cfrun).
    #[error("parameters of {instance}: {source}")]
    Params {
        /// The instance.
        instance: String,
        /// What serde said.
        source: serde_json::Error,
    },
    /// A file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A tensor operation failed.
    #[error("tensor error: {}", crate::candle_error::Brief(.0))]
    Tensor(#[from] candle_core::Error),
    /// A `command` stage's program did not run to a clean exit (spawn, exit status, timeout).
    #[error("command `{program}` {why}")]
    Program {
        /// `argv[0]`.
        program: String,
        /// What happened, with the program's last output.
        #[source]
        why: command::ChildError,
    },
    /// An output a stage wrote does not hold what its kind promises.
    #[error("output `{output}` ({kind}) is malformed: out/{output}/{source}")]
    MalformedOutput {
        /// The output's name.
        output: String,
        /// Its declared kind.
        kind: Kind,
        /// What is wrong, and in which file.
        source: crate::artifact::validate::FormatError,
    },
    /// A stage's metrics break what its op declares: a name outside its `metrics`, or one it
    /// always writes missing (a fault of the op, not of the stage's inputs).
    #[error("op {op} wrote metrics its declaration does not allow in `{output}`: {what}")]
    UndeclaredMetrics {
        /// The op.
        op: &'static str,
        /// The metrics output.
        output: String,
        /// Which names, and how.
        what: String,
    },
    /// A stage finished without writing a declared output.
    #[error("op {op} did not write its output `{output}`")]
    MissingOutput {
        /// The op.
        op: &'static str,
        /// The output.
        output: String,
    },
    /// The cache could not be read or written (a lock, the staging folder, publishing).
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    /// An artifact could not be read or written.
    #[error(transparent)]
    Artifact(#[from] crate::artifact::ArtifactError),
    /// Loading a data set failed.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// k-means failed.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// A probe or metric failed.
    #[error(transparent)]
    Eval(#[from] crate::eval::EvalError),
    /// A pretext transform (rotation, puzzle, canvas) refused its input.
    #[error(transparent)]
    Selfsup(#[from] crate::selfsup::SelfsupError),
    /// Training or running a network failed.
    #[error(transparent)]
    Nn(#[from] crate::nn::NnError),
    /// Making a table or figure failed.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
}

impl OpError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> OpError {
        let context = context.into();
        move |source| OpError::Io { context, source }
    }
}

/// The fixed description of a stage kind: what `cfrun ops` lists and what every key names.
#[derive(Debug)]
pub struct OpSpec {
    /// The name used as `op = "..."`.
    pub name: &'static str,
    /// Bumped whenever the op's results change for the same parameters; part of every recipe key.
    pub version: u32,
    /// One line for `cfrun ops`.
    pub summary: &'static str,
    /// Input slots.
    pub inputs: &'static [InputSpec],
    /// Outputs.
    pub outputs: &'static [OutputSpec],
    /// The metrics a `metrics` output can hold, each with when it is written, where the op knows
    /// them; claims and tables naming another metric are rejected before anything runs. Empty:
    /// not declared (a `command`'s program may write any).
    pub metrics: &'static [MetricSpec],
}

/// What one op file implements: its spec, its typed parameters and its `run`. Everything else
/// cfrun needs ([`Op`]) follows from these through one generic implementation.
pub trait StageKind: Send + Sync + 'static {
    /// The typed parameters; their canonical JSON goes into the recipe key.
    type Params: Params;
    /// Name, version, summary, inputs, outputs, metric names.
    const SPEC: &'static OpSpec;

    /// Runs the stage, writing every output under `ctx.output_dir(NAME)`.
    fn run(&self, params: Self::Params, ctx: &mut StageCtx<'_>) -> Result<(), OpError>;

    /// Names of the parameters (for help texts and seed injection).
    fn param_fields(&self) -> Vec<&'static str> {
        Self::Params::fields()
    }
    /// See [`Op::param_docs`].
    fn param_docs(&self) -> Vec<ParamDoc> {
        Self::Params::docs()
    }
    /// Types, defaults and validates raw stage fields (unknown fields rejected with a suggestion).
    fn normalize(&self, raw: &Json) -> Result<Self::Params, ParamError> {
        params::typed::<Self::Params>(raw)
    }
    /// See [`Op::replicated`].
    fn replicated(&self, _raw: &serde_json::Map<String, Json>) -> bool {
        self.param_fields().contains(&"seed")
    }
    /// See [`Op::check_gathered`].
    fn check_gathered(&self, _params: &Self::Params, _gathered: &[Gathered<'_>]) -> Result<(), ParamError> {
        Ok(())
    }
    /// See [`Op::gathers_replicates`]. Tables, plots and claims summarise over replicates.
    const GATHERS_REPLICATES: bool = true;
    /// See [`Op::labelling`]. Most parameters change what is computed.
    const LABELLING: &'static [&'static str] = &[];
    /// See [`Op::judges`]. Most reports stand alone.
    const JUDGES: bool = false;
    /// See [`Op::warm_up`]. Most ops have no slow plan-time work.
    fn warm_up(&self, _raw: &Json) -> Option<Box<dyn FnOnce() + Send>> {
        None
    }
    /// See [`Op::preflight`]. Most ops name nothing on the machine and run on any device.
    fn preflight(&self, _params: &Self::Params, _fed: &InputFacts, _site: &Site) -> Result<(), ParamError> {
        Ok(())
    }
    /// See [`Op::facts`]. The default knows nothing of its outputs and checks nothing.
    fn facts(&self, _params: &Self::Params, _inputs: &InputFacts) -> Result<OutputFacts, ParamError> {
        Ok(OutputFacts::new())
    }
    /// See [`Op::output_kind`].
    fn output_kind(&self, _params: &Json, name: &str) -> Option<Kind> {
        Self::SPEC.outputs.iter().find(|o| o.name == name).map(|o| o.kind)
    }
    /// See [`Op::output_names`].
    fn output_names(&self, _params: &Json) -> Vec<String> {
        Self::SPEC.outputs.iter().map(|o| o.name.to_string()).collect()
    }
    /// See [`Op::input_table`].
    fn input_table(&self) -> Option<&'static str> {
        None
    }
    /// See [`Op::check_inputs`].
    fn check_inputs(&self, _raw: &Json, _slots: &[&str]) -> Result<(), ParamError> {
        Ok(())
    }
    /// See [`Op::unwritten_metrics`]. Most ops write their metrics whatever their inputs hold.
    fn unwritten_metrics(&self, _inputs: &InputFacts) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// See [`Op::reads_siblings`].
    fn reads_siblings(&self) -> bool {
        false
    }
    /// See [`Op::work_estimate`]. Most stages take about a second at the studies' sizes.
    fn work_estimate(&self, _params: &Self::Params) -> f64 {
        1.0
    }
    /// What a cluster job of this op asks for by default; see [`Op::job`].
    const JOB: JobShape = JobShape::SMALL;
    /// See [`Op::job`]: the time limit of a job with these canonical parameters, when it
    /// depends on them (a `command`'s own `timeout`).
    fn job_minutes(&self, _params: &Json) -> u32 {
        Self::JOB.time_min
    }
}

/// A stage kind as the rest of cfrun sees it: parameters as canonical JSON. Implemented for
/// every [`StageKind`]; op files implement that instead.
pub trait Op: Send + Sync {
    /// Name, version, summary, inputs, outputs, metric names.
    fn spec(&self) -> &'static OpSpec;
    /// Names of the parameters (for help texts and seed injection).
    fn param_fields(&self) -> Vec<&'static str>;
    /// Each parameter's type, default and doc comment, for `cfrun ops OP`.
    fn param_docs(&self) -> Vec<ParamDoc>;
    /// Types, defaults and validates the parameters, returning the canonical form.
    fn normalize(&self, raw: &Json) -> Result<Json, ParamError>;
    /// Types and validates parameters already in canonical form (a job spec read back from
    /// disk), with no side effect: nothing is hashed or probed again, as `normalize` would.
    fn check_canonical(&self, params: &Json) -> Result<(), ParamError>;
    /// Types the canonical parameters and runs the stage, writing every output under
    /// `ctx.output_dir(NAME)`.
    fn run(&self, ctx: &mut StageCtx<'_>) -> Result<(), OpError>;
    /// Whether the op draws random numbers that should differ between replicates: such a stage
    /// runs once per replicate, each with its own seed. Ops whose seed fixes a design choice (a
    /// data subset, generated data, a permutation set) say no and are shared by all replicates,
    /// as does a stage whose raw parameters say it draws none (`command`'s `seeded = false`).
    fn replicated(&self, raw: &serde_json::Map<String, Json>) -> bool;
    /// Checks the parameters of an aggregating stage against the instances it gathers (their
    /// stages and axes), before anything runs.
    fn check_gathered(&self, params: &Json, gathered: &[Gathered<'_>]) -> Result<(), ParamError>;
    /// Whether an aggregating stage gathers every replicate into one instance (a table averages
    /// over them) or keeps the replicate axis and gathers, per replicate, only that replicate's
    /// instances (and those shared by all): what it computes is then one replicate's, and the
    /// replicates downstream stay independent.
    fn gathers_replicates(&self) -> bool;
    /// The parameters that only name or caption what the stage shows (a title, axis labels;
    /// `claims[].statement` for a field of each table of an array): a sweep axis written only
    /// there gives each of its values the same results under another name.
    fn labelling(&self) -> &'static [&'static str];
    /// Whether its reports are verdicts on other stages' reports, so a run prints them after
    /// the tables they judge.
    fn judges(&self) -> bool;
    /// Plan-time work slow enough to be worth starting early, side by side with other stages'
    /// (an environment probe), from a stage's raw parameters; its result is remembered for
    /// when the stage's instances are typed. `None` for ops without such work.
    fn warm_up(&self, raw: &Json) -> Option<Box<dyn FnOnce() + Send>>;
    /// What is known of the outputs of an instance with these canonical parameters, given what
    /// is known of its inputs ([`facts`]); an error refuses inputs that cannot work together,
    /// before anything runs.
    fn facts(&self, params: &Json, inputs: &InputFacts) -> Result<OutputFacts, ParamError>;
    /// Checks against the machine a run starts on (a folder the parameters name, arithmetic the
    /// device the instance will compute on lacks, memory a batch needs), made by `cfrun run`
    /// before anything runs; `fed` is what the plan knows of the instance's inputs. Commands that
    /// only read an experiment (`status`, `report`, `gc`) skip them, so that a folder moved
    /// since, or another machine, does not lock them out.
    fn preflight(&self, params: &Json, fed: &InputFacts, site: &Site) -> Result<(), ParamError>;
    /// The kind of output `name` of a stage with these (raw or canonical) parameters. Ops with a
    /// fixed signature look in their spec; `command` reads the outputs its stage declares.
    fn output_kind(&self, params: &Json, name: &str) -> Option<Kind>;
    /// The names of the outputs a stage with these parameters writes.
    fn output_names(&self, params: &Json) -> Vec<String>;
    /// A field whose table declares the stage's inputs (`command`'s `inputs`): each entry is an
    /// input slot of any kind reading one `"STAGE.OUTPUT"`. `None` for ops with fixed slots.
    fn input_table(&self) -> Option<&'static str>;
    /// Checks the raw parameters against the input slots the stage declares (placeholders that
    /// name an input), before anything runs.
    fn check_inputs(&self, raw: &Json, slots: &[&str]) -> Result<(), ParamError>;
    /// Metrics of [`OpSpec::metrics`] that an instance fed inputs like these will not
    /// write, each with why (`top5` of labels of five classes or fewer), so that a table or
    /// claim naming one is refused before anything runs.
    fn unwritten_metrics(&self, inputs: &InputFacts) -> Vec<(&'static str, String)>;
    /// A rough guess, in CPU-seconds, of how long an instance with these canonical parameters
    /// runs, known before its inputs exist. The scheduler starts the longest chains first with
    /// it, so only how stages compare matters, not the figure itself.
    fn work_estimate(&self, params: &Json) -> f64;
    /// Whether `run` reads [`StageCtx::siblings`] (only then does the scheduler fill it).
    fn reads_siblings(&self) -> bool;
    /// What a cluster job of an instance with these canonical parameters asks for by default,
    /// before `[executor] in_driver` and the stage's `resources`.
    fn job(&self, params: &Json) -> JobShape;

    /// The name used as `op = "..."`.
    fn name(&self) -> &'static str {
        self.spec().name
    }
    /// Part of every recipe key.
    fn version(&self) -> u32 {
        self.spec().version
    }
    /// One line for `cfrun ops`.
    fn summary(&self) -> &'static str {
        self.spec().summary
    }
    /// Input slots.
    fn inputs(&self) -> &'static [InputSpec] {
        self.spec().inputs
    }
    /// Outputs.
    fn outputs(&self) -> &'static [OutputSpec] {
        self.spec().outputs
    }
    /// See [`OpSpec::metrics`].
    fn metrics(&self) -> &'static [MetricSpec] {
        self.spec().metrics
    }
    /// The names of [`OpSpec::metrics`]; empty where the op does not declare them.
    fn metric_names(&self) -> Vec<&'static str> {
        self.metrics().iter().map(|m| m.name).collect()
    }
    /// Whether any input gathers all instances of its stages (tables, plots).
    fn aggregates(&self) -> bool {
        self.inputs().iter().any(|i| i.gather)
    }
    /// The output called `name`.
    fn output(&self, name: &str) -> Option<&'static OutputSpec> {
        self.outputs().iter().find(|o| o.name == name)
    }
}

impl<T: StageKind> Op for T {
    fn spec(&self) -> &'static OpSpec {
        T::SPEC
    }
    fn param_fields(&self) -> Vec<&'static str> {
        StageKind::param_fields(self)
    }
    fn param_docs(&self) -> Vec<ParamDoc> {
        let mut docs = StageKind::param_docs(self);
        // What the plan does with a seed left out (graph::expand's `inject_seed`).
        if let Some(seed) = docs.iter_mut().find(|d| d.name == "seed") {
            seed.required = false;
            seed.default_from = Some("the experiment's `seed`".to_string());
            seed.doc.push_str(if StageKind::replicated(self, &serde_json::Map::new()) {
                " In replicate r > 0 the seed used, set here or not, is one derived from it and r."
            } else {
                " The same in every replicate."
            });
        }
        docs
    }
    fn normalize(&self, raw: &Json) -> Result<Json, ParamError> {
        let typed = StageKind::normalize(self, raw).map_err(|e| point_to_help(e, self.name()))?;
        params::canonical(&typed)
    }
    fn check_canonical(&self, params: &Json) -> Result<(), ParamError> {
        params::parse::<T::Params>(params)?.validate()
    }
    fn run(&self, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        // Canonical parameters were typed and checked when the plan was built; failing here
        // means the recipe came from elsewhere (a job file) and does not fit this op.
        let params = serde_json::from_value(ctx.params.clone())
            .map_err(|source| OpError::Params { instance: ctx.name.to_string(), source })?;
        StageKind::run(self, params, ctx)
    }
    fn replicated(&self, raw: &serde_json::Map<String, Json>) -> bool {
        StageKind::replicated(self, raw)
    }
    fn check_gathered(&self, params: &Json, gathered: &[Gathered<'_>]) -> Result<(), ParamError> {
        StageKind::check_gathered(self, &params::parse(params)?, gathered)
    }
    fn gathers_replicates(&self) -> bool {
        T::GATHERS_REPLICATES
    }
    fn labelling(&self) -> &'static [&'static str] {
        T::LABELLING
    }
    fn judges(&self) -> bool {
        T::JUDGES
    }
    fn warm_up(&self, raw: &Json) -> Option<Box<dyn FnOnce() + Send>> {
        StageKind::warm_up(self, raw)
    }
    fn facts(&self, params: &Json, inputs: &InputFacts) -> Result<OutputFacts, ParamError> {
        StageKind::facts(self, &params::parse(params)?, inputs)
    }
    fn preflight(&self, params: &Json, fed: &InputFacts, site: &Site) -> Result<(), ParamError> {
        StageKind::preflight(self, &params::parse(params)?, fed, site)
    }
    fn output_kind(&self, params: &Json, name: &str) -> Option<Kind> {
        StageKind::output_kind(self, params, name)
    }
    fn output_names(&self, params: &Json) -> Vec<String> {
        StageKind::output_names(self, params)
    }
    fn input_table(&self) -> Option<&'static str> {
        StageKind::input_table(self)
    }
    fn check_inputs(&self, raw: &Json, slots: &[&str]) -> Result<(), ParamError> {
        StageKind::check_inputs(self, raw, slots)
    }
    fn unwritten_metrics(&self, inputs: &InputFacts) -> Vec<(&'static str, String)> {
        StageKind::unwritten_metrics(self, inputs)
    }
    fn work_estimate(&self, params: &Json) -> f64 {
        params::parse(params).map_or(1.0, |p| StageKind::work_estimate(self, &p))
    }
    fn job(&self, params: &Json) -> JobShape {
        JobShape { time_min: StageKind::job_minutes(self, params), ..T::JOB }
    }
    fn reads_siblings(&self) -> bool {
        StageKind::reads_siblings(self)
    }
}

impl std::fmt::Debug for dyn Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name())
    }
}

/// An unknown field's error, pointing to `cfrun ops OP` beside the valid names: the list says what
/// exists, the help what each one does.
fn point_to_help(mut e: ParamError, op: &str) -> ParamError {
    // Only a key of the stage table itself: a nested table's (a claim's) has no op help of its own.
    if e.unknown_field && !e.path.contains(['.', '[']) {
        let help = e.help.take().map(|h| format!("{h}; ")).unwrap_or_default();
        e.help = Some(format!("{help}`cfrun ops {op}` describes each"));
    }
    e
}

/// The input slot of aggregating ops (`table`, `plot`): metrics of every instance of the named stages.
pub const GATHER_METRICS: InputSpec = InputSpec {
    name: "inputs",
    kinds: &[Kind::Metrics],
    required: true,
    gather: true,
    doc: "metrics outputs; every instance of each named stage is gathered",
};

/// A required `labels` input (one class id or tag set per image), described by `doc`.
pub const fn labels_input(doc: &'static str) -> InputSpec {
    InputSpec { name: "labels", kinds: &[Kind::Labels], required: true, gather: false, doc }
}

/// The `features` input of ops that read feature matrices (images count as pixel features).
pub const FEATURES_INPUT: InputSpec = InputSpec {
    name: "features",
    kinds: &[Kind::Features, Kind::Images],
    required: true,
    gather: false,
    doc: "feature rows of both splits (images count as pixel features)",
};

/// Every op cfrun knows, in the order `cfrun ops` lists them.
pub fn registry() -> &'static [&'static dyn Op] {
    static OPS: &[&dyn Op] = &[
        &dataset::Dataset,
        &video::Video,
        &label_noise::LabelNoise,
        &weak_tags::WeakTags,
        &train::Train,
        &random_net::RandomNet,
        &permutations::PermutationSet,
        &pretext::Pretext,
        &extract::Extract,
        &concat::Concat,
        &kmeans::KMeans,
        &per_label_kmeans::PerLabelKMeans,
        &prototype::Prototype,
        &linear_probe::LinearProbe,
        &canvas::Canvas,
        &map_probe::MapProbe,
        &table::Table,
        &plot::Plot,
        &claims::Claims,
        &command::Command,
    ];
    OPS
}

/// The op called `name`.
pub fn find(name: &str) -> Option<&'static dyn Op> {
    registry().iter().copied().find(|op| op.name() == name)
}

/// Names of all ops, for "valid ops: ..." messages.
pub fn names() -> Vec<&'static str> {
    registry().iter().map(|op| op.name()).collect()
}
