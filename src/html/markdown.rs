//! The markdown cfrun's `table` op (and a `command` stage's report) writes, as HTML: headings,
//! pipe tables with their column alignment, bulleted and numbered lists, fenced code blocks and
//! paragraphs, with `**bold**` and `` `code` `` inline. Anything else is shown as text; nothing
//! in the input becomes markup unescaped.

use super::encode::escape;
use super::TABLE_CELLS_SHOWN;

/// Renders markdown `text` as an HTML fragment; its tables show [`TABLE_CELLS_SHOWN`] cells in
/// all, each of them its first rows within that and how many it has.
pub fn render(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    let mut cells_left = TABLE_CELLS_SHOWN;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            i += 1;
        } else if trimmed.starts_with('|') {
            let start = i;
            while i < lines.len() && lines[i].trim_start().starts_with('|') {
                i += 1;
            }
            out.push_str(&table(&lines[start..i], &mut cells_left));
        } else if trimmed.starts_with("```") {
            // Verbatim to the closing fence (or the end): its backticks and stars are code.
            i += 1;
            let start = i;
            while i < lines.len() && !lines[i].trim_start().starts_with("```") {
                i += 1;
            }
            out.push_str(&format!("<pre><code>{}</code></pre>\n", escape(&lines[start..i].join("\n"))));
            i += 1;
        } else if let Some(level) = heading_level(trimmed) {
            let title = trimmed[level..].trim();
            if !title.is_empty() {
                // The page itself uses h1 and h2, and h3 for each report: a report's own headings
                // sit below them (a `#` of its own read as another report).
                let h = (level + 2).clamp(4, 6);
                out.push_str(&format!("<h{h}>{}</h{h}>\n", inline(title)));
            }
            i += 1;
        } else if trimmed.starts_with("- ") || trimmed.starts_with("* ") {
            out.push_str("<ul>\n");
            while i < lines.len()
                && (lines[i].trim_start().starts_with("- ") || lines[i].trim_start().starts_with("* "))
            {
                out.push_str(&format!("<li>{}</li>\n", inline(lines[i].trim_start()[2..].trim())));
                i += 1;
            }
            out.push_str("</ul>\n");
        } else if numbered(trimmed).is_some() {
            out.push_str("<ol>\n");
            while let Some(item) = lines.get(i).and_then(|l| numbered(l.trim_start())) {
                out.push_str(&format!("<li>{}</li>\n", inline(item.trim())));
                i += 1;
            }
            out.push_str("</ol>\n");
        } else {
            let mut para = Vec::new();
            while i < lines.len() {
                let t = lines[i].trim();
                // Exactly the outer loop's other branches: a `#` that is no heading (`#1`, seven
                // `#`) must stay in the paragraph, or the loop never moves past it.
                let other_block = t.is_empty()
                    || t.starts_with('|')
                    || heading_level(t).is_some()
                    || t.starts_with("- ")
                    || t.starts_with("* ")
                    || t.starts_with("```")
                    || numbered(t).is_some();
                // The first line is taken whatever it is, so the loop always moves on.
                if other_block && !para.is_empty() {
                    break;
                }
                para.push(inline(t));
                i += 1;
            }
            out.push_str(&format!("<p>{}</p>\n", para.join(" ")));
        }
    }
    out
}

/// The text of a numbered list item (`1. text`, `2) text`), if `line` is one.
fn numbered(line: &str) -> Option<&str> {
    let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits > 9 {
        return None;
    }
    let rest = &line[digits..];
    rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") "))
}

fn heading_level(line: &str) -> Option<usize> {
    let n = line.chars().take_while(|&c| c == '#').count();
    (1..=6).contains(&n).then_some(n).filter(|&n| line[n..].is_empty() || line[n..].starts_with(' '))
}

/// Splits a table row into cells, honouring `\|` escapes.
fn cells(row: &str) -> Vec<String> {
    let row = row.trim();
    let row = row.strip_prefix('|').unwrap_or(row);
    let row = row.strip_suffix('|').unwrap_or(row);
    let mut out = vec![String::new()];
    let mut chars = row.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                out.last_mut().expect("one cell").push('|');
                chars.next();
            }
            // Any other escape stays whole for `inline`: `\\|` is a backslash, then a new cell.
            '\\' => {
                let cell = out.last_mut().expect("one cell");
                cell.push('\\');
                cell.extend(chars.next());
            }
            '|' => out.push(String::new()),
            c => out.last_mut().expect("one cell").push(c),
        }
    }
    out.into_iter().map(|c| c.trim().to_string()).collect()
}

fn is_separator(row: &[String]) -> bool {
    !row.is_empty() && row.iter().all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':' | ' ')))
}

/// A pipe table, its body rows while they fit in `cells_left` (which they use up).
fn table(rows: &[&str], cells_left: &mut usize) -> String {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| cells(r)).collect();
    let has_header = rows.len() >= 2 && is_separator(&rows[1]);
    let align: Vec<&str> = if has_header {
        rows[1]
            .iter()
            .map(|c| match (c.starts_with(':'), c.ends_with(':')) {
                (_, true) => "right",
                (true, false) => "left",
                _ => "",
            })
            .collect()
    } else {
        Vec::new()
    };
    let attr = |j: usize| match align.get(j) {
        Some(a) if !a.is_empty() => format!(" class=\"{a}\""),
        _ => String::new(),
    };
    let mut out = String::from("<div class=\"scroll\"><table>\n");
    if has_header {
        out.push_str("<thead><tr>");
        for (j, c) in rows[0].iter().enumerate() {
            out.push_str(&format!("<th{}>{}</th>", attr(j), inline(c)));
        }
        out.push_str("</tr></thead>\n");
    }
    out.push_str("<tbody>\n");
    let body = &rows[if has_header { 2 } else { 0 }..];
    let mut shown = 0;
    for row in body {
        if row.len() > *cells_left {
            break;
        }
        *cells_left -= row.len();
        shown += 1;
        out.push_str("<tr>");
        for (j, c) in row.iter().enumerate() {
            out.push_str(&format!("<td{}>{}</td>", attr(j), inline(c)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>\n");
    if shown < body.len() {
        *cells_left = 0;
        out.push_str(&format!(
            "<p class=\"note\">The first {shown} of {} rows (a page shows at most {TABLE_CELLS_SHOWN} cells of a \
             file's tables); the whole file is linked below.</p>\n",
            body.len()
        ));
    }
    out
}

/// Escapes text and renders `**bold**` and `` `code` `` spans; a backslash before `*`, `` ` ``,
/// `|` or another backslash shows that character as itself (outside code, as in CommonMark).
fn inline(text: &str) -> String {
    let escaped = escape(text);
    let mut out = String::new();
    let mut bold = false;
    let mut code = false;
    let mut rest = escaped.as_str();
    while let Some(i) = rest.find(['*', '`', '\\']) {
        out.push_str(&rest[..i]);
        if rest[i..].starts_with('\\') && !code {
            match rest[i + 1..].chars().next().filter(|c| matches!(c, '*' | '`' | '|' | '\\')) {
                Some(c) => {
                    out.push(c);
                    rest = &rest[i + 2..];
                }
                None => {
                    out.push('\\');
                    rest = &rest[i + 1..];
                }
            }
        } else if rest[i..].starts_with("**") && !code {
            out.push_str(if bold { "</strong>" } else { "<strong>" });
            bold = !bold;
            rest = &rest[i + 2..];
        } else if rest[i..].starts_with('`') {
            out.push_str(if code { "</code>" } else { "<code>" });
            code = !code;
            rest = &rest[i + 1..];
        } else {
            out.push_str(&rest[i..i + 1]);
            rest = &rest[i + 1..];
        }
    }
    out.push_str(rest);
    if code {
        out.push_str("</code>");
    }
    if bold {
        out.push_str("</strong>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line that starts with `#` but is no heading is text (it looped without end, filling
    /// memory with empty paragraphs).
    /// Numbered lists, fenced code (its backticks and stars kept as written) and a report's own
    /// `#` below the page's per-report h3 (found by an audit: a list ran into one paragraph, a
    /// fence's backticks were eaten, a `#` read as a new report).
    #[test]
    fn numbered_lists_fenced_code_and_headings_below_the_page() {
        let html = render("1. load\n2) train **fast**\n\n```python\nx = a * b * `c`\n<b>\n```\nafter\n# Title\n");
        assert!(html.contains("<ol>\n<li>load</li>\n<li>train <strong>fast</strong></li>\n</ol>"), "{html}");
        assert!(html.contains("<pre><code>x = a * b * `c`\n&lt;b&gt;</code></pre>"), "{html}");
        assert!(html.contains("<p>after</p>") && html.contains("<h4>Title</h4>"), "{html}");
        assert_eq!(render("### t").trim(), "<h5>t</h5>", "a table's title keeps its level");
        // An unclosed fence runs to the end; a number without its dot stays text.
        assert!(render("```\nx").contains("<pre><code>x</code></pre>"));
        assert_eq!(render("2026 was a year").trim(), "<p>2026 was a year</p>");
    }

    #[test]
    fn a_hash_that_is_no_heading_is_text() {
        let html = render("Results\n#1 is best\n####### seven\n#\tx\n");
        assert_eq!(html, "<p>Results #1 is best ####### seven #\tx</p>\n");
        assert_eq!(render("#hashtag line"), "<p>#hashtag line</p>\n");
    }

    /// A label holding markup characters, escaped as the table writer escapes it, shows as
    /// itself (`c|d**e` showed as `c|d` and a bold `e`); escapes are literal inside code.
    #[test]
    fn escaped_markup_shows_as_itself() {
        let html = render("| v | x |\n| --- | --- |\n| c\\|d\\*\\*e | a\\\\|b\\`q |\n");
        assert!(html.contains("<td>c|d**e</td><td>a\\</td><td>b`q</td>"), "{html}");
        assert_eq!(render("`a\\*b` \\x"), "<p><code>a\\*b</code> \\x</p>\n");
    }

    /// A file's tables show at most [`TABLE_CELLS_SHOWN`] cells in all, and say how many rows
    /// each has: a million-cell table took a browser 28 s to lay out (found by a review).
    #[test]
    fn tables_show_their_first_rows_within_the_cell_budget() {
        let rows = TABLE_CELLS_SHOWN / 2 + 7;
        let table = |n: usize| format!("| a | b |\n|---|---|\n{}", "| 1 | 2 |\n".repeat(n));
        let html = render(&format!("{}\ntext\n\n{}", table(rows), table(3)));
        assert_eq!(html.matches("<td>").count(), TABLE_CELLS_SHOWN, "{}", html.len());
        assert!(html.contains(&format!("The first {} of {rows} rows", TABLE_CELLS_SHOWN / 2)));
        assert!(html.contains("The first 0 of 3 rows"), "the budget is the file's");
        assert!(html.contains("<p>text</p>"));
        assert!(!render(&table(3)).contains("The first"));
    }

    #[test]
    fn tables_keep_alignment_and_escape_cells() {
        let md = "### Top-1\n\n| source | p=0 |\n| :--- | ---: |\n| N_cf <b> | **81.2** ± 0.4 |\n\nnote `x`\n";
        let html = render(md);
        assert!(html.contains("<h5>Top-1</h5>"), "{html}");
        assert!(html.contains("<th class=\"right\">p=0</th>"), "{html}");
        assert!(html.contains("<td class=\"left\">N_cf &lt;b&gt;</td>"), "{html}");
        assert!(html.contains("<strong>81.2</strong> ± 0.4"), "{html}");
        assert!(html.contains("<p>note <code>x</code></p>"), "{html}");
    }
}
