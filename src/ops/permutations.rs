//! `permutations`: Jigsaw's permutation set as its own cached artifact, chosen by a greedy
//! maximal-Hamming-distance procedure, the minimum-distance variant of Noroozi & Favaro's (see
//! [`crate::selfsup::permutations`] for how it differs).
//!
//! The paper's Jigsaw (ResNet-50, Goyal et al.) uses P = 2000 on ImageNet; with a few thousand
//! 28x28 images and a small trunk, 2000 classes leave one or two examples per class per epoch,
//! so the CPU studies use P = 1000 (`count` in selfsup_jigsaw.toml and selfsup_multitask.toml),
//! where Noroozi & Favaro's own P sweep (their Table 3) still gets most of the transfer; the
//! greedy set's minimum Hamming distance is at least 4 for P = 1000 (5 with those files' seed).

use serde::{Deserialize, Serialize};

use super::{Kind, OpError, OpSpec, OutputSpec, StageCtx, StageKind};
use crate::artifact::{Permutations, PermutationsMeta};
use crate::config::params::{ParamError, Params};
use crate::selfsup::permutations::max_hamming_set;

/// Parameters of `permutations`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PermutationsParams {
    /// P, the number of permutations (Jigsaw classes).
    #[schemars(range(min = 2, max = 10_000))]
    pub count: usize,
    /// Seed of the first permutation and of tie breaks.
    pub seed: u64,
}

impl Params for PermutationsParams {
    fn validate(&self) -> Result<(), ParamError> {
        if !(2..=10_000).contains(&self.count) {
            return Err(ParamError::range("count", self.count, "between 2 and 10000"));
        }
        Ok(())
    }
}

/// The `permutations` op.
pub struct PermutationSet;

impl StageKind for PermutationSet {
    type Params = PermutationsParams;
    const JOB: super::JobShape = super::JobShape::IN_DRIVER;
    const SPEC: &'static OpSpec = &OpSpec {
        name: "permutations",
        version: 1,
        summary: "Jigsaw's P tile orders by greedy maximal minimum Hamming distance (a variant of Noroozi & Favaro's)",
        inputs: &[],
        outputs: &[OutputSpec { name: "permutations", kind: Kind::Permutations, doc: "[P, 9] tile orders" }],
        metrics: &[],
    };

    fn replicated(&self, _raw: &serde_json::Map<String, serde_json::Value>) -> bool {
        false
    }

    fn run(&self, p: PermutationsParams, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let (perms, min_hamming) = max_hamming_set(p.count, p.seed);
        tracing::info!("{}: {} permutations, minimum Hamming distance {min_hamming}", ctx.name, perms.len());
        let meta = PermutationsMeta {
            count: perms.len(),
            min_hamming,
            source: format!("greedy maximal Hamming distance, seed {}", p.seed),
        };
        Permutations { meta, perms }.save(&ctx.output_dir("permutations")).map_err(OpError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_out_of_range_names_the_field() {
        let e = crate::config::params::normalize::<PermutationsParams>(&serde_json::json!({"count": 1, "seed": 0}))
            .unwrap_err();
        assert_eq!(e.path, "count");
    }
}
