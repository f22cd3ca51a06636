//! `cfrun show` for a person: each instance as a few labelled lines (state, how and when it was
//! computed, parameters, inputs, metrics, where its files are), made from the same JSON value
//! that `--json` prints, so the two cannot say different things.

use serde_json::Value as Json;

/// Significant digits a metric is shown with (`--json` keeps every digit).
const DIGITS: i32 = 4;

/// The text of one instance of `show --json`'s array.
pub(super) fn render(item: &Json) -> String {
    let text = |key: &str| item.get(key).and_then(Json::as_str).unwrap_or_default();
    let mut out = format!("{}: {}\n", text("instance"), text("state"));
    let mut line = |label: &str, value: String| {
        if !value.is_empty() {
            out.push_str(&format!("  {label:<11}{value}\n"));
        }
    };
    if let Some(error) = item.get("error").and_then(Json::as_str) {
        line("error", error.to_string());
    }
    for reason in item.get("because").and_then(Json::as_array).into_iter().flatten().filter_map(Json::as_str) {
        line("because", reason.to_string());
    }
    let provenance = item.get("provenance").unwrap_or(&Json::Null);
    let mut how = computed(provenance);
    // One result serves every instance of its recipe: say when another instance computed it.
    let by = provenance.get("instance").and_then(Json::as_str).filter(|by| *by != text("instance") && !how.is_empty());
    if let Some(by) = by {
        how.push_str(&format!(", as {}", crate::human::printable_cut(by, usize::MAX)));
    }
    line("computed", how);
    line("params", assignments(item.get("params").unwrap_or(&Json::Null)));
    line("inputs", inputs(provenance.get("inputs").unwrap_or(&Json::Null)));
    let warned = provenance.get("warnings").and_then(Json::as_array);
    for w in warned.into_iter().flatten().filter_map(Json::as_str) {
        line("warning", w.to_string());
    }
    for kept in crate::ops::command::kept_output(provenance) {
        let body: Vec<String> = kept.last.iter().map(|l| format!("\n             {l}")).collect();
        line(kept.stream, kept.heading() + &body.concat());
    }
    let metrics = item.get("metrics").and_then(Json::as_object).cloned().unwrap_or_default();
    let several = metrics.len() > 1;
    for (output, values) in &metrics {
        let label = if several { format!("metrics.{output}") } else { "metrics".to_string() };
        line(&label, measured(values));
    }
    line("key", text("key").to_string());
    line("object", text("object").to_string());
    let object = text("object");
    let files: Vec<&str> =
        item.get("files").and_then(Json::as_array).into_iter().flatten().filter_map(Json::as_str).collect();
    let relative: Vec<&str> =
        files.iter().map(|f| f.strip_prefix(object).map_or(*f, |r| r.trim_start_matches('/'))).collect();
    line("files", relative.join(", "));
    out
}

/// `kmeans v4 on cpu, 1 thread, 0.005 s, 2026-12-05 14:04:15 UTC, cfrun 0.1.0, experiment smoke`.
fn computed(p: &Json) -> String {
    let Some(op) = p.get("op").and_then(Json::as_str) else { return String::new() };
    let mut parts = vec![format!("{op} v{}", p.get("op_version").unwrap_or(&Json::Null))];
    if let Some(device) = p.get("device").and_then(Json::as_str) {
        let threads = p.get("threads").and_then(Json::as_u64);
        let threads = threads.map(|t| format!(", {t} thread{}", if t == 1 { "" } else { "s" })).unwrap_or_default();
        parts[0] = format!("{} on {device}{threads}", parts[0]);
    }
    if let Some(s) = p.get("wall_seconds").and_then(Json::as_f64) {
        parts.push(format!("{} s", number(s)));
    }
    if let Some(t) = p.get("started_unix").and_then(Json::as_f64) {
        parts.push(crate::html::history::utc(t));
    }
    if let Some(v) = p.get("cfrun_version").and_then(Json::as_str) {
        parts.push(format!("cfrun {v}"));
    }
    if let Some(e) = p.get("experiment").and_then(Json::as_str) {
        parts.push(format!("experiment {e}"));
    }
    // Where a cluster job computed it (`cfrun exec` records them).
    if let Some(job) = p.pointer("/slurm/job_id").and_then(Json::as_str) {
        let node = p.pointer("/slurm/node").and_then(Json::as_str).unwrap_or("?");
        parts.push(format!("Slurm job {job} on {node}"));
    } else if let Some(host) = p.get("host").and_then(Json::as_str) {
        parts.push(format!("host {host}"));
    }
    parts.join(", ")
}

/// `k = 4, init = "kmeans++"`: the parameters as a stage writes them, unset ones left out.
fn assignments(params: &Json) -> String {
    let Some(map) = params.as_object() else { return String::new() };
    let set = map.iter().filter(|(_, v)| !v.is_null());
    set.map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ")
}

/// `features = shapes.images (blake3:3c7fa50e31b2)`: each slot, what fed it and its digest's start.
fn inputs(inputs: &Json) -> String {
    let Some(map) = inputs.as_object() else { return String::new() };
    let mut parts = Vec::new();
    for (slot, feeds) in map {
        for feed in feeds.as_array().into_iter().flatten() {
            let field = |k: &str| feed.get(k).and_then(Json::as_str).unwrap_or("?");
            let digest: String = field("digest").chars().take("blake3:".len() + 12).collect();
            parts.push(format!("{slot} = {}.{} ({digest})", field("instance"), field("output")));
        }
    }
    parts.join(", ")
}

/// `nmi 0.1135, purity 0.27`.
fn measured(values: &Json) -> String {
    let Some(map) = values.as_object() else { return String::new() };
    let shown = map.iter().map(|(k, v)| format!("{k} {}", v.as_f64().map_or_else(|| v.to_string(), number)));
    shown.collect::<Vec<_>>().join(", ")
}

/// `x` to [`DIGITS`] significant digits, trailing zeros dropped; whole numbers below 1e15 as
/// they are; an exponent below 1e-4 and from 1e15 on (`1.235e20`, `-1e-13`), so that no value
/// but zero reads as `0` and none is written with a row of made-up digits.
fn number(x: f64) -> String {
    let a = x.abs();
    if !x.is_finite() || (x.fract() == 0.0 && a < 1e15) {
        return format!("{x}");
    }
    if !(1e-4..1e15).contains(&a) {
        return crate::report::number::exponent(x, (DIGITS - 1) as usize);
    }
    let magnitude = a.log10().floor() as i32;
    let decimals = (DIGITS - 1 - magnitude).clamp(0, 12) as usize;
    crate::report::number::trim_zeros(&format!("{x:.decimals$}")).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_keep_four_significant_digits() {
        let cases = [(0.11346073632486889, "0.1135"), (6942.689694404602, "6943"), (98.7654, "98.77"), (0.27, "0.27")];
        for (x, shown) in cases {
            assert_eq!(number(x), shown, "{x}");
        }
        assert_eq!(number(66.0), "66");
        assert_eq!(number(0.004958062), "0.004958");
        assert_eq!(number(-2.5), "-2.5");
        // Tiny and huge values keep their digits in an exponent, never `0` or a row of zeros.
        let cases = [(1e-13, "1e-13"), (-1e-13, "-1e-13"), (1.234e-10, "1.234e-10"), (1.2345678e20, "1.235e20")];
        for (x, shown) in cases {
            assert_eq!(number(x), shown, "{x}");
        }
        assert_eq!([number(0.0), number(0.0001), number(60000.0)], ["0", "0.0001", "60000"]);
    }

    #[test]
    fn a_cached_instance_reads_as_labelled_lines() {
        let item = json!({
            "instance": "clusters[k=4]", "state": "cached", "key": "blake3:9bd3",
            "params": {"k": 4, "init": "kmeans++", "max_points_per_centroid": null},
            "object": "/c/objects/b7", "files": ["/c/objects/b7/labels/labels.safetensors", "/c/objects/b7/metrics/metrics.json"],
            "metrics": {"metrics": {"nmi": 0.11346073632486889, "purity": 0.27}},
            "provenance": {"op": "kmeans", "op_version": 4, "device": "cpu", "threads": 1, "wall_seconds": 0.004958062,
                           "started_unix": 0.0, "cfrun_version": "0.1.0", "experiment": "smoke",
                           "inputs": {"features": [{"digest": "blake3:3c7fa50e31b28cfce303", "instance": "shapes", "output": "images"}]}}
        });
        let text = render(&item);
        let expected = "clusters[k=4]: cached
  computed   kmeans v4 on cpu, 1 thread, 0.004958 s, 1970-01-01 00:00:00 UTC, cfrun 0.1.0, experiment smoke
  params     init = \"kmeans++\", k = 4
  inputs     features = shapes.images (blake3:3c7fa50e31b2)
  metrics    nmi 0.1135, purity 0.27
  key        blake3:9bd3
  object     /c/objects/b7
  files      labels/labels.safetensors, metrics/metrics.json
";
        assert_eq!(text, expected);
        // The same result shown for a second instance of its recipe names the one that computed it.
        let mut twin = item.clone();
        twin["instance"] = json!("clusters2[k=4]");
        twin["provenance"]["instance"] = json!("clusters[k=4]");
        assert!(render(&twin).contains("experiment smoke, as clusters[k=4]\n"), "{}", render(&twin));
        assert!(!text.contains(", as "), "its own result names no other: {text}");
    }

    /// A command's output kept with its result is shown under its stream, with how many lines
    /// it printed in all; a stream it left empty is not shown.
    #[test]
    fn a_commands_output_is_shown_with_its_line_count() {
        let item = json!({"instance": "knn", "state": "cached", "key": "blake3:1", "params": {},
            "provenance": {"op": "command", "op_version": 3,
                "output": {"stdout": {"lines": 0, "last": []},
                           "stderr": {"lines": 31, "last": ["UserWarning: few samples", "done"]}}}});
        let text = render(&item);
        assert!(
            text.contains(
                "  stderr     31 lines, the last 2:\n             UserWarning: few samples\n             done\n"
            ),
            "{text}"
        );
        assert!(!text.contains("stdout"), "{text}");
    }

    #[test]
    fn a_cluster_jobs_result_names_its_job_and_node() {
        let provenance = |extra: Json| {
            let mut p = json!({"op": "train", "op_version": 9, "experiment": "e"});
            p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            computed(&p)
        };
        let slurm = provenance(json!({"host": "login1", "slurm": {"job_id": "1234_5", "node": "gpu7"}}));
        assert_eq!(slurm, "train v9, experiment e, Slurm job 1234_5 on gpu7");
        assert_eq!(provenance(json!({"host": "box"})), "train v9, experiment e, host box", "a child process");
    }

    #[test]
    fn an_instance_not_cached_says_why() {
        let item = json!({"instance": "probe", "state": "failed", "key": "blake3:1", "params": {"lr": 0.1},
                          "because": ["new: never computed"], "error": "training did not fit its labels"});
        let text = render(&item);
        assert!(
            text.starts_with("probe: failed\n  error      training did not fit its labels\n  because    new"),
            "{text}"
        );
        assert!(!text.contains("  computed ") && !text.contains("  files "), "{text}");
    }
}
