//! `kmeans`: clusters features (fitted on the train split) and assigns every split; the
//! assignments are ClusterFit's pseudo-labels. With the optional `truth` input it also scores the
//! clustering (purity, NMI) against true labels.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{InputSpec, Kind, Op, OpError, OutputSpec, StageCtx};
use crate::artifact::{tensors_io, Features, Labels, LabelsMeta, Metrics, Split};
use crate::cluster::{self, Init, KMeansConfig};
use crate::config::params::{self, ParamError, Params};
use crate::eval;

/// Parameters of `kmeans`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KMeansParams {
    /// Number of clusters (at least 2).
    pub k: usize,
    /// Lloyd iterations.
    #[serde(default = "default_iterations")]
    pub iterations: usize,
    /// `kmeans++` or `random` (K distinct points).
    #[serde(default = "default_init")]
    pub init: String,
    /// L2-normalise features first (VISSL's ClusterFit does).
    #[serde(default)]
    pub normalize: bool,
    /// Fit on at most this many points per centroid (faiss's max_points_per_centroid); all points are assigned.
    #[serde(default)]
    pub max_points_per_centroid: Option<usize>,
    /// Seed of the initialisation and sampling.
    pub seed: u64,
}

fn default_iterations() -> usize {
    20
}

fn default_init() -> String {
    "kmeans++".into()
}

const INITS: &[&str] = &["kmeans++", "random"];

impl Params for KMeansParams {
    fn validate(&self) -> Result<(), ParamError> {
        if self.k < 2 {
            return Err(ParamError::range("k", self.k, "at least 2"));
        }
        if self.iterations == 0 {
            return Err(ParamError::range("iterations", self.iterations, "at least 1"));
        }
        if !INITS.contains(&self.init.as_str()) {
            return Err(ParamError::field(
                "init",
                format!("unknown init `{}`", self.init),
                Some(format!("valid: {}", INITS.join(", "))),
            ));
        }
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
    doc: "true labels to score purity and NMI against",
};

/// Cluster sizes (returned, and their extremes recorded) and, with the `truth` input, purity and
/// NMI of both splits' assignments: what every pseudo-labelling op reports.
pub(super) fn assignment_metrics(
    ctx: &StageCtx<'_>,
    train: &[u32],
    test: &[u32],
    k: usize,
    metrics: &mut Metrics,
) -> Result<Vec<usize>, OpError> {
    let mut sizes = vec![0usize; k];
    train.iter().for_each(|&a| sizes[a as usize] += 1);
    metrics.values.insert("smallest_cluster".into(), *sizes.iter().min().unwrap_or(&0) as f64);
    metrics.values.insert("largest_cluster".into(), *sizes.iter().max().unwrap_or(&0) as f64);
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
        metrics.values.insert("test_purity".into(), eval::purity(test, &truth.test)?);
        metrics.values.insert("test_nmi".into(), eval::nmi(test, &truth.test)?);
    }
    Ok(sizes)
}

/// The `kmeans` op.
pub struct KMeans;

impl Op for KMeans {
    fn name(&self) -> &'static str {
        "kmeans"
    }
    fn version(&self) -> u32 {
        // 2: blocked k-means without a normalised copy / probe with a capped batch size.
        2
    }
    fn summary(&self) -> &'static str {
        "k-means (Lloyd) on the train split's features; assigns every split: pseudo-labels"
    }
    fn inputs(&self) -> &'static [InputSpec] {
        &[
            InputSpec {
                name: "features",
                kinds: &[Kind::Features, Kind::Images],
                required: true,
                gather: false,
                doc: "what to cluster (images count as pixel features)",
            },
            TRUTH_INPUT,
        ]
    }
    fn outputs(&self) -> &'static [OutputSpec] {
        &[
            OutputSpec { name: "labels", kind: Kind::Labels, doc: "cluster ids of every split (+ centroids)" },
            OutputSpec { name: "metrics", kind: Kind::Metrics, doc: "inertia per iteration, sizes, purity/NMI" },
        ]
    }
    fn metric_names(&self) -> &'static [&'static str] {
        &[
            "smallest_cluster",
            "largest_cluster",
            "purity",
            "nmi",
            "test_purity",
            "test_nmi",
            "inertia",
            "test_inertia",
            "empty_cluster_splits",
        ]
    }
    fn param_fields(&self) -> &'static [&'static str] {
        params::field_names::<KMeansParams>()
    }
    fn normalize(&self, raw: &Json) -> Result<Json, ParamError> {
        params::normalize::<KMeansParams>(raw)
    }
    fn run(&self, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let p: KMeansParams = ctx.params()?;
        let feats = Features::load_any(&ctx.input("features")?.dir)?;
        let (d, n) = (feats.meta.dim, feats.count(Split::Train));
        if p.k > n {
            return Err(OpError::Invalid(format!(
                "k = {} is larger than the number of points to cluster ({n}); use k <= {n} or more data",
                p.k
            )));
        }
        let cfg = KMeansConfig {
            k: p.k,
            iterations: p.iterations,
            init: if p.init == "random" { Init::Random } else { Init::KMeansPlusPlus },
            seed: p.seed,
            normalize: p.normalize,
            max_points_per_centroid: p.max_points_per_centroid,
        };
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
        let mut metrics = Metrics::default();
        metrics.values.insert("inertia".into(), train_inertia);
        metrics.values.insert("test_inertia".into(), test_inertia);
        metrics.values.insert("empty_cluster_splits".into(), model.empty_cluster_splits as f64);
        let sizes = assignment_metrics(ctx, &train, &test, p.k, &mut metrics)?;
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
        metrics.save(&ctx.output_dir("metrics"))
    }
}
