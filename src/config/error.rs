//! Configuration errors that point at the file, line and column, rendered with miette.

use std::fmt::Write as _;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan};

use super::file::{Origin, ReadError, SourceFile};
use super::limits::MAX_ERRORS;

/// Everything that can be wrong with an experiment before it runs.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error(transparent)]
    Io(#[from] ReadError),
    /// A problem at a place in the file (or in a `--set` argument).
    #[error("{}", .0.message)]
    At(Box<Located>),
    /// Several problems, reported together so one run shows them all.
    #[error("{} problems in the experiment file", .0.len())]
    Many(Vec<ConfigError>),
    /// Stands for the problems beyond [`MAX_ERRORS`], which are counted, not listed.
    #[error("... and {0} more problems (fix the ones above first)")]
    More(usize),
}

/// A message anchored at a span.
#[derive(Debug)]
pub struct Located {
    /// The file the span refers to.
    pub file: SourceFile,
    /// Where.
    pub origin: Origin,
    /// What is wrong, naming the field.
    pub message: String,
    /// What would be valid.
    pub help: Option<String>,
}

impl ConfigError {
    /// An error at `origin` in `file`. Text from the input is made safe to print here: control
    /// characters escaped, and very long messages (a megabyte-long name) cut short.
    pub fn at(file: &SourceFile, origin: Origin, message: String, help: Option<String>) -> Self {
        let (message, help) = (printable(&message), help.map(|h| printable(&h)));
        ConfigError::At(Box::new(Located { file: file.clone(), origin, message, help }))
    }

    /// Collapses a list of errors: none is `Ok`, one is itself, more are `Many` (at most
    /// [`MAX_ERRORS`] of them listed, the rest counted).
    pub fn collect(mut errors: Vec<ConfigError>) -> Result<(), ConfigError> {
        let listed: usize = errors.iter().map(|e| e.flatten().len()).sum();
        if listed > MAX_ERRORS {
            let mut kept = Vec::new();
            let mut dropped = 0;
            for e in errors.drain(..).flat_map(|e| match e {
                ConfigError::Many(list) => list,
                other => vec![other],
            }) {
                match e {
                    ConfigError::More(n) => dropped += n,
                    e if kept.len() < MAX_ERRORS => kept.push(e),
                    _ => dropped += 1,
                }
            }
            kept.push(ConfigError::More(dropped));
            errors = kept;
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(ConfigError::Many(errors)),
        }
    }

    /// Flattened list of the individual errors.
    pub fn flatten(&self) -> Vec<&ConfigError> {
        match self {
            ConfigError::Many(list) => list.iter().flat_map(|e| e.flatten()).collect(),
            other => vec![other],
        }
    }

    /// `file:line:col`, or a description of the override, for the first error.
    pub fn location(&self) -> Option<String> {
        match self {
            ConfigError::At(loc) => Some(loc.location()),
            ConfigError::Many(list) => list.first().and_then(|e| e.location()),
            ConfigError::Io(e) => Some(e.path.display().to_string()),
            ConfigError::More(_) => None,
        }
    }

    /// Human rendering: one block per error with the source line underlined.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for e in self.flatten() {
            match e {
                ConfigError::At(loc) => out.push_str(&loc.render()),
                other => {
                    let _ = writeln!(out, "error: {}", printable(&other.to_string()));
                }
            }
        }
        out
    }
}

impl Located {
    /// `path:line:col` (or `--set #n`).
    pub fn location(&self) -> String {
        match &self.origin {
            Origin::File(span) => {
                let (line, col) = self.file.line_col(span.start);
                format!("{}:{line}:{col}", self.file.path.display())
            }
            Origin::Override(i) => format!("--set argument #{}", i + 1),
        }
    }

    fn render(&self) -> String {
        let mut out = format!("error: {}\n  --> {}\n", self.message, self.location());
        if let Origin::File(span) = &self.origin {
            if let Some((source, span)) = snippet_source(&self.file.text, span) {
                let diag = Snippet { located: self, span, source };
                let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
                    .with_context_lines(1)
                    .without_cause_chain();
                let mut rendered = String::new();
                if handler.render_report(&mut rendered, &diag).is_ok() {
                    // miette's first line holds the header (see `Snippet`'s Display); ours is above.
                    let body: Vec<&str> = rendered.lines().skip(1).collect();
                    out.push_str(&body.join("\n"));
                    out.push('\n');
                    return out;
                }
            }
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "  help: {help}");
        }
        out
    }
}

/// Longest message or help text printed; the rest is cut (it can quote input of any length).
const MAX_MESSAGE_CHARS: usize = 600;
/// Longest source line quoted under an error.
const MAX_SNIPPET_LINE: usize = 300;

/// `text` with control and direction-changing characters escaped (`\u{1b}`), so input can never
/// move the cursor, recolour or reorder the terminal, and cut to `MAX_MESSAGE_CHARS`.
pub fn printable(text: &str) -> String {
    printable_cut(text, MAX_MESSAGE_CHARS)
}

pub use crate::human::{printable_cut, unsafe_to_print};

/// The lines around `span` (one before, the span's, one after) with the span moved to match,
/// unsafe characters replaced by ones of the same byte length, or `None` when a line is too
/// long to quote (a generated file).
fn snippet_source(text: &str, span: &std::ops::Range<usize>) -> Option<(String, std::ops::Range<usize>)> {
    let start = span.start.min(text.len());
    let end = span.end.clamp(start, text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let from = text[..line_start.saturating_sub(1)].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[end..].find('\n').map_or(text.len(), |i| end + i);
    let to = text[(line_end + 1).min(text.len())..].find('\n').map_or(text.len(), |i| line_end + 1 + i);
    let window = &text[from..to.max(from)];
    if window.lines().any(|l| l.len() > MAX_SNIPPET_LINE) || end - start > 4 * MAX_SNIPPET_LINE {
        return None;
    }
    // A byte-order mark opening the file is no character of its first line (editors hide it).
    let bom = from == 0 && text.starts_with('\u{feff}');
    let safe: String = window
        .char_indices()
        .map(|(i, c)| match c {
            '\n' | '\t' => c,
            '\u{feff}' if bom && i == 0 => c,
            // The message escapes an invisible character; the quoted line shows where it is.
            c if unsafe_to_print(c) || crate::human::invisible(c) => match c.len_utf8() {
                1 => '?',
                2 => '¿',
                _ => '\u{fffd}',
            },
            c => c,
        })
        .collect();
    // The miette line numbers must match the file's: pad with the lines above.
    let above = text[..from].matches('\n').count();
    let pad = "\n".repeat(above);
    let shift = pad.len() as isize - from as isize;
    let moved = ((start as isize + shift) as usize)..((end as isize + shift) as usize);
    Some((pad + &safe, moved))
}

/// Adapter giving miette the source, label and help of one [`Located`].
struct Snippet<'a> {
    located: &'a Located,
    span: std::ops::Range<usize>,
    source: String,
}

impl std::fmt::Debug for Snippet<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.located.message)
    }
}

impl std::fmt::Display for Snippet<'_> {
    /// A one-line stand-in: miette's header line, which `render` drops, since the message above
    /// it is printed whole (miette wraps a long one over several lines, of which only the first
    /// would be dropped).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("-")
    }
}

impl std::error::Error for Snippet<'_> {}

impl miette::Diagnostic for Snippet<'_> {
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let len = self.span.end.saturating_sub(self.span.start).max(1);
        Some(Box::new(std::iter::once(LabeledSpan::new_primary_with_span(Some("here".into()), (self.span.start, len)))))
    }

    fn help<'b>(&'b self) -> Option<Box<dyn std::fmt::Display + 'b>> {
        self.located.help.as_ref().map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_is_printed_once_and_whole() {
        let text = "[stages.a]\nop = \"table\"\n";
        let file = SourceFile::from_text(std::path::Path::new("x.toml"), text.to_string());
        let message = format!("series a has 2 instances {} to compare at each of its values", "word ".repeat(60));
        let e = ConfigError::at(&file, Origin::File(11..13), message.clone(), Some("a help".into()));
        let shown = e.render();
        assert_eq!(shown.lines().next().unwrap(), format!("error: {message}"), "{shown}");
        assert_eq!(shown.matches("to compare at each").count(), 1, "the message again, in pieces: {shown}");
        assert!(shown.contains("x.toml:2:1") && shown.contains("help: a help"), "{shown}");
    }
}
