//! Paper-style result tables: a record set pivoted into rows x columns, rendered as
//! aligned markdown (for reading) and RFC 4180 CSV (for spreadsheets and scripts).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::data::{key_label, key_of, AxisValue, Filter, Key, KeyOrder, Record, METRIC_DIM};
use super::number::fixed;
use super::precision::Precision;
use super::ReportError;
use crate::stats::{Summary, INTERVAL_METHOD};

/// What to tabulate: which dimensions make rows and columns, which metric fills the cells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSpec {
    /// Title line printed above the markdown table.
    pub title: String,
    /// Dimensions whose value tuple identifies a row (axis names or `"source"`).
    pub rows: Vec<String>,
    /// Dimensions whose value tuple identifies a column.
    pub columns: Vec<String>,
    /// Metric shown in the cells, e.g. `top1`.
    pub metric: String,
    /// Decimals shown in the markdown cells, in all or by metric (the CSV keeps full precision).
    #[serde(default)]
    pub precision: Precision,
    /// The paper's own numbers, shown beside ours for orientation.
    #[serde(default)]
    pub paper: Vec<PaperRef>,
    /// Only records whose dimensions equal these values are tabulated.
    #[serde(default)]
    pub filter: Filter,
}

/// A number reported in the paper for one cell, addressed by the row and column labels.
///
/// Labels are built like the table shows them: string values bare, numeric values as
/// `dim=value`, joined by spaces (row `N_cf k=250`, column `animal-mnist` or `p=50`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaperRef {
    /// Row label, e.g. `N_cf k=250`.
    pub row: String,
    /// Column label, e.g. `p=50`.
    pub column: String,
    /// The paper's value.
    pub value: f64,
}

/// Whether two labels name one cell: the same words, numbers compared by value (`base=10.0` is
/// the table's `base=10`, `k=250.0` its `k=250`).
pub fn same_label(a: &str, b: &str) -> bool {
    let words = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<String>>();
    let (a, b) = (words(a), words(b));
    a.len() == b.len()
        && a.iter().zip(&b).all(|(x, y)| match (x.split_once('='), y.split_once('=')) {
            (Some((dx, vx)), Some((dy, vy))) if dx == dy => match (vx.parse::<f64>(), vy.parse::<f64>()) {
                (Ok(p), Ok(q)) => p == q,
                _ => vx == vy,
            },
            _ => x == y,
        })
}

/// The row and column labels a record takes in a table laid out by `rows` and `columns` (the
/// metric's name where there is no column dimension): what a [`PaperRef`] names.
pub fn cell_labels(record: &Record, rows: &[String], columns: &[String], metric: &str) -> (String, String) {
    let row = key_label(rows, &key_of(record, rows));
    let column = if columns.is_empty() { metric.to_string() } else { key_label(columns, &key_of(record, columns)) };
    (row, column)
}

/// A rendered table in both output formats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedTable {
    /// Title line, blank line, aligned pipe table (ends with a newline).
    pub markdown: String,
    /// Header + one line per row, CRLF line ends, RFC 4180 quoting.
    pub csv: String,
}

/// Pivots `records` per `spec` into a markdown and a CSV table.
pub fn render_table(records: &[Record], spec: &TableSpec) -> Result<RenderedTable, ReportError> {
    let grid = Grid::build(records, spec)?;
    Ok(RenderedTable { markdown: grid.markdown(spec), csv: grid.csv(spec) })
}

/// One table cell.
#[derive(Debug, Clone, Default)]
struct Cell {
    ours: Option<f64>,
    spread: Option<Summary>,
    paper: Option<f64>,
    /// Decimals shown: its metric's.
    decimals: usize,
}

/// The pivoted data, independent of output format.
struct Grid {
    row_keys: Vec<Key>,
    col_labels: Vec<String>,
    /// `cells[row][col]`: our value, its spread over replicates, and the paper's; any may be absent.
    cells: Vec<Vec<Cell>>,
    /// Whether any paper value sits in a column (CSV then gets a companion column).
    col_has_paper: Vec<bool>,
    unmatched_paper: Vec<PaperRef>,
}

impl Grid {
    fn build(records: &[Record], spec: &TableSpec) -> Result<Self, ReportError> {
        let recs: Vec<&Record> =
            records.iter().filter(|r| r.matches(&spec.filter) && r.metrics.contains_key(&spec.metric)).collect();
        if recs.is_empty() {
            return Err(ReportError::NoData { title: spec.title.clone(), metric: spec.metric.clone() });
        }

        let mut by_cell: BTreeMap<(Key, Key), &Record> = BTreeMap::new();
        for r in &recs {
            let cell = (key_of(r, &spec.rows), key_of(r, &spec.columns));
            if let Some(prev) = by_cell.get(&cell) {
                return Err(ReportError::Duplicate {
                    title: spec.title.clone(),
                    cell: format!(
                        "row {:?}, column {:?}",
                        key_label(&spec.rows, &cell.0),
                        key_label(&spec.columns, &cell.1)
                    ),
                    first: prev.describe(),
                    second: r.describe(),
                });
            }
            by_cell.insert(cell, r);
        }

        let mut row_keys: Vec<Key> = by_cell.keys().map(|(r, _)| r.clone()).collect();
        KeyOrder::new(&spec.rows, recs.iter().copied()).sort(&mut row_keys);
        let mut col_keys: Vec<Key> = by_cell.keys().map(|(_, c)| c.clone()).collect();
        KeyOrder::new(&spec.columns, recs.iter().copied()).sort(&mut col_keys);

        let col_labels: Vec<String> = if spec.columns.is_empty() {
            // A table without column dimensions has one column: the metric itself.
            vec![spec.metric.clone()]
        } else {
            col_keys.iter().map(|k| key_label(&spec.columns, k)).collect()
        };
        let row_labels: Vec<String> = row_keys.iter().map(|k| key_label(&spec.rows, k)).collect();

        // A table of several metrics has them as a dimension, so a cell's metric (an empty one's
        // too) is in its row's or column's key; one of a single metric names it in the spec.
        let metric_in = |dims: &[String], key: &Key| -> Option<String> {
            match dims.iter().position(|d| d == METRIC_DIM).and_then(|at| key[at].as_ref()) {
                Some(AxisValue::Str(m)) => Some(m.clone()),
                _ => None,
            }
        };
        let metric_of = |r: &Record| match r.axes.get(METRIC_DIM) {
            Some(AxisValue::Str(m)) => Some(m.clone()),
            _ => None,
        };
        let metrics: std::collections::BTreeSet<Option<String>> = recs.iter().map(|r| metric_of(r)).collect();
        let only_metric = if metrics.len() == 1 { metrics.into_iter().next().flatten() } else { None };
        let mut cells = vec![vec![Cell::default(); col_keys.len()]; row_keys.len()];
        for (ri, rk) in row_keys.iter().enumerate() {
            for (ci, ck) in col_keys.iter().enumerate() {
                let record = by_cell.get(&(rk.clone(), ck.clone()));
                let metric = metric_in(&spec.rows, rk)
                    .or_else(|| metric_in(&spec.columns, ck))
                    .or_else(|| record.and_then(|r| metric_of(r)))
                    .or_else(|| only_metric.clone())
                    .unwrap_or_else(|| spec.metric.clone());
                let cell = &mut cells[ri][ci];
                cell.decimals = spec.precision.of(Some(&metric));
                if let Some(r) = record {
                    cell.ours = Some(r.metrics[&spec.metric]);
                    cell.spread = r.replicates.clone();
                }
            }
        }

        let mut col_has_paper = vec![false; col_keys.len()];
        let mut unmatched_paper = Vec::new();
        for p in &spec.paper {
            let ri = row_labels.iter().position(|l| same_label(l, &p.row));
            let ci = col_labels.iter().position(|l| same_label(l, &p.column));
            match (ri, ci) {
                (Some(ri), Some(ci)) => {
                    if cells[ri][ci].paper.is_some() {
                        return Err(ReportError::InvalidSpec {
                            title: spec.title.clone(),
                            reason: format!("two paper values for row {:?}, column {:?}", p.row, p.column),
                        });
                    }
                    cells[ri][ci].paper = Some(p.value);
                    col_has_paper[ci] = true;
                }
                // Kept and listed under the table rather than failing: a stage that has
                // not run yet should not make the whole report unrenderable.
                _ => unmatched_paper.push(p.clone()),
            }
        }

        Ok(Grid { row_keys, col_labels, cells, col_has_paper, unmatched_paper })
    }

    /// Header names of the leading row-label columns.
    fn row_headers(spec: &TableSpec) -> Vec<String> {
        if spec.rows.is_empty() {
            vec!["metric".to_string()]
        } else {
            spec.rows.clone()
        }
    }

    /// Values of the leading row-label columns for one row; missing dimensions stay empty.
    fn row_cells(&self, spec: &TableSpec, ri: usize) -> Vec<String> {
        if spec.rows.is_empty() {
            return vec![spec.metric.clone()];
        }
        self.row_keys[ri].iter().map(|v| v.as_ref().map(|v| v.to_string()).unwrap_or_default()).collect()
    }

    fn markdown(&self, spec: &TableSpec) -> String {
        let n_lead = Self::row_headers(spec).len();
        let mut header = Self::row_headers(spec);
        header.extend(self.col_labels.iter().cloned());
        let mut body: Vec<Vec<String>> = Vec::new();
        let typical_n = self.typical_n();
        for ri in 0..self.row_keys.len() {
            let mut line = self.row_cells(spec, ri);
            for cell in &self.cells[ri] {
                let prec = cell.decimals;
                let mut ours = cell.ours.map_or("-".to_string(), |v| fixed(v, prec));
                if let Some(s) = &cell.spread {
                    if let Some(h) = s.half_width {
                        ours.push_str(&format!(" ± {}", half_width_text(h, prec)));
                    }
                    if Some(s.n) != typical_n {
                        ours.push_str(&format!(" (n={})", s.n));
                    }
                }
                line.push(match cell.paper {
                    Some(p) => format!("{ours} (paper {})", fixed(p, prec)),
                    None => ours,
                });
            }
            body.push(line);
        }

        let header: Vec<String> = header.iter().map(|c| md_escape(c)).collect();
        let body: Vec<Vec<String>> = body.iter().map(|l| l.iter().map(|c| md_escape(c)).collect()).collect();
        // Width 3 minimum so the alignment row (`:--` / `--:`) stays valid.
        let widths: Vec<usize> = (0..header.len())
            .map(|i| body.iter().map(|l| l[i].chars().count()).chain([header[i].chars().count(), 3]).max().unwrap_or(3))
            .collect();
        let left = |i: usize| i < n_lead;

        // Without a title the table stands alone: an empty `### ` would be a blank heading.
        let mut out = if spec.title.trim().is_empty() { String::new() } else { format!("### {}\n\n", spec.title) };
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let w = widths[i];
                    if left(i) {
                        format!("{c:<w$}")
                    } else {
                        format!("{c:>w$}")
                    }
                })
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        out.push_str(&line(&header));
        let rule: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(i, &w)| if left(i) { format!(":{}", "-".repeat(w - 1)) } else { format!("{}:", "-".repeat(w - 1)) })
            .collect();
        out.push_str(&line(&rule));
        for l in &body {
            out.push_str(&line(l));
        }
        if let Some(n) = typical_n {
            out.push_str(&format!("\n{}\n", caption(n)));
        }
        if !self.unmatched_paper.is_empty() {
            let items: Vec<String> = self
                .unmatched_paper
                .iter()
                .map(|p| format!("{} / {}: {}", p.row, p.column, fixed(p.value, spec.precision.most())))
                .collect();
            out.push_str(&format!("\nPaper values without a matching row/column: {}\n", md_escape(&items.join("; "))));
        }
        out
    }

    /// The replicate count most cells have (`None` when no cell summarises replicates); cells
    /// with another count are marked.
    fn typical_n(&self) -> Option<usize> {
        let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
        for s in self.cells.iter().flatten().filter_map(|c| c.spread.as_ref()) {
            *counts.entry(s.n).or_default() += 1;
        }
        counts.into_iter().max_by_key(|&(n, count)| (count, n)).map(|(n, _)| n)
    }

    fn csv(&self, spec: &TableSpec) -> String {
        let with_spread = self.typical_n().is_some();
        let mut header = Self::row_headers(spec);
        for (ci, label) in self.col_labels.iter().enumerate() {
            header.push(label.clone());
            if with_spread {
                // Every replicate's value stays in the CSV, beside the summary.
                for part in ["ci95 half-width", "sd", "n", "replicates"] {
                    header.push(format!("{label} ({part})"));
                }
            }
            if self.col_has_paper[ci] {
                header.push(format!("{label} (paper)"));
            }
        }
        let mut out = csv_line(&header);
        for ri in 0..self.row_keys.len() {
            let mut line = self.row_cells(spec, ri);
            for (ci, cell) in self.cells[ri].iter().enumerate() {
                // Full precision: the CSV is for machines, rounding is the markdown's job.
                line.push(cell.ours.map(|v| v.to_string()).unwrap_or_default());
                if with_spread {
                    let s = cell.spread.as_ref();
                    line.push(s.and_then(|s| s.half_width).map(|h| h.to_string()).unwrap_or_default());
                    // One value has no spread to measure: blank, as its half-width.
                    line.push(s.filter(|s| s.n >= 2).map(|s| s.sd.to_string()).unwrap_or_default());
                    line.push(s.map(|s| s.n.to_string()).unwrap_or_default());
                    let values = s.map(|s| s.values.iter().map(f64::to_string).collect::<Vec<_>>().join(" "));
                    line.push(values.unwrap_or_default());
                }
                if self.col_has_paper[ci] {
                    line.push(cell.paper.map(|v| v.to_string()).unwrap_or_default());
                }
            }
            out.push_str(&csv_line(&line));
        }
        out
    }
}

/// The sentence under a table of replicate means.
pub fn caption(n: usize) -> String {
    if n < 2 {
        return "Cells: one replicate each; no interval is shown.".to_string();
    }
    format!(
        "Cells: mean ± half-width of the 95 % confidence interval over n = {n} replicates ({}); \
         cells marked (n=..) had another count.",
        INTERVAL_METHOD
    )
}

/// Escapes what a markdown table cell would read as markup: `|` ends the cell, `*` and `` ` ``
/// open bold and code spans (an axis value `c|d**e` showed as `c|d` and a bold `e`).
fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '|' | '*' | '`' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One CSV record, quoted per RFC 4180 where needed, terminated by CRLF.
pub(crate) fn csv_line(fields: &[String]) -> String {
    let quoted: Vec<String> = fields
        .iter()
        .map(|f| if f.contains([',', '"', '\r', '\n']) { format!("\"{}\"", f.replace('"', "\"\"")) } else { f.clone() })
        .collect();
    format!("{}\r\n", quoted.join(","))
}

/// A half-width at the table's precision, or with the decimals (up to six, then `< 0.000001`)
/// that show it where it would round to zero without being zero: `± 0.0` would read as no
/// spread at all.
fn half_width_text(h: f64, prec: usize) -> String {
    let shows = |p: usize| format!("{h:.p$}").bytes().any(|b| (b'1'..=b'9').contains(&b));
    if !(h > 0.0 && h.is_finite()) || shows(prec) {
        return fixed(h, prec);
    }
    match (prec..=prec.max(6)).find(|&p| shows(p)) {
        Some(p) => format!("{h:.p$}"),
        None => format!("< {:.*}", prec.max(6), 10f64.powi(-(prec.max(6) as i32))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::AxisValue;
    use super::*;

    fn rec(label: &str, axes: &[(&str, AxisValue)], top1: f64) -> Record {
        Record {
            source: format!("probe_{label}"),
            label: label.to_string(),
            axes: axes.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            metrics: [("top1".to_string(), top1)].into_iter().collect(),
            replicates: None,
        }
    }

    fn spec() -> TableSpec {
        TableSpec {
            title: "Linear probe top-1 (%) vs label noise".into(),
            rows: vec!["source".into(), "k".into()],
            columns: vec!["p".into()],
            metric: "top1".into(),
            precision: Precision::All(1),
            paper: vec![],
            filter: Filter::new(),
        }
    }

    /// Records deliberately out of order, with k values that sort wrongly as strings.
    fn records() -> Vec<Record> {
        let i = AxisValue::Int;
        vec![
            rec("N_pre", &[("p", i(50))], 40.04),
            rec("N_pre", &[("p", i(10))], 61.26),
            rec("N_cf", &[("p", i(10)), ("k", i(250))], 66.0),
            rec("N_cf", &[("p", i(50)), ("k", i(250))], 55.55),
            rec("N_cf", &[("p", i(10)), ("k", i(50))], 64.2),
            rec("N_cf", &[("p", i(50)), ("k", i(50))], 51.0),
            rec("N_cf", &[("p", i(10)), ("k", i(10))], 60.0),
            rec("N_cf, \"x\"", &[("p", i(250))], 1.0),
        ]
    }

    /// A paper value's labels match the table's with numbers compared by value: `k=250.0` is
    /// the cell the table labels `k=250` (it was refused, though the number is the same).
    #[test]
    fn a_paper_label_matches_numbers_by_value() {
        assert!(same_label("N_cf k=250", "N_cf k=250.0"));
        assert!(same_label("base=10", "base=10.0"));
        assert!(same_label("lr=0.1", "lr=0.10"));
        assert!(!same_label("lr=0.1", "lr=0.2"));
        assert!(!same_label("N_cf k=250", "N_pre k=250"));
        assert!(!same_label("k=250", "p=250"));
        assert!(!same_label("N_cf", "N_cf k=250"));
        assert!(!same_label("m=x", "m=y"));
        let mut s = spec();
        s.paper = vec![PaperRef { row: "N_cf k=250.0".into(), column: "p=50.0".into(), value: 57.25 }];
        let t = render_table(&records(), &s).unwrap();
        assert!(t.markdown.contains("55.5 (paper 57.2)"), "{}", t.markdown);
    }

    /// Each cell takes its metric's decimals, a metric the table leaves out gets one, and a
    /// table of one metric takes that metric's.
    #[test]
    fn decimals_follow_each_cells_metric() {
        let s = AxisValue::Str;
        let metric_rec = |metric: &str, k: i64, v: f64| {
            let mut r = rec("km", &[("k", AxisValue::Int(k)), ("metric", s(metric.into()))], v);
            r.metrics = [("value".to_string(), v)].into_iter().collect();
            r
        };
        let records = vec![metric_rec("top1", 4, 61.234), metric_rec("nmi", 4, 0.12345), metric_rec("ami", 4, 0.0987)];
        let spec = TableSpec {
            title: String::new(),
            rows: vec!["k".into()],
            columns: vec!["metric".into()],
            metric: "value".into(),
            precision: Precision::PerMetric([("nmi".to_string(), 3), ("top1".to_string(), 2)].into_iter().collect()),
            paper: vec![],
            filter: Filter::new(),
        };
        let md = render_table(&records, &spec).unwrap().markdown;
        assert!(md.contains("| 4   | 61.23 | 0.123 | 0.1 |"), "{md}");
        // An empty cell's paper value takes its column's metric.
        let mut with_paper = spec.clone();
        with_paper.paper = vec![PaperRef { row: "k=8".into(), column: "top1".into(), value: 12.3456 }];
        let more = [records.clone(), vec![metric_rec("nmi", 8, 0.5)]].concat();
        let md = render_table(&more, &with_paper).unwrap().markdown;
        assert!(md.contains("- (paper 12.35)"), "{md}");
        // A table of one metric, which the table op keeps as a dimension it does not show.
        let single = TableSpec { columns: vec!["k".into()], rows: vec!["source".into()], ..spec.clone() };
        let md = render_table(&[metric_rec("nmi", 4, 0.12345)], &single).unwrap().markdown;
        assert!(md.contains("0.123"), "{md}");
        let one = TableSpec {
            rows: vec!["source".into()],
            columns: vec!["p".into()],
            metric: "top1".into(),
            precision: Precision::PerMetric([("top1".to_string(), 3)].into_iter().collect()),
            ..spec
        };
        let md = render_table(&[rec("N_pre", &[("p", AxisValue::Int(0))], 61.2345)], &one).unwrap().markdown;
        assert!(md.contains("| N_pre  | 61.234 |"), "{md}");
    }

    #[test]
    fn markup_in_a_label_is_escaped() {
        assert_eq!(md_escape("c|d**e`\\"), "c\\|d\\*\\*e\\`\\\\");
        assert_eq!(md_escape("N_cf k=250 ± 0.5"), "N_cf k=250 ± 0.5");
    }

    #[test]
    fn renders_exact_markdown_and_csv() {
        let mut s = spec();
        s.paper = vec![
            PaperRef { row: "N_cf k=250".into(), column: "p=50".into(), value: 57.25 },
            PaperRef { row: "N_cf k=9".into(), column: "p=50".into(), value: 50.0 },
        ];
        let t = render_table(&records(), &s).unwrap();
        let md = "\
### Linear probe top-1 (%) vs label noise

| source    | k   | p=10 |              p=50 | p=250 |
| :-------- | :-- | ---: | ----------------: | ----: |
| N_pre     |     | 61.3 |              40.0 |     - |
| N_cf      | 10  | 60.0 |                 - |     - |
| N_cf      | 50  | 64.2 |              51.0 |     - |
| N_cf      | 250 | 66.0 | 55.5 (paper 57.2) |     - |
| N_cf, \"x\" |     |    - |                 - |   1.0 |

Paper values without a matching row/column: N_cf k=9 / p=50: 50.0
";
        assert_eq!(t.markdown, md, "\n{}", t.markdown);
        let csv = "source,k,p=10,p=50,p=50 (paper),p=250\r\n\
                   N_pre,,61.26,40.04,,\r\n\
                   N_cf,10,60,,,\r\n\
                   N_cf,50,64.2,51,,\r\n\
                   N_cf,250,66,55.55,57.25,\r\n\
                   \"N_cf, \"\"x\"\"\",,,,,1\r\n";
        assert_eq!(t.csv, csv, "\n{}", t.csv);
    }

    #[test]
    fn a_narrow_interval_is_not_printed_as_none() {
        assert_eq!(half_width_text(2.484, 1), "2.5");
        assert_eq!(half_width_text(0.04, 1), "0.04");
        assert_eq!(half_width_text(0.0004, 1), "0.0004");
        assert_eq!(half_width_text(1e-9, 1), "< 0.000001");
        assert_eq!(half_width_text(0.0, 1), "0.0", "no spread is printed as none");
        assert_eq!(half_width_text(0.06, 0), "0.1");
    }

    #[test]
    fn replicate_means_print_with_their_interval() {
        let mut recs = Vec::new();
        for (r, v) in [(0, 80.0), (1, 81.0), (2, 82.0)] {
            recs.push(rec("N_cf", &[("p", AxisValue::Int(50)), ("replicate", AxisValue::Int(r))], v));
        }
        for (r, v) in [(0, 70.0), (1, 71.0)] {
            recs.push(rec("N_pre", &[("p", AxisValue::Int(50)), ("replicate", AxisValue::Int(r))], v));
        }
        let recs = crate::report::data::aggregate_replicates(recs, "top1", &[], "t").unwrap();
        let mut s = spec();
        s.rows = vec!["source".into()];
        let t = render_table(&recs, &s).unwrap();
        // 81 ± 4.303 * 1 / sqrt(3) = 81 ± 2.484; 70.5 ± 12.706 * 0.7071 / sqrt(2) = 70.5 ± 6.353.
        assert!(t.markdown.contains("| N_cf   |       81.0 ± 2.5 |"), "{}", t.markdown);
        assert!(t.markdown.contains("70.5 ± 6.4 (n=2)"), "{}", t.markdown);
        assert!(t.markdown.contains("over n = 3 replicates (Student t"), "{}", t.markdown);
        assert!(
            t.csv.starts_with("source,p=50,p=50 (ci95 half-width),p=50 (sd),p=50 (n),p=50 (replicates)\r\n"),
            "{}",
            t.csv
        );
        assert!(t.csv.contains(",1,3,80 81 82\r\n"), "{}", t.csv);
    }

    #[test]
    fn a_table_without_title_starts_with_its_header_row() {
        let mut s = spec();
        s.title = String::new();
        let t = render_table(&records(), &s).unwrap();
        assert!(t.markdown.starts_with("| source "), "{}", t.markdown);
    }

    #[test]
    fn duplicate_cell_names_both_records() {
        let mut recs = records();
        recs.push(rec("N_pre", &[("p", AxisValue::Float(10.0))], 1.0));
        let err = render_table(&recs, &spec()).unwrap_err().to_string();
        assert!(err.contains("row \"N_pre\", column \"p=10\""), "{err}");
        assert!(err.contains("N_pre (probe_N_pre) {p=10}"), "{err}");
        assert!(matches!(render_table(&recs, &spec()), Err(ReportError::Duplicate { .. })));
    }

    #[test]
    fn filter_and_missing_metric() {
        let mut s = spec();
        s.filter.insert("source".into(), AxisValue::from("N_pre"));
        s.rows = vec![];
        let t = render_table(&records(), &s).unwrap();
        assert_eq!(t.csv, "metric,p=10,p=50\r\ntop1,61.26,40.04\r\n");
        s.metric = "top5".into();
        assert!(matches!(render_table(&records(), &s), Err(ReportError::NoData { .. })));
    }
}
