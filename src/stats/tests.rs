//! Claims on hand-made observations whose verdicts are known.

use serde_json::{json, Value as Json};

use super::*;

fn obs(source: &str, axes: &[(&str, Json)], value: f64) -> Observation {
    Observation { source: source.into(), axes: axes.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(), value }
}

fn sel(pairs: &[(&str, Json)]) -> Selector {
    pairs.iter().map(|(k, v)| (k.to_string(), Condition::parse(v).unwrap())).collect()
}

/// N_pre and N_cf (K = 10, 250) at p = 0, 50, 75 on two targets, six replicates. N_cf at
/// K = 250 is N_pre + p/25 + a replicate offset; K = 10 equals N_pre minus 1. Several of its
/// gaps are the same in every replicate: six is the fewest at which such a gap decides (the
/// exact sign-flip test, `NO_SPREAD_DECIDES_FROM`).
fn sweep() -> Vec<Observation> {
    let mut out = Vec::new();
    for r in 0..6 {
        for p in [0, 50, 75] {
            for target in ["fashion", "animal"] {
                let base = 70.0 + r as f64 - p as f64 / 10.0;
                let ax = |k: Option<i64>| {
                    let mut v = vec![("p", json!(p)), ("target", json!(target)), ("replicate", json!(r))];
                    if let Some(k) = k {
                        v.push(("k", json!(k)));
                    }
                    v
                };
                out.push(obs("probe_pre", &ax(None), base));
                let fine = if target == "animal" { 2.0 } else { 0.0 };
                out.push(obs("probe_cf", &ax(Some(250)), base + p as f64 / 25.0 + fine + 0.1 * r as f64));
                out.push(obs("probe_cf", &ax(Some(10)), base - 1.0));
            }
        }
    }
    out
}

fn compare(a: Selector, b: Selector, scope: Selector, expect: Expect) -> Claim {
    Claim { shape: Shape::Compare { a, b }, scope, expect, margin: 0.0 }
}

#[test]
fn compare_holds_and_reports_the_paired_mean() {
    let c = compare(
        sel(&[("source", json!("probe_cf")), ("k", json!(250))]),
        sel(&[("source", json!("probe_pre"))]),
        sel(&[("p", json!({"min": 50})), ("target", json!("fashion"))]),
        Expect::Greater,
    );
    let out = evaluate(&c, &sweep()).unwrap();
    assert_eq!(out.verdict, Verdict::Holds);
    let m = &out.parts[0];
    // Gaps: p/25 + 0.1 r at p = 50, 75 -> mean 2.5 + 0.1 r.
    let got: Vec<f64> = m.per_replicate.iter().map(|(_, v)| *v).collect();
    for (g, want) in got.iter().zip([2.5, 2.6, 2.7]) {
        assert!((g - want).abs() < 1e-9, "{got:?}");
    }
    assert_eq!(m.summary.n, 6);
    assert!(m.what.contains("2 cells"), "{}", m.what);
}

#[test]
fn the_same_comparison_the_other_way_is_reversed() {
    let c = compare(
        sel(&[("source", json!("probe_cf")), ("k", json!(10))]),
        sel(&[("source", json!("probe_pre"))]),
        Selector::new(),
        Expect::Greater,
    );
    assert_eq!(evaluate(&c, &sweep()).unwrap().verdict, Verdict::Reversed);
}

#[test]
fn a_difference_within_noise_is_inconclusive() {
    // Gaps +1, -1, +0.5 across replicates: the interval straddles zero.
    let mut o = Vec::new();
    for (r, gap) in [1.0, -1.0, 0.5].into_iter().enumerate() {
        o.push(obs("a", &[("replicate", json!(r))], 50.0 + gap));
        o.push(obs("b", &[("replicate", json!(r))], 50.0));
    }
    let c = compare(sel(&[("source", json!("a"))]), sel(&[("source", json!("b"))]), Selector::new(), Expect::Greater);
    assert_eq!(evaluate(&c, &o).unwrap().verdict, Verdict::Inconclusive);
}

#[test]
fn one_replicate_gives_no_verdict() {
    let o = vec![obs("a", &[], 60.0), obs("b", &[], 50.0)];
    let c = compare(sel(&[("source", json!("a"))]), sel(&[("source", json!("b"))]), Selector::new(), Expect::Greater);
    let out = evaluate(&c, &o).unwrap();
    assert_eq!(out.verdict, Verdict::OneReplicate);
    assert_eq!(out.verdict.label(), "inconclusive (one replicate)");
}

#[test]
fn trend_measures_the_slope_of_the_gap() {
    let c = Claim {
        shape: Shape::Trend {
            a: sel(&[("source", json!("probe_cf")), ("k", json!(250))]),
            b: sel(&[("source", json!("probe_pre"))]),
            along: "p".into(),
        },
        scope: sel(&[("target", json!("fashion"))]),
        expect: Expect::Increasing,
        margin: 0.0,
    };
    let out = evaluate(&c, &sweep()).unwrap();
    assert_eq!(out.verdict, Verdict::Holds);
    // The gap is p/25 (+ a constant per replicate): slope 0.04 per point of p.
    assert!((out.parts[0].summary.mean - 0.04).abs() < 1e-9, "{:?}", out.parts[0]);
}

#[test]
fn contrast_compares_the_gap_between_slices() {
    let c = Claim {
        shape: Shape::Contrast {
            a: sel(&[("source", json!("probe_cf")), ("k", json!(250))]),
            b: sel(&[("source", json!("probe_cf")), ("k", json!(10))]),
            inside: sel(&[("target", json!("animal"))]),
            than: sel(&[("target", json!("fashion"))]),
        },
        scope: Selector::new(),
        expect: Expect::Greater,
        margin: 0.0,
    };
    let out = evaluate(&c, &sweep()).unwrap();
    // Gap K=250 - K=10 is 2 larger on the fine target, but exactly 2 in every replicate:
    // a zero-width interval above zero.
    assert!((out.parts[0].summary.mean - 2.0).abs() < 1e-9);
    assert_eq!(out.verdict, Verdict::Holds);
}

#[test]
fn order_holds_only_when_every_step_holds() {
    let series = vec![
        sel(&[("source", json!("probe_cf")), ("k", json!(250))]),
        sel(&[("source", json!("probe_pre"))]),
        sel(&[("source", json!("probe_cf")), ("k", json!(10))]),
    ];
    let c = Claim {
        shape: Shape::Order { series: series.clone() },
        scope: Selector::new(),
        expect: Expect::Greater,
        margin: 0.0,
    };
    let out = evaluate(&c, &sweep()).unwrap();
    assert_eq!((out.verdict, out.parts.len()), (Verdict::Holds, 2));
    let swapped = vec![series[2].clone(), series[1].clone(), series[0].clone()];
    let c = Claim { shape: Shape::Order { series: swapped }, ..c };
    assert_eq!(evaluate(&c, &sweep()).unwrap().verdict, Verdict::Reversed);
}

#[test]
fn within_a_margin() {
    let mut o = Vec::new();
    for (r, gap) in [0.1, -0.2, 0.05].into_iter().enumerate() {
        o.push(obs("a", &[("replicate", json!(r))], 50.0 + gap));
        o.push(obs("b", &[("replicate", json!(r))], 50.0));
    }
    let c = Claim {
        shape: Shape::Compare { a: sel(&[("source", json!("a"))]), b: sel(&[("source", json!("b"))]) },
        scope: Selector::new(),
        expect: Expect::Within,
        margin: 1.0,
    };
    assert_eq!(evaluate(&c, &o).unwrap().verdict, Verdict::Holds);
    let far = Claim { margin: 0.01, ..c.clone() };
    assert_eq!(evaluate(&far, &o).unwrap().verdict, Verdict::Inconclusive);
}

#[test]
fn a_series_with_a_free_axis_is_ambiguous() {
    // `probe_cf` without k has two instances per cell (k = 10 and 250).
    let c = compare(
        sel(&[("source", json!("probe_cf"))]),
        sel(&[("source", json!("probe_pre"))]),
        Selector::new(),
        Expect::Greater,
    );
    let err = evaluate(&c, &sweep()).unwrap_err();
    assert!(matches!(&err, ClaimError::Ambiguous { differ, .. } if differ == "k"), "{err}");
}

#[test]
fn no_match_and_no_pairs_are_errors() {
    let c = compare(
        sel(&[("source", json!("probe_cf")), ("k", json!(99))]),
        sel(&[("source", json!("probe_pre"))]),
        Selector::new(),
        Expect::Greater,
    );
    assert!(matches!(evaluate(&c, &sweep()), Err(ClaimError::NoMatch { .. })));
    let c = compare(
        sel(&[("source", json!("probe_cf")), ("k", json!(250)), ("target", json!("fashion"))]),
        sel(&[("source", json!("probe_pre")), ("target", json!("animal"))]),
        sel(&[("p", json!(0))]),
        Expect::Greater,
    );
    // Fixing target differently on each side pairs across targets: allowed (cells agree on p, replicate).
    assert!(evaluate(&c, &sweep()).is_ok());
    let lonely = vec![obs("a", &[("replicate", json!(0))], 1.0), obs("b", &[("replicate", json!(1))], 1.0)];
    let c = compare(sel(&[("source", json!("a"))]), sel(&[("source", json!("b"))]), Selector::new(), Expect::Greater);
    assert!(matches!(evaluate(&c, &lonely), Err(ClaimError::NoPairs { .. })));
}

#[test]
fn verdicts_from_hand_summaries() {
    use super::claim::decide;
    let s = Summary::of(&[1.0, 2.0, 3.0]); // 2 ± 2.484: straddles 0
    assert_eq!(decide(&s, Expect::Greater, 0.0), Verdict::Inconclusive);
    let s = Summary::of(&[3.0, 4.0, 5.0]); // 4 ± 2.484: above 0
    assert_eq!(decide(&s, Expect::Greater, 0.0), Verdict::Holds);
    assert_eq!(decide(&s, Expect::Less, 0.0), Verdict::Reversed);
}

#[test]
fn a_margin_moves_the_threshold_of_directional_claims() {
    use super::claim::decide;
    let s = Summary::of(&[3.0, 4.0, 5.0]); // [1.516, 6.484]
    assert_eq!(decide(&s, Expect::Greater, 1.0), Verdict::Holds);
    assert_eq!(decide(&s, Expect::Greater, 2.0), Verdict::Inconclusive);
    assert_eq!(decide(&s, Expect::Greater, 7.0), Verdict::Reversed, "wholly short of the margin");
    assert_eq!(decide(&s, Expect::Increasing, 7.0), Verdict::Reversed);
    let s = Summary::of(&[-3.0, -4.0, -5.0]); // [-6.484, -1.516]
    assert_eq!(decide(&s, Expect::Less, 1.0), Verdict::Holds);
    assert_eq!(decide(&s, Expect::Decreasing, 2.0), Verdict::Inconclusive);
    assert_eq!(decide(&s, Expect::Less, 7.0), Verdict::Reversed);
    assert_eq!(decide(&s, Expect::Within, 7.0), Verdict::Holds);
    assert_eq!(decide(&s, Expect::Within, 1.0), Verdict::Reversed);
}

#[test]
fn within_is_decided_on_both_edges_of_its_band() {
    use super::claim::decide;
    let s = Summary::of(&[3.0, 4.0, 5.0]); // [1.516, 6.484]: wholly above the band
    assert_eq!(decide(&s, Expect::Within, 1.0), Verdict::Reversed);
    assert_eq!(decide(&s, Expect::Within, 7.0), Verdict::Holds);
    let s = Summary::of(&[0.5, 1.25, 2.0]); // [-0.613, 3.113]: inside at the low edge, out at the high
    assert_eq!(decide(&s, Expect::Within, 1.0), Verdict::Inconclusive);
    assert_eq!(decide(&s, Expect::Within, 4.0), Verdict::Holds);
    let s = Summary::of(&[-2.0, -1.25, -0.5]); // its mirror image
    assert_eq!(decide(&s, Expect::Within, 1.0), Verdict::Inconclusive);
}

#[test]
fn a_replicate_that_is_not_a_number_leaves_the_claim_inconclusive() {
    use super::claim::decide;
    for bad in [f64::NAN, f64::INFINITY] {
        let s = Summary::of(&[3.0, bad, 5.0]);
        for expect in [Expect::Greater, Expect::Less, Expect::Within] {
            assert_eq!(decide(&s, expect, 1.0), Verdict::Inconclusive, "{bad} with {expect:?}");
        }
    }
}

#[test]
fn a_replicate_short_of_cells_is_left_out_and_named() {
    // Replicate 1 has no N_cf at p = 75: its mean would cover p = 0 and 50 only, and its slope
    // other points than the rest.
    let short: Vec<Observation> = sweep()
        .into_iter()
        .filter(|o| !(o.source == "probe_cf" && o.axes["replicate"] == json!(1) && o.axes["p"] == json!(75)))
        .collect();
    let (a, b) = (sel(&[("source", json!("probe_cf")), ("k", json!(250))]), sel(&[("source", json!("probe_pre"))]));
    let c = compare(a.clone(), b.clone(), sel(&[("target", json!("fashion"))]), Expect::Greater);
    let m = &evaluate(&c, &short).unwrap().parts[0];
    let reps: Vec<Json> = m.per_replicate.iter().map(|(r, _)| r.clone()).collect();
    assert_eq!(reps, [0, 2, 3, 4, 5].map(|r| json!(r)));
    assert_eq!(m.what, "mean of a - b over 3 cells; replicate 1 left out (cells missing)");
    let trend = Claim {
        shape: Shape::Trend { a: a.clone(), b: b.clone(), along: "p".into() },
        scope: sel(&[("target", json!("fashion"))]),
        expect: Expect::Increasing,
        margin: 0.0,
    };
    let m = &evaluate(&trend, &short).unwrap().parts[0];
    assert_eq!(m.summary.n, 5);
    assert!(m.per_replicate.iter().all(|(_, v)| (v - 0.04).abs() < 1e-12), "{:?}", m.per_replicate);
    // Complete data: nothing is left out.
    assert_eq!(evaluate(&c, &sweep()).unwrap().parts[0].what, "mean of a - b over 3 cells");

    // Every replicate short of something: refused, not averaged over different cells.
    let ragged: Vec<Observation> = sweep()
        .into_iter()
        .filter(|o| {
            let dropped = [0, 50, 75][o.axes["replicate"].as_u64().unwrap() as usize % 3];
            !(o.source == "probe_cf" && o.axes["p"] == json!(dropped))
        })
        .collect();
    assert!(matches!(evaluate(&c, &ragged), Err(ClaimError::NoCompleteReplicate { cells: 3, .. })));

    // A replicate with no N_cf at all pairs nothing: it is named all the same.
    let absent: Vec<Observation> =
        sweep().into_iter().filter(|o| !(o.source == "probe_cf" && o.axes["replicate"] == json!(1))).collect();
    let m = &evaluate(&c, &absent).unwrap().parts[0];
    assert_eq!(m.summary.n, 5);
    assert_eq!(m.what, "mean of a - b over 3 cells; replicate 1 left out (cells missing)");
    // Short in one replicate, absent in another: both named, in numeric order.
    let both: Vec<Observation> =
        short.into_iter().filter(|o| !(o.source == "probe_pre" && o.axes["replicate"] == json!(0))).collect();
    let m = &evaluate(&c, &both).unwrap().parts[0];
    assert_eq!(m.what, "mean of a - b over 3 cells; replicates 0, 1 left out (cells missing)");
}

#[test]
fn a_trend_needs_two_values_of_its_axis_within_each_replicate_not_only_over_all() {
    // Along the replicate index every replicate holds one value: no replicate has a slope. Before,
    // the values spread over replicates passed the check and each slope was NaN.
    let c = Claim {
        shape: Shape::Trend {
            a: sel(&[("source", json!("probe_cf")), ("k", json!(250))]),
            b: sel(&[("source", json!("probe_pre"))]),
            along: "replicate".into(),
        },
        scope: sel(&[("p", json!(50)), ("target", json!("fashion"))]),
        expect: Expect::Increasing,
        margin: 0.0,
    };
    let err = evaluate(&c, &sweep()).unwrap_err().to_string();
    assert!(
        err.contains("needs at least two numeric values")
            && err.contains("found only replicate = 0 within replicate 0"),
        "{err}"
    );
}

/// A clean-label baseline (no `p`) against the noisy series at p = 0, 50, 75: value 80 + r, and
/// 80 + r - p/10, in six replicates (its gaps are the same in each: see [`sweep`]).
fn baseline_and_sweep() -> Vec<Observation> {
    let mut out = Vec::new();
    for r in 0..6 {
        let base = 80.0 + r as f64;
        out.push(obs("clean", &[("replicate", json!(r))], base));
        for p in [0, 50, 75] {
            out.push(obs("noisy", &[("p", json!(p)), ("replicate", json!(r))], base - p as f64 / 10.0));
        }
    }
    out
}

#[test]
fn a_series_without_an_axis_the_claim_names_is_compared_at_each_of_its_values() {
    let (clean, noisy) = (sel(&[("source", json!("clean"))]), sel(&[("source", json!("noisy"))]));
    let obs = baseline_and_sweep();
    let per = |c: &Claim| -> Vec<f64> {
        let out = evaluate(c, &obs).unwrap();
        assert_eq!(out.verdict, Verdict::Holds, "{out:?}");
        out.parts[0].per_replicate.iter().map(|(_, v)| *v).collect()
    };
    let close = |got: Vec<f64>, want: f64| assert!(got.iter().all(|g| (g - want).abs() < 1e-9), "{got:?} != {want}");
    // where p >= 50: the gaps are 5 and 7.5.
    let high = compare(clean.clone(), noisy.clone(), sel(&[("p", json!({"min": 50}))]), Expect::Greater);
    close(per(&high), 6.25);
    let trend = Claim {
        shape: Shape::Trend { a: clean.clone(), b: noisy.clone(), along: "p".into() },
        scope: Selector::new(),
        expect: Expect::Increasing,
        margin: 0.0,
    };
    close(per(&trend), 0.1);
    let contrast = Claim {
        shape: Shape::Contrast {
            a: clean.clone(),
            b: noisy.clone(),
            inside: sel(&[("p", json!(75))]),
            than: sel(&[("p", json!(0))]),
        },
        scope: Selector::new(),
        expect: Expect::Greater,
        margin: 0.0,
    };
    close(per(&contrast), 7.5);
    // Named nowhere, `p` is not spread over: which noisy cell is meant stays the writer's choice.
    let unnamed = compare(clean, noisy, Selector::new(), Expect::Greater);
    let err = evaluate(&unnamed, &obs).unwrap_err().to_string();
    assert!(err.contains("differ in p") && err.contains("name it in the claim"), "{err}");
}

#[test]
fn an_axis_only_one_series_has_must_still_be_fixed_unless_the_claim_names_it() {
    // N_cf has K, N_pre has none: "N_cf" means one K, chosen in advance.
    let (cf, pre) = (sel(&[("source", json!("probe_cf"))]), sel(&[("source", json!("probe_pre"))]));
    let fashion = sel(&[("target", json!("fashion"))]);
    let err = evaluate(&compare(cf.clone(), pre.clone(), fashion, Expect::Greater), &sweep()).unwrap_err().to_string();
    assert!(err.contains("differ in k"), "{err}");
    // Named (every K from 10 up), N_pre is compared with N_cf at each K: the mean of
    // (p/25 + 0.1 r) and -1 over p = 0, 50, 75.
    let every_k = sel(&[("target", json!("fashion")), ("k", json!({"min": 10}))]);
    let out = evaluate(&compare(cf, pre, every_k, Expect::Greater), &sweep()).unwrap();
    let got: Vec<f64> = out.parts[0].per_replicate.iter().map(|(_, v)| *v).collect();
    for (r, g) in got.iter().enumerate() {
        assert!((g - (1.0 / 3.0 + 0.05 * r as f64)).abs() < 1e-9, "{got:?}");
    }
}

#[test]
fn a_contrast_keeps_a_replicate_whose_missing_cell_lies_outside_both_slices_and_names_one_it_leaves_out() {
    let contrast = |inside: i64, than: i64| Claim {
        shape: Shape::Contrast {
            a: sel(&[("source", json!("clean"))]),
            b: sel(&[("source", json!("noisy"))]),
            inside: sel(&[("p", json!(inside))]),
            than: sel(&[("p", json!(than))]),
        },
        scope: Selector::new(),
        expect: Expect::Greater,
        margin: 0.0,
    };
    // Replicate 2 lacks the noisy cell at p = 50, which a contrast of 75 against 0 does not use.
    let missing_50: Vec<Observation> = baseline_and_sweep()
        .into_iter()
        .filter(|o| !(o.source == "noisy" && o.axes["replicate"] == json!(2) && o.axes["p"] == json!(50)))
        .collect();
    let m = &evaluate(&contrast(75, 0), &missing_50).unwrap().parts[0];
    assert_eq!(m.summary.n, 6, "{m:?}");
    assert_eq!(m.what, "(a - b in p = 75) - (a - b in p = 0)");
    // Against p = 50 it is left out, and the row says so.
    let m = &evaluate(&contrast(75, 50), &missing_50).unwrap().parts[0];
    assert_eq!(m.summary.n, 5, "{m:?}");
    assert_eq!(m.what, "(a - b in p = 75) - (a - b in p = 50); replicate 2 left out (cells missing)");
}

/// Twenty replicates all exactly on the threshold neither clear it nor miss it. A plain sum made
/// their mean 0.29999999999999993 and its zero-width interval "reversed (short of the threshold)".
/// (Being copies, such replicates now decide nothing as a claim; their summary still must not.)
#[test]
fn replicates_exactly_on_the_threshold_are_inconclusive() {
    let mut o = Vec::new();
    for r in 0..20 {
        o.push(obs("g", &[("replicate", json!(r))], 0.3));
        o.push(obs("z", &[("replicate", json!(r))], 0.0));
    }
    let at = |expect: Expect, margin: f64| Claim {
        shape: Shape::Compare { a: sel(&[("source", json!("g"))]), b: sel(&[("source", json!("z"))]) },
        scope: Selector::new(),
        expect,
        margin,
    };
    // Their gaps' summary decides nothing at the threshold, and clears one just below it.
    let gaps = &evaluate(&at(Expect::Greater, 0.3), &o).unwrap().parts[0].summary;
    for (expect, margin) in [(Expect::Greater, 0.3), (Expect::Within, 0.3)] {
        assert_eq!(claim::decide(gaps, expect, margin), Verdict::Inconclusive, "{expect:?}: {gaps:?}");
    }
    assert_eq!(claim::decide(gaps, Expect::Greater, 0.29), Verdict::Holds);
    // As a claim, twenty copies of one value are no sample at all.
    assert_eq!(evaluate(&at(Expect::Greater, 0.29), &o).unwrap().verdict, Verdict::Identical);
}

/// Series that every replicate measured alike (two L-BFGS probes on fixed pixels) are copies:
/// their zero-width interval is no evidence, so the check is inconclusive and says why, where
/// it had held. A constant gap between series that do vary stays a finding.
#[test]
fn replicates_that_are_copies_decide_nothing() {
    let mut copies = Vec::new();
    for r in 0..3 {
        copies.push(obs("strong", &[("replicate", json!(r))], 78.75));
        copies.push(obs("weak", &[("replicate", json!(r))], 75.0));
    }
    let c = compare(
        sel(&[("source", json!("strong"))]),
        sel(&[("source", json!("weak"))]),
        Selector::new(),
        Expect::Greater,
    );
    let out = evaluate(&c, &copies).unwrap();
    assert_eq!(out.verdict, Verdict::Identical);
    assert_eq!(out.verdict.label(), "inconclusive (identical replicates)");
    assert_eq!(out.parts[0].verdict, Verdict::Identical);
    assert!((out.parts[0].summary.mean - 3.75).abs() < 1e-12);
    // The same gap, with both series moving from replicate to replicate: a tie, no spread to
    // build an interval on, so the exact sign-flip test decides: not at n = 3 (p = 1/8), from
    // n = 6 (p = 1/64) as the point does.
    let moving = |n: usize| -> Vec<Observation> {
        (0..n)
            .flat_map(|r| {
                let at = [("replicate", json!(r))];
                [obs("strong", &at, 78.75 + r as f64), obs("weak", &at, 75.0 + r as f64)]
            })
            .collect()
    };
    let three = evaluate(&c, &moving(3)).unwrap();
    assert_eq!(three.verdict, Verdict::NoSpread);
    assert_eq!(three.verdict.label(), "inconclusive (no spread in the differences)");
    for n in [2, 5] {
        assert_eq!(evaluate(&c, &moving(n)).unwrap().verdict, Verdict::NoSpread, "n = {n}");
    }
    assert_eq!(evaluate(&c, &moving(6)).unwrap().verdict, Verdict::Holds);
    let other_way = Claim { expect: Expect::Less, ..c.clone() };
    assert_eq!(evaluate(&other_way, &moving(3)).unwrap().verdict, Verdict::NoSpread);
    assert_eq!(evaluate(&other_way, &moving(6)).unwrap().verdict, Verdict::Reversed);
    // On the line it is inconclusive at any n, as its point interval is.
    let on_the_line = Claim { margin: 3.75, ..c.clone() };
    assert_eq!(evaluate(&on_the_line, &moving(6)).unwrap().verdict, Verdict::Inconclusive);
    // In the family the exact p stands in for the t test's 0: 1/8 at n = 3, 1/64 at n = 6.
    let sides = |n| family::sides(&evaluate(&c, &moving(n)).unwrap(), Expect::Greater, 0.0).unwrap();
    assert_eq!((sides(3).holds, sides(3).reversed), (0.125, 1.0));
    assert_eq!(sides(6).holds, 1.0 / 64.0);
    assert_eq!(family::holm(&[Some(sides(3))])[0].verdict, Verdict::Inconclusive);
    assert_eq!(family::holm(&[Some(sides(6))])[0].verdict, Verdict::Holds);
}

/// A tie measured at different values differs in its last bits (81.05 - 80.0 and 60.1 - 59.05
/// are not the same double): it is a tie all the same, not a spread of 1e-15 that held with
/// p = 0 (found by review). A spread of a millionth of the values still counts as one.
#[test]
fn a_tie_equal_but_for_rounding_is_a_tie() {
    let at = |a: &[f64], b: &[f64]| -> Vec<Observation> {
        (0..a.len())
            .flat_map(|r| {
                let ax = [("replicate", json!(r))];
                [obs("a", &ax, a[r]), obs("b", &ax, b[r])]
            })
            .collect()
    };
    let c = compare(sel(&[("source", json!("a"))]), sel(&[("source", json!("b"))]), Selector::new(), Expect::Greater);
    let rounded = evaluate(&c, &at(&[81.05, 60.1, 72.35], &[80.0, 59.05, 71.3])).unwrap();
    assert!(rounded.parts[0].summary.values.iter().any(|v| *v != 1.05), "the data must differ in their last bits");
    assert_eq!(rounded.verdict, Verdict::NoSpread, "{rounded:?}");
    let real = evaluate(&c, &at(&[81.05, 60.1001, 72.35], &[80.0, 59.05, 71.3])).unwrap();
    assert_eq!(real.verdict, Verdict::Holds, "{real:?}");
}

/// Deviations far below the values' own size keep their spread (their squares underflowed to
/// 0, and a claim on three replicates near 1e-150 held on a zero-width interval); an interval
/// whose upper bound passes the largest float still clears 0 by its lower bound.
#[test]
fn extreme_but_finite_differences_decide_as_exact_arithmetic_does() {
    let close = Summary::of(&[1e-150 - 1e-163, 1e-150, 1e-150 + 1e-163]);
    assert!(close.sd > 0.0);
    assert_eq!(claim::decide(&close, Expect::Greater, 1e-150 - 5e-164), Verdict::Inconclusive);
    let near_max = Summary::of(&[1.7e308, 1.6e308, 1.75e308]);
    assert_eq!(near_max.interval().unwrap().1, f64::INFINITY);
    assert_eq!(claim::decide(&near_max, Expect::Greater, 0.0), Verdict::Holds);
    assert_eq!(claim::decide(&near_max, Expect::Less, 0.0), Verdict::Reversed);
}

/// A tie equal but for rounding that sits within rounding of the line is on it, from six
/// replicates too, where no spread would otherwise decide (found by review): differences of
/// +-1.05 in two cells gave replicates of +-3.6e-15 whose mean read "holds" one way and
/// "reversed" the other, and 1.05 in every replicate read short of a margin of 1.05.
#[test]
fn a_tie_on_the_line_decides_nothing_at_six_replicates() {
    let c = |expect: Expect, margin: f64| Claim {
        shape: Shape::Compare { a: sel(&[("source", json!("a"))]), b: sel(&[("source", json!("b"))]) },
        scope: Selector::new(),
        expect,
        margin,
    };
    // Per replicate: a - b = +1.05 in cell 0 and -1.05 in cell 1, at values on a 0.05 grid.
    let cells = [(81.05, 80.0, 59.05, 60.1), (72.35, 71.3, 64.0, 65.05), (90.1, 89.05, 52.3, 53.35)];
    let mut zero = Vec::new();
    for r in 0..6 {
        let (a0, b0, a1, b1) = cells[r % 3];
        for (cell, a, b) in [(0, a0, b0), (1, a1, b1)] {
            let ax = [("replicate", json!(r)), ("cell", json!(cell))];
            zero.extend([obs("a", &ax, a), obs("b", &ax, b)]);
        }
    }
    let greater = evaluate(&c(Expect::Greater, 0.0), &zero).unwrap();
    assert!(
        greater.parts[0].per_replicate.iter().any(|(_, v)| *v != 0.0),
        "the tie must differ from 0 in its last bits"
    );
    assert_eq!(greater.verdict, Verdict::Inconclusive, "{greater:?}");
    assert_eq!(evaluate(&c(Expect::Less, 0.0), &zero).unwrap().verdict, Verdict::Inconclusive);
    assert_eq!(family::sides(&greater, Expect::Greater, 0.0).unwrap(), family::Sides { holds: 1.0, reversed: 1.0 });

    let on_margin: Vec<Observation> = (0..6)
        .flat_map(|r| {
            let (a, b, _, _) = cells[r % 3];
            let ax = [("replicate", json!(r))];
            [obs("a", &ax, a), obs("b", &ax, b)]
        })
        .collect();
    for expect in [Expect::Greater, Expect::Within] {
        let out = evaluate(&c(expect, 1.05), &on_margin).unwrap();
        assert!(out.parts[0].per_replicate.iter().any(|(_, v)| *v != 1.05), "off 1.05 in the last bits");
        assert_eq!(out.verdict, Verdict::Inconclusive, "{expect:?}: {out:?}");
    }
    // A real gap of a hundredth past the margin still decides from six equal replicates.
    let past: Vec<Observation> = on_margin
        .iter()
        .map(|o| {
            if o.source == "a" {
                obs("a", &[("replicate", o.axes["replicate"].clone())], o.value + 0.01)
            } else {
                o.clone()
            }
        })
        .collect();
    assert_eq!(evaluate(&c(Expect::Greater, 1.05), &past).unwrap().verdict, Verdict::Holds);
}

/// An order's step between copies is no test, though the order's other series vary: the order
/// reads identical replicates, and its family-wise p-values take nothing from that step (it
/// held on a sign-flip p of 1/64; found by review).
#[test]
fn an_order_step_between_copies_decides_nothing() {
    let mut o = Vec::new();
    for r in 0..6 {
        let ax = [("replicate", json!(r))];
        o.extend([obs("a", &ax, 90.0), obs("b", &ax, 80.0), obs("c", &ax, 50.0 + r as f64)]);
    }
    let s = |name: &str| sel(&[("source", json!(name))]);
    let order = Claim {
        shape: Shape::Order { series: vec![s("a"), s("b"), s("c")] },
        scope: Selector::new(),
        expect: Expect::Greater,
        margin: 0.0,
    };
    let out = evaluate(&order, &o).unwrap();
    assert_eq!(out.verdict, Verdict::Identical, "{out:?}");
    assert_eq!(out.parts[0].verdict, Verdict::Identical);
    assert_eq!(out.parts[1].verdict, Verdict::Holds);
    assert_eq!(family::sides(&out, Expect::Greater, 0.0).unwrap().holds, 1.0);
    // Reversed still wins: a real reversal elsewhere in the order is a finding.
    let mut flipped = o.clone();
    flipped.iter_mut().filter(|x| x.source == "c").for_each(|x| x.value += 50.0);
    assert_eq!(evaluate(&order, &flipped).unwrap().verdict, Verdict::Reversed);
}
