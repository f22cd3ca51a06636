//! A figure end to end: plot data ([`super::plot`]) laid out as a scene ([`super::layout`]),
//! drawn as SVG and PNG.

use std::path::Path;

use super::data::Record;
use super::layout::layout;
use super::plot::{FigureData, PlotSpec};
use super::raster::render_png;
use super::{write_output, ReportError};

/// A rendered figure in both output formats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFigure {
    /// Standalone SVG document.
    pub svg: String,
    /// PNG image at [`PNG_SCALE`] pixels per SVG unit.
    pub png: Vec<u8>,
}

/// PNG pixels per SVG unit: 2x keeps thin lines and small text sharp on screens and slides.
pub const PNG_SCALE: f32 = 2.0;

/// Renders `records` per `spec` into an SVG document and PNG bytes, without touching disk.
pub fn render_figure(records: &[Record], spec: &PlotSpec) -> Result<RenderedFigure, ReportError> {
    let data = FigureData::build(records, spec)?;
    let scene = layout(&data, spec);
    let png = render_png(&scene, PNG_SCALE)
        .map_err(|reason| ReportError::Render { title: spec.axes.title.clone(), reason })?;
    Ok(RenderedFigure { svg: scene.to_svg(&spec.axes.title), png })
}

/// Renders the figure and writes it to `svg_path` and `png_path` (in staging; see `super::write_output`).
pub fn render_plot(records: &[Record], spec: &PlotSpec, svg_path: &Path, png_path: &Path) -> Result<(), ReportError> {
    let fig = render_figure(records, spec)?;
    write_output(svg_path, fig.svg.as_bytes())?;
    write_output(png_path, &fig.png)
}
