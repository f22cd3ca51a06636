//! Claims: a directional statement of the paper turned into a computed check.
//!
//! A claim compares two series of observations (`a` against `b`) **paired within a replicate**:
//! two observations pair when they agree on every axis that neither series fixes (the replicate
//! included), so each difference shares its replicate's data subset and upstream networks. Per
//! replicate the claim reduces its paired differences to one number (its *quantity*); the
//! quantities' mean and 95 % interval decide the verdict:
//!
//! | verdict | when |
//! |---|---|
//! | holds | the whole interval lies on the expected side (of 0, of ±margin when one is given, inside ±margin for `within`) |
//! | reversed | the whole interval lies on the other side |
//! | inconclusive | otherwise, and always with one replicate or with copies (each series the same in every replicate): no honest interval exists |
//!
//! Quantities by shape: `compare` the mean difference a - b over the cells in scope; `trend` the
//! least-squares slope of a - b against a numeric axis; `contrast` the mean difference inside one
//! slice minus inside another; `order` checks each adjacent pair of a list like `compare`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::select::{self, dim_value, matches, Observation, Selector, REPLICATE, SOURCE};
use super::summary::Summary;

/// What the paper expects of the quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Positive: a above b (for `order`: each series above the next).
    Greater,
    /// Negative: a below b.
    Less,
    /// Within ±margin of zero: a and b equal up to the margin.
    Within,
    /// For `trend`: a - b grows along the axis.
    Increasing,
    /// For `trend`: a - b shrinks along the axis.
    Decreasing,
}

/// How a claim turns paired differences into one number per replicate.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// Mean of a - b over the cells in scope.
    Compare {
        /// The series expected to be compared (e.g. N_cf at K = 250).
        a: Selector,
        /// Its rival (e.g. N_pre).
        b: Selector,
    },
    /// Slope of a - b along a numeric axis.
    Trend {
        /// First series.
        a: Selector,
        /// Second series.
        b: Selector,
        /// The numeric axis, e.g. `p`.
        along: String,
    },
    /// Mean a - b inside one slice minus inside another.
    Contrast {
        /// First series.
        a: Selector,
        /// Second series.
        b: Selector,
        /// The slice where the gap is expected larger (e.g. the fine-grained target).
        inside: Selector,
        /// The slice it is compared with.
        than: Selector,
    },
    /// Each adjacent pair of the list compared like `Compare`.
    Order {
        /// The series, in the expected order.
        series: Vec<Selector>,
    },
}

/// A claim ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// How the quantity is computed.
    pub shape: Shape,
    /// Where the series are compared: observations must meet every condition on the axes they carry.
    pub scope: Selector,
    /// The expected direction.
    pub expect: Expect,
    /// For `within`: the half-width of the band counted as equal; for the other expectations the
    /// threshold the quantity must clear (+margin for greater/increasing, -margin for
    /// less/decreasing), 0 by default.
    pub margin: f64,
}

/// The outcome of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The interval lies entirely on the expected side.
    Holds,
    /// The interval lies entirely on the other side.
    Reversed,
    /// The interval straddles the boundary.
    Inconclusive,
    /// Only one replicate: no interval, no verdict.
    OneReplicate,
    /// Every series gave the same value in every replicate: nothing the seed draws moves them
    /// (an L-BFGS probe on fixed features, say), so the replicates are copies, not a sample, and
    /// the zero-width interval they make is no evidence.
    Identical,
    /// The per-replicate quantity came out the same in every replicate while the series
    /// themselves vary (a tie of quantised metrics: top-1 moves in steps of 100/N), at fewer
    /// replicates than the exact sign-flip test needs ([`NO_SPREAD_DECIDES_FROM`]). Its
    /// zero-width interval estimates no spread, and a t test on it gives p = 0: at n = 2 ties
    /// alone made a true null hold in about 1 check of 25.
    NoSpread,
}

impl Verdict {
    /// As the verdict tables print it.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::Reversed => "reversed",
            Verdict::Inconclusive => "inconclusive",
            Verdict::OneReplicate => "inconclusive (one replicate)",
            Verdict::Identical => "inconclusive (identical replicates)",
            Verdict::NoSpread => "inconclusive (no spread in the differences)",
        }
    }
}

/// One comparison's numbers: the per-replicate quantities and their summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// What was computed, e.g. `mean of a - b over 6 cells`.
    pub what: String,
    /// Replicate value (`null` without replicates) to its quantity.
    pub per_replicate: Vec<(Json, f64)>,
    /// Their summary.
    pub summary: Summary,
    /// The verdict on this comparison alone.
    pub verdict: Verdict,
    /// Replicates left out for missing cells, in numeric order.
    pub left_out: Vec<String>,
}

/// A claim's result: one comparison, or one per adjacent pair for `order`.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The overall verdict.
    pub verdict: Verdict,
    /// The comparisons it rests on.
    pub parts: Vec<Measured>,
}

/// Why a claim cannot be evaluated on the observations at hand.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClaimError {
    /// A series selects nothing inside the scope.
    #[error("series {series} ({selector}) matches no instance{scope}")]
    NoMatch {
        /// `a`, `b`, or `series[i]`.
        series: String,
        /// The selector, described.
        selector: String,
        /// ` where ...`, or empty.
        scope: String,
    },
    /// The two series have no cell in common.
    #[error("series {a} and {b} share no cell to compare (no pair agrees on {dims})")]
    NoPairs {
        /// First series name.
        a: String,
        /// Second series name.
        b: String,
        /// The dimensions pairs must agree on.
        dims: String,
    },
    /// A series has several observations for one cell.
    #[error(
        "series {series} has {count} instances for one cell ({cell}); they differ in {differ}: fix it in the series, \
         or name it in the claim (`where`, `each`, `along`, `in`/`than`) to compare at each of its values"
    )]
    Ambiguous {
        /// The series.
        series: String,
        /// How many.
        count: usize,
        /// The cell.
        cell: String,
        /// The dimensions in which they differ.
        differ: String,
    },
    /// A trend needs two distinct numeric values along its axis.
    #[error("a trend along `{along}` needs at least two numeric values of it in scope, found {found}")]
    FlatTrend {
        /// The axis.
        along: String,
        /// What was found.
        found: String,
    },
    /// Every replicate lacks some cell the others have: no two are comparable.
    #[error("no replicate holds all {cells} cells of the comparison (replicates {replicates} each lack some)")]
    NoCompleteReplicate {
        /// The cells over all replicates.
        cells: usize,
        /// The replicates.
        replicates: String,
    },
    /// A contrast slice holds no pair.
    #[error("the `{slice}` slice ({selector}) holds no compared cell")]
    EmptySlice {
        /// `in` or `than`.
        slice: String,
        /// The slice, described.
        selector: String,
    },
}

/// Axis values a pair agrees on (the replicate included).
type Axes = BTreeMap<String, Json>;

/// One paired difference a - b with the axes its two observations share.
type Gap = (Axes, f64);

/// Differences a - b of one pairing.
struct Pairs {
    gaps: Vec<Gap>,
    /// Replicates left out for lacking cells the others have.
    left_out: Vec<String>,
}

/// Evaluates `claim` on `obs`.
pub fn evaluate<'a>(claim: &Claim, obs: impl IntoIterator<Item = &'a Observation>) -> Result<Outcome, ClaimError> {
    let in_scope: Vec<&Observation> = obs.into_iter().filter(|o| select::within(o, &claim.scope)).collect();
    let mut named: BTreeSet<String> = claim.scope.keys().cloned().collect();
    match &claim.shape {
        Shape::Trend { along, .. } => {
            named.insert(along.clone());
        }
        Shape::Contrast { inside, than, .. } => named.extend(inside.keys().chain(than.keys()).cloned()),
        Shape::Compare { .. } | Shape::Order { .. } => {}
    }
    let tie = tie_tolerance(&in_scope, claim);
    let parts = match &claim.shape {
        Shape::Compare { a, b } => {
            let p = pair(("a", a), ("b", b), &in_scope, &claim.scope, &named)?;
            vec![measure(format!("mean of a - b {}", over(&p)), per_replicate_mean(&p.gaps), claim, &p.left_out, tie)]
        }
        Shape::Trend { a, b, along } => {
            let p = pair(("a", a), ("b", b), &in_scope, &claim.scope, &named)?;
            let groups = group_by_replicate(&p.gaps);
            // Each replicate's slope needs two points of its own: values spread over replicates
            // (along the replicate index itself, say) give none.
            if groups.is_empty() {
                return Err(ClaimError::FlatTrend { along: along.clone(), found: "none".into() });
            }
            for (r, gaps) in &groups {
                let xs: BTreeSet<String> = gaps
                    .iter()
                    .filter_map(|(ax, _)| ax.get(along).and_then(Json::as_f64))
                    .map(|x| x.to_string())
                    .collect();
                if xs.len() < 2 {
                    let within =
                        if r.is_null() { String::new() } else { format!(" within replicate {}", select::text(r)) };
                    // `{}` read as a placeholder left unfilled: say "none".
                    // "found 0" read as a count: name the one value.
                    let values = match Vec::from_iter(xs).as_slice() {
                        [] => "none".to_string(),
                        [one] => format!("only {along} = {one}"),
                        many => many.join(", "),
                    };
                    return Err(ClaimError::FlatTrend { along: along.clone(), found: format!("{values}{within}") });
                }
            }
            let per = groups.into_iter().map(|(r, gaps)| (r, slope(&gaps, along))).collect();
            vec![measure(format!("slope of a - b per unit of {along} {}", over(&p)), per, claim, &p.left_out, tie)]
        }
        Shape::Contrast { a, b, inside, than } => {
            // Only the two slices' cells enter: a replicate lacking a cell outside both (p = 50
            // in a contrast of p = 100 against p = 0) has all the contrast needs and stays in.
            let sliced: Vec<&Observation> =
                in_scope.iter().copied().filter(|o| select::within(o, inside) || select::within(o, than)).collect();
            let p = pair(("a", a), ("b", b), &sliced, &claim.scope, &named)?;
            let split = |sel: &Selector, slice: &str| -> Result<Vec<Gap>, ClaimError> {
                let part: Vec<_> = p
                    .gaps
                    .iter()
                    .filter(|(ax, _)| {
                        let probe = Observation { source: String::new(), axes: ax.clone(), value: 0.0 };
                        matches(&probe, sel)
                    })
                    .cloned()
                    .collect();
                if part.is_empty() {
                    return Err(ClaimError::EmptySlice { slice: slice.into(), selector: select::describe(sel) });
                }
                Ok(part)
            };
            let inner = per_replicate_mean(&split(inside, "in")?);
            let outer: BTreeMap<String, f64> =
                per_replicate_mean(&split(than, "than")?).into_iter().map(|(r, v)| (r.to_string(), v)).collect();
            let per = inner.into_iter().filter_map(|(r, v)| outer.get(&r.to_string()).map(|o| (r, v - o))).collect();
            vec![measure(
                format!(
                    "(a - b in {}) - (a - b in {}){}",
                    select::describe(inside),
                    select::describe(than),
                    left_out_note(&p.left_out)
                ),
                per,
                claim,
                &p.left_out,
                tie,
            )]
        }
        Shape::Order { series } => {
            let mut parts = Vec::new();
            for (i, w) in series.windows(2).enumerate() {
                let (na, nb) = (format!("series[{i}]"), format!("series[{}]", i + 1));
                let p = pair((&na, &w[0]), (&nb, &w[1]), &in_scope, &claim.scope, &named)?;
                let mut step = measure(
                    format!("{} - {} {}", select::describe(&w[0]), select::describe(&w[1]), over(&p)),
                    per_replicate_mean(&p.gaps),
                    claim,
                    &p.left_out,
                    tie,
                );
                // A step between copies is no test, as a compare between them is none, though
                // the other series of the order vary.
                if replicates_are_copies(&in_scope, &[&w[0], &w[1]]) {
                    step.verdict = Verdict::Identical;
                }
                parts.push(step);
            }
            parts
        }
    };
    if replicates_are_copies(&in_scope, &series_of(&claim.shape)) {
        let parts = parts.into_iter().map(|m| Measured { verdict: Verdict::Identical, ..m }).collect();
        return Ok(Outcome { verdict: Verdict::Identical, parts });
    }
    let verdict = overall(&parts);
    Ok(Outcome { verdict, parts })
}

/// The series a claim compares, in its order.
fn series_of(shape: &Shape) -> Vec<&Selector> {
    match shape {
        Shape::Compare { a, b } | Shape::Trend { a, b, .. } | Shape::Contrast { a, b, .. } => vec![a, b],
        Shape::Order { series } => series.iter().collect(),
    }
}

/// Whether every cell of these series holds one value however many replicates measured it,
/// with some cell measured twice or more: the replicates repeat one computation.
fn replicates_are_copies(obs: &[&Observation], series: &[&Selector]) -> bool {
    let mut cells: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for o in obs.iter().filter(|o| series.iter().any(|s| matches(o, s))) {
        let axes: Vec<_> = o.axes.iter().filter(|(k, _)| k.as_str() != REPLICATE).collect();
        cells.entry(format!("{}\u{0}{axes:?}", o.source)).or_default().push(o.value);
    }
    cells.values().any(|v| v.len() >= 2) && cells.values().all(|v| v.iter().all(|x| *x == v[0]))
}

/// `over N cells` (per replicate), naming the replicates left out for missing cells.
fn over(p: &Pairs) -> String {
    let reps: BTreeSet<String> = p.gaps.iter().map(|(ax, _)| replicate_of(ax)).collect();
    let cells = p.gaps.len() / reps.len().max(1);
    format!("over {cells} cells{}", left_out_note(&p.left_out))
}

/// `; replicate 1 left out (cells missing)`, or nothing when none was.
pub fn left_out_note(left_out: &[String]) -> String {
    match left_out {
        [] => String::new(),
        [one] => format!("; replicate {one} left out (cells missing)"),
        many => format!("; replicates {} left out (cells missing)", many.join(", ")),
    }
}

/// A key that sorts replicate values as numbers: replicate 10 after replicate 9.
fn numeric_order(r: &str) -> String {
    format!("{r:>20}")
}

fn replicate_of(axes: &Axes) -> String {
    axes.get(REPLICATE).map_or("-".into(), select::text)
}

/// Keeps the replicates that hold every cell of the pairing. A replicate short of some cells (a
/// metric one of its instances did not write) would average other cells than the rest, and a
/// trend or contrast would lose its shape in it; returns the replicates left out.
fn complete_replicates(gaps: Vec<Gap>) -> Result<(Vec<Gap>, Vec<String>), ClaimError> {
    let cell = |axes: &Axes| {
        let mut rest = axes.clone();
        rest.remove(REPLICATE);
        format!("{rest:?}")
    };
    let all: BTreeSet<String> = gaps.iter().map(|(ax, _)| cell(ax)).collect();
    let mut held: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for (ax, _) in &gaps {
        let r = replicate_of(ax);
        held.entry(numeric_order(&r)).or_insert_with(|| (r, BTreeSet::new())).1.insert(cell(ax));
    }
    let short: Vec<String> = held.values().filter(|(_, c)| c.len() < all.len()).map(|(r, _)| r.clone()).collect();
    if short.is_empty() {
        return Ok((gaps, short));
    }
    if short.len() == held.len() {
        return Err(ClaimError::NoCompleteReplicate { cells: all.len(), replicates: short.join(", ") });
    }
    let kept = gaps.into_iter().filter(|(ax, _)| !short.contains(&replicate_of(ax))).collect();
    Ok((kept, short))
}

/// `order` holds when every pair holds, is reversed when any pair is reversed, and tells
/// nothing (identical replicates) when a pair is between copies and none is reversed.
fn overall(parts: &[Measured]) -> Verdict {
    if parts.iter().any(|p| p.verdict == Verdict::OneReplicate) {
        Verdict::OneReplicate
    } else if parts.iter().any(|p| p.verdict == Verdict::Reversed) {
        Verdict::Reversed
    } else if parts.iter().any(|p| p.verdict == Verdict::Identical) {
        Verdict::Identical
    } else if parts.iter().all(|p| p.verdict == Verdict::Holds) {
        Verdict::Holds
    } else if parts.iter().all(|p| p.verdict == Verdict::NoSpread) {
        Verdict::NoSpread
    } else {
        Verdict::Inconclusive
    }
}

/// The spread below which a claim's per-replicate quantities count as tied: a billionth of its
/// series' largest value (per unit of `along` for a trend). The same tie measured at different
/// values differs in its last bits (81.05 - 80.0 = 1.0499999999999972, 60.1 - 59.05 =
/// 1.0500000000000043), which left a spread of 1e-15 and p = 0 where there is none to
/// estimate; a real spread of replicates is orders of magnitude wider (top-1 moves in steps of
/// 100/N, N at most millions).
fn tie_tolerance(in_scope: &[&Observation], claim: &Claim) -> f64 {
    let series = series_of(&claim.shape);
    let mine: Vec<&&Observation> = in_scope.iter().filter(|o| series.iter().any(|s| matches(o, s))).collect();
    let largest = mine.iter().map(|o| o.value.abs()).filter(|v| v.is_finite()).fold(0.0, f64::max);
    let per_unit = match &claim.shape {
        Shape::Trend { along, .. } => {
            let xs: Vec<f64> = mine.iter().filter_map(|o| o.axes.get(along).and_then(Json::as_f64)).collect();
            let span =
                xs.iter().copied().fold(f64::NEG_INFINITY, f64::max) - xs.iter().copied().fold(f64::INFINITY, f64::min);
            if span.is_finite() && span > 0.0 {
                span
            } else {
                1.0
            }
        }
        _ => 1.0,
    };
    1e-9 * largest / per_unit
}

fn measure(what: String, per_replicate: Vec<(Json, f64)>, claim: &Claim, left_out: &[String], tie: f64) -> Measured {
    let values: Vec<f64> = per_replicate.iter().map(|(_, v)| *v).collect();
    let mut summary = Summary::of(&values);
    if summary.sd <= tie && summary.mean.is_finite() {
        // Equal but for rounding: no spread, as bit-identical values have.
        summary.sd = 0.0;
        summary.half_width = summary.half_width.map(|_| 0.0);
        // And a value within rounding of a line the claim is decided against sits on it, on
        // neither side: a true tie measured as 1.0499999999999996 against a margin of 1.05, or
        // as -1.8e-15 against 0 (replicates of +-3.6e-15), must not decide a direction.
        for line in [0.0, claim.margin, -claim.margin] {
            if (summary.mean - line).abs() <= tie {
                summary.mean = line;
            }
        }
    }
    let verdict = match decide(&summary, claim.expect, claim.margin) {
        Verdict::Holds | Verdict::Reversed if without_spread(&summary) && summary.n < NO_SPREAD_DECIDES_FROM => {
            Verdict::NoSpread
        }
        v => v,
    };
    Measured { what, per_replicate, summary, verdict, left_out: left_out.to_vec() }
}

/// Replicates from which a quantity the same in every one decides a claim. Without spread the
/// t interval has nothing to stand on, so the exact sign-flip test decides: under the null (a
/// quantity symmetric about the line) the n signs are fair coins, and all n on one side has
/// one-sided p = 2^-n, below the interval's 2.5 % from n = 6 (1/64).
pub const NO_SPREAD_DECIDES_FROM: usize = 6;

/// Whether a summary of two or more finite values has no spread at all.
pub fn without_spread(s: &Summary) -> bool {
    s.n >= 2 && s.sd == 0.0 && s.mean.is_finite()
}

/// The verdict of a summary against an expectation.
pub fn decide(s: &Summary, expect: Expect, margin: f64) -> Verdict {
    let Some((lo, hi)) = s.interval() else { return Verdict::OneReplicate };
    // A non-finite mean or spread is no evidence; a bound past the largest float is (only the
    // other bound decides a directional claim: [1.49e308, inf] clears 0).
    if !(s.mean.is_finite() && s.sd.is_finite()) || lo.is_nan() || hi.is_nan() {
        return Verdict::Inconclusive;
    }
    // A directional claim with a margin ("a beats b by more than m") is decided against m as
    // the others are against 0: its interval must clear it, or lie wholly short of it to refute it.
    match expect {
        Expect::Greater | Expect::Increasing if lo > margin => Verdict::Holds,
        Expect::Greater | Expect::Increasing if hi < margin => Verdict::Reversed,
        Expect::Less | Expect::Decreasing if hi < -margin => Verdict::Holds,
        Expect::Less | Expect::Decreasing if lo > -margin => Verdict::Reversed,
        Expect::Within if lo > -margin && hi < margin => Verdict::Holds,
        Expect::Within if lo > margin || hi < -margin => Verdict::Reversed,
        _ => Verdict::Inconclusive,
    }
}

/// Pairs the observations of two series inside the scope.
fn pair(
    a: (&str, &Selector),
    b: (&str, &Selector),
    obs: &[&Observation],
    scope: &Selector,
    named: &BTreeSet<String>,
) -> Result<Pairs, ClaimError> {
    let scope_text = if scope.is_empty() { String::new() } else { format!(" where {}", select::describe(scope)) };
    let side = |(name, sel): (&str, &Selector)| -> Result<Vec<&Observation>, ClaimError> {
        let found: Vec<&Observation> = obs.iter().copied().filter(|o| matches(o, sel)).collect();
        if found.is_empty() {
            return Err(ClaimError::NoMatch {
                series: name.into(),
                selector: select::describe(sel),
                scope: scope_text.clone(),
            });
        }
        Ok(found)
    };
    let (oa, ob) = (side(a)?, side(b)?);
    // Pairs agree on every dimension both series carry and neither fixes. A dimension the claim
    // names (in `where`, `along`, `in`, `than`, `each`) that only one series carries spreads the
    // other over it: a clean-label baseline without `p` pairs with the noisy series at each `p`.
    // Any other dimension only one series carries must be fixed in that series.
    let fixed: BTreeSet<&str> = a.1.keys().chain(b.1.keys()).map(String::as_str).chain([SOURCE]).collect();
    let carried = |list: &[&Observation]| -> BTreeSet<String> {
        let mut dims: Option<BTreeSet<String>> = None;
        for o in list {
            let mine: BTreeSet<String> = o.axes.keys().cloned().collect();
            dims = Some(match dims {
                None => mine,
                Some(d) => d.intersection(&mine).cloned().collect(),
            });
        }
        dims.unwrap_or_default()
    };
    let (ca, cb) = (carried(&oa), carried(&ob));
    let free = |d: &&String| !fixed.contains(d.as_str());
    let dims: Vec<String> = ca.intersection(&cb).filter(free).cloned().collect();
    // So does the replicate: a series computed once for every replicate (a `command` with
    // `seeded = false`) pairs with each replicate of the other.
    let spread = |own: &BTreeSet<String>, other: &BTreeSet<String>| -> Vec<String> {
        own.difference(other).filter(free).filter(|d| named.contains(*d) || *d == REPLICATE).cloned().collect()
    };
    // Per series: each cell's pairing key (the shared dimensions), its axes and its value.
    let index = |name: &str, list: &[&Observation], extra: &[String]| -> Result<Vec<(String, Gap)>, ClaimError> {
        let own: Vec<String> = dims.iter().chain(extra).cloned().collect();
        let mut by_cell: BTreeMap<String, Vec<&Observation>> = BTreeMap::new();
        for o in list {
            by_cell.entry(cell_key(o, &own)).or_default().push(o);
        }
        let mut out = Vec::new();
        for (cell, group) in by_cell {
            if group.len() > 1 {
                return Err(ClaimError::Ambiguous {
                    series: name.into(),
                    count: group.len(),
                    cell: if cell.is_empty() { "the only cell".into() } else { cell },
                    differ: differing_dims(&group),
                });
            }
            let o = group[0];
            let axes: BTreeMap<String, Json> =
                own.iter().filter_map(|d| o.axes.get(d).map(|v| (d.clone(), v.clone()))).collect();
            out.push((cell_key(o, &dims), (axes, o.value)));
        }
        Ok(out)
    };
    let ia = index(a.0, &oa, &spread(&ca, &cb))?;
    let mut ib: BTreeMap<String, Vec<Gap>> = BTreeMap::new();
    for (key, cell) in index(b.0, &ob, &spread(&cb, &ca))? {
        ib.entry(key).or_default().push(cell);
    }
    let mut gaps: Vec<Gap> = Vec::new();
    for (key, (axes_a, va)) in &ia {
        for (axes_b, vb) in ib.get(key).into_iter().flatten() {
            let axes = axes_a.iter().chain(axes_b).map(|(k, v)| (k.clone(), v.clone())).collect();
            gaps.push((axes, va - vb));
        }
    }
    if gaps.is_empty() {
        return Err(ClaimError::NoPairs {
            a: a.0.into(),
            b: b.0.into(),
            dims: if dims.is_empty() { "(nothing)".into() } else { dims.join(", ") },
        });
    }
    let (gaps, mut left_out) = complete_replicates(gaps)?;
    if dims.iter().any(|d| d == REPLICATE) {
        // A replicate that one series lacks altogether pairs nothing, so no cell count sees it:
        // it is named like a replicate short of some cells.
        let paired: BTreeSet<String> = gaps.iter().map(|(ax, _)| replicate_of(ax)).collect();
        let seen: BTreeMap<String, String> = (oa.iter().chain(&ob))
            .filter_map(|o| o.axes.get(REPLICATE))
            .map(|r| (numeric_order(&select::text(r)), select::text(r)))
            .collect();
        left_out.extend(seen.into_values().filter(|r| !paired.contains(r)));
        left_out.sort_by_key(|r| numeric_order(r));
        left_out.dedup();
    }
    Ok(Pairs { gaps, left_out })
}

fn cell_key(o: &Observation, dims: &[String]) -> String {
    dims.iter()
        .map(|d| format!("{d}={}", dim_value(o, d).map_or("-".to_string(), |v| select::text(&v))))
        .collect::<Vec<_>>()
        .join(", ")
}

fn differing_dims(group: &[&Observation]) -> String {
    let mut dims: BTreeSet<String> = group.iter().flat_map(|o| o.axes.keys().cloned()).collect();
    dims.insert(SOURCE.into());
    let differ: Vec<String> = dims
        .into_iter()
        .filter(|d| {
            let vals: BTreeSet<String> =
                group.iter().map(|o| dim_value(o, d).map_or("-".into(), |v| v.to_string())).collect();
            vals.len() > 1
        })
        .collect();
    differ.join(", ")
}

fn group_by_replicate(gaps: &[Gap]) -> Vec<(Json, Vec<Gap>)> {
    let mut groups: BTreeMap<String, (Json, Vec<Gap>)> = BTreeMap::new();
    for (axes, g) in gaps {
        let r = axes.get(REPLICATE).cloned().unwrap_or(Json::Null);
        let key = numeric_order(&select::text(&r));
        groups.entry(key).or_insert_with(|| (r, Vec::new())).1.push((axes.clone(), *g));
    }
    groups.into_values().collect()
}

fn per_replicate_mean(gaps: &[Gap]) -> Vec<(Json, f64)> {
    group_by_replicate(gaps)
        .into_iter()
        .map(|(r, list)| (r, list.iter().map(|(_, g)| g).sum::<f64>() / list.len() as f64))
        .collect()
}

/// Least-squares slope of the gap against `along`, after averaging the gaps at each value.
fn slope(gaps: &[Gap], along: &str) -> f64 {
    let mut at: BTreeMap<String, (f64, f64, usize)> = BTreeMap::new();
    for (axes, g) in gaps {
        let Some(x) = axes.get(along).and_then(Json::as_f64) else { continue };
        let e = at.entry(x.to_string()).or_insert((x, 0.0, 0));
        e.1 += g;
        e.2 += 1;
    }
    let pts: Vec<(f64, f64)> = at.values().map(|(x, s, n)| (*x, s / *n as f64)).collect();
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = pts.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = pts.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    if sxx == 0.0 {
        f64::NAN
    } else {
        sxy / sxx
    }
}
