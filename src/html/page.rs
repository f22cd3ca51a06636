//! Assembles the page: header, stage graph, tables and figures, training curves, instances with
//! their provenance, run history.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value as Json;

use super::chart::{self, Series};
use super::encode::{data_uri, escape};
use super::history::{utc, Run};
use super::{dag, markdown, InstanceView, TABLE_CELLS_SHOWN};
use crate::graph::Plan;
use crate::ops::Kind;

const CSS: &str = include_str!("page.css");

/// The whole page.
pub fn page(plan: &Plan, views: &[InstanceView], runs: &[Run], source: &Path) -> String {
    let exp = &plan.experiment;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in views {
        *counts.entry(v.state).or_default() += 1;
    }
    let summary: Vec<String> =
        counts.iter().map(|(s, n)| format!("<span class=\"badge {s}\">{n} {s}</span>")).collect();
    let mut body = String::new();
    let _ = write!(
        body,
        "<header><h1>{}</h1><p class=\"desc\">{}</p><p class=\"meta\">{} · {} instances {} · page made {}</p></header>",
        escape(&exp.name),
        escape(&exp.description),
        escape(&source.display().to_string()),
        views.len(),
        summary.join(" "),
        utc(crate::exec::compute::now_unix())
    );
    body.push_str(
        "<nav><a href=\"#reports\">Tables and figures</a><a href=\"#curves\">Training curves</a>\
         <a href=\"#dag\">Stage graph</a><a href=\"#instances\">Instances</a><a href=\"#history\">Run history</a></nav>",
    );
    body.push_str(&reports(views));
    body.push_str(&curves(views));
    let _ = write!(
        body,
        "<section id=\"dag\"><h2>Stage graph</h2><p class=\"note\">Data flows left to right; a box is coloured \
         by the least finished of its instances and links to them.</p><div class=\"scroll\">{}</div></section>",
        dag::render(plan, views)
    );
    body.push_str(&instances(views));
    body.push_str(&history(runs));
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · cfrun report</title><style>{CSS}</style></head>\n<body>{body}</body></html>\n",
        escape(&exp.name)
    )
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// Largest report file the page includes (inline and as a download).
const INLINE_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Most bytes the report files take on one page in all, as written there (inline and as a
/// download): past it, files are named by their path (a sweep of many large reports made a page
/// no browser opens; four 15 MB CSVs, counted by their size, made one of 515 MB).
const PAGE_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Every report output, in plan order: markdown as HTML, figures inline, CSV to download.
fn reports(views: &[InstanceView]) -> String {
    reports_within(views, INLINE_MAX_BYTES, PAGE_MAX_BYTES)
}

/// [`reports`], including files of at most `file_max` bytes and `page_max` bytes in all.
fn reports_within(views: &[InstanceView], file_max: u64, page_max: u64) -> String {
    let mut s = String::from("<section id=\"reports\"><h2>Tables and figures</h2>");
    let mut any = false;
    let mut included = 0u64;
    for v in views {
        for (name, _, dir) in v.outputs.iter().filter(|(_, k, _)| *k == Kind::Report) {
            any = true;
            let _ = write!(
                s,
                "<article class=\"report\"><h3>{} <small>{}.{}</small></h3>",
                escape(&v.name),
                escape(&v.stage),
                escape(name)
            );
            let all = files(dir);
            let has = |stem: &str, ext: &str| {
                all.iter().any(|f| f.file_stem().is_some_and(|s| s == stem) && f.extension().is_some_and(|e| e == ext))
            };
            let mut downloads = Vec::new();
            for f in &all {
                let file = f.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                let stem = f.file_stem().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                let ext = f.extension().map(|e| e.to_string_lossy().to_string()).unwrap_or_default();
                // One page must stay openable: a huge file (a command's report may hold anything)
                // is named with its path instead of being inlined, escaped and encoded several
                // times, and so is every file past what the page has room for, counted as it is
                // written into the page (a CSV's table markup is several times the file).
                let size = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
                let named = |why: &str| {
                    format!(
                        "{} ({:.1} MiB, {why}; it is at <code>{}</code>)",
                        escape(&file),
                        size as f64 / (1024.0 * 1024.0),
                        // Whole: a path relative to where `report` ran names nothing from the page.
                        escape(&std::fs::canonicalize(f).unwrap_or_else(|_| f.clone()).display().to_string())
                    )
                };
                if size > file_max {
                    downloads.push(named("too large to include"));
                    continue;
                }
                let Ok(bytes) = std::fs::read(f) else { continue };
                let twin = match ext.as_str() {
                    "svg" => has(&stem, "png"),
                    "csv" => has(&stem, "md"),
                    _ => false,
                };
                let shown = shown(&file, &ext, &bytes, twin);
                let download = format!("{}-{file}", v.name.replace(['[', ']', '=', ',', '/'], "_"));
                let link = format!(
                    "<a download=\"{}\" href=\"{}\">{}</a>",
                    escape(&download),
                    data_uri(mime(&ext), &bytes),
                    escape(&file)
                );
                let weight = (shown.len() + link.len()) as u64;
                if included + weight > page_max {
                    downloads.push(named("past what one page includes"));
                    continue;
                }
                included += weight;
                s.push_str(&shown);
                downloads.push(link);
            }
            let _ = write!(s, "<p class=\"files\">Files: {}</p></article>", downloads.join(" "));
        }
    }
    // A table or figure the file computes but the cache lacks as it reads now (stale after an
    // edit, failed, damaged, never run) is named, not left out without a word.
    let absent: Vec<String> = views
        .iter()
        .filter(|v| v.reports && v.outputs.is_empty())
        .map(|v| format!("<a href=\"#stage-{}\">{}</a> ({})", escape(&v.stage), escape(&v.name), escape(v.state)))
        .collect();
    if !any && absent.is_empty() {
        s.push_str("<p class=\"note\">No table or figure is in the cache yet: run the experiment first.</p>");
    } else if !absent.is_empty() {
        let _ = write!(
            s,
            "<p class=\"note\">Not shown, as the cache does not hold them as this file computes them: {}.</p>",
            absent.join(", ")
        );
    }
    s.push_str("</section>");
    s
}

/// A report file as the page shows it: markdown as HTML, figures inline (an SVG only without a
/// PNG twin), a CSV as a table without a markdown twin, text as itself; other files only by link.
fn shown(file: &str, ext: &str, bytes: &[u8], has_twin: bool) -> String {
    let figure =
        |mime: &str| format!("<figure><img src=\"{}\" alt=\"{}\"></figure>", data_uri(mime, bytes), escape(file));
    match ext {
        "md" => markdown::render(&String::from_utf8_lossy(bytes)),
        "png" => figure("image/png"),
        "svg" if !has_twin => figure("image/svg+xml"),
        "csv" if !has_twin => csv_table(&String::from_utf8_lossy(bytes)),
        "txt" | "json" => format!("<pre>{}</pre>", escape(&String::from_utf8_lossy(bytes))),
        _ => String::new(),
    }
}

/// The media type a report file is downloaded as.
fn mime(ext: &str) -> &'static str {
    match ext {
        "csv" => "text/csv",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "md" => "text/markdown",
        _ => "text/plain",
    }
}

/// A CSV without a markdown twin, as a plain table (quoted fields with commas are kept whole);
/// past [`TABLE_CELLS_SHOWN`] cells, its first rows and how many there are.
fn csv_table(text: &str) -> String {
    let mut rows = csv_records(text).into_iter().filter(|r| r.iter().any(|c| !c.trim().is_empty()));
    let mut s = String::from("<div class=\"scroll\"><table><thead><tr>");
    for h in rows.next().unwrap_or_default() {
        let _ = write!(s, "<th>{}</th>", escape(&h));
    }
    s.push_str("</tr></thead><tbody>");
    let (mut cells, mut shown, mut total) = (0, 0, 0);
    for row in rows {
        total += 1;
        if cells + row.len() > TABLE_CELLS_SHOWN && shown > 0 {
            continue;
        }
        cells += row.len();
        shown += 1;
        s.push_str("<tr>");
        for c in row {
            let _ = write!(s, "<td>{}</td>", escape(&c));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table></div>");
    if shown < total {
        let _ = write!(
            s,
            "<p class=\"note\">The first {shown} of {total} rows (a page shows at most {TABLE_CELLS_SHOWN} cells of a \
             table); the whole file is linked below.</p>"
        );
    }
    s
}

/// The records of CSV text as RFC 4180 writes them: a quoted field may hold commas, line ends
/// and `""` for one quote, so the page shows what the file holds (a split per line and a quote
/// dropped wherever it stood showed `q,"uoted` as `q,uoted`).
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let (mut records, mut record, mut cell) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    // A quote opens a quoted cell only as the cell's first character; elsewhere it is text
    // (`27" wide`), or one stray quote would swallow the rest of the file.
    let mut fresh = true;
    while let Some(c) = chars.next() {
        let was_fresh = std::mem::replace(&mut fresh, false);
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            '"' if quoted => quoted = false,
            '"' if was_fresh => quoted = true,
            ',' if !quoted => {
                record.push(std::mem::take(&mut cell));
                fresh = true;
            }
            '\r' if !quoted && chars.peek() == Some(&'\n') => fresh = was_fresh,
            '\n' if !quoted => {
                record.push(std::mem::take(&mut cell));
                records.push(std::mem::take(&mut record));
                fresh = true;
            }
            c => cell.push(c),
        }
    }
    if !cell.is_empty() || !record.is_empty() {
        record.push(cell);
        records.push(record);
    }
    records
}

/// Most networks one stage's charts draw a line for: past a few dozen lines a chart is no longer
/// read line by line, and each line costs the page up to a few dozen KB.
const CURVES_PER_STAGE: usize = 200;

/// The charted networks of one stage (name, loss, accuracy), and how many it has in all.
type StageCurves = (Vec<(String, Series, Series)>, usize);

/// Loss and accuracy per epoch of every network (`details.curve` of a metrics output), one
/// pair of charts per stage with a line per instance (the first [`CURVES_PER_STAGE`]).
fn curves(views: &[InstanceView]) -> String {
    // Each curve is thinned as it is read, so a page holds a few hundred points per line
    // however long the curves are.
    let mut by_stage: BTreeMap<&str, StageCurves> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for v in views {
        for (_, _, dir) in v.outputs.iter().filter(|(_, k, _)| *k == Kind::Metrics) {
            let Ok(m) = crate::artifact::Metrics::load(dir) else { continue };
            let Some(curve) = m.details.get("curve").and_then(Json::as_array) else { continue };
            if !by_stage.contains_key(v.stage.as_str()) {
                order.push(&v.stage);
            }
            let (nets, total) = by_stage.entry(&v.stage).or_default();
            *total += 1;
            if nets.len() == CURVES_PER_STAGE {
                continue;
            }
            let series = |field: &str, scale: f64| {
                let points =
                    curve.iter().filter_map(|e| Some((e.get("epoch")?.as_f64()?, e.get(field)?.as_f64()? * scale)));
                Series::new(v.name.clone(), points)
            };
            nets.push((v.name.clone(), series("loss", 1.0), series("accuracy", 100.0)));
        }
    }
    let mut s = String::from("<section id=\"curves\"><h2>Training curves</h2>");
    if order.is_empty() {
        s.push_str("<p class=\"note\">No trained network is in the cache.</p>");
    }
    for stage in order {
        let (nets, total) = by_stage.remove(stage).unwrap_or_default();
        let labels: Vec<String> = nets.iter().map(|(n, _, _)| n.clone()).collect();
        let (loss, accuracy): (Vec<Series>, Vec<Series>) = nets.into_iter().map(|(_, l, a)| (l, a)).unzip();
        let more = if total > labels.len() {
            format!("<p class=\"note\">The first {} of {total} networks.</p>", labels.len())
        } else {
            String::new()
        };
        let _ = write!(
            s,
            "<article class=\"curves\"><h3>{}</h3><div class=\"charts\">{}{}</div>{}{more}</article>",
            escape(stage),
            chart::line_chart("training loss", "epoch", "loss", &loss),
            chart::line_chart("training accuracy (%)", "epoch", "accuracy %", &accuracy),
            chart::legend(&labels)
        );
    }
    s.push_str("</section>");
    s
}

/// Every instance, grouped by stage, its state and, on demand, its provenance.
fn instances(views: &[InstanceView]) -> String {
    let mut s = String::from(
        "<section id=\"instances\"><h2>Instances</h2><div class=\"scroll\"><table class=\"inst\">\
         <thead><tr><th>instance</th><th>state</th><th class=\"right\">wall time</th><th>device</th><th>provenance</th></tr></thead><tbody>",
    );
    let mut stage = "";
    for v in views {
        if v.stage != stage {
            stage = &v.stage;
            let _ = write!(
                s,
                "<tr class=\"stage\" id=\"stage-{}\"><th colspan=\"5\">{} <small>{}</small></th></tr>",
                escape(stage),
                escape(stage),
                escape(&v.op)
            );
        }
        let prov = v.record.as_ref().map(|r| &r.provenance);
        let get = |k: &str| prov.and_then(|p| p.get(k)).cloned().unwrap_or(Json::Null);
        let wall = get("wall_seconds").as_f64().map(crate::human::duration).unwrap_or_default();
        let device = get("device").as_str().unwrap_or("").to_string();
        let _ = write!(
            s,
            "<tr><td><code>{}</code></td><td><span class=\"badge {}\">{}</span></td><td class=\"right\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(&v.name),
            v.state,
            v.state,
            wall,
            escape(&device),
            provenance(v)
        );
    }
    s.push_str("</tbody></table></div></section>");
    s
}

/// Characters of an instance's error its provenance shows (the run printed it whole).
const ERROR_CHARS: usize = 1_500;

fn provenance(v: &InstanceView) -> String {
    let mut rows = Vec::new();
    if let Some(err) = &v.error {
        let err = crate::human::printable_cut(err, ERROR_CHARS);
        rows.push(("error", format!("<pre class=\"err\">{}</pre>", escape(&err))));
    }
    if let Some(rec) = &v.record {
        let p = &rec.provenance;
        let params =
            serde_json::to_string_pretty(&crate::cache::readable::readable(&rec.recipe.params)).unwrap_or_default();
        rows.push(("params", format!("<pre>{}</pre>", escape(&params))));
        if let Some(seed) = p.get("seed").filter(|s| !s.is_null()) {
            rows.push(("seed", escape(&seed.to_string())));
        }
        let mut inputs = Vec::new();
        if let Some(map) = p.get("inputs").and_then(Json::as_object) {
            for (slot, list) in map {
                for i in list.as_array().into_iter().flatten() {
                    let digest = i["digest"].as_str().unwrap_or("");
                    inputs.push(format!(
                        "{} ← <code>{}.{}</code> <span class=\"digest\">{}</span>",
                        escape(slot),
                        escape(i["instance"].as_str().unwrap_or("")),
                        escape(i["output"].as_str().unwrap_or("")),
                        escape(digest.get(..19).unwrap_or(digest))
                    ));
                }
            }
        }
        if !inputs.is_empty() {
            rows.push(("inputs", inputs.join("<br>")));
        }
        // A command's last lines of output, as `cfrun show` gives them.
        for kept in crate::ops::command::kept_output(p) {
            rows.push((
                kept.stream,
                format!("<pre>{}\n{}</pre>", escape(&kept.heading()), escape(&kept.last.join("\n"))),
            ));
        }
        let text = |k: &str| p.get(k).map(|v| v.as_str().map(String::from).unwrap_or_else(|| v.to_string()));
        for (label, key) in
            [("device", "device"), ("threads", "threads"), ("cfrun", "cfrun_version"), ("op version", "op_version")]
        {
            if let Some(t) = text(key) {
                rows.push((label, escape(&t)));
            }
        }
        if let Some(w) = p.get("wall_seconds").and_then(Json::as_f64) {
            rows.push(("wall time", crate::human::duration(w)));
        }
        if let Some(t) = p.get("started_unix").and_then(Json::as_f64) {
            rows.push(("started", utc(t)));
        }
        rows.push(("key", format!("<span class=\"digest\">{}</span>", rec.key)));
        rows.push(("object", format!("<span class=\"digest\">{}</span>", rec.object)));
    }
    if rows.is_empty() {
        return String::new();
    }
    let body: Vec<String> = rows.into_iter().map(|(k, v)| format!("<dt>{k}</dt><dd>{v}</dd>")).collect();
    format!("<details><summary>show</summary><dl>{}</dl></details>", body.join(""))
}

/// One row per run, newest first; failures on demand.
fn history(runs: &[Run]) -> String {
    let mut s = String::from("<section id=\"history\"><h2>Run history</h2>");
    if runs.is_empty() {
        s.push_str(
            "<p class=\"note\">This cache's <code>runs.jsonl</code> has no run of this experiment.</p></section>",
        );
        return s;
    }
    s.push_str(
        "<p class=\"note\">From the cache's <code>runs.jsonl</code>, newest first (a run of part of the experiment \
         names its targets; in lines from before runs were named, a run ends where an instance repeats).</p>\
         <div class=\"scroll\"><table><thead><tr><th>started</th><th>targets</th><th class=\"right\">took</th><th class=\"right\">ran</th>\
         <th class=\"right\">cached</th><th class=\"right\">failed</th><th class=\"right\">skipped</th>\
         <th class=\"right\">compute</th><th>problems</th></tr></thead><tbody>",
    );
    for run in runs.iter().rev() {
        let n = |k: &str| run.outcomes.get(k).copied().unwrap_or(0);
        let problems = if run.problems.is_empty() {
            String::new()
        } else {
            let mut items: Vec<String> = run
                .problems
                .iter()
                .map(|(i, o, e)| format!("<li><code>{}</code> {}: {}</li>", escape(i), escape(o), escape(e)))
                .collect();
            if run.problem_count > run.problems.len() {
                items.push(format!(
                    "<li>and {} more (the cache's <code>runs.jsonl</code> has them all)</li>",
                    run.problem_count - run.problems.len()
                ));
            }
            format!("<details><summary>{}</summary><ul>{}</ul></details>", run.problem_count, items.join(""))
        };
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td class=\"right\">{}</td><td class=\"right\">{}</td><td class=\"right\">{}</td>\
             <td class=\"right\">{}</td><td class=\"right\">{}</td><td class=\"right\">{}</td><td>{problems}</td></tr>",
            utc(run.start),
            if run.targets.is_empty() {
                "all".to_string()
            } else {
                run.targets.iter().map(|t| format!("<code>{}</code>", escape(t))).collect::<Vec<_>>().join(" ")
            },
            crate::human::duration(run.end - run.start),
            n("ran"),
            n("cached"),
            n("failed"),
            n("skipped"),
            crate::human::duration(run.compute_seconds)
        );
    }
    s.push_str("</tbody></table></div></section>");
    s
}

#[cfg(test)]
mod tests {
    use super::{csv_records, csv_table, reports_within, InstanceView, Kind};
    use crate::html::TABLE_CELLS_SHOWN;

    /// Files past one file's limit, or past what the page has room for in all, are named by
    /// their path instead of inlined; the ones before them still are.
    #[test]
    fn a_page_includes_report_files_up_to_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        for (name, n) in [("a.txt", 100), ("b.txt", 100), ("c.txt", 100), ("d.txt", 1500)] {
            std::fs::write(dir.path().join(name), format!("{name}{}", "x".repeat(n - 5))).unwrap();
        }
        let view = InstanceView {
            name: "r".into(),
            stage: "r".into(),
            op: "command".into(),
            state: "cached",
            record: None,
            error: None,
            outputs: vec![("out".into(), Kind::Report, dir.path().to_path_buf())],
            reports: true,
        };
        // Each 100-byte file takes about 310 bytes of the page: as text and as a base64 link.
        let html = reports_within(std::slice::from_ref(&view), 1000, 700);
        assert!(html.len() < 2000, "{html}");
        assert!(html.contains("<pre>a.txt") && html.contains("<pre>b.txt"), "{html}");
        assert!(!html.contains("<pre>c.txt") && html.contains("c.txt (0.0 MiB, past what one page includes"), "{html}");
        assert!(!html.contains("<pre>d.txt") && html.contains("d.txt (0.0 MiB, too large to include"), "{html}");
        let roomy = reports_within(std::slice::from_ref(&view), 1000, u64::MAX);
        assert!(roomy.contains("<pre>c.txt") && !roomy.contains("<pre>d.txt"), "{roomy}");
        // A cache named relative to where `report` runs: the page names the file absolutely.
        let up = "../".repeat(std::env::current_dir().unwrap().components().count() - 1);
        let relative =
            std::path::PathBuf::from(format!("{up}{}", dir.path().display().to_string().trim_start_matches('/')));
        let view = InstanceView { outputs: vec![("out".into(), Kind::Report, relative)], ..view };
        let html = reports_within(std::slice::from_ref(&view), 1000, u64::MAX);
        let d = std::fs::canonicalize(dir.path().join("d.txt")).unwrap();
        assert!(html.contains(&format!("it is at <code>{}</code>", d.display())), "{html}");
        // A table the cache lacks as the file now computes it is named with its state (it was
        // left out without a word after an edit of its title).
        let stale = InstanceView { name: "t".into(), stage: "t".into(), state: "stale", outputs: vec![], ..view };
        let html = reports_within(&[stale], 1000, u64::MAX);
        assert!(
            html.contains("Not shown, as the cache does not hold them") && html.contains(">t</a> (stale)"),
            "{html}"
        );
        assert!(!html.contains("run the experiment first"), "{html}");
    }

    /// Quoted commas, doubled quotes, line ends inside quotes and CRLF read as the file holds
    /// them (found by an audit: `"q,""uoted"` showed as `q,uoted`, a quoted line end split a row).
    #[test]
    fn csv_cells_read_as_written() {
        let text = "a,\"q,\"\"uoted\"\r\n\"two\nlines\",x\r\nlast,\n";
        let want = vec![vec!["a", "q,\"uoted"], vec!["two\nlines", "x"], vec!["last", ""]];
        assert_eq!(csv_records(text), want);
        assert_eq!(csv_records("no,end"), vec![vec!["no", "end"]]);
        // A quote inside an unquoted cell is text, as Python's csv reads it (it swallowed the
        // rest of the file, found by review).
        let text = "item,size\r\nmonitor,27\" wide\r\nlaptop,13\r\n";
        assert_eq!(csv_records(text), vec![vec!["item", "size"], vec!["monitor", "27\" wide"], vec!["laptop", "13"]]);
    }

    /// A large CSV shows its first rows up to the cell budget and says how many there are (50,000
    /// rows of 100 cells made a page Chromium had not opened after three minutes).
    #[test]
    fn a_large_csv_shows_its_first_rows_and_counts_the_rest() {
        let mut text = String::from("a,b,c,d\n");
        for i in 0..10_000 {
            text.push_str(&format!("{i},1,2,3\n"));
        }
        let html = csv_table(&text);
        let rows = TABLE_CELLS_SHOWN / 4;
        assert_eq!(html.matches("<tr>").count(), rows + 1, "the header and the rows within the budget");
        assert!(html.contains(&format!("The first {rows} of 10000 rows")), "{}", &html[html.len() - 300..]);
        assert!(!csv_table("a,b\n1,2\n").contains("The first"));
    }
}
