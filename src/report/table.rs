//! Paper-style result tables: a record set pivoted into rows x columns, rendered as
//! aligned markdown (for reading) and RFC 4180 CSV (for spreadsheets and scripts).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::data::{key_label, key_of, Filter, Key, KeyOrder, Record};
use super::ReportError;

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
    /// Decimals shown in the markdown cells (the CSV keeps full precision).
    #[serde(default = "default_precision")]
    pub precision: usize,
    /// The paper's own numbers, shown beside ours for orientation.
    #[serde(default)]
    pub paper: Vec<PaperRef>,
    /// Only records whose dimensions equal these values are tabulated.
    #[serde(default)]
    pub filter: Filter,
}

fn default_precision() -> usize {
    1
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

/// The pivoted data, independent of output format.
struct Grid {
    row_keys: Vec<Key>,
    col_labels: Vec<String>,
    /// `cells[row][col]`: our value and the paper's, either may be absent.
    cells: Vec<Vec<(Option<f64>, Option<f64>)>>,
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

        let mut cells = vec![vec![(None, None); col_keys.len()]; row_keys.len()];
        for (ri, rk) in row_keys.iter().enumerate() {
            for (ci, ck) in col_keys.iter().enumerate() {
                cells[ri][ci].0 = by_cell.get(&(rk.clone(), ck.clone())).map(|r| r.metrics[&spec.metric]);
            }
        }

        let mut col_has_paper = vec![false; col_keys.len()];
        let mut unmatched_paper = Vec::new();
        for p in &spec.paper {
            let ri = row_labels.iter().position(|l| *l == p.row);
            let ci = col_labels.iter().position(|l| *l == p.column);
            match (ri, ci) {
                (Some(ri), Some(ci)) => {
                    if cells[ri][ci].1.is_some() {
                        return Err(ReportError::InvalidSpec {
                            title: spec.title.clone(),
                            reason: format!("two paper values for row {:?}, column {:?}", p.row, p.column),
                        });
                    }
                    cells[ri][ci].1 = Some(p.value);
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
        let prec = spec.precision;
        let n_lead = Self::row_headers(spec).len();
        let mut header = Self::row_headers(spec);
        header.extend(self.col_labels.iter().cloned());
        let mut body: Vec<Vec<String>> = Vec::new();
        for ri in 0..self.row_keys.len() {
            let mut line = self.row_cells(spec, ri);
            for &(ours, paper) in &self.cells[ri] {
                let ours = ours.map_or("-".to_string(), |v| format!("{v:.prec$}"));
                line.push(match paper {
                    Some(p) => format!("{ours} (paper {p:.prec$})"),
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

        let mut out = format!("### {}\n\n", spec.title);
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
        if !self.unmatched_paper.is_empty() {
            let items: Vec<String> =
                self.unmatched_paper.iter().map(|p| format!("{} / {}: {:.prec$}", p.row, p.column, p.value)).collect();
            out.push_str(&format!("\nPaper values without a matching row/column: {}\n", md_escape(&items.join("; "))));
        }
        out
    }

    fn csv(&self, spec: &TableSpec) -> String {
        let mut header = Self::row_headers(spec);
        for (ci, label) in self.col_labels.iter().enumerate() {
            header.push(label.clone());
            if self.col_has_paper[ci] {
                header.push(format!("{label} (paper)"));
            }
        }
        let mut out = csv_line(&header);
        for ri in 0..self.row_keys.len() {
            let mut line = self.row_cells(spec, ri);
            for (ci, &(ours, paper)) in self.cells[ri].iter().enumerate() {
                // Full precision: the CSV is for machines, rounding is the markdown's job.
                line.push(ours.map(|v| v.to_string()).unwrap_or_default());
                if self.col_has_paper[ci] {
                    line.push(paper.map(|v| v.to_string()).unwrap_or_default());
                }
            }
            out.push_str(&csv_line(&line));
        }
        out
    }
}

/// Escapes the one character that would break a markdown table cell.
fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

/// One CSV record, quoted per RFC 4180 where needed, terminated by CRLF.
fn csv_line(fields: &[String]) -> String {
    let quoted: Vec<String> = fields
        .iter()
        .map(|f| if f.contains([',', '"', '\r', '\n']) { format!("\"{}\"", f.replace('"', "\"\"")) } else { f.clone() })
        .collect();
    format!("{}\r\n", quoted.join(","))
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
        }
    }

    fn spec() -> TableSpec {
        TableSpec {
            title: "Linear probe top-1 (%) vs label noise".into(),
            rows: vec!["source".into(), "k".into()],
            columns: vec!["p".into()],
            metric: "top1".into(),
            precision: 1,
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
