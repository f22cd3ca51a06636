//! `permutations`: Jigsaw's permutation set as its own cached artifact, chosen by the greedy
//! maximal-Hamming-distance procedure (see [`crate::selfsup::permutations`]).
//!
//! The paper's Jigsaw (ResNet-50, Goyal et al.) uses P = 2000 on ImageNet; with a few thousand
//! 28x28 images and a small trunk, 2000 classes leave one or two examples per class per epoch,
//! so the CPU study uses P = 100, where Noroozi & Favaro's own P sweep (their Table 3) still gets
//! most of the transfer and the greedy set keeps a minimum Hamming distance of at least 5.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{InputSpec, Kind, Op, OpError, OutputSpec, StageCtx};
use crate::artifact::{Permutations, PermutationsMeta};
use crate::config::params::{self, ParamError, Params};
use crate::selfsup::permutations::max_hamming_set;

/// Parameters of `permutations`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermutationsParams {
    /// P, the number of permutations (Jigsaw classes).
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

impl Op for PermutationSet {
    fn name(&self) -> &'static str {
        "permutations"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "Jigsaw's P tile orders by the greedy maximal-Hamming-distance procedure (Noroozi & Favaro)"
    }
    fn inputs(&self) -> &'static [InputSpec] {
        &[]
    }
    fn outputs(&self) -> &'static [OutputSpec] {
        &[OutputSpec { name: "permutations", kind: Kind::Permutations, doc: "[P, 9] tile orders" }]
    }
    /// The permutation set is part of the pretext task's definition, shared by all replicates.
    fn replicated(&self) -> bool {
        false
    }
    fn param_fields(&self) -> &'static [&'static str] {
        params::field_names::<PermutationsParams>()
    }
    fn normalize(&self, raw: &Json) -> Result<Json, ParamError> {
        params::normalize::<PermutationsParams>(raw)
    }
    fn run(&self, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let p: PermutationsParams = ctx.params()?;
        let (perms, min_hamming) = max_hamming_set(p.count, p.seed);
        tracing::info!("{}: {} permutations, minimum Hamming distance {min_hamming}", ctx.instance.name, perms.len());
        let meta = PermutationsMeta {
            count: perms.len(),
            min_hamming,
            source: format!("greedy maximal Hamming distance, seed {}", p.seed),
        };
        Permutations { meta, perms }.save(&ctx.output_dir("permutations"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_out_of_range_names_the_field() {
        let e = params::normalize::<PermutationsParams>(&serde_json::json!({"count": 1, "seed": 0})).unwrap_err();
        assert_eq!(e.path, "count");
    }
}
