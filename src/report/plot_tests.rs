//! Tests of the figure pipeline (records + spec -> SVG + PNG), kept apart from plot.rs for size.

use std::collections::BTreeMap;

use super::layout::PALETTE;
use super::plot::FigureAxes;
use super::*;

/// Made-up numbers shaped like ClusterFit Fig. 3: accuracy falls with label noise,
/// N_cf degrades least, larger K helps; three target data sets.
fn fig3_records() -> Vec<Record> {
    let mut out = Vec::new();
    let targets = [("animal-mnist", 0.0), ("fashion-mnist", -8.0), ("kmnist", -15.0)];
    let ps = [0i64, 10, 30, 50, 75];
    let methods: [(&str, &str, Option<i64>, f64, f64); 5] = [
        ("probe_pre", "N_pre", None, 78.0, 0.42),
        ("probe_distill", "distill", None, 79.0, 0.30),
        ("probe_cf", "N_cf", Some(50), 76.0, 0.14),
        ("probe_cf", "N_cf", Some(250), 77.5, 0.11),
        ("probe_cf", "N_cf", Some(1000), 77.0, 0.12),
    ];
    for (t, off) in targets {
        for (src, label, k, base, slope) in methods {
            for p in ps {
                let mut axes = BTreeMap::new();
                axes.insert("target".to_string(), AxisValue::from(t));
                axes.insert("p".to_string(), AxisValue::Int(p));
                if let Some(k) = k {
                    axes.insert("k".to_string(), AxisValue::Int(k));
                }
                let wiggle = ((p as f64) * 0.37 + base).sin();
                let top1 = base + off - slope * p as f64 + wiggle;
                out.push(Record {
                    source: src.into(),
                    label: label.into(),
                    axes,
                    metrics: [("top1".to_string(), top1)].into_iter().collect(),
                    replicates: None,
                });
            }
        }
    }
    out
}

fn fig3_spec() -> PlotSpec {
    PlotSpec {
        axes: FigureAxes {
            title: "Linear-probe accuracy under label noise (cf. ClusterFit Fig. 3)".into(),
            panel: Some("target".into()),
            x: "p".into(),
            series: vec!["source".into(), "k".into()],
            x_label: "label noise p (%)".into(),
            y_label: "top-1 accuracy (%)".into(),
            x_log: false,
        },
        metric: "top1".into(),
        filter: Filter::new(),
    }
}

/// Reads width and height from the PNG's IHDR chunk (first chunk after the signature).
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

fn svg_attr(svg: &str, name: &str) -> f32 {
    let start = svg.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
    let end = start + svg[start..].find('"').unwrap();
    svg[start..end].parse().unwrap()
}

#[test]
fn fig3_svg_has_panels_series_legend() {
    let fig = render_figure(&fig3_records(), &fig3_spec()).unwrap();
    let svg = &fig.svg;
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("cf. ClusterFit Fig. 3"));
    for label in ["N_pre", "distill", "N_cf k=50", "N_cf k=250", "N_cf k=1000"] {
        assert!(svg.contains(&format!(">{label}</text>")), "legend {label}");
    }
    for panel in ["animal-mnist", "fashion-mnist", "kmnist"] {
        assert!(svg.contains(&format!(">{panel}</text>")), "panel {panel}");
    }
    // One line per series per panel, one sample per series in the legend.
    assert_eq!(svg.matches("class=\"series\"").count(), 3 * 5);
    assert_eq!(svg.matches("class=\"legend\"").count(), 5);
    assert!(!svg.contains("Points: means"), "one replicate per point: no bars, no line about them");
    // Numeric x: the swept values label the ticks, placed in numeric order.
    let tick_x: Vec<f32> = ["0", "10", "30", "50", "75"]
        .iter()
        .map(|t| {
            let line = svg
                .lines()
                .find(|l| l.contains("text-anchor=\"middle\"") && l.ends_with(&format!(">{t}</text>")))
                .unwrap_or_else(|| panic!("x tick {t}"));
            svg_attr(line, "x")
        })
        .collect();
    assert!(tick_x.windows(2).all(|w| w[0] < w[1]), "{tick_x:?}");
}

#[test]
fn fig3_png_matches_svg_size_and_is_not_blank() {
    let fig = render_figure(&fig3_records(), &fig3_spec()).unwrap();
    let (w, h) = png_size(&fig.png);
    let sw = svg_attr(&fig.svg, "width");
    let sh = svg_attr(&fig.svg, "height");
    assert_eq!((w, h), ((sw * PNG_SCALE) as u32, (sh * PNG_SCALE) as u32));
    assert!(w >= 3 * 600, "about 2x 300 px of plot per panel, got {w}");
    let pm = tiny_skia::Pixmap::decode_png(&fig.png).unwrap();
    let px = pm.pixels();
    let inked = px.iter().filter(|p| p.red() < 200 || p.blue() < 200).count();
    assert!(inked * 100 > px.len(), "only {inked} of {} pixels inked", px.len());
    // Every series colour shows up.
    for c in &PALETTE[..5] {
        assert!(px.iter().any(|p| (p.red(), p.green(), p.blue()) == (c.0, c.1, c.2)), "{c:?} missing");
    }
}

#[test]
fn writes_both_files() {
    let dir = std::env::temp_dir().join(format!("report-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (svg, png) = (dir.join("f.svg"), dir.join("f.png"));
    render_plot(&fig3_records(), &fig3_spec(), &svg, &png).unwrap();
    assert!(std::fs::read_to_string(&svg).unwrap().contains("</svg>"));
    assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");
    // No temp files left behind.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn categorical_x_baseline_and_duplicates() {
    let mut recs = fig3_records();
    for r in &mut recs {
        let p = r.axes["p"].to_string();
        r.axes.insert("p".into(), AxisValue::Str(format!("p{p}")));
    }
    // A reference record without x becomes a dashed line in its panel.
    recs.push(Record {
        source: "sup".into(),
        label: "supervised".into(),
        axes: [("target".to_string(), AxisValue::from("kmnist"))].into_iter().collect(),
        metrics: [("top1".to_string(), 90.0)].into_iter().collect(),
        replicates: None,
    });
    let fig = render_figure(&recs, &fig3_spec()).unwrap();
    assert!(fig.svg.contains(">p75</text>"));
    assert!(fig.svg.contains("stroke-dasharray"));
    assert_eq!(fig.svg.matches("class=\"series\"").count(), 3 * 5 + 1);

    recs.push(recs[0].clone());
    let err = render_figure(&recs, &fig3_spec()).unwrap_err();
    assert!(matches!(err, ReportError::Duplicate { .. }), "{err}");
    assert!(err.to_string().contains("series \"N_pre\", p=p0"), "{err}");
}

#[test]
fn log_x_and_bad_specs() {
    let mut spec = fig3_spec();
    spec.axes.x = "k".into();
    spec.axes.x_log = true;
    spec.axes.series = vec!["p".into()];
    spec.filter.insert("source".into(), AxisValue::from("N_cf"));
    let fig = render_figure(&fig3_records(), &spec).unwrap();
    assert!(fig.svg.contains(">1000</text>"));
    spec.filter.clear();
    spec.filter.insert("p".into(), AxisValue::Int(0));
    spec.axes.x = "target".into();
    assert!(matches!(render_figure(&fig3_records(), &spec), Err(ReportError::InvalidSpec { .. })));
    spec.metric = "nope".into();
    assert!(matches!(render_figure(&fig3_records(), &spec), Err(ReportError::NoData { .. })));
}

/// Writes the example figure for eyeballing: `cargo test -- --ignored write_example`.
#[test]
#[ignore]
fn write_example() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("example");
    std::fs::create_dir_all(&dir).unwrap();
    render_plot(&fig3_records(), &fig3_spec(), &dir.join("fig3.svg"), &dir.join("fig3.png")).unwrap();
    // Stress case: one panel, log x, many series (legend wraps), a dashed baseline.
    let mut recs: Vec<Record> = Vec::new();
    for (i, k) in [10i64, 30, 100, 300, 1000, 3000].iter().enumerate() {
        for s in 0..11 {
            recs.push(Record {
                source: "probe_cf".into(),
                label: format!("N_cf seed {s}"),
                axes: [("k".to_string(), AxisValue::Int(*k))].into_iter().collect(),
                metrics: [("top1".to_string(), 60.0 + 2.0 * i as f64 - 0.4 * s as f64)].into_iter().collect(),
                replicates: None,
            });
        }
    }
    recs.push(Record {
        source: "probe_sup".into(),
        label: "supervised".into(),
        axes: BTreeMap::new(),
        metrics: [("top1".to_string(), 72.0)].into_iter().collect(),
        replicates: None,
    });
    let spec = PlotSpec {
        axes: FigureAxes {
            title: String::new(),
            panel: None,
            x: "k".into(),
            series: vec!["source".into()],
            x_label: "number of clusters K".into(),
            y_label: "top-1 (%)".into(),
            x_log: true,
        },
        metric: "top1".into(),
        filter: Filter::new(),
    };
    render_plot(&recs, &spec, &dir.join("misc.svg"), &dir.join("misc.png")).unwrap();
}

#[test]
fn replicate_means_get_error_bars_and_baselines_get_bounds() {
    let mut recs = Vec::new();
    for r in 0..3 {
        for p in [0i64, 75] {
            recs.push(replicate_record(p, r, 70.0 + r as f64 - p as f64 / 25.0));
        }
        recs.push(Record {
            source: "pixels".into(),
            label: "pixels".into(),
            axes: [("replicate".to_string(), AxisValue::Int(r))].into(),
            metrics: [("top1".to_string(), 60.0 + r as f64)].into_iter().collect(),
            replicates: None,
        });
    }
    let svg = replicate_figure(recs);
    // Two points, each a bar and two caps; the baseline's interval as two dashed bounds.
    assert_eq!(svg.matches("class=\"error-bar\"").count(), 6, "{svg}");
    assert_eq!(svg.matches("class=\"interval\"").count(), 2, "{svg}");
    // What the bars are is written under the figure.
    assert!(svg.contains("Points: means over n = 3 replicates;"), "{svg}");
    assert!(svg.contains("bars: 95 % confidence intervals (Student t, n - 1 degrees of freedom)."), "{svg}");
}

#[test]
fn a_single_run_beside_means_is_not_called_a_mean_over_n() {
    // p = 0 in three replicates, p = 75 in replicate 0 only.
    let recs = (0..3).map(|r| replicate_record(0, r, 70.0 + r as f64)).chain([replicate_record(75, 0, 60.0)]);
    let svg = replicate_figure(recs.collect());
    assert_eq!(svg.matches("class=\"error-bar\"").count(), 3, "one barred point: {svg}");
    assert!(svg.contains("Points: means over n = 1 to 3 replicates (no bar: one run);"), "{svg}");
}

/// N_cf's top-1 at noise `p` in replicate `r`.
fn replicate_record(p: i64, r: i64, top1: f64) -> Record {
    Record {
        source: "probe_cf".into(),
        label: "N_cf".into(),
        axes: [("p".to_string(), AxisValue::Int(p)), ("replicate".to_string(), AxisValue::Int(r))].into(),
        metrics: [("top1".to_string(), top1)].into_iter().collect(),
        replicates: None,
    }
}

/// The SVG of `recs` averaged over replicates along `p`, one series per source, no panels.
fn replicate_figure(recs: Vec<Record>) -> String {
    let recs = aggregate_replicates(recs, "top1", &["p".into()], "t").unwrap();
    let mut spec = fig3_spec();
    spec.axes.panel = None;
    spec.axes.series = vec!["source".into()];
    render_figure(&recs, &spec).unwrap().svg
}

/// A value or an x beyond ±1e100 fails, naming it: the axis arithmetic overflowed into NaN
/// coordinates and an empty image. Large values within it get ticks with an exponent.
#[test]
fn values_a_chart_cannot_place_fail_by_name() {
    let mut recs = fig3_records();
    recs[3].metrics.insert("top1".into(), -1.797e308);
    let err = render_figure(&recs, &fig3_spec()).unwrap_err().to_string();
    assert!(err.contains("-1.797e308") && err.contains("beyond"), "{err}");
    let mut recs = fig3_records();
    recs[0].axes.insert("p".into(), AxisValue::Float(1e200));
    let err = render_figure(&recs, &fig3_spec()).unwrap_err().to_string();
    assert!(err.contains("the x axis \"p\" takes 1e200"), "{err}");
    let mut recs = fig3_records();
    for (i, r) in recs.iter_mut().enumerate() {
        r.metrics.insert("top1".into(), 1e20 * (1.0 + i as f64));
    }
    let fig = render_figure(&recs, &fig3_spec()).unwrap();
    assert!(!fig.svg.contains("NaN") && fig.svg.contains("e21<"), "ticks with an exponent");
}
