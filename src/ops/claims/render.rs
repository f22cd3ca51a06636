//! The verdict report of a `claims` stage: a markdown table (printed at the end of a run) and a CSV.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::{ClaimDecl, ClaimKind, ClaimsParams, SelectorDecl};
use crate::report::csv_line;
use crate::report::number::{shortest, Notation};
use crate::stats::claim::{Measured, Outcome, NO_SPREAD_DECIDES_FROM};
use crate::stats::family::{FamilyVerdict, FAMILY_ALPHA};
use crate::stats::select::text;
use crate::stats::{self, Condition, Expect, Summary, Verdict, SOURCE};

/// One evaluated case of one claim.
pub(super) struct Row<'a> {
    pub decl: &'a ClaimDecl,
    pub metric: String,
    pub case: String,
    pub outcome: Outcome,
    /// The verdict within the stage's family of checks, when the stage asks for one.
    pub family: Option<FamilyVerdict>,
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
    let quantity = match d.kind {
        ClaimKind::Compare => gap,
        ClaimKind::Trend => format!("slope of ({gap}) per unit of {}", d.along.as_deref().unwrap_or("?")),
        ClaimKind::Contrast => format!("({gap}) in {} minus in {}", side(&d.inside), side(&d.than)),
        ClaimKind::Order => {
            let sep = if d.expect == Expect::Less { " < " } else { " > " };
            d.series.iter().map(|s| series_text(s, labels)).collect::<Vec<_>>().join(sep)
        }
    };
    // A directional claim's margin is its threshold, `within`'s its band: either is written out,
    // so that a reader can check the verdict from the row alone.
    match d.expect {
        Expect::Within => format!("{quantity}, band ±{}", shortest(d.margin)),
        _ if d.margin == 0.0 => quantity,
        Expect::Less | Expect::Decreasing => format!("{quantity}, threshold {}", shortest(-d.margin)),
        _ => format!("{quantity}, threshold +{}", shortest(d.margin)),
    }
}

/// Whether `part`, reversed, lies wholly short of a threshold (`margin`) but not beyond 0: a
/// beats b, by less than claimed.
fn short_of_threshold(part: &Measured, expect: Expect, margin: f64) -> bool {
    let beyond_zero = part.summary.interval().is_some_and(|(lo, hi)| match expect {
        Expect::Greater | Expect::Increasing => hi < 0.0,
        Expect::Less | Expect::Decreasing => lo > 0.0,
        Expect::Within => true,
    });
    part.verdict == Verdict::Reversed && margin > 0.0 && !beyond_zero
}

/// One part's verdict in the words of claims.md: `reversed (short of the threshold)` where
/// `reversed` alone would read as b beating a.
fn part_text(part: &Measured, expect: Expect, margin: f64) -> String {
    match short_of_threshold(part, expect, margin) {
        true => format!("{} (short of the threshold)", part.verdict.label()),
        false => part.verdict.label().to_string(),
    }
}

/// The verdict as the table shows it. An `order` is reversed when one of its steps is, which is
/// not the whole order reversed: the row names the steps. A directional claim with a threshold
/// (`margin`) is refuted when its interval lies wholly short of it, which need not be the other
/// side of 0 (a beats b, but by less than claimed): the row says so, of a step too.
fn verdict_text(outcome: &Outcome, expect: Expect, margin: f64) -> String {
    let label = outcome.verdict.label();
    if let [only] = outcome.parts.as_slice() {
        return match outcome.verdict {
            Verdict::Reversed => part_text(only, expect, margin),
            _ => label.to_string(),
        };
    }
    if outcome.verdict != Verdict::Reversed {
        return label.to_string();
    }
    let steps = outcome.parts.len();
    let numbered = |keep: &dyn Fn(&Measured) -> bool| -> Vec<String> {
        (outcome.parts.iter().enumerate()).filter(|(_, m)| keep(m)).map(|(i, _)| (i + 1).to_string()).collect()
    };
    let reversed = numbered(&|m| m.verdict == Verdict::Reversed);
    let short = numbered(&|m| short_of_threshold(m, expect, margin));
    let which = match reversed.as_slice() {
        [one] => Some(format!("step {one} of {steps}")),
        many if many.len() < steps => Some(format!("steps {} of {steps}", many.join(", "))),
        _ => None,
    };
    let shortfall = match short.as_slice() {
        [] => None,
        _ if short.len() == reversed.len() => Some("short of the threshold".to_string()),
        [one] => Some(format!("step {one} short of the threshold")),
        many => Some(format!("steps {} short of the threshold", many.join(", "))),
    };
    match (which, shortfall) {
        (None, None) => label.to_string(),
        (Some(w), None) => format!("{label} ({w})"),
        (None, Some(s)) => format!("{label} ({s})"),
        (Some(w), Some(s)) if short.len() == reversed.len() => format!("{label} ({w}, {s})"),
        (Some(w), Some(s)) => format!("{label} ({w}; {s})"),
    }
}

fn interval_text(s: &Summary, prec: Notation) -> String {
    match s.interval() {
        Some((lo, hi)) => format!("{} [{}, {}]", prec.signed(s.mean), prec.signed(lo), prec.signed(hi)),
        None => format!("{} (no CI)", prec.signed(s.mean)),
    }
}

/// How a row's numbers are written: fixed decimals, two for points and three for slopes (small
/// numbers per unit of a percentage axis); more wherever an interval's half-width would round
/// to less than one unit of the last place (a metric on a 0-1 scale, say), its bounds would read
/// alike (numbers beyond 1e15), or a bound would round onto the line it is decided against (0,
/// the margin) when it does not lie on it, so that no interval is printed as a point or as
/// touching that line. Past [`MAX_DECIMALS`], numbers below 1 take an exponent (a loss of 1e-7
/// read `+0.000000 [+0.000000, +0.000000]`) and others more decimals, up to an f64's digits.
fn precision(kind: ClaimKind, margin: f64, parts: &[Measured]) -> Notation {
    let base = if kind == ClaimKind::Trend { 3 } else { 2 };
    let lines = [0.0, margin, -margin];
    let shows = |n: Notation| {
        parts.iter().all(|m| {
            let unit = match n {
                Notation::Fixed(p) => 10f64.powi(-(p as i32)),
                Notation::Exponent(_) => 0.0,
            };
            let wide = m.summary.half_width.is_none_or(|h| !(h.is_finite() && h > 0.0) || h >= unit);
            let apart = m.summary.interval().is_none_or(|(lo, hi)| {
                let distinct = lo == hi || n.signed(lo) != n.signed(hi);
                distinct && [lo, hi].iter().all(|&x| lines.iter().all(|&l| x == l || n.signed(x) != n.signed(l)))
            });
            wide && apart
        })
    };
    let largest = parts
        .iter()
        .flat_map(|m| {
            let (lo, hi) = m.summary.interval().unwrap_or((m.summary.mean, m.summary.mean));
            [m.summary.mean, lo, hi]
        })
        .filter(|v| v.is_finite())
        .fold(0f64, |a, v| a.max(v.abs()));
    // Past six decimals: numbers below 1 take an exponent, others more decimals.
    let finer = |p: usize| if largest < 1.0 { Notation::Exponent(p - MAX_DECIMALS) } else { Notation::Fixed(p) };
    let mut candidates = (base..=MAX_DECIMALS).map(Notation::Fixed).chain((MAX_DECIMALS + 1..=MAX_DIGITS).map(finer));
    let last = finer(MAX_DIGITS);
    candidates.find(|&n| shows(n)).unwrap_or(last)
}

/// Past this many decimals, a narrower interval of numbers below 1 takes an exponent.
const MAX_DECIMALS: usize = 6;
/// Past this many, an interval is printed as it rounds: an f64 holds about 16 significant digits.
const MAX_DIGITS: usize = 16;

/// `n` of the row: one count, or each step's where an order's steps differ.
fn n_text(parts: &[Measured]) -> String {
    let ns: Vec<usize> = parts.iter().map(|m| m.summary.n).collect();
    match ns.as_slice() {
        [] => "0".into(),
        [first, rest @ ..] if rest.iter().all(|n| n == first) => first.to_string(),
        all => all.iter().map(usize::to_string).collect::<Vec<_>>().join("; "),
    }
}

fn scope_text(d: &ClaimDecl, case: &str) -> String {
    // A dimension the claim is split by shows its case value only.
    let mut parts: Vec<String> = d
        .scope
        .iter()
        .filter(|(k, _)| case.is_empty() || !d.each.contains(k))
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

pub(super) fn render_markdown(p: &ClaimsParams, rows: &[Row<'_>]) -> String {
    let title = if p.title.is_empty() { "Claims of the paper, checked on this run" } else { &p.title };
    let holm = rows.iter().any(|r| r.family.is_some());
    let (family_head, family_rule) =
        if holm { (" family-wise (Holm): one-sided p, adjusted |", " :-- |") } else { ("", "") };
    let mut out = format!(
        "### {title}\n\n| claim | paper | where | quantity | ours: mean [95 % CI] | n | paper's numbers | verdict |{family_head}\n\
         | :-- | :-- | :-- | :-- | --: | --: | :-- | :-- |{family_rule}\n"
    );
    for r in rows {
        let d = r.decl;
        let prec = precision(d.kind, d.margin, &r.outcome.parts);
        let ours = r.outcome.parts.iter().map(|m| interval_text(&m.summary, prec)).collect::<Vec<_>>().join("; ");
        let n = n_text(&r.outcome.parts);
        let family = r.family.map(|f| format!(" {} |", family_text(&f))).unwrap_or_default();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | **{}** |{family}\n",
            md(&format!("{}: {}", d.name, d.statement)),
            md(&d.section),
            md(&scope_text(d, &r.case)),
            md(&format!("{} ({})", quantity_text(d, &p.labels), r.metric)),
            ours,
            n,
            md(&d.paper),
            verdict_text(&r.outcome, d.expect, d.margin)
        ));
    }
    let checks = if rows.len() == 1 { "check" } else { "checks" };
    out.push_str(&format!("\n{} {checks}: {}.\n", rows.len(), tally(rows.iter().map(|r| r.outcome.verdict))));
    if holm {
        let decidable = rows.iter().filter(|r| r.family.is_some_and(|f| f.adjusted.is_some())).count();
        out.push_str(&format!(
            "Family-wise at {} % (Holm over the {decidable} checks with an interval): {}.\n",
            FAMILY_ALPHA * 100.0,
            tally(rows.iter().filter_map(|r| r.family.map(|f| f.verdict)))
        ));
    }
    out.push_str(&format!(
        "\nEach difference is paired within a replicate (same data subset, same upstream networks); the interval is \
         the 95 % CI of the mean over replicates ({}). A claim holds when the whole \
         interval lies on the expected side, is reversed when it lies on the other side, and is inconclusive otherwise. \
         {}\n",
        stats::INTERVAL_METHOD,
        if holm {
            "The verdict column takes each check as its own 95 % test. The family-wise column decides all of them \
             together: each check is two one-sided t tests, one for \"holds\" and one for \"reversed\" (the column shows \
             the smaller p), Holm's step-down adjusts the p-values of all these tests for their number, and a check is \
             decided where its side's adjusted p is below 0.05. So the chance of any false verdict among them stays under \
             5 % however the checks depend on each other, given the t tests' assumption of normal per-replicate \
             quantities (a band's or an order's reversal, which can come from either edge or any step, is counted once \
             per edge or step)."
        } else {
            "Each check is its own 95 % test: nothing corrects for the number of checks, so among many that truly do \
             not hold, up to about 1 in 40 may read as holding by chance."
        }
    ));
    // Said only where it applies, so a page without such a quantity keeps its words.
    if rows.iter().flat_map(|r| &r.outcome.parts).any(|m| stats::claim::without_spread(&m.summary)) {
        out.push_str(&format!(
            "A quantity the same in every replicate has no spread for an interval: the exact sign-flip test decides \
             it (all n values on one side: p = 2^-n), from {} replicates as its point does, below that \
             \"inconclusive (no spread in the differences)\".\n",
            NO_SPREAD_DECIDES_FROM
        ));
    }
    out.push_str("\nPer replicate:\n\n");
    for r in rows {
        let prec = precision(r.decl.kind, r.decl.margin, &r.outcome.parts);
        for (j, m) in r.outcome.parts.iter().enumerate() {
            // An order's steps are named by their two series (and the replicates left out, as
            // computed); other claims by what was computed.
            let what = match (r.decl.kind, r.decl.series.get(j), r.decl.series.get(j + 1)) {
                (ClaimKind::Order, Some(a), Some(b)) => {
                    let left_out = stats::claim::left_out_note(&m.left_out);
                    format!("{} − {}{left_out}", series_text(a, &p.labels), series_text(b, &p.labels))
                }
                _ => m.what.clone(),
            };
            out.push_str(&format!("- {}{}: {} ({what})\n", r.decl.name, case_suffix(&r.case), per_replicate(m, prec),));
        }
    }
    out
}

/// `8 hold, 2 reversed, 9 inconclusive`, naming why some inconclusive checks could not be
/// decided: one replicate or identical replicates (no interval), or a tie (a zero-width
/// interval, with too few replicates for the sign-flip test).
fn tally(verdicts: impl Iterator<Item = Verdict>) -> String {
    let verdicts: Vec<Verdict> = verdicts.collect();
    let count = |v: Verdict| verdicts.iter().filter(|&&x| x == v).count();
    let without: Vec<&str> = [(Verdict::OneReplicate, "one replicate"), (Verdict::Identical, "identical replicates")]
        .into_iter()
        .filter(|&(v, _)| count(v) > 0)
        .map(|(_, why)| why)
        .collect();
    let mut reasons = Vec::new();
    if !without.is_empty() {
        reasons.push(format!("{}: no interval", without.join(" or ")));
    }
    if count(Verdict::NoSpread) > 0 {
        reasons.push(format!("no spread in the differences, under {NO_SPREAD_DECIDES_FROM} replicates"));
    }
    format!(
        "{} hold, {} reversed, {} inconclusive{}",
        count(Verdict::Holds),
        count(Verdict::Reversed),
        count(Verdict::Inconclusive)
            + count(Verdict::OneReplicate)
            + count(Verdict::Identical)
            + count(Verdict::NoSpread),
        if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join("; ")) }
    )
}

/// `**holds**: p 0.0021, adjusted 0.0042`; p-values in two significant digits, enough to read
/// them against 0.05 and never rounded onto it.
fn family_text(f: &FamilyVerdict) -> String {
    match (f.p, f.adjusted) {
        (Some(p), Some(a)) => format!("**{}**: p {}, adjusted {}", f.verdict.label(), p_text(p), p_text(a)),
        _ => format!("**{}**", f.verdict.label()),
    }
}

/// A p-value in two significant digits, or `< 0.0001`; one that would round onto 0.05 from
/// either side keeps the digits that tell, and past six of them says which side it is on.
fn p_text(p: f64) -> String {
    if p < 1e-4 {
        return "< 0.0001".into();
    }
    for digits in 2..=6 {
        let decimals = (digits - 1 - p.log10().floor() as i32).max(0) as usize;
        let shown = format!("{p:.decimals$}");
        if p == FAMILY_ALPHA || shown.parse::<f64>().is_ok_and(|s| s != FAMILY_ALPHA) {
            return shown;
        }
    }
    if p < FAMILY_ALPHA {
        "< 0.05".into()
    } else {
        "> 0.05".into()
    }
}

fn case_suffix(case: &str) -> String {
    if case.is_empty() {
        String::new()
    } else {
        format!(" [{case}]")
    }
}

fn per_replicate(m: &Measured, prec: Notation) -> String {
    m.per_replicate
        .iter()
        .map(|(r, v)| if r.is_null() { prec.signed(*v) } else { format!("r{}: {}", text(r), prec.signed(*v)) })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn render_csv(p: &ClaimsParams, rows: &[Row<'_>]) -> String {
    let holm = rows.iter().any(|r| r.family.is_some());
    let mut out = String::from(
        "claim,section,statement,case,part,quantity,metric,mean,ci_low,ci_high,n,per_replicate,replicates,paper,verdict",
    );
    out.push_str(if holm { ",p,p_holm,verdict_holm\r\n" } else { "\r\n" });
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
                // Whose each value is, in the same order; empty where values are not per replicate.
                m.per_replicate
                    .iter()
                    .filter(|(r, _)| !r.is_null())
                    .map(|(r, _)| text(r))
                    .collect::<Vec<_>>()
                    .join(" "),
                r.decl.paper.clone(),
                // A one-part check's verdict in the words of claims.md: "reversed" alone would
                // read as b beating a where a beat b by less than the threshold.
                match r.outcome.parts.len() {
                    1 => verdict_text(&r.outcome, r.decl.expect, r.decl.margin),
                    _ => part_text(m, r.decl.expect, r.decl.margin),
                },
            ];
            // The family's columns belong to the check, so each part of an order repeats them.
            let family = r.family.map(|f| {
                let number = |x: Option<f64>| x.map(|x| x.to_string()).unwrap_or_default();
                [number(f.p), number(f.adjusted), f.verdict.label().to_string()]
            });
            out.push_str(&csv_line(&fields.into_iter().chain(family.into_iter().flatten()).collect::<Vec<_>>()));
        }
    }
    out
}

fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(verdict: Verdict, steps: &[Verdict]) -> Outcome {
        let part = |v: &Verdict| Measured {
            what: String::new(),
            per_replicate: Vec::new(),
            summary: Summary::of(&[1.0, 2.0]),
            verdict: *v,
            left_out: Vec::new(),
        };
        Outcome { verdict, parts: steps.iter().map(part).collect() }
    }

    fn verdict_text_of(outcome: &Outcome) -> String {
        verdict_text(outcome, Expect::Greater, 0.0)
    }

    #[test]
    fn a_claim_refuted_short_of_its_threshold_says_so() {
        let refuted = |values: &[f64], expect, margin| {
            let part = Measured {
                what: String::new(),
                per_replicate: Vec::new(),
                summary: Summary::of(values),
                verdict: Verdict::Reversed,
                left_out: Vec::new(),
            };
            verdict_text(&Outcome { verdict: Verdict::Reversed, parts: vec![part] }, expect, margin)
        };
        // [0.92, 1.08]: a beats b, by less than the 2 claimed.
        assert_eq!(refuted(&[0.98, 1.0, 1.02], Expect::Greater, 2.0), "reversed (short of the threshold)");
        assert_eq!(refuted(&[-0.98, -1.0, -1.02], Expect::Less, 2.0), "reversed (short of the threshold)");
        assert_eq!(refuted(&[-0.98, -1.0, -1.02], Expect::Greater, 2.0), "reversed", "below 0 too");
        assert_eq!(refuted(&[-0.98, -1.0, -1.02], Expect::Greater, 0.0), "reversed");
        assert_eq!(refuted(&[2.98, 3.0, 3.02], Expect::Within, 2.0), "reversed");
    }

    #[test]
    fn an_order_reversed_in_some_steps_names_them() {
        use Verdict::{Holds, Inconclusive, Reversed};
        assert_eq!(verdict_text_of(&outcome(Reversed, &[Holds, Reversed])), "reversed (step 2 of 2)");
        assert_eq!(
            verdict_text_of(&outcome(Reversed, &[Reversed, Inconclusive, Reversed])),
            "reversed (steps 1, 3 of 3)"
        );
        assert_eq!(verdict_text_of(&outcome(Reversed, &[Reversed, Reversed])), "reversed");
        assert_eq!(verdict_text_of(&outcome(Reversed, &[Reversed])), "reversed");
        assert_eq!(verdict_text_of(&outcome(Holds, &[Holds, Holds])), "holds");
    }

    /// A step of an order refuted short of the threshold says so, in claims.md and in the
    /// step's own row of claims.csv (it read `reversed`, with b below a nowhere).
    #[test]
    fn an_order_step_refuted_short_of_its_threshold_says_so() {
        let part = |values: &[f64], verdict| Measured {
            what: String::new(),
            per_replicate: Vec::new(),
            summary: Summary::of(values),
            verdict,
            left_out: Vec::new(),
        };
        let (holds, short) = (part(&[3.0, 3.1, 3.2], Verdict::Holds), part(&[0.98, 1.0, 1.02], Verdict::Reversed));
        let below = part(&[-1.02, -1.0, -0.98], Verdict::Reversed);
        let text =
            |parts: Vec<Measured>| verdict_text(&Outcome { verdict: Verdict::Reversed, parts }, Expect::Greater, 2.0);
        assert_eq!(text(vec![holds.clone(), short.clone()]), "reversed (step 2 of 2, short of the threshold)");
        assert_eq!(
            text(vec![below.clone(), holds.clone(), short.clone()]),
            "reversed (steps 1, 3 of 3; step 3 short of the threshold)"
        );
        assert_eq!(text(vec![short.clone(), short.clone()]), "reversed (short of the threshold)");
        assert_eq!(text(vec![below.clone(), below.clone()]), "reversed");
        assert_eq!(part_text(&short, Expect::Greater, 2.0), "reversed (short of the threshold)");
        assert_eq!(part_text(&below, Expect::Greater, 2.0), "reversed");
        assert_eq!(part_text(&short, Expect::Greater, 0.0), "reversed");
    }

    fn measured(values: &[f64]) -> Measured {
        Measured {
            what: String::new(),
            per_replicate: Vec::new(),
            summary: Summary::of(values),
            verdict: Verdict::Holds,
            left_out: Vec::new(),
        }
    }

    #[test]
    fn a_narrow_interval_gets_the_decimals_that_show_it() {
        // Differences of a 0-1 metric: half-width 4.303 * 0.001 / sqrt(3) = 0.00248.
        let narrow = [measured(&[0.004, 0.006, 0.005])];
        assert_eq!(precision(ClaimKind::Compare, 0.0, &narrow), Notation::Fixed(3));
        assert_eq!(interval_text(&narrow[0].summary, Notation::Fixed(3)), "+0.005 [+0.003, +0.007]");
        // Points of top-1 keep two decimals, slopes three; a zero-width interval adds none.
        assert_eq!(precision(ClaimKind::Compare, 0.0, &[measured(&[1.0, 2.0, 3.0])]), Notation::Fixed(2));
        assert_eq!(precision(ClaimKind::Trend, 0.0, &[measured(&[0.01, 0.02, 0.03])]), Notation::Fixed(3));
        assert_eq!(precision(ClaimKind::Compare, 0.0, &[measured(&[10.0, 10.0])]), Notation::Fixed(2));
        assert_eq!(precision(ClaimKind::Compare, 0.0, &[measured(&[1.0])]), Notation::Fixed(2), "no interval");
        // The narrowest step of an order decides; a vanishing one stops at the cap.
        let steps = [measured(&[1.0, 2.0, 3.0]), measured(&[0.0004, 0.0006, 0.0005])];
        assert_eq!(precision(ClaimKind::Order, 0.0, &steps), Notation::Fixed(4));
        // Numbers far below 1 whose interval six decimals cannot show take an exponent; huge ones
        // and ordinary ones with a very narrow interval take the decimals that tell the bounds
        // apart (both printed as a point before).
        let tiny = [measured(&[1e-12, 2e-12, 3e-12])];
        assert_eq!(precision(ClaimKind::Compare, 0.0, &tiny), Notation::Exponent(1));
        assert_eq!(interval_text(&tiny[0].summary, Notation::Exponent(1)), "+2.0e-12 [-4.8e-13, +4.5e-12]");
        let huge = [measured(&[1e20, 1e20 + 2e5, 1e20 + 4e5])];
        assert_eq!(precision(ClaimKind::Compare, 0.0, &huge), Notation::Fixed(14));
        assert_eq!(
            interval_text(&huge[0].summary, Notation::Fixed(14)),
            "+1.00000000000000e20 [+9.99999999999997e19, +1.00000000000001e20]"
        );
        let narrow_of_80 = [measured(&[80.0, 80.0 + 2e-8, 80.0 + 4e-8])];
        assert_eq!(precision(ClaimKind::Compare, 0.0, &narrow_of_80), Notation::Fixed(8));
        // Found by a review: [+0.000267, +0.00573] holds, but at three decimals read
        // "[+0.000, +0.006]"; four show it clear of zero. The same at a margin.
        let clear = [measured(&[0.0019, 0.0030, 0.0041])];
        assert_eq!(precision(ClaimKind::Compare, 0.0, &clear), Notation::Fixed(4));
        assert_eq!(interval_text(&clear[0].summary, Notation::Fixed(4)), "+0.0030 [+0.0003, +0.0057]");
        let at_margin = [measured(&[1.0102, 1.0202, 1.0302])]; // [0.9954, 1.0450]: 2 decimals read 1.00
        assert_eq!(precision(ClaimKind::Compare, 0.0, &at_margin), Notation::Fixed(2));
        assert_eq!(precision(ClaimKind::Compare, 1.0, &at_margin), Notation::Fixed(3));
    }

    #[test]
    fn an_orders_steps_of_different_n_each_show_theirs() {
        assert_eq!(n_text(&[measured(&[1.0, 2.0]), measured(&[1.0, 2.0, 4.0])]), "2; 3");
        assert_eq!(n_text(&[measured(&[1.0, 2.0, 3.0]), measured(&[1.0, 2.0, 4.0])]), "3");
        assert_eq!(n_text(&[measured(&[1.0, 2.0, 3.0])]), "3");
    }

    #[test]
    fn p_values_show_two_digits_and_never_round_onto_the_level() {
        assert_eq!(p_text(0.0123), "0.012");
        assert_eq!(p_text(0.26), "0.26");
        assert_eq!(p_text(1.0), "1.0");
        assert_eq!(p_text(0.00003), "< 0.0001");
        // 0.0496 and 0.0504 would both read 0.050: one is decided, the other not.
        assert_eq!(p_text(0.0496), "0.0496");
        assert_eq!(p_text(0.0504), "0.0504");
        assert_eq!(p_text(0.05), "0.050");
        assert_eq!(p_text(0.04999999), "< 0.05", "0.0500000 would read as undecided");
        assert_eq!(p_text(0.05000001), "> 0.05");
    }
}
