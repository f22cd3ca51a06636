//! The `claims` stage's parameters: each claim as declared in TOML, checked and turned into the
//! statistics module's [`Claim`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::name_of;
use crate::config::params::{ParamError, Params};
use crate::stats::select::parse_selector;
use crate::stats::{Claim, Condition, Expect, Selector, Shape, SOURCE};

/// How a claim reduces its paired differences (see [`Shape`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// First series (compare, trend, contrast): dimensions and the value each must take, `source`
    /// naming a gathered stage (`{ source = "probe_cf", k = 250 }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a: Option<SelectorDecl>,
    /// Second series, written as `a`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b: Option<SelectorDecl>,
    /// The series of an `order` claim, in the expected order (2 to 64), each written as `a`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<SelectorDecl>,
    /// Where the series are compared: axes and their values (`{ target = "mnist", p = { min = 50 } }`;
    /// a list means any of its values).
    #[serde(default, rename = "where", skip_serializing_if = "BTreeMap::is_empty")]
    pub scope: SelectorDecl,
    /// For `trend`: the numeric axis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub along: Option<String>,
    /// For `contrast`: the slice where the gap is expected to be larger, written as `where`.
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub inside: Option<SelectorDecl>,
    /// For `contrast`: the slice it is compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub than: Option<SelectorDecl>,
    /// The expected direction: greater or less (compare, contrast, order); within (compare, contrast); increasing,
    /// decreasing (trend).
    pub expect: Expect,
    /// For `within`: the band around zero counted as equal. For the others: how far past zero
    /// the quantity must be (`greater` with `margin = 2`: a beats b by more than 2), 0 by default.
    #[serde(default)]
    #[schemars(range(min = 0))]
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
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimsParams {
    /// Title line of the report; empty: "Claims of the paper, checked on this run".
    #[serde(default)]
    pub title: String,
    /// The metric compared (e.g. `top1`).
    pub metric: String,
    /// Display names of source stages (e.g. `probe_cf = "N_cf"`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The claims.
    pub claims: Vec<ClaimDecl>,
    /// `holm`: also decide every check as one family, holding the chance of any false verdict
    /// among them to 5 % (Holm's step-down); `none` (the default): each check is its own 95 % test.
    #[serde(default, skip_serializing_if = "Family::is_none")]
    pub family: Family,
}

/// How a stage's checks are corrected for their number (see [`crate::stats::family`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Each check is its own 95 % test.
    #[default]
    None,
    /// Holm's step-down over all the stage's checks, family-wise 5 %.
    Holm,
}

impl Family {
    /// The default, left out of the recipe so that stages written before it keep their keys.
    fn is_none(&self) -> bool {
        *self == Family::None
    }
}

/// Whether two selectors as written pick the same cells: a list matches its values in any order,
/// and a one-value list matches the value itself.
fn same_series(x: &SelectorDecl, y: &SelectorDecl) -> bool {
    fn canonical(d: &SelectorDecl) -> BTreeMap<&String, Json> {
        d.iter()
            .map(|(dim, v)| {
                let v = match v {
                    Json::Array(items) => {
                        let mut items = items.clone();
                        items.sort_by_key(|i| i.to_string());
                        items.dedup();
                        if items.len() == 1 {
                            items.remove(0)
                        } else {
                            Json::Array(items)
                        }
                    }
                    other => other.clone(),
                };
                (dim, v)
            })
            .collect()
    }
    canonical(x) == canonical(y)
}

impl ClaimDecl {
    /// The claim in the statistics module's terms; errors name the field (`claims[i].a`).
    pub(super) fn to_claim(&self, i: usize) -> Result<Claim, ParamError> {
        let at = |f: &str| format!("claims[{i}].{f}");
        // Each pair of series is compared for sameness, and each step paired over every
        // gathered instance: 9,000 series took 71 s and 6.7 GB before this bound.
        if self.series.len() > MAX_ORDER_SERIES {
            return Err(ParamError::field(
                &at("series"),
                format!(
                    "claim `{}` ranks {} series, more than the {MAX_ORDER_SERIES} an order may",
                    self.name,
                    self.series.len()
                ),
                Some("split it into orders of fewer series, or compare the series pairwise".into()),
            ));
        }
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
        self.refuse_foreign_fields(i)?;
        if let Some((j, twice)) = self.each.iter().enumerate().find(|(j, d)| self.each[..*j].contains(d)) {
            return Err(ParamError::field(
                &at(&format!("each[{j}]")),
                format!(
                    "claim `{}`: `each` names `{twice}` twice (its cases would read `{twice} = 0, {twice} = 0`)",
                    self.name
                ),
                Some("list each dimension once".into()),
            ));
        }
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
        if self.expect == Expect::Within && self.margin == 0.0 {
            // Most often left out: a band of width 0 holds no interval, so it is asked for.
            return Err(ParamError::field(
                &at("margin"),
                format!(
                    "claim `{}`: expect = \"within\" needs a `margin` above 0, the band around 0 counted as equal",
                    self.name
                ),
                Some("e.g. margin = 1.0 (in the metric's units)".into()),
            ));
        }
        if !(self.margin.is_finite() && self.margin >= 0.0) {
            let valid =
                if self.expect == Expect::Within { "a positive number for `within`" } else { "a non-negative number" };
            return Err(ParamError::range(&at("margin"), self.margin, valid));
        }
        self.refuse_self_comparison(i)?;
        let scope = sel("where", &self.scope)?;
        Ok(Claim { shape, scope, expect: self.expect, margin: self.margin })
    }

    /// A field another kind reads (`in` and `than` on a compare, where `kind = "contrast"` was
    /// forgotten) would be ignored and the claim checked as something else: refused, naming the
    /// kind that reads it.
    fn refuse_foreign_fields(&self, i: usize) -> Result<(), ParamError> {
        let given = [
            ("a", self.a.is_some()),
            ("b", self.b.is_some()),
            ("along", self.along.is_some()),
            ("in", self.inside.is_some()),
            ("than", self.than.is_some()),
            ("series", !self.series.is_empty()),
        ];
        let Some((field, _)) = given.iter().find(|(f, set)| *set && !kind_reads(&self.kind, f)) else { return Ok(()) };
        let readers: Vec<String> = [ClaimKind::Compare, ClaimKind::Trend, ClaimKind::Contrast, ClaimKind::Order]
            .iter()
            .filter(|k| kind_reads(k, field))
            .map(|k| format!("kind = \"{}\"", name_of(k)))
            .collect();
        Err(ParamError::field(
            &format!("claims[{i}].{field}"),
            format!(
                "claim `{}` (kind = \"{}\") does not read `{field}`: it would be ignored",
                self.name,
                name_of(&self.kind)
            ),
            Some(format!("`{field}` is read by {}; set that kind, or leave `{field}` out", readers.join(" and "))),
        ))
    }

    /// A series compared with itself (`a` written as `b`, `in` as `than`, an `order` series
    /// twice) differs from itself by exactly 0: `within` would always hold and the others never.
    fn refuse_self_comparison(&self, i: usize) -> Result<(), ParamError> {
        let mut pairs: Vec<(String, String, &SelectorDecl, &SelectorDecl)> = Vec::new();
        if let (Some(a), Some(b)) = (&self.a, &self.b) {
            pairs.push(("a".into(), "b".into(), a, b));
        }
        if let (Some(inside), Some(than)) = (&self.inside, &self.than) {
            pairs.push(("in".into(), "than".into(), inside, than));
        }
        for (j, first) in self.series.iter().enumerate() {
            for (k, second) in self.series.iter().enumerate().skip(j + 1) {
                pairs.push((format!("series[{j}]"), format!("series[{k}]"), first, second));
            }
        }
        match pairs.into_iter().find(|(_, _, x, y)| same_series(x, y)) {
            Some((first, second, _, _)) => Err(ParamError::field(
                &format!("claims[{i}].{second}"),
                format!(
                    "claim `{}`: `{second}` selects the same series as `{first}`, so their difference is 0 by \
                     construction",
                    self.name
                ),
                Some(format!("make `{first}` and `{second}` differ, e.g. in `source`")),
            )),
            None => Ok(()),
        }
    }

    /// Every selector the claim names, with its field, for checks against what exists.
    pub(super) fn selectors(&self) -> Vec<(String, &SelectorDecl)> {
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

/// Whether a claim of `kind` reads the series field `field`.
fn kind_reads(kind: &ClaimKind, field: &str) -> bool {
    match kind {
        ClaimKind::Compare => matches!(field, "a" | "b"),
        ClaimKind::Trend => matches!(field, "a" | "b" | "along"),
        ClaimKind::Contrast => matches!(field, "a" | "b" | "in" | "than"),
        ClaimKind::Order => field == "series",
    }
}

/// Most series one `order` claim may rank (a plot draws at most 64 too).
pub const MAX_ORDER_SERIES: usize = 64;

/// Most claims one stage may declare (a study has tens).
pub const MAX_CLAIMS: usize = 1_000;

/// Most cases (verdict rows) the claims of one stage may expand to through `each`.
pub const MAX_CASES: usize = 100_000;

impl Params for ClaimsParams {
    /// A series written as a stage's bare name (`b = "probe_pre"`): serde would only say it
    /// expected a map.
    fn check_groups(raw: &Json) -> Result<(), ParamError> {
        let claims = raw.get("claims").and_then(Json::as_array).map_or(&[][..], Vec::as_slice);
        for (i, claim) in claims.iter().enumerate() {
            let fields =
                ["a", "b", "in", "than", "where"].into_iter().filter_map(|f| Some((f.to_string(), claim.get(f)?)));
            let series = claim.get("series").and_then(Json::as_array).map_or(&[][..], Vec::as_slice);
            let items = series.iter().enumerate().map(|(j, s)| (format!("series[{j}]"), s));
            for (field, value) in fields.chain(items) {
                if let Json::String(name) = value {
                    let at = format!("claims[{i}].{field}");
                    let quoted = Json::String(name.clone());
                    let (what, help) = match field.as_str() {
                        "where" | "in" | "than" => {
                            ("cells", format!("write {{ AXIS = {quoted} }}, naming the axis that takes it"))
                        }
                        _ => ("a series", format!("write {{ source = {quoted} }} to select the stage `{name}`")),
                    };
                    return Err(ParamError::field(
                        &at,
                        format!("`{at}` is a string, but it selects {what}: a table of dimensions and their values"),
                        Some(help),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ParamError> {
        if self.claims.is_empty() {
            return Err(ParamError::field(
                "claims",
                "`claims` lists no claim",
                Some("add [[stages.NAME.claims]] tables".into()),
            ));
        }
        // Each claim is checked against every gathered instance before anything runs.
        crate::config::limits::at_most("claims", self.claims.len(), MAX_CLAIMS)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(text: &str) -> SelectorDecl {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn a_series_written_two_ways_is_one_series() {
        let same = [
            (r#"{"source": "clean"}"#, r#"{"source": ["clean"]}"#),
            (r#"{"source": "a", "k": [4, 16]}"#, r#"{"k": [16, 4, 4], "source": "a"}"#),
        ];
        for (x, y) in same {
            assert!(same_series(&decl(x), &decl(y)), "{x} vs {y}");
        }
        let different = [
            (r#"{"source": "clean"}"#, r#"{"source": "noisy"}"#),
            (r#"{"source": "a", "k": [4, 16]}"#, r#"{"source": "a", "k": 4}"#),
            (r#"{"source": "a"}"#, r#"{"source": "a", "k": 4}"#),
        ];
        for (x, y) in different {
            assert!(!same_series(&decl(x), &decl(y)), "{x} vs {y}");
        }
    }

    /// A choice written as another type names its choices (serde said "expected string or map").
    #[test]
    fn a_family_of_another_type_names_the_choices() {
        for bad in [serde_json::json!(1), serde_json::json!({})] {
            let raw = serde_json::json!({"metric": "top1", "claims": [], "family": bad});
            let e = crate::config::params::normalize::<ClaimsParams>(&raw).unwrap_err();
            assert!(e.message.starts_with("`family` must be one of \"none\" | \"holm\", found"), "{}", e.message);
        }
    }

    /// A dimension named twice in `each` is refused (its cases read `x = 0, x = 0`).
    #[test]
    fn each_names_a_dimension_once() {
        let claim = |each: &str| -> ClaimDecl {
            serde_json::from_str(&format!(
                r#"{{"name": "c", "statement": "s", "a": {{"source": "a"}}, "b": {{"source": "b"}}, "expect": "greater", "each": {each}}}"#
            ))
            .unwrap()
        };
        assert!(claim(r#"["x", "y"]"#).to_claim(0).is_ok());
        let err = claim(r#"["x", "x"]"#).to_claim(0).unwrap_err();
        assert!(err.message.contains("`each` names `x` twice"), "{}", err.message);
    }

    /// A stage written before `family` existed hashes as it did: the default is left out of the
    /// recipe, and only `holm` enters it.
    #[test]
    fn the_default_family_stays_out_of_the_recipe() {
        let text = r#"{"metric": "top1", "claims": []}"#;
        let mut p: ClaimsParams = serde_json::from_str(text).unwrap();
        assert_eq!(p.family, Family::None);
        assert!(serde_json::to_value(&p).unwrap().get("family").is_none());
        p.family = Family::Holm;
        assert_eq!(serde_json::to_value(&p).unwrap()["family"], "holm");
    }
}
