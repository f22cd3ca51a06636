//! TEMPORARY shim.
use std::collections::BTreeMap;
#[derive(Debug, thiserror::Error)]
#[error("report")]
pub struct ReportError;
pub enum AxisValue {
    Int(i64),
    Float(f64),
    Str(String),
}
pub struct Record {
    pub source: String,
    pub label: String,
    pub axes: BTreeMap<String, AxisValue>,
    pub metrics: BTreeMap<String, f64>,
}
pub struct PaperRef {
    pub row: String,
    pub column: String,
    pub value: f64,
}
pub struct TableSpec {
    pub title: String,
    pub rows: Vec<String>,
    pub columns: Vec<String>,
    pub metric: String,
    pub precision: usize,
    pub paper: Vec<PaperRef>,
}
pub struct RenderedTable {
    pub markdown: String,
    pub csv: String,
}
pub fn render_table(_: &[Record], _: &TableSpec) -> Result<RenderedTable, ReportError> {
    todo!()
}
