//! `concat`: features of several stages side by side, the multi-task input of ClusterFit (the
//! paper's supplement clusters Jigsaw and RotNet features together). It gathers every instance
//! of the named stages (so `inputs = ["pre_feats.features"]` over a `method` axis joins all
//! methods), in instance-name order; each block is L2-normalised per row first, so a method
//! with larger activations does not dominate the distances k-means sees. Replicates are not
//! joined: with `replicates = N` there are N instances, each joining one replicate's features.

use serde::{Deserialize, Serialize};

use super::facts::Fed;
use super::{
    Examples, Facts, InputFacts, InputSpec, Kind, OpError, OpSpec, OutputFacts, OutputSpec, StageCtx, StageKind,
};
use crate::artifact::{Features, FeaturesMeta, Split};
use crate::config::params::{ParamError, Params};

/// Parameters of `concat`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConcatParams {
    /// L2-normalise each block's rows before joining them.
    #[serde(default = "yes")]
    pub normalize_blocks: bool,
}

fn yes() -> bool {
    true
}

impl Params for ConcatParams {
    fn validate(&self) -> Result<(), ParamError> {
        Ok(())
    }
}

/// Joins row-major blocks `(values, dim)` with the same row count into one matrix.
pub fn join(blocks: &[(&[f32], usize)], rows: usize, normalize: bool) -> Vec<f32> {
    let total: usize = blocks.iter().map(|b| b.1).sum();
    let mut out = Vec::with_capacity(rows * total);
    for r in 0..rows {
        for &(values, d) in blocks {
            let row = &values[r * d..(r + 1) * d];
            let scale = if normalize {
                let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
                if norm > 0.0 {
                    1.0 / norm
                } else {
                    1.0
                }
            } else {
                1.0
            };
            out.extend(row.iter().map(|v| v * scale));
        }
    }
    out
}

/// The `concat` op.
pub struct Concat;

impl StageKind for Concat {
    type Params = ConcatParams;
    const JOB: super::JobShape = super::JobShape::IN_DRIVER;
    const SPEC: &'static OpSpec = &OpSpec {
        name: "concat",
        version: 1,
        summary: "joins the features of every gathered instance column-wise (multi-task clustering)",
        inputs: &[InputSpec {
            name: "inputs",
            kinds: &[Kind::Features],
            required: true,
            gather: true,
            doc: "features outputs; every instance of each named stage is joined, in instance-name order",
        }],
        outputs: &[OutputSpec { name: "features", kind: Kind::Features, doc: "[N, sum of D] f32 per split" }],
        metrics: &[],
    };
    // Joining replicate 0's features with replicate 1's would make every replicate of what
    // follows read all replicates' networks: their spread would no longer be a replicate spread.
    const GATHERS_REPLICATES: bool = false;

    fn facts(&self, _p: &ConcatParams, inputs: &InputFacts) -> Result<OutputFacts, ParamError> {
        // The same features twice would weigh one network double in the join, and count as two blocks.
        let fed = inputs.each("inputs");
        if let Some((i, twice)) = fed.iter().enumerate().find(|(i, f)| fed[..*i].iter().any(|g| g.from == f.from)) {
            return Err(ParamError::field(
                "inputs",
                format!("`{}` is joined twice (input {} repeats an earlier one)", twice.from, i + 1),
                Some("name each stage's features once".to_string()),
            ));
        }
        let mut known = inputs.each("inputs").iter().filter_map(|fed| Some((fed, fed.facts.rows?)));
        let Some((first, rows)) = known.next() else { return Ok(OutputFacts::new()) };
        if let Some((other, other_rows)) = known.find(|&(_, r)| r != rows) {
            return Err(ParamError::field(
                "inputs",
                format!(
                    "`{}` has {}/{} rows (train/test) but `{}` has {}/{}; joined features must describe the same \
                     images",
                    other.from, other_rows[0], other_rows[1], first.from, rows[0], rows[1]
                ),
                Some("join features extracted from one data set".to_string()),
            ));
        }
        let known: Vec<(&Fed, [Examples; 2])> =
            inputs.each("inputs").iter().filter_map(|fed| Some((fed, fed.facts.examples?))).collect();
        if let Some(&(first, of)) = known.first() {
            if let Some((other, _)) = known.iter().find(|(_, e)| *e != of) {
                return Err(ParamError::field(
                    "inputs",
                    format!(
                        "`{}` and `{}` have as many rows, but of other examples (another data set, subset or \
                         seed); joined features must describe the same images",
                        other.from, first.from
                    ),
                    Some("join features extracted from one data set stage".to_string()),
                ));
            }
        }
        let all = |known: fn(&Facts) -> bool| inputs.each("inputs").iter().all(|fed| known(&fed.facts));
        let rows = all(|f| f.rows.is_some()).then_some(rows);
        let examples = known.first().map(|k| k.1).filter(|_| all(|f| f.examples.is_some()));
        Ok(OutputFacts::from([("features".to_string(), Facts::rows(rows).of(examples))]))
    }

    fn run(&self, p: ConcatParams, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let mut inputs: Vec<_> = ctx.gathered("inputs").to_vec();
        inputs.sort_by(|a, b| a.instance.cmp(&b.instance));
        let feats = inputs.iter().map(|i| Features::load(&i.dir)).collect::<Result<Vec<_>, _>>()?;
        let Some(first) = feats.first() else {
            return Err(OpError::Invalid(format!("{}: nothing to join", ctx.name)));
        };
        let mut out = [Vec::new(), Vec::new()];
        for (s, split) in Split::ALL.into_iter().enumerate() {
            let rows = first.count(split);
            if let Some((i, f)) = inputs.iter().zip(&feats).find(|(_, f)| f.count(split) != rows) {
                return Err(OpError::Invalid(format!(
                    "{} split: {} has {} rows, {} has {rows}; joined features must describe the same images",
                    split.as_str(),
                    i.instance,
                    f.count(split),
                    inputs[0].instance
                )));
            }
            let blocks: Vec<(&[f32], usize)> = feats.iter().map(|f| (f.split(split), f.meta.dim)).collect();
            out[s] = join(&blocks, rows, p.normalize_blocks);
        }
        let dim = feats.iter().map(|f| f.meta.dim).sum();
        let names: Vec<&str> = inputs.iter().map(|i| i.instance.as_str()).collect();
        let [train, test] = out;
        let meta = FeaturesMeta { dim, source: format!("concat of {}", names.join(" + ")) };
        tracing::info!("{}: {} blocks, {dim} columns", ctx.name, names.len());
        Features { meta, train, test }.save(&ctx.output_dir("features")).map_err(OpError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_rows_block_by_block_with_unit_norm_blocks() {
        let a = [3.0, 4.0, 0.0, 2.0];
        let b = [1.0, 5.0];
        assert_eq!(join(&[(&a, 2), (&b, 1)], 2, false), vec![3.0, 4.0, 1.0, 0.0, 2.0, 5.0]);
        assert_eq!(join(&[(&a, 2), (&b, 1)], 2, true), vec![0.6, 0.8, 1.0, 0.0, 1.0, 1.0]);
    }
}
