//! `kmeans`: clusters features (fitted on the train split) and assigns every split; the
//! assignments are ClusterFit's pseudo-labels. With the optional `truth` input it also scores the
//! clustering (purity, NMI) against true labels.

use serde::{Deserialize, Serialize};

use super::facts::{self, Facts, InputFacts, OutputFacts};
use super::{InputSpec, Kind, MetricSpec, OpError, OpSpec, OutputSpec, StageCtx, StageKind};
use crate::artifact::{tensors_io, Features, Labels, LabelsMeta, Metrics, Split};
use crate::cluster::{self, Init, KMeansConfig};
use crate::config::params::{ParamError, Params};
use crate::eval;

/// Parameters of `kmeans`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KMeansParams {
    /// Number of clusters (at least 2).
    #[schemars(range(min = 2))]
    pub k: usize,
    /// Lloyd iterations.
    #[serde(default = "default_iterations")]
    #[schemars(range(min = 1, max = super::ranges::MAX_ITERATIONS))]
    pub iterations: usize,
    /// `kmeans++` or `random` (K distinct points).
    #[serde(default = "default_init")]
    pub init: InitName,
    /// L2-normalise features first (VISSL's ClusterFit does).
    #[serde(default)]
    pub normalize: bool,
    /// Fit on at most this many points per centroid (faiss's max_points_per_centroid); all points are assigned.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_points_per_centroid: Option<usize>,
    /// Seed of the initialisation and sampling.
    pub seed: u64,
}

impl KMeansParams {
    /// The clustering these parameters ask for, with `k` clusters seeded by `seed` (a share of
    /// `k` and a seed of its own per label in `per_label_kmeans`).
    pub fn config(&self, k: usize, seed: u64) -> KMeansConfig {
        KMeansConfig {
            k,
            iterations: self.iterations,
            init: self.init.into(),
            seed,
            normalize: self.normalize,
            max_points_per_centroid: self.max_points_per_centroid,
        }
    }
}

fn default_iterations() -> usize {
    20
}

/// How the first centroids are chosen, as the file writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum InitName {
    /// k-means++ D^2 sampling.
    #[serde(rename = "kmeans++")]
    KMeansPlusPlus,
    /// K distinct points drawn uniformly.
    #[serde(rename = "random")]
    Random,
}

impl From<InitName> for Init {
    fn from(name: InitName) -> Init {
        match name {
            InitName::KMeansPlusPlus => Init::KMeansPlusPlus,
            InitName::Random => Init::Random,
        }
    }
}

fn default_init() -> InitName {
    InitName::KMeansPlusPlus
}

impl Params for KMeansParams {
    fn validate(&self) -> Result<(), ParamError> {
        if self.k < 2 {
            return Err(ParamError::range("k", self.k, "at least 2"));
        }
        if self.iterations == 0 {
            return Err(ParamError::range("iterations", self.iterations, "at least 1"));
        }
        crate::config::limits::at_most("iterations", self.iterations, super::ranges::MAX_ITERATIONS)?;
        if self.max_points_per_centroid == Some(0) {
            return Err(ParamError::range("max_points_per_centroid", 0, "at least 1"));
        }
        Ok(())
    }
}

/// The optional `truth` input of the ops that make pseudo-labels (`kmeans`, `prototype`).
pub(super) const TRUTH_INPUT: InputSpec = InputSpec {
    name: "truth",
    kinds: &[Kind::Labels],
    required: false,
    gather: false,
    doc: "true labels to score purity, NMI and AMI against",
};

/// Cluster sizes (returned, and their extremes recorded) and, with the `truth` input, purity,
/// NMI and AMI of both splits' assignments: what every pseudo-labelling op reports. Empty clusters are
/// warned of, with `why_empty`, the op's likely cause.
pub(super) fn assignment_metrics(
    ctx: &StageCtx<'_>,
    (train, test): (&[u32], &[u32]),
    k: usize,
    why_empty: &str,
    metrics: &mut Metrics,
) -> Result<Vec<usize>, OpError> {
    let mut sizes = vec![0usize; k];
    train.iter().for_each(|&a| sizes[a as usize] += 1);
    let empty = sizes.iter().filter(|&&s| s == 0).count();
    if empty > 0 {
        tracing::warn!(
            "{}: {empty} of {k} clusters hold no training row ({why_empty}): the pseudo-labels use only {} of the \
             {k} classes",
            ctx.name,
            k - empty
        );
    }
    metrics.values.insert("smallest_cluster".into(), *sizes.iter().min().unwrap_or(&0) as f64);
    metrics.values.insert("largest_cluster".into(), *sizes.iter().max().unwrap_or(&0) as f64);
    truth_metrics(ctx, train, test, true, metrics)?;
    Ok(sizes)
}

/// With the `truth` input, purity, NMI and AMI of both splits' assignments; of the train
/// split's only without `with_test` (an op whose test assignments read labels the truth
/// shares). Purity and NMI rise with k whatever the features; AMI, chance-corrected, compares
/// across k.
pub(super) fn truth_metrics(
    ctx: &StageCtx<'_>,
    train: &[u32],
    test: &[u32],
    with_test: bool,
    metrics: &mut Metrics,
) -> Result<(), OpError> {
    if let Some(truth) = ctx.optional_input("truth") {
        let truth = Labels::load(&truth.dir)?;
        if truth.train.len() != train.len() || truth.test.len() != test.len() {
            return Err(OpError::Invalid(format!(
                "`truth` has {}/{} labels but the features have {}/{} rows (train/test)",
                truth.train.len(),
                truth.test.len(),
                train.len(),
                test.len()
            )));
        }
        metrics.values.insert("purity".into(), eval::purity(train, &truth.train)?);
        metrics.values.insert("nmi".into(), eval::nmi(train, &truth.train)?);
        metrics.values.insert("ami".into(), eval::ami(train, &truth.train)?);
        if with_test {
            metrics.values.insert("test_purity".into(), eval::purity(test, &truth.test)?);
            metrics.values.insert("test_nmi".into(), eval::nmi(test, &truth.test)?);
            metrics.values.insert("test_ami".into(), eval::ami(test, &truth.test)?);
        }
    }
    Ok(())
}

/// The `kmeans` op.
pub struct KMeans;

impl StageKind for KMeans {
    type Params = KMeansParams;
    const JOB: super::JobShape = super::JobShape::job(2, 8, 0, 4 * 60);
    const SPEC: &'static OpSpec = &OpSpec {
        name: "kmeans",
        // 2: blocked k-means without a normalised copy / probe with a capped batch size.
        // 3: the fused nearest-centroid kernel sums dot products in another order (near ties may flip).
        // 4: centroid sums updated by the rows that changed cluster instead of summed afresh
        //    (f64 rounding may differ in the last bits).
        // 5: an empty cluster is re-seeded from the largest cluster that holds two distinct rows
        //    (a cluster of identical rows was split to no effect, the empty one staying empty).
        // 6: with `truth`, `ami` and `test_ami` (adjusted mutual information) too.
        version: 6,
        summary: "k-means (Lloyd) on the train split's features; assigns every split: pseudo-labels",
        inputs: &[super::FEATURES_INPUT, TRUTH_INPUT],
        outputs: &[
            OutputSpec { name: "labels", kind: Kind::Labels, doc: "cluster ids of every split (+ centroids)" },
            OutputSpec { name: "metrics", kind: Kind::Metrics, doc: "inertia per iteration, sizes, purity/NMI/AMI" },
        ],
        metrics: &[
            MetricSpec::always("smallest_cluster"),
            MetricSpec::always("largest_cluster"),
            MetricSpec::with_input("purity", "truth"),
            MetricSpec::with_input("nmi", "truth"),
            MetricSpec::with_input("ami", "truth"),
            MetricSpec::with_input("test_purity", "truth"),
            MetricSpec::with_input("test_nmi", "truth"),
            MetricSpec::with_input("test_ami", "truth"),
            MetricSpec::always("inertia"),
            MetricSpec::always("test_inertia"),
            MetricSpec::always("empty_cluster_splits"),
        ],
    };

    fn facts(&self, p: &KMeansParams, inputs: &InputFacts) -> Result<OutputFacts, ParamError> {
        let rows = inputs.get("features").rows;
        facts::within_train_rows(inputs, "features", ("k", p.k), "cluster", "cluster more data")?;
        facts::same_rows(inputs, "features", "truth", &[0, 1])?;
        facts::plain_labels(inputs, "truth", "score the clusters' purity against")?;
        let examples = inputs.get("features").examples;
        Ok(OutputFacts::from([("labels".to_string(), Facts::labels(rows, Some(p.k)).of(examples))]))
    }

    fn run(&self, p: KMeansParams, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let feats = Features::load_any(&ctx.input("features")?.dir)?;
        let (d, n) = (feats.meta.dim, feats.count(Split::Train));
        if p.k > n {
            return Err(OpError::Invalid(format!(
                "k = {} is larger than the number of points to cluster ({n}); use k <= {n} or more data",
                p.k
            )));
        }
        let cfg = p.config(p.k, p.seed);
        ctx.progress.begin("iterations", p.iterations as u64);
        let progress = ctx.progress;
        // On a GPU the Lloyd iterations run there; on the CPU this is the CPU kernels' own path.
        let model = cluster::fit_on(&feats.train, n, d, &cfg, ctx.device, &mut |_, inertia| {
            progress.inc(1);
            progress.message(&format!("inertia {inertia:.4e}"));
        })?;
        progress.finish();
        let (train, train_inertia) = cluster::assign(&model, &feats.train, n)?;
        let (test, test_inertia) = cluster::assign(&model, &feats.test, feats.count(Split::Test))?;
        if !(train_inertia.is_finite() && test_inertia.is_finite()) {
            // Finite features whose squared distances overflow f32: far from any trained
            // network's scale, so most likely a diverged one.
            let largest = feats.train.iter().chain(&feats.test).fold(0f32, |m, v| m.max(v.abs()));
            return Err(OpError::Invalid(format!(
                "the squared distances overflow (inertia {train_inertia}, test {test_inertia}): the features reach \
                 {largest:e} in size (a diverged network?); check the stage that made them"
            )));
        }
        let mut metrics = Metrics::default();
        metrics.values.insert("inertia".into(), train_inertia);
        metrics.values.insert("test_inertia".into(), test_inertia);
        metrics.values.insert("empty_cluster_splits".into(), model.empty_cluster_splits as f64);
        // Lloyd splits a cluster into an empty one while any holds two distinct rows, unless its
        // centroid is zero (the split's nudge is relative, as faiss's is).
        let why = "the features have fewer distinct rows than clusters, or only groups centred at zero to split: \
                   a collapsed network?";
        let sizes = assignment_metrics(ctx, (&train, &test), p.k, why, &mut metrics)?;
        metrics.details = serde_json::json!({"inertia_per_iter": model.inertia_per_iter, "cluster_sizes": sizes});
        let out = ctx.output_dir("labels");
        let meta = LabelsMeta {
            num_classes: p.k,
            class_names: Vec::new(),
            source: format!("kmeans k={} on {}", p.k, feats.meta.source),
            tag_classes: Vec::new(),
        };
        Labels { meta, train, test, tags: None }.save(&out)?;
        tensors_io::save_matrix(&out.join("centroids.safetensors"), "centroids", &model.centroids, p.k, d)?;
        metrics.save(&ctx.output_dir("metrics")).map_err(OpError::from)
    }
}
