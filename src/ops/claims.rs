//! `claims`: the paper's statements as checks computed from the gathered metrics. Each claim
//! compares two series paired within a replicate (see [`crate::stats::claim`]) and gets a verdict:
//! holds, reversed or inconclusive. Writes `claims.md` and `claims.csv`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{Gathered, InputSpec, Kind, Op, OpError, OutputSpec, StageCtx};
use crate::artifact::Metrics;
use crate::config::params::{self, ParamError, Params};
use crate::config::suggest::did_you_mean;
use crate::report::{csv_line, write_atomic};
use crate::stats::claim::{Measured, Outcome};
use crate::stats::select::{parse_selector, text};
use crate::stats::{self, Claim, Condition, Expect, Observation, Selector, Shape, Summary, Verdict, SOURCE};

/// How a claim reduces its paired differences (see [`Shape`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimKind {
    /// Mean of a - b over the cells in scope.
    #[default]
    Compare,
    /// Slope of a - b along `along`.
    Trend,
    /// Gap a - b inside `in` minus inside `than`.
    Contrast,
    /// `series[0] > series[1] > ...` (or `<` with `expect = "less"`).
    Order,
}

/// A selector as written: dimension (an axis, or `source` for the stage) to a value, a list of
/// values, or `{ min = .., max = .. }`.
pub type SelectorDecl = BTreeMap<String, Json>;

/// One claim as declared under `[[stages.NAME.claims]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimDecl {
    /// A short identifier, unique within the stage.
    pub name: String,
    /// Where the paper makes the claim, e.g. "§3.2, Fig. 3".
    #[serde(default)]
    pub section: String,
    /// The claim in words.
    pub statement: String,
    /// How the check is computed.
    #[serde(default)]
    pub kind: ClaimKind,
    /// First series (compare, trend, contrast).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a: Option<SelectorDecl>,
    /// Second series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b: Option<SelectorDecl>,
    /// The series of an `order` claim, in the expected order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<SelectorDecl>,
    /// Where the series are compared.
    #[serde(default, rename = "where", skip_serializing_if = "BTreeMap::is_empty")]
    pub scope: SelectorDecl,
    /// For `trend`: the numeric axis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub along: Option<String>,
    /// For `contrast`: the slice where the gap is expected to be larger.
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub inside: Option<SelectorDecl>,
    /// For `contrast`: the slice it is compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub than: Option<SelectorDecl>,
    /// The expected direction: greater, less, within (compare, order, contrast); increasing,
    /// decreasing (trend).
    pub expect: Expect,
    /// For `within`: the band around zero counted as equal.
    #[serde(default)]
    pub margin: f64,
    /// Dimensions to split the claim by: one verdict per value (e.g. one per target).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub each: Vec<String>,
    /// The paper's own numbers for this claim, in words.
    #[serde(default)]
    pub paper: String,
    /// The metric compared, when not the stage's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
}

/// Parameters of `claims`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimsParams {
    /// Title line of the report.
    #[serde(default)]
    pub title: String,
    /// The metric compared (e.g. `top1`).
    pub metric: String,
    /// Display names of source stages (e.g. `probe_cf = "N_cf"`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The claims.
    pub claims: Vec<ClaimDecl>,
}

impl ClaimDecl {
    /// The claim in the statistics module's terms; errors name the field (`claims[i].a`).
    fn to_claim(&self, i: usize) -> Result<Claim, ParamError> {
        let at = |f: &str| format!("claims[{i}].{f}");
        let sel = |f: &str, d: &SelectorDecl| -> Result<Selector, ParamError> {
            let s = parse_selector(d)
                .map_err(|(dim, e)| ParamError::field(&at(f), format!("`{}.{dim}`: {e}", at(f)), None))?;
            if let Some(c) = s.get(SOURCE) {
                if c.literals().iter().any(|v| !v.is_string()) || matches!(c, Condition::Range { .. }) {
                    return Err(ParamError::field(&at(f), format!("`{}.source` must name stages", at(f)), None));
                }
            }
            Ok(s)
        };
        let need = |f: &str, d: &Option<SelectorDecl>| -> Result<Selector, ParamError> {
            match d {
                Some(d) => sel(f, d),
                None => Err(ParamError::field(
                    &at(f),
                    format!("claim `{}` ({}) needs `{f}`", self.name, name_of(&self.kind)),
                    Some(format!("e.g. {f} = {{ source = \"probe_cf\", k = 250 }}")),
                )),
            }
        };
        let directional = matches!(self.expect, Expect::Greater | Expect::Less | Expect::Within);
        let shape = match self.kind {
            ClaimKind::Compare => Shape::Compare { a: need("a", &self.a)?, b: need("b", &self.b)? },
            ClaimKind::Trend => {
                let along = self.along.clone().ok_or_else(|| {
                    ParamError::field(
                        &at("along"),
                        format!("claim `{}` (trend) needs `along`", self.name),
                        Some("e.g. along = \"p\"".into()),
                    )
                })?;
                Shape::Trend { a: need("a", &self.a)?, b: need("b", &self.b)?, along }
            }
            ClaimKind::Contrast => Shape::Contrast {
                a: need("a", &self.a)?,
                b: need("b", &self.b)?,
                inside: need("in", &self.inside)?,
                than: need("than", &self.than)?,
            },
            ClaimKind::Order => {
                if self.series.len() < 2 {
                    return Err(ParamError::field(
                        &at("series"),
                        format!("claim `{}` (order) needs at least two series", self.name),
                        None,
                    ));
                }
                let series = self
                    .series
                    .iter()
                    .enumerate()
                    .map(|(j, d)| sel(&format!("series[{j}]"), d))
                    .collect::<Result<_, _>>()?;
                Shape::Order { series }
            }
        };
        let trend = self.kind == ClaimKind::Trend;
        if trend == directional || (self.kind == ClaimKind::Order && self.expect == Expect::Within) {
            let valid = if trend {
                "increasing or decreasing"
            } else if self.kind == ClaimKind::Order {
                "greater or less"
            } else {
                "greater, less or within"
            };
            return Err(ParamError::field(
                &at("expect"),
                format!(
                    "claim `{}`: expect = \"{}\" does not fit kind = \"{}\"",
                    self.name,
                    name_of(&self.expect),
                    name_of(&self.kind)
                ),
                Some(format!("valid here: {valid}")),
            ));
        }
        if !(self.margin.is_finite() && self.margin >= 0.0) || (self.expect == Expect::Within && self.margin == 0.0) {
            return Err(ParamError::range(
                &at("margin"),
                self.margin,
                if self.expect == Expect::Within { "a positive number for `within`" } else { "a non-negative number" },
            ));
        }
        let scope = sel("where", &self.scope)?;
        Ok(Claim { shape, scope, expect: self.expect, margin: self.margin })
    }

    /// Every selector the claim names, with its field, for checks against what exists.
    fn selectors(&self) -> Vec<(String, &SelectorDecl)> {
        let mut out: Vec<(String, &SelectorDecl)> = Vec::new();
        for (f, d) in [("a", &self.a), ("b", &self.b), ("in", &self.inside), ("than", &self.than)] {
            if let Some(d) = d {
                out.push((f.to_string(), d));
            }
        }
        out.extend(self.series.iter().enumerate().map(|(j, d)| (format!("series[{j}]"), d)));
        out.push(("where".into(), &self.scope));
        out
    }
}

impl Params for ClaimsParams {
    fn validate(&self) -> Result<(), ParamError> {
        if self.claims.is_empty() {
            return Err(ParamError::field(
                "claims",
                "`claims` lists no claim",
                Some("add [[stages.NAME.claims]] tables".into()),
            ));
        }
        let mut names = BTreeSet::new();
        for (i, c) in self.claims.iter().enumerate() {
            if c.name.trim().is_empty() || !names.insert(c.name.as_str()) {
                return Err(ParamError::field(
                    &format!("claims[{i}].name"),
                    format!("claim name `{}` is empty or used twice", c.name),
                    None,
                ));
            }
            c.to_claim(i)?;
        }
        Ok(())
    }
}

/// The `claims` op.
pub struct Claims;

impl Op for Claims {
    fn name(&self) -> &'static str {
        "claims"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "checks the paper's claims on gathered metrics: paired differences over replicates, 95 % CI, verdict"
    }
    fn inputs(&self) -> &'static [InputSpec] {
        &[super::GATHER_METRICS]
    }
    fn outputs(&self) -> &'static [OutputSpec] {
        &[OutputSpec { name: "report", kind: Kind::Report, doc: "claims.md and claims.csv: one verdict per claim" }]
    }
    fn param_fields(&self) -> &'static [&'static str] {
        params::field_names::<ClaimsParams>()
    }
    fn normalize(&self, raw: &Json) -> Result<Json, ParamError> {
        params::normalize::<ClaimsParams>(raw)
    }
    fn check_gathered(&self, raw: &Json, gathered: &[Gathered<'_>]) -> Result<(), ParamError> {
        let p: ClaimsParams = params::parse(raw)?;
        let stages: BTreeSet<&str> = gathered.iter().map(|g| g.stage).collect();
        let mut values: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for g in gathered {
            for (k, v) in g.axes {
                values.entry(k).or_default().insert(text(v));
            }
        }
        for (i, c) in p.claims.iter().enumerate() {
            let metric = c.metric.as_deref().unwrap_or(&p.metric);
            let metric_field = if c.metric.is_some() { format!("claims[{i}].metric") } else { "metric".to_string() };
            check_metric(metric, gathered)
                .map_err(|e| ParamError::field(&metric_field, format!("claim `{}`: {e}", c.name), None))?;
            for (field, sel) in c.selectors() {
                let at = format!("claims[{i}].{field}");
                for (dim, cond) in sel {
                    let known: Vec<String> = if dim == SOURCE {
                        stages.iter().map(|s| s.to_string()).collect()
                    } else if let Some(v) = values.get(dim.as_str()) {
                        v.iter().cloned().collect()
                    } else {
                        let dims: Vec<&str> = values.keys().copied().chain([SOURCE]).collect();
                        return Err(unknown(&at, &c.name, "dimension", dim, &dims));
                    };
                    let cond = Condition::parse(cond).map_err(|e| ParamError::field(&at, e, None))?;
                    for lit in cond.literals() {
                        if !known.contains(&text(lit)) {
                            let what = if dim == SOURCE { "stage".to_string() } else { format!("value of `{dim}`") };
                            let valid: Vec<&str> = known.iter().map(String::as_str).collect();
                            return Err(unknown(&at, &c.name, &what, &text(lit), &valid));
                        }
                    }
                }
            }
            for dim in c.each.iter().chain(&c.along) {
                if dim != SOURCE && !values.contains_key(dim.as_str()) {
                    let dims: Vec<&str> = values.keys().copied().collect();
                    return Err(unknown(&format!("claims[{i}]"), &c.name, "axis", dim, &dims));
                }
            }
            // Dry run on the gathered instances' coordinates: every comparison must find its pairs.
            let obs: Vec<Observation> = gathered
                .iter()
                .map(|g| Observation { source: g.stage.to_string(), axes: g.axes.clone(), value: f64::NAN })
                .collect();
            let claim = c.to_claim(i)?;
            for (case, scope) in cases(&claim, &c.each, &obs) {
                let trial = Claim { scope, ..claim.clone() };
                stats::evaluate(&trial, &obs).map_err(|e| {
                    let case = if case.is_empty() { String::new() } else { format!(" ({case})") };
                    ParamError::field(&format!("claims[{i}]"), format!("claim `{}`{case}: {e}", c.name), None)
                })?;
            }
        }
        Ok(())
    }
    fn run(&self, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let p: ClaimsParams = ctx.params()?;
        let mut metrics: BTreeMap<String, Vec<Observation>> = BTreeMap::new();
        let mut loaded = Vec::new();
        for input in ctx.gathered("inputs") {
            loaded.push((input, Metrics::load(&input.dir)?));
        }
        let mut rows = Vec::new();
        for (i, c) in p.claims.iter().enumerate() {
            let metric = c.metric.clone().unwrap_or_else(|| p.metric.clone());
            let obs = metrics.entry(metric.clone()).or_insert_with(|| {
                loaded
                    .iter()
                    .filter_map(|(input, m)| {
                        m.values.get(&metric).map(|&value| Observation {
                            source: input.stage.clone(),
                            axes: input.axes.clone(),
                            value,
                        })
                    })
                    .collect()
            });
            let claim = c.to_claim(i).map_err(|e| OpError::Invalid(e.message))?;
            for (case, scope) in cases(&claim, &c.each, obs) {
                let trial = Claim { scope, ..claim.clone() };
                let outcome =
                    stats::evaluate(&trial, obs).map_err(|e| OpError::Invalid(format!("claim `{}`: {e}", c.name)))?;
                rows.push(Row { decl: c, metric: metric.clone(), case, outcome });
            }
        }
        let dir = ctx.output_dir("report");
        std::fs::create_dir_all(&dir).map_err(OpError::io("creating the report folder"))?;
        write_atomic(&dir.join("claims.md"), render_markdown(&p, &rows).as_bytes())?;
        write_atomic(&dir.join("claims.csv"), render_csv(&p, &rows).as_bytes())?;
        Ok(())
    }
}

/// A unit enum variant as written in TOML (its serde name).
fn name_of<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|j| j.as_str().map(str::to_string)).unwrap_or_default()
}

fn unknown(at: &str, claim: &str, what: &str, got: &str, valid: &[&str]) -> ParamError {
    let mut help = format!("valid: {}", valid.join(", "));
    if let Some(best) = did_you_mean(got, valid) {
        help = format!("did you mean `{best}`? {help}");
    }
    ParamError::field(at, format!("claim `{claim}` names unknown {what} `{got}` in `{at}`"), Some(help))
}

fn check_metric(metric: &str, gathered: &[Gathered<'_>]) -> Result<(), String> {
    for g in gathered {
        let names = g.op.metric_names();
        if !names.is_empty() && !names.contains(&metric) {
            return Err(format!(
                "metric `{metric}` is not one that stage `{}` (op {}) writes: {}",
                g.stage,
                g.op.name(),
                names.join(", ")
            ));
        }
    }
    Ok(())
}

/// The claim's cases: one per combination of the `each` dimensions' values in scope (or one).
fn cases(claim: &Claim, each: &[String], obs: &[Observation]) -> Vec<(String, Selector)> {
    if each.is_empty() {
        return vec![(String::new(), claim.scope.clone())];
    }
    let mut seen: Vec<Vec<Json>> = Vec::new();
    for o in obs.iter().filter(|o| stats::select::within(o, &claim.scope)) {
        let tuple: Option<Vec<Json>> = each.iter().map(|d| stats::select::dim_value(o, d)).collect();
        if let Some(t) = tuple {
            if !seen.contains(&t) {
                seen.push(t);
            }
        }
    }
    seen.into_iter()
        .map(|t| {
            let mut scope = claim.scope.clone();
            let mut label = Vec::new();
            for (d, v) in each.iter().zip(t) {
                label.push(format!("{d} = {}", text(&v)));
                scope.insert(d.clone(), Condition::Equals(v));
            }
            (label.join(", "), scope)
        })
        .collect()
}

/// One evaluated case of one claim.
struct Row<'a> {
    decl: &'a ClaimDecl,
    metric: String,
    case: String,
    outcome: Outcome,
}

/// `N_cf (k = 250)` for a selector, with stage names replaced by their labels.
fn series_text(sel: &SelectorDecl, labels: &BTreeMap<String, String>) -> String {
    let source = sel.get(SOURCE).map(|v| match v {
        Json::String(s) => labels.get(s).cloned().unwrap_or_else(|| s.clone()),
        other => other.to_string(),
    });
    let rest: Vec<String> = sel
        .iter()
        .filter(|(k, _)| k.as_str() != SOURCE)
        .map(|(k, v)| format!("{k} = {}", Condition::parse(v).map(|c| c.describe()).unwrap_or_default()))
        .collect();
    match (source, rest.is_empty()) {
        (Some(s), true) => s,
        (Some(s), false) => format!("{s} ({})", rest.join(", ")),
        (None, _) => rest.join(", "),
    }
}

/// What the quantity is, in words.
fn quantity_text(d: &ClaimDecl, labels: &BTreeMap<String, String>) -> String {
    let side = |s: &Option<SelectorDecl>| s.as_ref().map(|s| series_text(s, labels)).unwrap_or_default();
    let gap = format!("{} − {}", side(&d.a), side(&d.b));
    match d.kind {
        ClaimKind::Compare => gap,
        ClaimKind::Trend => format!("slope of ({gap}) per unit of {}", d.along.as_deref().unwrap_or("?")),
        ClaimKind::Contrast => format!("({gap}) in {} minus in {}", side(&d.inside), side(&d.than)),
        ClaimKind::Order => {
            let sep = if d.expect == Expect::Less { " < " } else { " > " };
            d.series.iter().map(|s| series_text(s, labels)).collect::<Vec<_>>().join(sep)
        }
    }
}

fn interval_text(s: &Summary, prec: usize) -> String {
    match s.interval() {
        Some((lo, hi)) => format!("{:+.prec$} [{lo:+.prec$}, {hi:+.prec$}]", s.mean),
        None => format!("{:+.prec$} (no CI)", s.mean),
    }
}

/// Decimals: slopes per unit of a percentage axis are small numbers.
fn precision(d: &ClaimDecl) -> usize {
    if d.kind == ClaimKind::Trend {
        3
    } else {
        2
    }
}

fn scope_text(d: &ClaimDecl, case: &str) -> String {
    let mut parts: Vec<String> = d
        .scope
        .iter()
        .map(|(k, v)| Condition::parse(v).map(|c| stats::select::condition_text(k, &c)).unwrap_or_default())
        .collect();
    if !case.is_empty() {
        parts.push(case.to_string());
    }
    if parts.is_empty() {
        "all cells".into()
    } else {
        parts.join(", ")
    }
}

fn render_markdown(p: &ClaimsParams, rows: &[Row<'_>]) -> String {
    let title = if p.title.is_empty() { "Claims of the paper, checked on this run" } else { &p.title };
    let mut out = format!(
        "### {title}\n\n| claim | paper | where | quantity | ours: mean [95 % CI] | n | paper's numbers | verdict |\n\
         | :-- | :-- | :-- | :-- | --: | --: | :-- | :-- |\n"
    );
    for r in rows {
        let d = r.decl;
        let prec = precision(d);
        let ours = r.outcome.parts.iter().map(|m| interval_text(&m.summary, prec)).collect::<Vec<_>>().join("; ");
        let n = r.outcome.parts.first().map_or(0, |m| m.summary.n);
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | **{}** |\n",
            md(&format!("{}: {}", d.name, d.statement)),
            md(&d.section),
            md(&scope_text(d, &r.case)),
            md(&format!("{} ({})", quantity_text(d, &p.labels), r.metric)),
            ours,
            n,
            md(&d.paper),
            r.outcome.verdict.label()
        ));
    }
    let count = |v: Verdict| rows.iter().filter(|r| r.outcome.verdict == v).count();
    out.push_str(&format!(
        "\n{} checks: {} hold, {} reversed, {} inconclusive{}.\n",
        rows.len(),
        count(Verdict::Holds),
        count(Verdict::Reversed),
        count(Verdict::Inconclusive) + count(Verdict::OneReplicate),
        if count(Verdict::OneReplicate) > 0 { " (one replicate: no interval)" } else { "" }
    ));
    out.push_str(
        "\nEach difference is paired within a replicate (same data subset, same upstream networks); the interval is \
         the 95 % CI of the mean over replicates (Student t, n - 1 degrees of freedom). A claim holds when the whole \
         interval lies on the expected side, is reversed when it lies on the other side, and is inconclusive otherwise.\n",
    );
    out.push_str("\nPer replicate:\n\n");
    for r in rows {
        for m in &r.outcome.parts {
            out.push_str(&format!(
                "- {}{}: {} ({})\n",
                r.decl.name,
                case_suffix(&r.case),
                per_replicate(m, precision(r.decl)),
                m.what
            ));
        }
    }
    out
}

fn case_suffix(case: &str) -> String {
    if case.is_empty() {
        String::new()
    } else {
        format!(" [{case}]")
    }
}

fn per_replicate(m: &Measured, prec: usize) -> String {
    m.per_replicate
        .iter()
        .map(|(r, v)| if r.is_null() { format!("{v:+.prec$}") } else { format!("r{}: {v:+.prec$}", text(r)) })
        .collect::<Vec<_>>()
        .join(", ")
}

fn render_csv(p: &ClaimsParams, rows: &[Row<'_>]) -> String {
    let mut out = String::from(
        "claim,section,statement,case,part,quantity,metric,mean,ci_low,ci_high,n,per_replicate,paper,verdict\r\n",
    );
    for r in rows {
        for (j, m) in r.outcome.parts.iter().enumerate() {
            let (lo, hi) =
                m.summary.interval().map_or((String::new(), String::new()), |(a, b)| (a.to_string(), b.to_string()));
            let fields = [
                r.decl.name.clone(),
                r.decl.section.clone(),
                r.decl.statement.clone(),
                r.case.clone(),
                j.to_string(),
                format!("{} | {}", quantity_text(r.decl, &p.labels), m.what),
                r.metric.clone(),
                m.summary.mean.to_string(),
                lo,
                hi,
                m.summary.n.to_string(),
                m.per_replicate.iter().map(|(_, v)| v.to_string()).collect::<Vec<_>>().join(" "),
                r.decl.paper.clone(),
                m.verdict.label().to_string(),
            ];
            out.push_str(&csv_line(&fields));
        }
    }
    out
}

fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}
