//! The experiment's stage graph as an inline SVG: stages in columns by depth (data flows left to
//! right), each box coloured by the state of its instances and showing how many are in each.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::encode::escape;
use super::InstanceView;
use crate::graph::Plan;

const W: f64 = 150.0;
const H: f64 = 48.0;
const GAP_X: f64 = 40.0;
const GAP_Y: f64 = 14.0;

/// The SVG of `plan`'s stages, each box linking to the stage's instances in the page.
pub fn render(plan: &Plan, views: &[InstanceView]) -> String {
    let mut stages: Vec<&str> = Vec::new();
    for inst in &plan.instances {
        if !stages.contains(&inst.stage.as_str()) {
            stages.push(&inst.stage);
        }
    }
    let index = |s: &str| stages.iter().position(|x| *x == s).expect("every stage listed");
    let mut edges: BTreeMap<(usize, usize), ()> = BTreeMap::new();
    for inst in &plan.instances {
        let to = index(&inst.stage);
        for r in inst.inputs.values().flatten() {
            edges.insert((index(&plan.instances[r.instance.0].stage), to), ());
        }
    }
    // Longest-path depth; stages.len() relaxation passes always suffice in an acyclic graph.
    let mut depth = vec![0usize; stages.len()];
    for _ in 0..stages.len() {
        for &(from, to) in edges.keys() {
            depth[to] = depth[to].max(depth[from] + 1);
        }
    }
    let columns = depth.iter().max().map_or(0, |d| d + 1);
    // Column by column, order stages by the mean row of the stages they read, which keeps most
    // edges short and uncrossed.
    let mut row = vec![0usize; stages.len()];
    let mut per_column = vec![0usize; columns];
    for (d, next_row) in per_column.iter_mut().enumerate() {
        let mut members: Vec<(f64, usize)> = (0..stages.len())
            .filter(|&i| depth[i] == d)
            .map(|i| {
                let ups: Vec<f64> = edges.keys().filter(|e| e.1 == i).map(|e| row[e.0] as f64).collect();
                let mean = if ups.is_empty() { i as f64 } else { ups.iter().sum::<f64>() / ups.len() as f64 };
                (mean, i)
            })
            .collect();
        members.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (_, i) in members {
            row[i] = *next_row;
            *next_row += 1;
        }
    }
    let rows = per_column.iter().copied().max().unwrap_or(1);
    let (width, height) = (columns as f64 * (W + GAP_X) - GAP_X + 8.0, rows as f64 * (H + GAP_Y) + 8.0);
    let pos = |i: usize| (4.0 + depth[i] as f64 * (W + GAP_X), 4.0 + row[i] as f64 * (H + GAP_Y));
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"dag\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"stage graph\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    for &(from, to) in edges.keys() {
        let (x0, y0) = pos(from);
        let (x1, y1) = pos(to);
        let d = edge_path((x0 + W, y0 + H / 2.0), (x1, y1 + H / 2.0), rows);
        let _ = write!(s, "<path d=\"{d}\" class=\"edge\"/>");
    }
    for (i, stage) in stages.iter().enumerate() {
        let mine: Vec<&InstanceView> = views.iter().filter(|v| v.stage == *stage).collect();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for v in &mine {
            *counts.entry(v.state).or_default() += 1;
        }
        let worst = worst_state(&counts);
        let op = mine.first().map_or("", |v| v.op.as_str());
        let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let (x, y) = pos(i);
        let _ = write!(
            s,
            "<a href=\"#stage-{}\"><g class=\"node {worst}\"><title>{} ({op}): {}</title>\
             <rect x=\"{x}\" y=\"{y}\" width=\"{W}\" height=\"{H}\" rx=\"5\"/>\
             <text x=\"{}\" y=\"{}\" class=\"n\">{}</text><text x=\"{}\" y=\"{}\" class=\"c\">{} · {}</text></g></a>",
            escape(stage),
            escape(stage),
            summary.join(", "),
            x + 8.0,
            y + 19.0,
            escape(stage),
            x + 8.0,
            y + 37.0,
            escape(op),
            summary.join(", ")
        );
    }
    s.push_str("</svg>");
    s
}

/// The path of an edge from the right side of one box (`a`) to the left side of another (`b`).
/// Between neighbouring columns, one curve through the gap between them. Past a column, the
/// edge drops into the gap between two rows (the one nearest both ends), runs along it and
/// rises to `b`: drawn straight, it ran under the boxes it passed, and two edges read as a third.
fn edge_path((ax, ay): (f64, f64), (bx, by): (f64, f64), rows: usize) -> String {
    if bx - ax <= GAP_X + 1.0 {
        let mid = (ax + bx) / 2.0;
        return format!("M{ax},{ay} C{mid},{ay} {mid},{by} {bx},{by}");
    }
    // The gaps' middles: above row k for k in 0..=rows (the first kept inside the drawing).
    let gap = |k: usize| (4.0 + k as f64 * (H + GAP_Y) - GAP_Y / 2.0).max(2.0);
    let aim = (ay + by) / 2.0;
    let yc = (0..=rows).map(gap).min_by(|p, q| (p - aim).abs().total_cmp(&(q - aim).abs())).unwrap_or(2.0);
    let h = GAP_X / 4.0;
    format!(
        "M{ax},{ay} C{},{ay} {},{yc} {},{yc} L{},{yc} C{},{yc} {},{by} {bx},{by}",
        ax + h,
        ax + h,
        ax + 2.0 * h,
        bx - 2.0 * h,
        bx - h,
        bx - h
    )
}

/// The state a stage's box is painted with: the worst of its instances' states. A result that
/// is cached but damaged or unreadable is worse than one not yet computed.
fn worst_state(counts: &BTreeMap<&str, usize>) -> &'static str {
    ["failed", "damaged", "unreadable", "skipped", "stale", "missing", "ran", "cached"]
        .into_iter()
        .find(|s| counts.contains_key(s))
        .unwrap_or("missing")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An edge past a column runs along the gap between two rows, clear of every box of the
    /// columns it passes (found by an audit: drawn straight, it ran under them).
    #[test]
    fn an_edge_past_a_column_runs_between_the_rows() {
        let row_y = |r: usize| 4.0 + r as f64 * (H + GAP_Y);
        let col_x = |c: usize| 4.0 + c as f64 * (W + GAP_X);
        // From column 0, row 0 to column 3, row 2, in a drawing of 3 rows.
        let d = edge_path((col_x(0) + W, row_y(0) + H / 2.0), (col_x(3), row_y(2) + H / 2.0), 3);
        let along = d.split('L').nth(1).unwrap();
        let y: f64 = along.split([',', ' ']).nth(1).unwrap().parse().unwrap();
        assert!((0..3).all(|r| !(row_y(r)..row_y(r) + H).contains(&y)), "{d}: y {y} inside a row");
        assert!((row_y(0) + H..row_y(2)).contains(&y), "{d}: y {y} not between the ends");
        // Neighbouring columns keep one curve.
        assert!(!edge_path((col_x(0) + W, 28.0), (col_x(1), 90.0), 3).contains('L'));
    }

    #[test]
    fn a_box_takes_its_worst_instance_state() {
        let box_of = |states: &[&'static str]| {
            let counts: BTreeMap<&str, usize> = states.iter().map(|s| (*s, 1)).collect();
            worst_state(&counts)
        };
        assert_eq!(box_of(&["ran", "damaged"]), "damaged");
        assert_eq!(box_of(&["cached", "unreadable", "missing"]), "unreadable");
        assert_eq!(box_of(&["failed", "damaged"]), "failed");
        assert_eq!(box_of(&["cached", "ran"]), "ran");
        assert_eq!(box_of(&[]), "missing");
    }
}
