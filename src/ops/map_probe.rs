//! `map_probe`: the VOC07 evaluation on a multi-label target. Per class a one-vs-rest linear SVM
//! on frozen features (standardised, or rows at unit norm), its cost chosen by cross-validation
//! on the train split, scored on the test split by average precision; the metric `map` is their
//! mean, in percent (see [`crate::eval::ovr_map`]).

use serde::{Deserialize, Serialize};

use super::facts::{self, InputFacts, OutputFacts};
use super::{InputSpec, Kind, MetricSpec, OpError, OpSpec, OutputSpec, StageCtx, StageKind};
use crate::artifact::{Features, Metrics, MultiLabels, Split};
use crate::config::params::{ParamError, Params};
use crate::eval::{self, ApKind, OvrConfig, Scaling};

/// Parameters of `map_probe`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MapProbeParams {
    /// Candidate SVM costs C (positive), chosen per class by cross-validation.
    #[serde(default = "defaults::costs")]
    #[schemars(length(min = 1, max = 100))]
    pub costs: Vec<f64>,
    /// Cross-validation folds.
    #[serde(default = "defaults::folds")]
    #[schemars(range(min = 2, max = 20))]
    pub folds: usize,
    /// Most passes of the SVM solver.
    #[serde(default = "defaults::max_iter")]
    #[schemars(range(min = 1, max = super::ranges::MAX_ITERATIONS))]
    pub max_iter: usize,
    /// Solver tolerance on the projected gradient.
    #[serde(default = "defaults::tol")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub tol: f64,
    /// Seed of the folds and the solver's visiting orders.
    pub seed: u64,
    /// `standardize` (each column with the train split's mean and spread, the default) or
    /// `unit_norm` (each row to unit L2 norm, as Goyal et al.'s benchmark code does).
    // The canonical form leaves the defaults of these three out, so the schema would not show them.
    #[schemars(extend("default" = "standardize"))]
    #[serde(default, skip_serializing_if = "Scaling::is_standardize")]
    pub scaling: Scaling,
    /// A positive example's cost as a multiple of C's (the benchmark's code weights them 2:1).
    #[serde(default = "defaults::positive_weight", skip_serializing_if = "defaults::is_unweighted")]
    #[schemars(range(min = 0.001, max = 1000), extend("default" = 1.0))]
    pub positive_weight: f64,
    /// The AP reported for the test and train splits: `exact` (the default) or VOC's
    /// `interpolated` (the benchmark's); cross-validation always ranks costs by the exact AP.
    #[schemars(extend("default" = "exact"))]
    #[serde(default, skip_serializing_if = "ApKind::is_exact")]
    pub ap: ApKind,
}

mod defaults {
    pub fn costs() -> Vec<f64> {
        vec![0.0001, 0.001, 0.01]
    }
    pub fn folds() -> usize {
        3
    }
    pub fn max_iter() -> usize {
        30
    }
    pub fn tol() -> f64 {
        0.1
    }
    pub fn positive_weight() -> f64 {
        1.0
    }
    /// Out of the recipe key at its default, so the keys from before the field existed hold.
    pub fn is_unweighted(w: &f64) -> bool {
        *w == 1.0
    }
}

impl Params for MapProbeParams {
    fn validate(&self) -> Result<(), ParamError> {
        // Each cost is a full cross-validated fit: a long list is a typo or generated input.
        crate::config::limits::at_most("costs", self.costs.len(), 100).map_err(|_| {
            ParamError::field("costs", format!("`costs` lists {} values, at most 100", self.costs.len()), None)
        })?;
        if self.costs.is_empty() || self.costs.iter().any(|c| !(*c > 0.0 && c.is_finite())) {
            return Err(ParamError::field(
                "costs",
                format!("`costs` must be a non-empty list of positive numbers, got {:?}", self.costs),
                Some("e.g. costs = [0.0001, 0.001, 0.01]".into()),
            ));
        }
        if !(2..=20).contains(&self.folds) {
            return Err(ParamError::range("folds", self.folds, "between 2 and 20"));
        }
        if self.max_iter == 0 {
            return Err(ParamError::range("max_iter", 0, "at least 1"));
        }
        crate::config::limits::at_most("max_iter", self.max_iter, super::ranges::MAX_ITERATIONS)?;
        if !(self.tol > 0.0 && self.tol.is_finite()) {
            return Err(ParamError::range("tol", self.tol, "a positive number"));
        }
        if !(0.001..=1000.0).contains(&self.positive_weight) {
            return Err(ParamError::range("positive_weight", self.positive_weight, "a number from 0.001 to 1000"));
        }
        Ok(())
    }
}

/// The `map_probe` op.
pub struct MapProbe;

impl StageKind for MapProbe {
    type Params = MapProbeParams;
    const JOB: super::JobShape = super::JobShape::job(2, 4, 1, 2 * 60);
    const SPEC: &'static OpSpec = &OpSpec {
        name: "map_probe",
        // 2: SVM margins as lane-summed dot products (different rounding).
        // 3: on a tie of cross-validated AP the smaller cost wins, as documented (the first
        //    listed did, the larger one in a descending grid).
        // 4: a column whose spread is too small for its inverse to be an f32 is scaled as a
        //    constant (its infinite scale made NaN of every score, so each AP read the class's
        //    prevalence); such a cached result must not be served.
        version: 4,
        summary: "one-vs-rest linear SVMs (cost by cross-validation) on frozen features of a multi-label target: mAP",
        inputs: &[
            super::FEATURES_INPUT,
            InputSpec {
                name: "labels",
                kinds: &[Kind::MultiLabels],
                required: true,
                gather: false,
                doc: "the classes present in each image",
            },
        ],
        outputs: &[OutputSpec {
            name: "metrics",
            kind: Kind::Metrics,
            doc: "map (test, %), train_map, per-class AP and cost",
        }],
        metrics: &[
            MetricSpec::always("map"),
            MetricSpec::sometimes("train_map", "where some class has a positive in the train split"),
        ],
    };

    fn facts(&self, p: &MapProbeParams, inputs: &InputFacts) -> Result<OutputFacts, ParamError> {
        facts::same_rows(inputs, "features", "labels", &[0, 1])?;
        facts::within_train_rows(inputs, "features", ("folds", p.folds), "split", "probe more data")?;
        Ok(OutputFacts::new())
    }

    fn run(&self, p: MapProbeParams, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let feats = Features::load_any(&ctx.input("features")?.dir)?;
        let labels = MultiLabels::load(&ctx.input("labels")?.dir)?;
        for split in Split::ALL {
            if feats.count(split) != labels.count(split) {
                return Err(OpError::Invalid(format!(
                    "{} split: {} feature rows but {} label sets; features and labels must describe the same images",
                    split.as_str(),
                    feats.count(split),
                    labels.count(split)
                )));
            }
        }
        let cfg = OvrConfig {
            costs: p.costs,
            folds: p.folds,
            max_iter: p.max_iter,
            tol: p.tol,
            seed: p.seed,
            scaling: p.scaling,
            positive_weight: p.positive_weight,
            ap: p.ap,
        };
        let k = labels.meta.num_classes;
        warn_of_classes_the_mean_cannot_read(ctx.name, &labels);
        let r = eval::ovr_map(&feats.train, &labels.train, &feats.test, &labels.test, feats.meta.dim, k, &cfg)?;
        let mut m = Metrics::default();
        m.values.insert("map".into(), r.map * 100.0);
        if let Some((train_map, _)) = eval::mean_ap(&r.train_ap) {
            m.values.insert("train_map".into(), train_map * 100.0);
        }
        m.details = serde_json::json!({
            "test_ap": r.test_ap,
            "train_ap": r.train_ap,
            "cost": r.cost,
            "classes": labels.meta.class_names,
            "features": feats.meta.source,
            "labels": labels.meta.source,
        });
        tracing::info!("{}: mAP {:.2}%", ctx.name, r.map * 100.0);
        m.save(&ctx.output_dir("metrics")).map_err(OpError::from)
    }
}

/// Warns of classes the mAP leaves out (no positive in the train or the test split) and of
/// those whose AP is 1 whatever the features (every test example holds them): either way the
/// mean reads as more classes, or harder ones, than it measures.
fn warn_of_classes_the_mean_cannot_read(name: &str, labels: &MultiLabels) {
    let k = labels.meta.num_classes;
    let count = |hot: &[u8], class: usize| hot.chunks_exact(k.max(1)).filter(|row| row[class] > 0).count();
    let rows = labels.test.len() / k.max(1);
    let (mut dropped, mut everywhere) = (Vec::new(), Vec::new());
    for class in 0..k {
        let test = count(&labels.test, class);
        if count(&labels.train, class) == 0 || test == 0 {
            dropped.push(class);
        } else if test == rows {
            everywhere.push(class);
        }
    }
    if !dropped.is_empty() {
        tracing::warn!(
            "{name}: {} of {k} classes have no positive in the train or the test split and are left out of the mAP \
             (classes {dropped:?})",
            dropped.len()
        );
    }
    if !everywhere.is_empty() {
        tracing::warn!(
            "{name}: {} of {k} classes are on every test example, so their AP is 1 whatever the features (classes \
             {everywhere:?})",
            everywhere.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_costs_and_folds_name_their_field() {
        let e = |v| crate::config::params::normalize::<MapProbeParams>(&v).unwrap_err().path;
        assert_eq!(e(serde_json::json!({"costs": [], "seed": 0})), "costs");
        assert_eq!(e(serde_json::json!({"costs": [-1.0], "seed": 0})), "costs");
        assert_eq!(e(serde_json::json!({"folds": 1, "seed": 0})), "folds");
        assert_eq!(e(serde_json::json!({"positive_weight": 0.0, "seed": 0})), "positive_weight");
        assert_eq!(e(serde_json::json!({"scaling": "l2", "seed": 0})), "scaling");
        assert_eq!(e(serde_json::json!({"ap": "voc", "seed": 0})), "ap");
    }

    /// The benchmark's settings enter the recipe key only where they differ from the defaults,
    /// so every `map_probe` cached before they existed keeps its key.
    #[test]
    fn the_benchmarks_settings_enter_the_key_only_when_set() {
        let with = |extra: serde_json::Value| {
            let mut raw = serde_json::json!({"seed": 0});
            raw.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            crate::config::params::normalize::<MapProbeParams>(&raw).unwrap()
        };
        let base = with(serde_json::json!({}));
        assert_eq!(
            base,
            serde_json::json!({"costs": [0.0001, 0.001, 0.01], "folds": 3, "max_iter": 30, "tol": 0.1, "seed": 0})
        );
        let defaults = serde_json::json!({"scaling": "standardize", "positive_weight": 1.0, "ap": "exact"});
        assert_eq!(with(defaults), base);
        let goyal = with(serde_json::json!({"scaling": "unit_norm", "positive_weight": 2.0, "ap": "interpolated"}));
        assert_eq!(
            (&goyal["scaling"], &goyal["positive_weight"], &goyal["ap"]),
            (&"unit_norm".into(), &2.0.into(), &"interpolated".into())
        );
    }
}
