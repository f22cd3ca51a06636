//! `per_label_kmeans`: the paper's per-label clustering baseline (§5.2). The points of each label
//! `l` are clustered on their own into `k_l` clusters, `k_l` proportional to `sqrt(n_l)` (the
//! paper's footnote 3 found `k_l ~ n_l` worse), the `k_l` summing to exactly `K`; cluster ids
//! are made globally unique by offsetting each label's ids by the clusters of the labels before
//! it. Test points are assigned among the centroids of their own label, so the test split's
//! cluster ids carry its labels: scored against a truth those labels come from (the clean test
//! labels of `label_noise` and `video`), they measure the labels, not the features. Only the
//! train split's purity, NMI and AMI are written.

use serde::{Deserialize, Serialize};

use super::facts::{self, Facts, InputFacts, OutputFacts};
use super::kmeans::{truth_metrics, KMeansParams, TRUTH_INPUT};
use super::{Kind, MetricSpec, OpError, OpSpec, OutputSpec, StageCtx, StageKind};
use crate::artifact::{Features, Labels, LabelsMeta, Metrics, Split};
use crate::cluster;
use crate::config::param_docs::{self, ParamDoc};
use crate::config::params::{ParamError, Params};
use crate::rng::derive_seed;

/// Parameters of `per_label_kmeans` (those of `kmeans`, with `k` the total).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct PerLabelParams(pub KMeansParams);

impl Params for PerLabelParams {
    fn validate(&self) -> Result<(), ParamError> {
        self.0.validate()
    }

    fn docs() -> Vec<ParamDoc> {
        let mut docs = param_docs::describe::<Self>(&Self::fields());
        // `kmeans`'s parameters, but its `k` is shared out among the labels here.
        if let Some(k) = docs.iter_mut().find(|d| d.name == "k") {
            k.doc = "Clusters in all, shared out among the labels with points in proportion to the square root of \
                     their counts (each label at least 1, at most one per point)."
                .to_string();
        }
        docs
    }
}

/// Clusters per label: `k_l` proportional to `sqrt(n_l)`, `1 <= k_l <= n_l` for every label
/// with points (0 for labels without), summing to `k`. Water-filling: labels whose share falls
/// outside the bounds are fixed at the bound and the rest re-shared; then the shares are floored
/// and the leftover units go to the largest fractional parts (ties: lower label first).
pub fn allocate(counts: &[usize], k: usize) -> Result<Vec<usize>, String> {
    let present: Vec<usize> = (0..counts.len()).filter(|&l| counts[l] > 0).collect();
    let total: usize = counts.iter().sum();
    if k < present.len() || k > total {
        return Err(format!(
            "k = {k} cannot give each of the {} labels with points at least 1 cluster and at most one per point \
             ({total} points); use {} <= k <= {total}",
            present.len(),
            present.len()
        ));
    }
    let mut fixed: Vec<Option<usize>> = vec![None; counts.len()];
    let mut share = vec![0f64; counts.len()];
    loop {
        let budget = (k - fixed.iter().flatten().sum::<usize>()) as f64;
        let free: Vec<usize> = present.iter().copied().filter(|&l| fixed[l].is_none()).collect();
        let weight: f64 = free.iter().map(|&l| (counts[l] as f64).sqrt()).sum();
        for &l in &free {
            share[l] = budget * (counts[l] as f64).sqrt() / weight;
        }
        let low: Vec<usize> = free.iter().copied().filter(|&l| share[l] < 1.0).collect();
        let high: Vec<usize> = free.iter().copied().filter(|&l| share[l] > counts[l] as f64).collect();
        // Fix one side at a time: fixing the low side frees budget that may cure the high side.
        let (fix, value): (Vec<usize>, fn(usize) -> usize) = if !low.is_empty() {
            (low, |_| 1)
        } else if !high.is_empty() {
            (high, |n| n)
        } else {
            break;
        };
        for l in fix {
            fixed[l] = Some(value(counts[l]));
        }
        if present.iter().all(|&l| fixed[l].is_some()) {
            break;
        }
    }
    let mut out: Vec<usize> = (0..counts.len())
        .map(|l| match fixed[l] {
            Some(v) => v,
            None if counts[l] == 0 => 0,
            None => (share[l].floor() as usize).clamp(1, counts[l]),
        })
        .collect();
    // Leftover units go to free labels by fractional part, then to any label below its cap.
    let mut order: Vec<usize> = present.iter().copied().filter(|&l| fixed[l].is_none()).collect();
    order.sort_by(|&a, &b| {
        let (fa, fb) = (share[a] - share[a].floor(), share[b] - share[b].floor());
        fb.partial_cmp(&fa).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b))
    });
    order.extend(present.iter().copied().filter(|&l| fixed[l].is_some()));
    let mut left = k as isize - out.iter().sum::<usize>() as isize;
    while left != 0 {
        let before = left;
        for &l in &order {
            if left > 0 && out[l] < counts[l] {
                out[l] += 1;
                left -= 1;
            } else if left < 0 && out[l] > 1 {
                out[l] -= 1;
                left += 1;
            }
        }
        if left == before {
            return Err(format!("could not share k = {k} over {counts:?}"));
        }
    }
    Ok(out)
}

/// Rows `idx` of a row-major `[_, d]` matrix.
fn rows(x: &[f32], d: usize, idx: &[usize]) -> Vec<f32> {
    idx.iter().flat_map(|&i| x[i * d..(i + 1) * d].iter().copied()).collect()
}

/// What clustering each label on its own made.
struct PerLabel {
    /// Each split's globally numbered cluster ids, row for row.
    ids: [Vec<u32>; 2],
    /// Clusters in all (a label without points still takes one id).
    clusters: u32,
    /// The train rows' total squared distance to their cluster's centroid.
    inertia: f64,
}

/// Clusters the rows of each label `l` (`members[split][l]`, indices into `splits[split]`'s
/// `d`-wide rows) into `ks[l]` clusters fitted on its train rows; `tick` once per label.
fn cluster_each_label(
    splits: [&[f32]; 2],
    d: usize,
    members: &[Vec<Vec<usize>>; 2],
    ks: &[usize],
    p: &KMeansParams,
    tick: &mut dyn FnMut(),
) -> Result<PerLabel, OpError> {
    let mut ids = [0, 1].map(|s| vec![0u32; splits[s].len() / d.max(1)]);
    let (mut offset, mut inertia) = (0u32, 0.0);
    for (l, &kl) in ks.iter().enumerate() {
        if kl >= 2 {
            let cfg = p.config(kl, derive_seed(p.seed, "label", l as u64));
            let train_rows = rows(splits[0], d, &members[0][l]);
            let model = cluster::fit(&train_rows, members[0][l].len(), d, &cfg, &mut |_, _| {})?;
            for (s, x) in splits.into_iter().enumerate() {
                let idx = &members[s][l];
                let (found, e) = cluster::assign(&model, &rows(x, d, idx), idx.len())?;
                if s == 0 {
                    inertia += e;
                }
                idx.iter().zip(found).for_each(|(&i, c)| ids[s][i] = offset + c);
            }
        } else {
            // One cluster (or a label without training points): every point gets it, and
            // its rows' spread about their mean is that cluster's share of the inertia.
            let idx = &members[0][l];
            inertia += cluster::spread(&rows(splits[0], d, idx), idx.len(), d, p.normalize)?;
            for s in 0..2 {
                members[s][l].iter().for_each(|&i| ids[s][i] = offset);
            }
        }
        offset += kl.max(1) as u32;
        tick();
    }
    Ok(PerLabel { ids, clusters: offset, inertia })
}

/// The `per_label_kmeans` op.
pub struct PerLabelKMeans;

impl StageKind for PerLabelKMeans {
    type Params = PerLabelParams;
    const JOB: super::JobShape = super::JobShape::job(2, 8, 0, 4 * 60);
    const SPEC: &'static OpSpec = &OpSpec {
        name: "per_label_kmeans",
        // 2: the fused nearest-centroid kernel sums dot products in another order (near ties may flip).
        // 3: centroid sums updated by the rows that changed cluster instead of summed afresh
        //    (f64 rounding may differ in the last bits).
        // 4: `inertia` is the total squared distance over every label, as `kmeans` writes it
        //    (it was each label's total weighted by its size, over the points, and left out the
        //    labels of one cluster); a cluster of identical rows is no longer split for an empty one.
        // 5: no `test_purity` or `test_nmi`: the test split's ids are read from its labels, so
        //    against the clean test labels they scored 1.0 whatever the features.
        // 6: with `truth`, the train split's `ami` (adjusted mutual information) too.
        version: 6,
        summary: "k-means within each label (k_l ~ sqrt(n_l), summing to k): the per-label clustering baseline",
        inputs: &[
            super::FEATURES_INPUT,
            super::labels_input("the labels whose points are clustered separately"),
            TRUTH_INPUT,
        ],
        outputs: &[
            OutputSpec { name: "labels", kind: Kind::Labels, doc: "globally unique cluster ids of every split" },
            OutputSpec {
                name: "metrics",
                kind: Kind::Metrics,
                doc: "k_l per label, inertia (the total squared distance, as `kmeans`'s), the train split's purity/NMI/AMI",
            },
        ],
        // Purity, NMI and AMI only with the `truth` input, as `kmeans`'s (without it the metrics
        // are those of version 3, so no bump).
        metrics: &[
            MetricSpec::always("clusters"),
            MetricSpec::always("inertia"),
            MetricSpec::with_input("purity", "truth"),
            MetricSpec::with_input("nmi", "truth"),
            MetricSpec::with_input("ami", "truth"),
        ],
    };

    fn facts(&self, PerLabelParams(p): &PerLabelParams, inputs: &InputFacts) -> Result<OutputFacts, ParamError> {
        // Only the upper bound is sure: the lower one counts the labels that have points.
        facts::within_train_rows(inputs, "features", ("k", p.k), "cluster", "cluster more data")?;
        facts::same_rows(inputs, "features", "labels", &[0, 1])?;
        facts::plain_labels(inputs, "labels", "cluster within")?;
        facts::plain_labels(inputs, "truth", "score the clusters' purity against")?;
        // How many clusters each label gets depends on how many points it has: classes unknown.
        Ok(OutputFacts::from([("labels".to_string(), Facts::rows_of(inputs.get("features")))]))
    }

    fn run(&self, PerLabelParams(p): PerLabelParams, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let feats = Features::load_any(&ctx.input("features")?.dir)?;
        let labels = Labels::load(&ctx.input("labels")?.dir)?;
        let d = feats.meta.dim;
        let mut members: [Vec<Vec<usize>>; 2] = Default::default();
        for (s, split) in Split::ALL.into_iter().enumerate() {
            let n = feats.count(split);
            if labels.split(split).len() != n {
                return Err(OpError::Invalid(format!(
                    "{} {} labels for {n} feature rows",
                    labels.split(split).len(),
                    split.as_str()
                )));
            }
            members[s] = vec![Vec::new(); labels.meta.num_classes];
            for (i, &l) in labels.split(split).iter().enumerate() {
                members[s]
                    .get_mut(l as usize)
                    .ok_or_else(|| OpError::Invalid(format!("label {l} out of range")))?
                    .push(i);
            }
        }
        let counts: Vec<usize> = members[0].iter().map(Vec::len).collect();
        let ks = allocate(&counts, p.k).map_err(OpError::Invalid)?;
        ctx.progress.begin("labels", counts.len() as u64);
        let progress = &mut ctx.progress;
        let PerLabel { ids: [train, test], clusters, inertia } =
            cluster_each_label([&feats.train, &feats.test], d, &members, &ks, &p, &mut || progress.inc(1))?;
        let mut metrics = Metrics::default();
        metrics.values.insert("clusters".into(), clusters as f64);
        metrics.values.insert("inertia".into(), inertia);
        metrics.details = serde_json::json!({"k_per_label": ks, "points_per_label": counts});
        truth_metrics(ctx, &train, &test, false, &mut metrics)?;
        let meta = LabelsMeta {
            num_classes: clusters as usize,
            class_names: Vec::new(),
            source: format!("per-label kmeans k={} on {}", p.k, feats.meta.source),
            tag_classes: Vec::new(),
        };
        Labels { meta, train, test, tags: None }.save(&ctx.output_dir("labels"))?;
        metrics.save(&ctx.output_dir("metrics")).map_err(OpError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_l_follows_sqrt_n_l_and_sums_to_k() {
        // sqrt: 10, 20, 30, 40 -> 2, 4, 6, 8 of 20.
        assert_eq!(allocate(&[100, 400, 900, 1600], 20).unwrap(), vec![2, 4, 6, 8]);
        for k in [6, 7, 13, 50, 99, 300] {
            let counts = [100, 400, 900, 1600, 3, 0, 57];
            let ks = allocate(&counts, k).unwrap();
            assert_eq!(ks.iter().sum::<usize>(), k, "k = {k}: {ks:?}");
            for (l, (&kl, &n)) in ks.iter().zip(&counts).enumerate() {
                if n == 0 {
                    assert_eq!(kl, 0);
                } else {
                    assert!((1..=n).contains(&kl), "label {l}: {kl} of {n}");
                }
            }
            // Ordering by sqrt(n): more points never get fewer clusters.
            assert!(ks[0] <= ks[1] && ks[1] <= ks[2] && ks[2] <= ks[3], "{ks:?}");
        }
        // Against the ideal share for uncapped labels: within one cluster.
        let counts = [100usize, 400, 900, 1600];
        let ks = allocate(&counts, 55).unwrap();
        for (kl, n) in ks.iter().zip(counts) {
            let ideal = 55.0 * (n as f64).sqrt() / 100.0;
            assert!((*kl as f64 - ideal).abs() < 1.0, "{ks:?}");
        }
    }

    /// The inertia is the train rows' total squared distance to their own cluster's centroid,
    /// summed over every label, those of one cluster included: what `kmeans` writes.
    #[test]
    fn the_inertia_is_the_total_over_every_cluster() {
        let d = 2;
        // Label 0: two pairs far apart (two clusters); label 1: three points (one cluster).
        let train = [0.0, 0.0, 0.0, 2.0, 10.0, 0.0, 10.0, 2.0, 5.0, 5.0, 5.0, 7.0, 5.0, 9.0];
        let test = [0.0, 1.0, 5.0, 8.0];
        let members = [vec![vec![0, 1, 2, 3], vec![4, 5, 6]], vec![vec![0], vec![1]]];
        let p = KMeansParams {
            k: 3,
            iterations: 10,
            init: super::super::kmeans::InitName::KMeansPlusPlus,
            normalize: false,
            max_points_per_centroid: None,
            seed: 1,
        };
        let mut ticks = 0;
        let each = cluster_each_label([&train, &test], d, &members, &[2, 1], &p, &mut || ticks += 1).unwrap();
        assert_eq!((each.clusters, ticks), (3, 2));
        assert_eq!(each.ids[1], vec![each.ids[0][0], 2]);
        assert_ne!(each.ids[0][0], each.ids[0][2]);
        // Pairs 2 apart: 1 + 1 each; three points 2 apart about their middle: 4 + 0 + 4.
        assert_eq!(each.inertia, 2.0 + 2.0 + 8.0);
        // Normalised, label 1's rows lie at three angles: their spread is the unit vectors'.
        let unit = |x: f64, y: f64| [x / x.hypot(y), y / x.hypot(y)];
        let rows: Vec<[f64; 2]> = [(5.0, 5.0), (5.0, 7.0), (5.0, 9.0)].map(|(x, y)| unit(x, y)).to_vec();
        let mean = [0, 1].map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / 3.0);
        let expected: f64 = rows.iter().map(|r| (r[0] - mean[0]).powi(2) + (r[1] - mean[1]).powi(2)).sum();
        let normed = KMeansParams { normalize: true, ..p };
        let one = [vec![vec![], vec![4, 5, 6]], vec![vec![], vec![1]]];
        let each = cluster_each_label([&train, &test], d, &one, &[0, 1], &normed, &mut || {}).unwrap();
        assert!((each.inertia - expected).abs() < 1e-6, "{} against {expected}", each.inertia);
    }

    #[test]
    fn caps_are_respected_and_infeasible_k_is_refused() {
        assert_eq!(allocate(&[1, 10_000], 5).unwrap(), vec![1, 4]);
        assert_eq!(allocate(&[2, 2, 100], 6).unwrap().iter().sum::<usize>(), 6);
        assert_eq!(allocate(&[2, 3], 5).unwrap(), vec![2, 3]);
        assert!(allocate(&[5, 5, 5], 2).unwrap_err().contains("use 3 <= k <= 15"));
        assert!(allocate(&[5, 5], 11).is_err());
    }
}
