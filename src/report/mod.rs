//! Paper-style reporting: tables (markdown + CSV) and line-chart figures (SVG + PNG)
//! rendered from flat measurement records.
//!
//! The module is data-driven: callers hand over [`Record`]s (one measured value set
//! with the sweep coordinates it was measured at) plus a [`TableSpec`] or
//! [`PlotSpec`] naming which dimensions become rows/columns or panels/series/x.
//! A *dimension* is an axis name from [`Record::axes`] or the special name
//! [`SOURCE_DIM`], which stands for the record's display label.
//!
//! Nothing here touches the file system except [`render_plot`], which writes the
//! two output paths it is given: files in a stage's staging folder, which publishing makes
//! atomic (no reader sees half a figure).

mod data;
mod figure;
mod font;
mod layout;
pub mod number;
mod plot;
#[cfg(test)]
mod plot_tests;
mod precision;
mod raster;
mod scene;
mod table;
mod ticks;

use std::path::{Path, PathBuf};

pub use data::{aggregate_replicates, AxisValue, Filter, Record, METRIC_DIM, REPLICATE_DIM, SOURCE_DIM};
pub use figure::{render_figure, render_plot, RenderedFigure, PNG_SCALE};
pub use plot::{FigureAxes, PlotSpec};
pub use precision::{Precision, DEFAULT_DECIMALS, MAX_DECIMALS};
pub use scene::xml_escape;
pub(crate) use table::csv_line;
pub use table::{caption, cell_labels, render_table, same_label, PaperRef, RenderedTable, TableSpec};

/// `title: ` before a message, or nothing for an untitled table or figure.
fn titled(title: &str) -> String {
    if title.is_empty() {
        String::new()
    } else {
        format!("{title}: ")
    }
}

/// Everything that can go wrong while building a table or figure.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Two records map to the same table cell or plot point, so the spec is ambiguous.
    #[error(
        "{}records {first} and {second} both land in {cell}; add a dimension or a filter to tell them apart",
        titled(.title)
    )]
    Duplicate {
        /// Title of the table or figure being rendered.
        title: String,
        /// The contested cell or point, e.g. `row "N_cf k=250", column "p=50"`.
        cell: String,
        /// Description of the first record.
        first: String,
        /// Description of the second record.
        second: String,
    },
    /// No record carries the requested metric (after filtering).
    #[error("{title}: no record has metric {metric:?} (after applying the filter)")]
    NoData {
        /// Title of the table or figure being rendered.
        title: String,
        /// The metric that was asked for.
        metric: String,
    },
    /// The spec cannot be rendered as given.
    #[error("{title}: {reason}")]
    InvalidSpec {
        /// Title of the table or figure being rendered.
        title: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Rasterising or encoding the PNG failed.
    #[error("rendering {title}: {reason}")]
    Render {
        /// Title of the figure being rendered.
        title: String,
        /// What failed.
        reason: String,
    },
    /// Writing an output file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file that could not be written.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Writes one output file of a report stage into its staging folder, which publishing makes
/// atomic (files and folder synced, one rename).
pub(crate) fn write_output(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    std::fs::write(path, bytes).map_err(|source| ReportError::Io { path: path.to_path_buf(), source })
}
