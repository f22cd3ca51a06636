//! Integration tests that drive the real `cfrun` binary on the seconds-long smoke experiment.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

fn cfrun(cache: &Path, args: &[&str]) -> Output {
    cfrun_command(cache, args).output().expect("cfrun starts")
}

/// The command [`cfrun`] runs, for a test that sets more (an environment variable, a folder,
/// where stdout goes) before it starts.
fn cfrun_command(cache: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cfrun"));
    cmd.args(args).arg("--cache").arg(cache).env("CFRUN_LOG", "info").env_remove("CFRUN_CACHE");
    cmd
}

/// Starts `cfrun FILE EXTRA`, waits for a log line containing `marker`, waits `delay_ms`, then
/// kills it with SIGKILL (what `Child::kill` sends on Unix).
fn kill_when_logged(cache: &Path, file: &Path, extra: &[&str], marker: &str, delay_ms: u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cfrun"))
        .arg(file)
        .args(extra)
        .arg("--cache")
        .arg(cache)
        .env("CFRUN_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert!(n > 0, "cfrun ended before logging `{marker}`");
        if line.contains(marker) {
            break;
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(delay_ms));
    child.kill().unwrap();
    child.wait().unwrap();
}

fn smoke() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/smoke.toml")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Runs an experiment with `--json` and returns instance name -> outcome.
fn run_json(cache: &Path, file: &Path, extra: &[&str]) -> BTreeMap<String, String> {
    let mut args = vec![file.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = cfrun(cache, &args);
    assert!(out.status.success(), "run failed: {}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json on stdout");
    v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap().to_string(), i["outcome"].as_str().unwrap().to_string()))
        .collect()
}

fn ran(outcomes: &BTreeMap<String, String>) -> BTreeSet<String> {
    outcomes.iter().filter(|(_, o)| *o == "ran").map(|(n, _)| n.clone()).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Object digests of every published key, by instance name (from provenance).
fn objects(cache: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(cache.join("keys"))
        .unwrap()
        .map(|e| {
            let v: Value = serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
            (v["provenance"]["instance"].as_str().unwrap().to_string(), v["object"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn rerun_is_fully_cached_and_prints_the_table() {
    let cache = tempfile::tempdir().unwrap();
    let first = run_json(cache.path(), &smoke(), &[]);
    assert!(first.values().all(|o| o == "ran"), "{first:?}");
    let second = run_json(cache.path(), &smoke(), &[]);
    assert!(second.values().all(|o| o == "cached"), "{second:?}");
    let out = cfrun(cache.path(), &[smoke().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Pixel probes on synthetic shapes"), "{stdout}");
    assert!(stderr(&out).contains("0 ran"), "{}", stderr(&out));
    // `-q`: the tables still print, and stderr holds only warnings and errors (none here).
    let quiet = cfrun(cache.path(), &[smoke().to_str().unwrap(), "-q"]);
    assert!(String::from_utf8_lossy(&quiet.stdout).contains("Pixel probes on synthetic shapes"));
    assert_eq!(stderr(&quiet), "", "-q printed more than warnings and errors");
}

/// `cfrun FILE TARGET...` computes the targets and what they read, nothing else, under the keys
/// the whole run uses: the whole run then serves that part from the cache.
#[test]
fn a_part_runs_alone_and_the_whole_run_reuses_it() {
    let cache = tempfile::tempdir().unwrap();
    let file = smoke();
    let part = run_json(cache.path(), &file, &["clusters[k=16]", "probe_noisy[p=50]"]);
    let names: Vec<&str> = part.keys().map(String::as_str).collect();
    assert_eq!(names, ["clusters[k=16]", "noisy[p=50]", "probe_noisy[p=50]", "shapes"], "{part:?}");
    assert!(part.values().all(|o| o == "ran"), "{part:?}");
    let status = cfrun(cache.path(), &["status", file.to_str().unwrap(), "clusters"]);
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(text.contains("missing clusters[k=4]") && text.contains("cached  clusters[k=16]"), "{text}");
    assert!(text.ends_with("2 of 3 instances cached (clusters and what it reads)\n"), "{text}");
    let whole = run_json(cache.path(), &file, &[]);
    for (name, outcome) in &whole {
        assert_eq!(outcome, if part.contains_key(name) { "cached" } else { "ran" }, "{name}: {whole:?}");
    }
    // The page's run history has the part and the whole as two runs, the part with its targets.
    let pages = cache.path().join("pages");
    let report = cfrun(cache.path(), &["report", file.to_str().unwrap(), "-o", pages.to_str().unwrap()]);
    assert!(report.status.success(), "{}", stderr(&report));
    let html = std::fs::read_to_string(pages.join("smoke.html")).unwrap();
    let history = &html[html.find("<section id=\"history\">").unwrap()..];
    assert!(history.contains("<td><code>clusters[k=16]</code> <code>probe_noisy[p=50]</code></td>"), "{history}");
    assert_eq!(history.matches("<td>all</td>").count(), 1, "{history}");
    // The log names a part's targets once, in its first line, not in each of its 4.
    let log = std::fs::read_to_string(cache.path().join("runs.jsonl")).unwrap();
    assert_eq!(log.matches("\"targets\":[\"clusters[k=16]\",\"probe_noisy[p=50]\"]").count(), 1, "{log}");
    // A part of many targets names a few in its summary line and counts the rest.
    let many: Vec<String> = ["shapes", "noisy[p=0]", "noisy[p=50]", "clusters[k=4]", "clusters[k=16]"]
        .into_iter()
        .chain(["probe_noisy[p=0]", "probe_noisy[p=50]", "results", "clustering"])
        .map(String::from)
        .collect();
    let mut args = vec!["status", file.to_str().unwrap()];
    args.extend(many.iter().map(String::as_str));
    let text = String::from_utf8_lossy(&cfrun(cache.path(), &args).stdout).to_string();
    assert!(text.ends_with("(shapes noisy[p=0] noisy[p=50] clusters[k=4] clusters[k=16] probe_noisy[p=0] probe_noisy[p=50] results and 1 more target, and what they read)\n"), "{text}");
    // A name that matches nothing is the command line's mistake, said with what it could mean.
    for (asked, said) in [
        (
            "clusters[k=5]",
            "`clusters` has no k=5 (its k: 4, 16); instances of `clusters`: clusters[k=4], clusters[k=16]",
        ),
        ("clusters[q=5]", "`clusters` has no axis `q` (its axes: k)"),
        ("clusterz", "no stage or instance `clusterz` in"),
    ] {
        let out = cfrun(cache.path(), &["run", file.to_str().unwrap(), asked]);
        assert_eq!(out.status.code(), Some(2), "{asked}: {}", stderr(&out));
        assert!(stderr(&out).contains(said), "{asked}: {}", stderr(&out));
    }
    let typo = cfrun(cache.path(), &["dag", file.to_str().unwrap(), "clusterz"]);
    assert!(stderr(&typo).contains("(did you mean `clusters`?)"), "{}", stderr(&typo));
}

/// On a cache several experiments share, `gc FILE` removes the others' results: the summary
/// says how many, and whose, before (`--dry-run`) and after.
#[test]
fn gc_names_the_experiments_whose_results_it_removes() {
    let cache = tempfile::tempdir().unwrap();
    run_json(cache.path(), &smoke(), &[]);
    let other = cache.path().join("other.toml");
    let text = std::fs::read_to_string(smoke()).unwrap();
    std::fs::write(&other, text.replace("name = \"smoke\"", "name = \"other\"").replace("k = [4, 16]", "k = [4]"))
        .unwrap();
    // A copy served everything from the cache: it computed nothing, and is not named.
    let copy = cache.path().join("copy.toml");
    std::fs::write(&copy, text.replace("name = \"smoke\"", "name = \"copy\"")).unwrap();
    assert!(run_json(cache.path(), &copy, &[]).values().all(|o| o == "cached"));
    let dry = cfrun(cache.path(), &["gc", other.to_str().unwrap(), "--dry-run"]);
    let said = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(
        said.contains(
            "; 2 of the objects were last computed by experiments not given here: smoke (2) (give their files too"
        ),
        "{said}"
    );
    let json = cfrun(cache.path(), &["gc", other.to_str().unwrap(), "--dry-run", "--json"]);
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["others"], json!({"smoke": 2}), "{v}");
    let both = cfrun(cache.path(), &["gc", other.to_str().unwrap(), smoke().to_str().unwrap(), "--dry-run"]);
    assert!(!String::from_utf8_lossy(&both.stdout).contains("not given here"), "{}", stderr(&both));
    let swept = cfrun(cache.path(), &["gc", other.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&swept.stdout).to_string();
    assert!(
        said.contains("experiments not given here: smoke (2) (a run of their files computes them again)"),
        "{said}"
    );
}

#[test]
fn param_edit_reruns_exactly_the_affected_instances_and_status_names_the_field() {
    let cache = tempfile::tempdir().unwrap();
    run_json(cache.path(), &smoke(), &[]);
    let status = cfrun(cache.path(), &["status", smoke().to_str().unwrap(), "--set", "stages.clusters.iterations=11"]);
    let text = String::from_utf8_lossy(&status.stdout);
    let line = text.lines().find(|l| l.contains("clusters[k=4]")).unwrap();
    assert!(line.starts_with("stale") && line.ends_with("iterations 10 -> 11"), "{text}");
    // An instance whose input is stale too still names its own change (it showed only the wait).
    let seed = cfrun(cache.path(), &["status", smoke().to_str().unwrap(), "--set", "experiment.seed=9"]);
    let text = String::from_utf8_lossy(&seed.stdout);
    let waiting: Vec<&str> = text.lines().filter(|l| l.contains("waits on")).collect();
    assert!(!waiting.is_empty() && waiting.iter().any(|l| l.contains(" -> 9;")), "{text}");
    let after = run_json(cache.path(), &smoke(), &["--set", "stages.clusters.iterations=11"]);
    assert_eq!(ran(&after), set(&["clusters[k=4]", "clusters[k=16]", "clustering"]));
}

/// Two stages of one recipe are computed once; `status` says so before the run instead of
/// listing both as work to do, and the run's log names the one that served the other.
#[test]
fn status_names_the_stage_that_computes_a_shared_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("twins.toml");
    let data = "op = \"dataset\"\nname = \"synthetic\"\ntrain_size = 40\ntest_size = 20\n";
    std::fs::write(&file, format!("[experiment]\nname = \"twins\"\n\n[stages.a]\n{data}\n[stages.b]\n{data}")).unwrap();
    let (f, cache) = (file.to_str().unwrap(), tempfile::tempdir().unwrap());
    let before = cfrun(cache.path(), &["status", f]);
    let text = String::from_utf8_lossy(&before.stdout);
    // The plan's order decides which of the two is listed first and computes.
    let (first, second) = (text.lines().next().unwrap(), text.lines().nth(1).unwrap());
    let [one, other] = [first, second].map(|l| l.split_whitespace().nth(1).unwrap().to_string());
    assert!(second.ends_with(&format!("same recipe as {one}: computed once")), "{text}");
    assert!(!first.contains("same recipe"), "{text}");
    let json = cfrun(cache.path(), &["status", f, "--json"]);
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["instances"][1]["same_recipe_as"], json!(one), "{v}");
    assert_eq!(v["instances"][0]["same_recipe_as"], Value::Null, "{v}");
    let (out, v) = run_in(dir.path(), "twins.toml", cache.path(), &[]);
    assert_eq!([outcome_of(&v, &one).0, outcome_of(&v, &other).0], ["ran", "cached"], "{v}");
    // The run's log says why one of the two never ran.
    let served = format!("{other} has the recipe of {one}, which this run computed: served from it");
    assert!(stderr(&out).contains(&served), "{}", stderr(&out));
    let after = cfrun(cache.path(), &["status", f]);
    assert!(!String::from_utf8_lossy(&after.stdout).contains("same recipe"));
}

/// An axis no stage uses is refused when the file never sweeps with it, and only warned about
/// when a `--set` replaced the field that did (a one-off run at a fixed value).
#[test]
fn an_unused_axis_is_refused_unless_an_override_unused_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("axes.toml");
    std::fs::write(
        &file,
        "[experiment]\nname = \"axes\"\nseed = 0\n\n[sweep]\np = [0, 50]\n\n[stages.shapes]\nop = \"dataset\"\n\
         name = \"synthetic\"\ntrain_size = 40\ntest_size = 20\n\n[stages.noisy]\nop = \"label_noise\"\n\
         labels = \"shapes.labels\"\npercent = \"${p}\"\n",
    )
    .unwrap();
    let (f, cache) = (file.to_str().unwrap(), tempfile::tempdir().unwrap());
    let fixed = cfrun(cache.path(), &["status", f, "--set", "stages.noisy.percent=10"]);
    assert_eq!(fixed.status.code(), Some(0), "{}", stderr(&fixed));
    assert!(
        stderr(&fixed).contains("no stage uses this sweep axis") && stderr(&fixed).contains("axis=p"),
        "{}",
        stderr(&fixed)
    );
    let extra = cfrun(cache.path(), &["status", f, "--set", "sweep.seeds=[1, 2]"]);
    assert_eq!(extra.status.code(), Some(2), "{}", stderr(&extra));
    assert!(stderr(&extra).contains("sweep axis `seeds` is used by no stage"), "{}", stderr(&extra));
    // Only a value an override replaced excuses an axis, not its name written in a comment.
    let text = std::fs::read_to_string(&file).unwrap().replace("percent = \"${p}\"", "percent = 10  # was ${p}");
    std::fs::write(&file, text).unwrap();
    let commented = cfrun(cache.path(), &["status", f]);
    assert_eq!(commented.status.code(), Some(2), "{}", stderr(&commented));
    assert!(stderr(&commented).contains("sweep axis `p` is used by no stage"), "{}", stderr(&commented));
    // A file without `[sweep]` gets one from `--set`, and a field that names its axis sweeps it.
    let text = std::fs::read_to_string(&file).unwrap().replace("[sweep]\np = [0, 50]\n", "");
    std::fs::write(&file, text).unwrap();
    let swept = cfrun(cache.path(), &["dag", f, "--set", "sweep.q=[5, 15]", "--set", "stages.noisy.percent=${q}"]);
    assert_eq!(swept.status.code(), Some(0), "{}", stderr(&swept));
    let dag = String::from_utf8_lossy(&swept.stdout).to_string();
    assert!(dag.contains("noisy[q=5]") && dag.contains("noisy[q=15]"), "{dag}");
}

#[test]
fn cosmetic_edits_change_no_key() {
    let cache = tempfile::tempdir().unwrap();
    run_json(cache.path(), &smoke(), &[]);
    // Comments stripped, whitespace changed, stages reordered, keys reordered, a default written out.
    let text = std::fs::read_to_string(smoke()).unwrap();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.split(" #").next().unwrap().replace(" = ", "   =   "))
        .collect();
    lines.push("\n[stages.extra_comment_free]\nop = \"label_noise\"\nlabels = \"shapes.labels\"\npercent = 10".into());
    let edited = cache.path().join("edited.toml");
    std::fs::write(
        &edited,
        lines.join("\n").replace("iterations   =   10", "iterations   =   10\ninit = \"kmeans++\""),
    )
    .unwrap();
    let after = run_json(cache.path(), &edited, &[]);
    assert_eq!(ran(&after), set(&["extra_comment_free"]), "{after:?}");
}

/// A stage's name is not in any key, so it must not be in any bytes either: renamed, a stage and
/// everything below it is served from the cache, and a fresh cache computes the same objects.
#[test]
fn a_renamed_stage_is_served_and_a_fresh_cache_makes_the_same_objects() {
    let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let file = fixture("train_tiny.toml");
    run_json(first.path(), &file, &[]);
    let renamed = second.path().join("renamed.toml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("[stages.model", "[stages.net")
        .replace("model = \"model.model\"", "model = \"net.model\"");
    std::fs::write(&renamed, text).unwrap();
    let again = run_json(first.path(), &renamed, &[]);
    assert!(ran(&again).is_empty() && again.contains_key("net"), "{again:?}");
    run_json(second.path().join("cache").as_path(), &renamed, &[]);
    let digests = |cache: &Path| objects(cache).into_values().collect::<BTreeSet<_>>();
    assert_eq!(digests(first.path()), digests(&second.path().join("cache")));
}

#[test]
fn early_cutoff_keeps_dependants_of_identical_outputs() {
    let cache = tempfile::tempdir().unwrap();
    run_json(cache.path(), &smoke(), &[]);
    // A new seed re-draws the noise: at p=0 nothing changes, so the p=0 probe keeps its key.
    let after = run_json(cache.path(), &smoke(), &["--set", "stages.noisy.seed=99"]);
    assert_eq!(ran(&after), set(&["noisy[p=0]", "noisy[p=50]", "probe_noisy[p=50]", "results"]), "{after:?}");
}

#[test]
fn same_config_from_empty_caches_gives_identical_outputs() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    run_json(a.path(), &smoke(), &[]);
    run_json(b.path(), &smoke(), &[]);
    assert_eq!(objects(a.path()), objects(b.path()));
}

/// A key record edited to name another intact result (whose numbers the table below would then
/// print) breaks its seal: `status` and `show` call it damaged, and the run rebuilds it; a record
/// cut short is damage too, not "missing".
#[test]
fn a_key_record_edited_to_name_another_result_is_damage_and_rebuilt() {
    let cache = tempfile::tempdir().unwrap();
    let file = smoke();
    let file = file.to_str().unwrap();
    run_json(cache.path(), &smoke(), &[]);
    let before = objects(cache.path());
    let record_of = |instance: &str| {
        std::fs::read_dir(cache.path().join("keys"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
                v["provenance"]["instance"] == instance
            })
            .unwrap()
    };
    let line = |text: &str, name: &str| text.lines().find(|l| l.contains(name)).unwrap_or_default().to_string();
    let (target, donor) = (record_of("probe_noisy[p=0]"), record_of("probe_noisy[p=50]"));
    let mut v: Value = serde_json::from_slice(&std::fs::read(&target).unwrap()).unwrap();
    let d: Value = serde_json::from_slice(&std::fs::read(&donor).unwrap()).unwrap();
    v["object"] = d["object"].clone();
    v["outputs"] = d["outputs"].clone();
    std::fs::write(&target, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let status = cfrun(cache.path(), &["status", file]);
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(line(&text, "probe_noisy[p=0]").starts_with("damaged"), "{text}");
    assert!(line(&text, "probe_noisy[p=0]").contains("was edited since cfrun sealed it"), "{text}");
    let show = cfrun(cache.path(), &["show", file, "probe_noisy[p=0]"]);
    assert_eq!(show.status.code(), Some(1), "{}", String::from_utf8_lossy(&show.stdout));
    let rerun = run_json(cache.path(), &smoke(), &[]);
    assert_eq!(rerun["probe_noisy[p=0]"], "ran", "{rerun:?}");
    assert_eq!(objects(cache.path()), before, "the rebuilt record names the result the recipe makes");
    // Cut short: damage, said so, not a result gone from the cache.
    let bytes = std::fs::read(&target).unwrap();
    std::fs::write(&target, &bytes[..100]).unwrap();
    let status = cfrun(cache.path(), &["status", file]);
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(line(&text, "probe_noisy[p=0]").contains("is not a key record"), "{text}");
}

#[test]
fn corrupted_object_is_detected_and_rebuilt() {
    let cache = tempfile::tempdir().unwrap();
    run_json(cache.path(), &smoke(), &[]);
    let objs = objects(cache.path());
    let obj = &objs["clusters[k=16]"];
    let file = cache.path().join("objects").join(obj.trim_start_matches("blake3:")).join("labels/labels.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let out = cfrun(cache.path(), &[smoke().to_str().unwrap(), "--json"]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("cached result is damaged"), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcome =
        v["instances"].as_array().unwrap().iter().find(|i| i["name"] == "clusters[k=16]").unwrap()["outcome"].clone();
    assert_eq!(outcome, "ran");
    assert_eq!(objects(cache.path())["clusters[k=16]"], *obj, "rebuilt bytes equal the original");
}

#[test]
fn kill_mid_stage_leaves_the_cache_intact() {
    let cache = tempfile::tempdir().unwrap();
    let reference = tempfile::tempdir().unwrap();
    let slow = ["--set", "stages.clusters.iterations=400", "--set", "stages.shapes.train_size=4000"];
    // Wait until a k-means instance is running, then kill -9.
    kill_when_logged(cache.path(), &smoke(), &slow, "running clusters", 150);
    let resumed = run_json(cache.path(), &smoke(), &slow);
    assert!(resumed.values().all(|o| o == "ran" || o == "cached"));
    run_json(reference.path(), &smoke(), &slow);
    assert_eq!(objects(cache.path()), objects(reference.path()));
}

#[test]
fn concurrent_runs_execute_each_instance_once() {
    let cache = tempfile::tempdir().unwrap();
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_cfrun"))
            .args([smoke().to_str().unwrap(), "--json"])
            .arg("--cache")
            .arg(cache.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let mut ran_count: BTreeMap<String, usize> = BTreeMap::new();
    for out in &outs {
        assert!(out.status.success());
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        for i in v["instances"].as_array().unwrap() {
            if i["outcome"] == "ran" {
                *ran_count.entry(i["name"].as_str().unwrap().to_string()).or_default() += 1;
            }
        }
    }
    assert_eq!(ran_count.len(), 9, "{ran_count:?}");
    assert!(ran_count.values().all(|&c| c == 1), "{ran_count:?}");
}

/// The figures of a memory-limit message that depend on the machine (its memory and the count
/// that fits in it; `MemTotal` differs by kilobytes between machines of one size), masked so a
/// snapshot holds on any of them.
fn mask_machine_memory(text: &str) -> String {
    if !text.contains("of memory") {
        return text.to_string();
    }
    let mask_after = |line: &str, marker: &str, end: &str| -> String {
        match line.find(marker) {
            Some(i) => match line[i + marker.len()..].find(end) {
                Some(j) => format!("{}{marker}<N>{}", &line[..i], &line[i + marker.len() + j..]),
                None => line.to_string(),
            },
            None => line.to_string(),
        }
    };
    let lines: Vec<String> = text
        .lines()
        .map(|l| mask_after(&mask_after(l, "this machine's ", " of memory"), "use at most ", " here"))
        .collect();
    lines.join("\n") + if text.ends_with('\n') { "\n" } else { "" }
}

/// Every `tests/bad/*.toml` case exits 2 with its file, line and message, and its whole stderr
/// equals the snapshot next to it (`NN-name.stderr`), so a change in any message shows in
/// review. `CFRUN_BLESS=1 cargo test --release --test cli bad_experiment` rewrites the snapshots.
#[test]
fn bad_experiment_files_exit_2_with_location_and_message() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/bad");
    let cache = tempfile::tempdir().unwrap();
    let bless = std::env::var_os("CFRUN_BLESS").is_some_and(|v| v == "1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 20);
    let mut stale = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expect = text.lines().next().unwrap().strip_prefix("# expect: ").unwrap().trim_end_matches("#<").trim();
        let line = text.lines().position(|l| l.contains("#<")).unwrap() + 1;
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        // A path relative to the package root (the tests' working directory) keeps the
        // snapshots the same on any clone.
        let out = cfrun(cache.path(), &["status", &format!("tests/bad/{name}")]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(err.contains(expect), "{name}: expected `{expect}` in\n{err}");
        assert!(err.contains(&format!("{name}:{line}:")), "{name}: expected line {line} in\n{err}");
        let rendered = err.replace(root.to_str().unwrap(), "<repo>").replace(cache.path().to_str().unwrap(), "<cache>");
        let rendered = mask_machine_memory(&rendered);
        let snapshot = file.with_extension("stderr");
        if bless {
            std::fs::write(&snapshot, &rendered).unwrap();
        } else {
            match std::fs::read_to_string(&snapshot) {
                Ok(kept) if kept == rendered => {}
                Ok(kept) => stale.push(format!("{}:\n{}", snapshot.display(), changed_lines(&kept, &rendered))),
                Err(e) => stale.push(format!("{}: no snapshot ({e})", snapshot.display())),
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stderr differs from the snapshot in {} case(s); if the change is meant, rewrite them with \
         `CFRUN_BLESS=1 cargo test --release --test cli bad_experiment`:\n{}",
        stale.len(),
        stale.join("\n")
    );
}

/// The lines of `new` that differ from `old`, position by position, as `-`/`+` pairs with their
/// line numbers, so a stale snapshot shows what moved rather than its whole text (or, when every
/// line is the same, that only the line endings differ).
fn changed_lines(old: &str, new: &str) -> String {
    let (old, new): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let mut out = String::new();
    for i in 0..old.len().max(new.len()) {
        let (a, b) = (old.get(i), new.get(i));
        if a != b {
            if let Some(a) = a {
                out += &format!("  {:>3} - {a}\n", i + 1);
            }
            if let Some(b) = b {
                out += &format!("  {:>3} + {b}\n", i + 1);
            }
        }
    }
    if out.is_empty() {
        out = "  the same lines: only the line endings or the final newline differ\n".into();
    }
    out
}

#[test]
fn runtime_failure_fails_one_stage_and_keeps_the_rest() {
    let cache = tempfile::tempdir().unwrap();
    // Half-random labels cannot be fit to 100 %: only that network and the table of the networks
    // fail or are skipped; the pixel probe beside them runs.
    let file = fixture("floor_tiny.toml");
    let out = cfrun(cache.path(), &[file.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("training did not fit its labels"), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcome =
        |n: &str| v["instances"].as_array().unwrap().iter().find(|i| i["name"] == n).unwrap()["outcome"].clone();
    assert_eq!(outcome("model[floor=100]"), "failed");
    assert_eq!(outcome("model[floor=0]"), "ran");
    assert_eq!(outcome("fit"), "skipped");
    assert_eq!(outcome("pixels"), "ran");
}

/// A report of many files names at most 20 of each sort per instance and counts the rest with
/// the folder that holds them, so a command's thousands of files cannot bury the run's output.
#[test]
fn a_report_of_many_files_is_cut_short_with_its_folder_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("many.toml");
    std::fs::write(
        &file,
        "[experiment]\nname = \"many_reports\"\nseed = 0\n\n[stages.many]\nop = \"command\"\n\
         argv = [\"sh\", \"-c\", \"for i in $(seq 1 30); do echo \\\"# r$i\\\" > out/r/f$i.md; echo x > out/r/g$i.csv; done\"]\n\
         outputs = { r = \"report\" }\nseeded = false\n",
    )
    .unwrap();
    let out = cfrun(&dir.path().join("cache"), &[file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("\n# r").count(), 20, "markdown shown: {text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("many: ") && l.ends_with(".csv")).count(), 20, "{text}");
    let last = text.lines().rfind(|l| l.starts_with("many: and ")).unwrap_or_else(|| panic!("no count in {text}"));
    assert!(last.starts_with("many: and 20 more files under ") && last.ends_with("/r"), "{last}");
}

/// README's "Stage kinds" table is written by hand: it lists every op `cfrun ops` knows, once
/// each, and nothing else, so a new op cannot land without its row (in the order the README
/// chooses).
#[test]
fn readmes_stage_table_lists_every_op() {
    let dir = tempfile::tempdir().unwrap();
    let out = cfrun(&dir.path().join("cache"), &["ops", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut registered: Vec<String> =
        v.as_array().unwrap().iter().map(|o| o["op"].as_str().unwrap().to_string()).collect();
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut listed: Vec<String> = readme
        .lines()
        .skip_while(|l| *l != "### Stage kinds")
        .skip_while(|l| !l.starts_with("| op |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| row.split('|').nth(1).unwrap().trim().trim_matches('`').to_string())
        .collect();
    listed.sort();
    registered.sort();
    assert_eq!(
        listed, registered,
        "README's \"### Stage kinds\" table (left) against `cfrun ops` (right), both sorted"
    );
}

#[test]
fn ops_describes_each_parameter_of_one_op_and_refuses_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = cfrun(&cache, &["ops", "train"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = |name: &str| {
        let prefix = format!("    {name} ");
        text.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no `{name}` in\n{text}")).to_string()
    };
    assert!(line("epochs").ends_with("integer from 1 to 100000, required"), "the range checked:\n{text}");
    assert!(line("batch_size").ends_with("integer from 1 to 65536, default 128"), "{text}");
    assert!(line("momentum").ends_with("number in [0, 1), default 0.9"), "{text}");
    assert!(line("precision").ends_with("\"f32\" | \"bf16\" | \"f16\", default \"f32\""), "{text}");
    assert!(line("seed").contains("default the experiment's `seed`"), "{text}");
    assert!(text.contains("Passes over the (derived) training set."), "the field's doc comment:\n{text}");
    assert!(line("temperature").ends_with("number > 0, default 4.0"), "{text}");
    let probe = String::from_utf8_lossy(&cfrun(&cache, &["ops", "linear_probe"]).stdout).to_string();
    assert!(probe.contains("number > 0, default 0.1\n"), "an f32 default as written, not widened:\n{probe}");
    assert!(
        probe.contains("\n  metrics (the names tables, plots and claims read): top1, train_top1; with more than five classes: top5\n"),
        "the metrics a table may name, and when each is written:\n{probe}"
    );
    let pretext = String::from_utf8_lossy(&cfrun(&cache, &["ops", "pretext"]).stdout).to_string();
    assert!(pretext.contains("\"cosine\" | \"constant\", default"), "no step decay for pretext:\n{pretext}");
    let claims = String::from_utf8_lossy(&cfrun(&cache, &["ops", "claims"]).stdout).to_string();
    assert!(claims.lines().any(|l| l.trim_start().starts_with("claims[].expect ")), "nested fields:\n{claims}");

    // `--set` is global, but `ops` reads no experiment: an override is refused, not dropped.
    let set = cfrun(&cache, &["ops", "label_noise", "--set", "stages.x.percent=5"]);
    assert_eq!(set.status.code(), Some(2), "{}", stderr(&set));
    assert!(stderr(&set).contains("`cfrun ops` reads none"), "{}", stderr(&set));
    let exec = cfrun(&cache, &["--set", "stages.x.k=1", "exec", "blake3:0000"]);
    assert_eq!(exec.status.code(), Some(2), "a job spec holds its parameters: {}", stderr(&exec));
    assert!(stderr(&exec).contains("`cfrun exec KEY` reads none"), "{}", stderr(&exec));

    let json = cfrun(&cache, &["ops", "kmeans", "--json"]);
    let v: Value = serde_json::from_slice(&json.stdout).expect("ops OP --json is JSON");
    assert!(v["metrics"].as_array().unwrap().iter().any(|m| m == "nmi"), "{v}");
    assert_eq!(
        (&v["metrics_written"]["nmi"], &v["metrics_written"]["inertia"]),
        (&json!("with input `truth`"), &json!("always")),
        "{v}"
    );
    let k = v["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "k").unwrap();
    assert_eq!((&k["type"], &k["required"]), (&json!("integer >= 2"), &json!(true)), "{v}");
    assert_eq!(k["bounds"], json!({"minimum": 2.0}), "{v}");

    let typo = cfrun(&cache, &["ops", "trainn"]);
    assert_eq!(typo.status.code(), Some(2), "{}", stderr(&typo));
    assert!(stderr(&typo).contains("unknown op `trainn` (did you mean `train`?)"), "{}", stderr(&typo));
    assert!(typo.stdout.is_empty());
    let typo = cfrun(&cache, &["ops", "trainn", "--json"]);
    let v: Value = serde_json::from_slice(&typo.stdout).unwrap();
    assert_eq!(v["errors"][0]["location"], "op argument", "{v}");
    assert!(!cache.exists(), "describing ops makes no cache");
}

#[test]
fn dag_show_and_gc() {
    let cache = tempfile::tempdir().unwrap();
    let dot = cfrun(cache.path(), &["dag", smoke().to_str().unwrap(), "--format", "dot"]);
    assert!(String::from_utf8_lossy(&dot.stdout).contains("clusters[k=16]"));
    // Under --json every command prints one JSON value: the DAG with its edges, the stage kinds.
    let dag = cfrun(cache.path(), &["dag", smoke().to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_slice(&dag.stdout).expect("dag --json is JSON");
    let clusters = v["instances"].as_array().unwrap().iter().find(|i| i["instance"] == "clusters[k=16]").unwrap();
    assert_eq!(clusters["op"], "kmeans", "{clusters}");
    assert_eq!(clusters["params"]["k"], 16, "{clusters}");
    assert_eq!(clusters["inputs"]["features"][0], "shapes.images", "{clusters}");
    // An f32 parameter is hashed widened (0.10000000149011612) and shown as written.
    let probe = v["instances"].as_array().unwrap().iter().find(|i| i["op"] == "linear_probe").unwrap();
    assert_eq!(probe["params"]["lr"].to_string(), "0.1", "{probe}");
    let both = cfrun(cache.path(), &["dag", smoke().to_str().unwrap(), "--json", "--format", "mermaid"]);
    assert_eq!(both.status.code(), Some(2), "--json and --format mermaid ask for two outputs");
    let ops = cfrun(cache.path(), &["ops", "--json"]);
    let v: Value = serde_json::from_slice(&ops.stdout).expect("ops --json is JSON");
    let kmeans = v.as_array().unwrap().iter().find(|o| o["op"] == "kmeans").unwrap();
    assert!(kmeans["params"].as_array().unwrap().contains(&json!("k")), "{kmeans}");
    assert_eq!(kmeans["inputs"][0]["name"], "features", "{kmeans}");
    run_json(cache.path(), &smoke(), &[]);
    let show = cfrun(cache.path(), &["show", smoke().to_str().unwrap(), "clusters[k=4]", "--json"]);
    let v: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert!(v[0]["metrics"]["metrics"]["purity"].as_f64().unwrap() > 0.0);
    assert_eq!(v[0]["provenance"]["device"], "cpu");
    // Without --json the same instance reads as labelled lines, not as JSON.
    let text = cfrun(cache.path(), &["show", smoke().to_str().unwrap(), "clusters[k=4]"]);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(text.starts_with("clusters[k=4]: cached\n  computed   kmeans v"), "{text}");
    assert!(text.contains("\n  params     ") && text.contains("k = 4"), "{text}");
    assert!(text.contains("\n  metrics    ") && text.contains("purity 0."), "{text}");
    assert!(text.contains("labels/labels.safetensors") && !text.contains('{'), "{text}");
    // A stage's name with axes that name no instance lists that stage's instances.
    let miss = cfrun(cache.path(), &["show", smoke().to_str().unwrap(), "clusters[k=5]"]);
    assert!(stderr(&miss).contains("instances of `clusters`: clusters[k=4], clusters[k=16]"), "{}", stderr(&miss));
    // Under --json the error names the argument at fault; a stray comma names nothing.
    let stray = cfrun(cache.path(), &["status", smoke().to_str().unwrap(), "clusters", "clusters[,k=4]", "--json"]);
    assert_eq!(stray.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&stray.stdout).unwrap();
    assert_eq!(v["errors"][0]["location"], "target argument #2", "{v}");
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("a comma too many"), "{v}");
    let trailing = cfrun(cache.path(), &["status", smoke().to_str().unwrap(), "clusters[k=4,]"]);
    assert!(stderr(&trailing).contains("has no k=4, (a comma too many?) (its k: 4, 16)"), "{}", stderr(&trailing));
    let stale = cfrun(cache.path(), &["status", smoke().to_str().unwrap(), "--set", "stages.probe_noisy.lr=0.2"]);
    assert!(
        String::from_utf8_lossy(&stale.stdout).contains("lr 0.1 -> 0.2"),
        "{}",
        String::from_utf8_lossy(&stale.stdout)
    );
    // After changing k, the old k=16 objects are garbage for the edited experiment.
    let edited = cache.path().join("edited.toml");
    std::fs::write(&edited, std::fs::read_to_string(smoke()).unwrap().replace("k = [4, 16]", "k = [4]")).unwrap();
    let dry = cfrun(cache.path(), &["gc", edited.to_str().unwrap(), "--dry-run", "--json"]);
    let v: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert!(v["objects"].as_array().unwrap().len() >= 2, "{v}");
    // Each digest comes with the name it was last computed under, from the run log.
    let names: Vec<&str> = v["names"].as_object().unwrap().values().filter_map(Value::as_str).collect();
    assert!(names.contains(&"clusters[k=16] of smoke"), "{v}");
    run_json(cache.path(), &edited, &[]);
    let before = objects(cache.path()).len();
    cfrun(cache.path(), &["gc", edited.to_str().unwrap()]);
    assert!(objects(cache.path()).len() < before);
    let again = run_json(cache.path(), &edited, &[]);
    assert!(again.values().all(|o| o == "cached"), "{again:?}");
    // A full-batch probe computes the same bytes at any larger batch: the old keys die, their
    // objects stay (the new keys share them), and `names` lists nothing to remove.
    let batch = ["--set", "stages.probe_noisy.batch_size=2048"];
    let ran = run_json(cache.path(), &edited, &batch);
    assert!(ran.iter().any(|(n, o)| n.starts_with("probe_noisy") && o == "ran"), "{ran:?}");
    let dry =
        cfrun(cache.path(), &["gc", edited.to_str().unwrap(), "--dry-run", "--json", "--as-given", batch[0], batch[1]]);
    let v: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert!(v["keys"].as_u64().unwrap() >= 1 && v["objects"] == json!([]), "{v}");
    assert_eq!(v["names"], json!({}), "names only what would be removed: {v}");
}

/// `gc FILE` keeps what FILE computed under the `--set` of every earlier run (by `run` or by
/// `exec FILE INSTANCE`), as the file reads now: a run with more replicates or another
/// learning rate is not thrown away by a `gc` that forgot its `--set`. Settings the file no
/// longer takes are named; `--as-given` keeps only the file as given and forgets the others.
#[test]
fn gc_keeps_what_earlier_runs_computed_under_their_set() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let file = dir.path().join("train_tiny.toml");
    let text = std::fs::read_to_string(fixture("train_tiny.toml")).unwrap();
    std::fs::write(&file, &text).unwrap();
    let f = file.to_str().unwrap();
    run_json(&cache, &file, &[]);
    run_json(&cache, &file, &["--set", "stages.probe.epochs=4"]);
    let by_hand = cfrun(&cache, &["exec", f, "probe", "--set", "stages.probe.epochs=5"]);
    assert!(by_hand.status.success(), "{}", stderr(&by_hand));
    let all = std::fs::read_dir(cache.join("objects")).unwrap().count();
    assert_eq!(all, 6, "shapes, model, feats and three probes");
    let gc = |extra: &[&str]| {
        let mut args = vec!["gc", f, "--json"];
        args.extend_from_slice(extra);
        let out = cfrun(&cache, &args);
        assert!(out.status.success(), "{}", stderr(&out));
        (serde_json::from_slice::<Value>(&out.stdout).unwrap(), stderr(&out))
    };
    let (v, _) = gc(&[]);
    assert_eq!(v["objects"], json!([]), "{v}");
    let kept: Vec<&Value> = v["earlier_settings"].as_array().unwrap().iter().collect();
    assert_eq!(kept.len(), 2, "{v}");
    assert_eq!(kept[0]["settings"], json!(["stages.probe.epochs=4"]), "{v}");
    assert_eq!(kept[1]["not_applied"], Value::Null, "{v}");
    // Under another --set, what the file as it reads computed is kept too.
    let (v, _) = gc(&["--set", "stages.probe.epochs=4"]);
    assert_eq!(v["objects"], json!([]), "{v}");
    // The text output says what it keeps and why.
    let out = cfrun(&cache, &["gc", f, "--dry-run"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("keeping what") && said.contains("with --set stages.probe.epochs=5 (an earlier run's)"),
        "{said}"
    );
    // A renamed stage: those settings no longer apply, which is said, and what they computed goes.
    std::fs::write(&file, text.replace("[stages.probe]", "[stages.probe2]")).unwrap();
    let (v, err) = gc(&["--dry-run"]);
    assert!(err.contains("an earlier run's --set stages.probe.epochs=4 no longer applies"), "{err}");
    assert!(err.contains("there is no `stages.probe`"), "{err}");
    assert_eq!(v["objects"].as_array().unwrap().len(), 2, "{v}");
    // A sweep removes what they computed and forgets them: no later gc warns of them again.
    let (v, _) = gc(&[]);
    assert_eq!(v["objects"].as_array().unwrap().len(), 2, "{v}");
    std::fs::write(&file, &text).unwrap();
    let (v, err) = gc(&["--dry-run"]);
    assert_eq!(v["earlier_settings"], json!([]), "{v}");
    assert!(!err.contains("no longer applies"), "{err}");
    // --as-given keeps only the file as given and forgets the other settings for later gcs.
    run_json(&cache, &file, &["--set", "stages.probe.epochs=4"]);
    run_json(&cache, &file, &["--set", "stages.probe.epochs=6"]);
    let (v, _) = gc(&["--as-given"]);
    assert_eq!(v["objects"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(std::fs::read_dir(cache.join("objects")).unwrap().count(), 4);
    run_json(&cache, &file, &["--set", "stages.probe.epochs=4"]);
    let (v, _) = gc(&["--dry-run"]);
    let kept = v["earlier_settings"].as_array().unwrap();
    assert_eq!(kept.len(), 1, "only the run since: {v}");
    // A run under another experiment name is kept by a gc of its file too.
    run_json(&cache, &file, &["--set", "experiment.name=renamed", "--set", "stages.probe.epochs=7"]);
    let (v, _) = gc(&["--dry-run"]);
    assert_eq!(v["objects"], json!([]), "{v}");
}

/// `gc` keeps a damaged result and everything it feeds (the next run repairs it, and a rebuild
/// gives the same keys below), removes a checkpoint no run can resume from, and refuses to run
/// with no experiment named rather than remove the whole cache.
#[test]
fn gc_keeps_what_hangs_below_damage_drops_dead_checkpoints_and_needs_an_experiment() {
    let cache = tempfile::tempdir().unwrap();
    let fresh = tempfile::tempdir().unwrap();
    run_json(fresh.path(), &smoke(), &[]);
    let reference = objects(fresh.path());
    run_json(cache.path(), &smoke(), &[]);
    let labels = object_dir(cache.path(), "shapes").join("labels/labels.safetensors");
    std::fs::OpenOptions::new().write(true).open(&labels).unwrap().set_len(10).unwrap();
    let abandoned = cache.path().join("checkpoints").join("ab".repeat(32));
    std::fs::create_dir_all(abandoned.join("epoch-0001")).unwrap();
    std::fs::write(abandoned.join("epoch-0001/weights"), b"from an edited recipe").unwrap();
    // What data set fetches killed mid-way leave: their scratch folders and partial files, but
    // not in a data set's folder that links to a shared copy.
    let data = cache.path().join("data");
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join(".t10k.abc.part"), b"another cache's").unwrap();
    std::os::unix::fs::symlink(shared.path(), data.join("fashion-mnist")).unwrap();
    let left = [data.join(".unpack-x1/package/data"), data.join(".download-y2"), data.join("mnist")];
    left.iter().for_each(|d| std::fs::create_dir_all(d).unwrap());
    std::fs::write(data.join("mnist/.train-images.q.part"), b"half").unwrap();
    std::fs::write(data.join("mnist/.t10k-images.r.part"), b"being written").unwrap();
    std::fs::write(data.join("mnist/train-images"), b"kept").unwrap();
    // An hour old: another cache's run cannot still be writing it.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3700);
    let file = std::fs::File::options().write(true).open(data.join("mnist/.train-images.q.part")).unwrap();
    file.set_modified(old).unwrap();
    let out = cfrun(cache.path(), &["gc", smoke().to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["objects"].as_array().unwrap().len(), 0, "nothing of a damaged experiment is garbage: {v}");
    assert_eq!(v["checkpoints"], 1, "{v}");
    assert!(!abandoned.exists());
    assert_eq!(v["fetch_leftovers"], 3, "{v}");
    assert!(!data.join(".unpack-x1").exists() && !data.join(".download-y2").exists());
    assert!(!data.join("mnist/.train-images.q.part").exists() && data.join("mnist/train-images").exists());
    assert!(data.join("mnist/.t10k-images.r.part").exists(), "a partial file of this hour is left alone");
    assert!(shared.path().join(".t10k.abc.part").exists(), "a linked folder is left alone");
    let rerun = run_json(cache.path(), &smoke(), &[]);
    assert_eq!(ran(&rerun), set(&["shapes"]), "only the damaged result is rebuilt");
    assert_eq!(objects(cache.path()), reference);
    let none = cfrun(cache.path(), &["gc"]);
    assert_eq!(none.status.code(), Some(2), "{}", stderr(&none));
    assert_eq!(objects(cache.path()), reference, "nothing removed");
}

/// A damaged result whose rebuild fails is evicted but not forgotten: `gc` still works out the
/// keys below it from its record (moved to `evicted/`) and keeps those intact results, so the
/// next run rebuilds the one result alone. Also: `gc` removes what an atomic write killed
/// before its rename left in `keys/`.
#[test]
fn a_failed_rebuild_of_a_damaged_result_costs_nothing_below_it_at_gc() {
    let cache = tempfile::tempdir().unwrap();
    let file = fixture("train_tiny.toml");
    run_json(cache.path(), &file, &[]);
    let before = objects(cache.path());
    let key = key_file(cache.path(), "model");
    let hex = key.file_stem().unwrap().to_str().unwrap().to_string();
    flip_last_byte(&object_dir(cache.path(), "model").join("model/model.safetensors"));
    // A file where the rebuild's checkpoint folder goes: the rebuild fails.
    let blocker = cache.path().join("checkpoints").join(&hex);
    std::fs::write(&blocker, b"in the way").unwrap();
    let out = cfrun(cache.path(), &[file.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcome =
        |n: &str| v["instances"].as_array().unwrap().iter().find(|i| i["name"] == n).unwrap()["outcome"].clone();
    assert_eq!(
        (outcome("model"), outcome("feats"), outcome("probe")),
        ("failed".into(), "skipped".into(), "skipped".into())
    );
    assert!(!key.exists() && cache.path().join("evicted").join(format!("{hex}.json")).is_file());
    std::fs::remove_file(&blocker).unwrap();
    let interrupted = cache.path().join("keys").join(".tmpAbC123");
    std::fs::write(&interrupted, b"{").unwrap();
    let out = cfrun(cache.path(), &["gc", file.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["objects"].as_array().unwrap().len(), v["keys"].as_u64()), (0, Some(0)), "{v}");
    assert!(!interrupted.exists());
    let rerun = run_json(cache.path(), &file, &[]);
    assert_eq!(ran(&rerun), set(&["model"]), "only the damaged result is rebuilt");
    assert_eq!(objects(cache.path()), before);
    assert!(!cache.path().join("evicted").join(format!("{hex}.json")).exists());
}

/// A key record whose provenance no longer matches its seal is not served, but `gc` works out
/// the keys below it from its digests (found by a review: it removed every intact result below
/// such a record), so the next run recomputes that one key and reuses the rest.
/// The same holds for the record of an evicted (damaged) result.
#[test]
fn a_key_record_failing_its_seal_costs_nothing_below_it_at_gc() {
    for evicted in [false, true] {
        let cache = tempfile::tempdir().unwrap();
        let file = fixture("train_tiny.toml");
        run_json(cache.path(), &file, &[]);
        let before = objects(cache.path());
        let mut key = key_file(cache.path(), "model");
        let mut record: Value = serde_json::from_slice(&std::fs::read(&key).unwrap()).unwrap();
        if evicted {
            // As `Store::evict` leaves it: the record set aside, its object gone.
            let aside = cache.path().join("evicted").join(key.file_name().unwrap());
            std::fs::create_dir_all(aside.parent().unwrap()).unwrap();
            std::fs::rename(&key, &aside).unwrap();
            let object = record["object"].as_str().unwrap().trim_start_matches("blake3:").to_string();
            std::fs::remove_dir_all(cache.path().join("objects").join(object)).unwrap();
            key = aside;
        }
        record["provenance"]["note"] = json!("edited after it was sealed");
        std::fs::write(&key, serde_json::to_vec_pretty(&record).unwrap()).unwrap();
        let out = cfrun(cache.path(), &["gc", file.to_str().unwrap(), "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (v["objects"].as_array().unwrap().len(), v["keys"].as_u64()),
            (0, Some(0)),
            "evicted {evicted}: {v}"
        );
        let rerun = run_json(cache.path(), &file, &[]);
        assert_eq!(ran(&rerun), set(&["model"]), "only the record that fails its seal is recomputed");
        assert_eq!(objects(cache.path()), before);
    }
}

/// A key record truncated, deleted or replaced by a folder by hand hides the keys below it:
/// `gc` keeps them by the recipe last completed under each name (it removed every intact result
/// below such a record, 17 below one network in an audit), and the next run recomputes only that
/// instance (a folder in the record's place made every run fail with "Is a directory"). Only
/// the damaged instance's own object may go: no record points at it any more.
#[test]
fn a_damaged_or_missing_key_record_costs_only_itself_at_gc() {
    for damage in ["truncated", "deleted", "a folder"] {
        let cache = tempfile::tempdir().unwrap();
        let file = fixture("train_tiny.toml");
        run_json(cache.path(), &file, &[]);
        let before = objects(cache.path());
        let key = key_file(cache.path(), "model");
        let object = {
            let record: Value = serde_json::from_slice(&std::fs::read(&key).unwrap()).unwrap();
            record["object"].as_str().unwrap().trim_start_matches("blake3:").to_string()
        };
        if damage == "truncated" {
            let bytes = std::fs::read(&key).unwrap();
            std::fs::write(&key, &bytes[..50]).unwrap();
        } else {
            std::fs::remove_file(&key).unwrap();
        }
        if damage == "a folder" {
            std::fs::create_dir_all(key.join("inside")).unwrap();
        }
        let out = cfrun(cache.path(), &["gc", file.to_str().unwrap(), "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let removed: Vec<&str> = v["objects"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(removed.iter().all(|o| o.contains(&object)), "{damage}: removed more than the model's object: {v}");
        let rerun = run_json(cache.path(), &file, &[]);
        assert_eq!(ran(&rerun), set(&["model"]), "{damage}: only the instance whose record is damaged reruns");
        assert_eq!(objects(cache.path()), before, "{damage}");
    }
    // An edit upstream is not damage: its new key was never computed, so what hangs below the
    // old one goes (a first version kept it, found by review).
    let cache = tempfile::tempdir().unwrap();
    let file = fixture("train_tiny.toml");
    run_json(cache.path(), &file, &[]);
    let before = objects(cache.path());
    let elsewhere = tempfile::tempdir().unwrap();
    let edited = elsewhere.path().join("train_tiny.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&edited, text.replace("test_size = 64", "test_size = 65")).unwrap();
    let out = cfrun(cache.path(), &["gc", edited.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["objects"].as_array().unwrap().len(), before.len(), "every old result goes: {v}");
}

/// A run whose stderr and stdout close early (`cfrun run FILE 2>&1 | head -2`) finishes every
/// instance: it was killed by SIGPIPE at its next log line, and with SIGPIPE ignored the log
/// layer's own report of the failed write panicked. Only the closing summary may end on the
/// broken pipe, after everything is cached.
#[test]
fn a_run_whose_output_is_closed_early_still_finishes() {
    use std::io::BufRead;
    let cache = tempfile::tempdir().unwrap();
    let file = fixture("train_tiny.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cfrun"))
        .args(["run", file.to_str().unwrap(), "--cache"])
        .arg(cache.path())
        .env("CFRUN_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap()).read_line(&mut first).unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert!(first.contains("running"), "{first}");
    assert_ne!(status.code(), Some(101), "cfrun panicked");
    let out = cfrun(cache.path(), &["status", file.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let states: Vec<&str> = v["instances"].as_array().unwrap().iter().filter_map(|i| i["state"].as_str()).collect();
    assert!(!states.is_empty() && states.iter().all(|s| *s == "cached"), "{status}: {v}");
}

/// A write past the file size limit (`ulimit -f`) fails the instance with "File too large"
/// instead of SIGXFSZ killing the run without a word (exit 153, found by an audit); the cache
/// stays sound and a run without the limit completes it.
#[test]
fn a_file_size_limit_fails_the_instance_with_a_message() {
    let cache = tempfile::tempdir().unwrap();
    let file = fixture("train_tiny.toml");
    let script = format!(
        "ulimit -f 16; exec '{}' run '{}' --cache '{}'",
        env!("CARGO_BIN_EXE_cfrun"),
        file.display(),
        cache.path().display()
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("images.safetensors: File too large") && !err.contains("panicked"), "{err}");
    let rerun = run_json(cache.path(), &file, &[]);
    assert!(rerun.values().all(|o| o == "ran" || o == "cached"), "{rerun:?}");
}

/// A cache whose name records cannot be written (here a link in place of the experiment's
/// folder of them, which is refused, not followed) still runs and serves; the failure is said
/// once per run, not once per instance, and nothing is written through the link.
#[test]
fn name_records_that_cannot_be_written_are_said_once() {
    let cache = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let first = run_json(cache.path(), &smoke(), &[]);
    assert!(first.len() > 3, "{first:?}");
    let records = cache.path().join("records/smoke");
    std::fs::remove_dir_all(&records).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), &records).unwrap();
    let out = cfrun(cache.path(), &[smoke().to_str().unwrap(), "--set", "sweep.p=[0, 25]"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(err.matches("could not record which result").count(), 1, "{err}");
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0, "written through a link");
}

/// The user configuration (`$CFRUN_CONFIG`) sets executor defaults outside the experiment: the
/// run says which file set what, follows it (here: jobs as child processes, which leave job
/// files), and a broken one is refused with its file and line before anything runs.
#[test]
fn the_user_configuration_is_followed_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[executor]\nkind = \"processes\"\n").unwrap();
    let cache = dir.path().join("cache");
    let run = |cache: &Path| {
        Command::new(env!("CARGO_BIN_EXE_cfrun"))
            .arg(smoke())
            .arg("--cache")
            .arg(cache)
            .env("CFRUN_CONFIG", &config)
            .env_remove("CFRUN_CACHE")
            .output()
            .unwrap()
    };
    let out = run(&cache);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("executor defaults from the user configuration {}: kind", config.display())),
        "{err}"
    );
    assert!(std::fs::read_dir(cache.join("jobs")).is_ok_and(|mut d| d.next().is_some()), "no job files: {err}");
    std::fs::write(&config, "[executor]\nkind = \"slurmm\"\n").unwrap();
    let out = run(&dir.path().join("other"));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("config.toml:2") && err.contains("slurmm"), "{err}");
    assert!(!dir.path().join("other").exists(), "a cache was made before the refusal");
    // A CFRUN_CONFIG naming no file is a mistake, said with the variable's name; it was no defaults.
    std::fs::remove_file(&config).unwrap();
    let out = run(&dir.path().join("other"));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("the user configuration named by CFRUN_CONFIG"), "{err}");
}

/// A `RAYON_NUM_THREADS` rayon would ignore (`abc`) or that would stall a run (100,000 threads
/// took minutes to start) is refused with exit 2, naming it; 0, a count and an empty one run.
#[test]
fn rayon_num_threads_that_cannot_be_meant_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let status = |value: &str| {
        cfrun_command(cache.path(), &["status", smoke().to_str().unwrap()])
            .env("RAYON_NUM_THREADS", value)
            .output()
            .unwrap()
    };
    for bad in ["abc", "-1", "100000", " 4"] {
        let out = status(bad);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("RAYON_NUM_THREADS={bad:?}: expected a number of threads")),
            "{}",
            stderr(&out)
        );
    }
    for good in ["0", "3", ""] {
        assert!(status(good).status.success(), "{good:?}");
    }
}

/// An `env_probe` with a sweep placeholder runs once per value before anything starts (`status`
/// included): past 256 distinct probes each instance is refused, exit 2 naming the field (a
/// long axis held the plan for hours, up to 60 s a probe). Written here, not in `tests/bad`,
/// whose files the front-end fuzz also reads (it would run the probes too).
#[test]
fn an_env_probe_per_sweep_value_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<String> = (1..=258).map(|v| v.to_string()).collect();
    let toml = format!(
        "[experiment]\nname = \"probes\"\nseed = 0\n\n[sweep]\nv = [{}]\n\n[stages.s]\nop = \"command\"\n\
         argv = [\"true\"]\nenv_probe = [\"echo\", \"${{v}}\"]\noutputs = {{ m = \"metrics\" }}\n",
        values.join(", ")
    );
    let file = dir.path().join("probes.toml");
    std::fs::write(&file, toml).unwrap();
    let out = cfrun(&dir.path().join("cache"), &["status", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("`env_probe` makes more than 256 distinct command lines") && err.contains("probes.toml:11"),
        "{err}"
    );
    assert_eq!(err.matches("is one too many").count(), 2, "values 257 and 258: {err}");
}

/// `--executor slurm` on a machine without `sbatch` is a precondition that fails: exit 2 before
/// any cache is made (it was exit 1, as if something had run).
#[test]
fn slurm_without_sbatch_is_refused_before_anything_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, empty) = (dir.path().join("cache"), dir.path().join("bin"));
    std::fs::create_dir(&empty).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cfrun"))
        .args([fixture("train_tiny.toml").to_str().unwrap(), "--executor", "slurm", "--cache"])
        .arg(&cache)
        .env("PATH", &empty)
        .output()
        .expect("cfrun starts");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("`sbatch` is not on PATH"), "{}", stderr(&out));
    assert!(!cache.exists());
}

/// A file where a folder belongs on the command line (`--cache`, `report -o`) is a usage error,
/// exit 2, and the file is left as it was.
#[test]
fn a_file_given_where_a_folder_belongs_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, "keep me\n").unwrap();
    let smoke = smoke();
    let smoke = smoke.to_str().unwrap();
    for args in [vec!["status", smoke], vec!["gc", smoke], vec![smoke]] {
        let out = cfrun(&file, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("is not a folder"), "{args:?}: {}", stderr(&out));
    }
    // So is a link to nothing or a loop of links (before: exit 1 with the bare OS error).
    let (dangling, looping) = (dir.path().join("dangling"), dir.path().join("loop"));
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
    std::os::unix::fs::symlink(&looping, &looping).unwrap();
    for (cache, says) in [(&dangling, "is a link to nothing"), (&looping, "cannot be looked at")] {
        for args in [vec!["status", smoke], vec![smoke]] {
            let out = cfrun(cache, &args);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
            assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        }
    }
    assert!(!dir.path().join("nowhere").exists());
    let out = cfrun(&dir.path().join("cache"), &["report", smoke, "-o", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me\n");
    // Under --json a script reading stdout gets the error there too, not an empty stdout.
    let out = cfrun(&file, &["--json", "status", smoke]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(v["ok"], false, "stdout: {}", String::from_utf8_lossy(&out.stdout));
    assert!(v["errors"][0]["message"].as_str().unwrap_or_default().contains("is not a folder"), "{v}");
    // So it does for a command line the parser refuses.
    for (args, says) in
        [(vec!["--json", "run", "-j", "0", smoke], "must be at least 1"), (vec!["--json", "run"], "<FILE>")]
    {
        let out = cfrun(&file, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert_eq!(v["ok"], false, "{args:?}: stdout {}", String::from_utf8_lossy(&out.stdout));
        assert!(v["errors"][0]["message"].as_str().unwrap_or_default().contains(says), "{v}");
    }
}

/// A `--cache` or `report -o` folder that cannot be made (its parent is /proc, or a file) is the
/// command line's fault: exit 2, naming the option (before: exit 1 and a bare OS error). Under
/// `--json=true`, which the parser refuses, stdout still carries the one JSON error.
#[test]
fn a_folder_that_cannot_be_made_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "keep me\n").unwrap();
    let smoke = smoke();
    let smoke = smoke.to_str().unwrap();
    for bad in [std::path::PathBuf::from("/proc/cfrun-no-such-cache"), file.join("cache")] {
        let out = cfrun(&bad, &[smoke]);
        assert_eq!(out.status.code(), Some(2), "{}: {}", bad.display(), stderr(&out));
        assert!(stderr(&out).contains(&format!("--cache {}", bad.display())), "{}", stderr(&out));
        let out = cfrun(&dir.path().join("cache"), &["report", smoke, "-o", bad.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}: {}", bad.display(), stderr(&out));
        assert!(stderr(&out).contains(&format!("-o {}", bad.display())), "{}", stderr(&out));
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me\n");
    // A folder where the page would go, and a folder inside the cache (a page written into a
    // published object made it read as damaged), are refused too.
    let pages = dir.path().join("pages");
    std::fs::create_dir_all(pages.join("smoke.html")).unwrap();
    let cache = dir.path().join("kept");
    std::fs::create_dir_all(&cache).unwrap();
    for (out_dir, says) in
        [(pages.clone(), "cannot be used"), (cache.join("objects/x"), "lies inside the cache's objects/")]
    {
        let out = cfrun(&cache, &["report", smoke, "-o", out_dir.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}: {}", out_dir.display(), stderr(&out));
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
    assert!(!cache.join("objects/x").exists());
    let out = cfrun(&dir.path().join("cache"), &["--json=true", "status", smoke]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(v["ok"], false, "stdout: {}", String::from_utf8_lossy(&out.stdout));
}

/// Settings and wirings that would run to a plausible but meaningless number are refused or
/// warned of (each was seen to pass silently): a probe whose loss went NaN (it scored 100 %
/// top-1), a batch size the probe caps, test classes without a training row, label noise past
/// (C - 1) / C, k-means sampled to a few points per centroid, a network that collapsed (empty
/// clusters downstream, a fit at chance), an adaptive grid finer than its map, and `weak_tags`'
/// tag sets fed where one class per example is read.
#[test]
fn settings_that_would_mislead_are_refused_or_warned_of() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pitfalls.toml");
    let data = |name: &str, train: usize| {
        format!("[stages.{name}]\nop = \"dataset\"\nname = \"synthetic\"\nclasses = 6\nsize = 8\ntrain_size = {train}\ntest_size = 48\n")
    };
    let probe = |name: &str, from: &str, extra: &str| {
        format!("[stages.{name}]\nop = \"linear_probe\"\nfeatures = \"{from}.images\"\nlabels = \"{from}.labels\"\nepochs = 2\n{extra}\n")
    };
    let text = [
        "[experiment]\nname = \"pitfalls\"\nseed = 0\n".to_string(),
        data("shapes", 192),
        data("few", 3),
        probe("probe_nan", "shapes", "lr = 30.0\nweight_decay = 1.0"),
        probe("probe_big", "shapes", "batch_size = 512"),
        probe("probe_few", "few", ""),
        "[stages.noisy]\nop = \"label_noise\"\nlabels = \"shapes.labels\"\npercent = 90\nseed = 1\n".into(),
        "[stages.sampled]\nop = \"kmeans\"\nfeatures = \"shapes.images\"\nk = 8\nmax_points_per_centroid = 2\n".into(),
        "[stages.collapsed]\nop = \"train\"\nimages = \"shapes.images\"\nlabels = \"shapes.labels\"\narch = \"resnet_tiny\"\n\
         epochs = 2\nbatch_size = 32\nwarmup_epochs = 0\nweight_decay = 100.0\n"
            .into(),
        "[stages.flat]\nop = \"train\"\nimages = \"shapes.images\"\nlabels = \"shapes.labels\"\narch = \"resnet_tiny\"\n\
         epochs = 1\nbatch_size = 32\nwarmup_epochs = 0\nweight_decay = 10.0\n"
            .into(),
        "[stages.blown]\nop = \"train\"\nimages = \"shapes.images\"\nlabels = \"shapes.labels\"\narch = \"resnet_tiny\"\n\
         epochs = 2\nbatch_size = 32\nwarmup_epochs = 0\nweight_decay = 1000.0\n"
            .into(),
        "[stages.bfeat]\nop = \"extract\"\nmodel = \"blown.model\"\nimages = \"shapes.images\"\n".into(),
        "[stages.bclusters]\nop = \"kmeans\"\nfeatures = \"bfeat.features\"\nk = 8\n".into(),
        "[stages.cfeat]\nop = \"extract\"\nmodel = \"collapsed.model\"\nimages = \"shapes.images\"\n".into(),
        "[stages.fine]\nop = \"extract\"\nmodel = \"collapsed.model\"\nimages = \"shapes.images\"\npool = \"adaptive4\"\n".into(),
        "[stages.clusters]\nop = \"kmeans\"\nfeatures = \"cfeat.features\"\nk = 8\n".into(),
        "[stages.noisy_per_label]\nop = \"label_noise\"\nlabels = \"shapes.labels\"\npercent = 50\nseed = 2\n".into(),
        "[stages.per_label]\nop = \"per_label_kmeans\"\nfeatures = \"shapes.images\"\nlabels = \"noisy_per_label.labels\"\n\
         truth = \"shapes.labels\"\nk = 12\n"
            .into(),
        // One test object: every test canvas shows its class and none the other.
        "[stages.two]\nop = \"dataset\"\nname = \"synthetic\"\nclasses = 2\nsize = 8\ntrain_size = 96\ntest_size = 1\n".into(),
        "[stages.cv]\nop = \"canvas\"\nimages = \"two.images\"\nlabels = \"two.labels\"\nsize = 16\nmin_objects = 2\n\
         max_objects = 2\ntrain_size = 24\ntest_size = 12\n"
            .into(),
        "[stages.mp]\nop = \"map_probe\"\nfeatures = \"cv.images\"\nlabels = \"cv.multilabels\"\n".into(),
        "[stages.rot]\nop = \"pretext\"\ntask = \"rotnet\"\nimages = \"shapes.images\"\narch = \"resnet_tiny\"\nepochs = 1\n\
         batch_size = 32\nwarmup_epochs = 0\nlr = 50.0\n"
            .into(),
    ]
    .join("\n");
    std::fs::write(&file, text).unwrap();
    let out = cfrun(cache.path(), &[file.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for says in [
        "probe_nan failed",
        "the linear probe diverged: the mean loss of epoch 1 of 2 is",
        "probe_big: batch_size 512 is capped at 6 rows per step",
        "probe_few: 3 of the test split's classes have no training row",
        "noisy: at 90% noise over 6 classes the training labels carry no information",
        "k-means fits on 16 of 192 rows (2 per centroid",
        "collapsed: the mean loss rose from",
        "clusters: 7 of 8 clusters hold no training row",
        "fine failed",
        "pool = \"adaptive4\" asks for a 4x4 grid of a 1x1 feature map",
        "% in the last epoch (1) is within 1.5x of chance (16.7 % for 6 classes)",
        "bclusters failed: the squared distances overflow",
        "chance (25.0 % for 4 classes): the network barely fits its labels\n",
        "mp: 1 of 2 classes are on every test example, so their AP is 1 whatever the features",
        "mp: 1 of 2 classes have no positive in the train or the test split and are left out of the mAP",
    ] {
        assert!(err.contains(says), "missing `{says}` in:\n{err}");
    }
    // The warnings are kept with the results: a rerun that finds them cached says them again,
    // and `show` lists them.
    let again = cfrun(cache.path(), &["-q", file.to_str().unwrap()]);
    let err = stderr(&again);
    assert!(err.contains("probe_big (cached; when it was computed): probe_big: batch_size 512 is capped"), "{err}");
    let shown = cfrun(cache.path(), &["show", file.to_str().unwrap(), "probe_big"]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("  warning    probe_big: batch_size 512 is capped"), "{text}");
    // Kept even where nothing is printed: a first run at CFRUN_LOG=error.
    let silent = tempfile::tempdir().unwrap();
    let quiet = cfrun_command(silent.path(), &[file.to_str().unwrap()]).env("CFRUN_LOG", "error").output().unwrap();
    assert!(!stderr(&quiet).contains("capped"), "{}", stderr(&quiet));
    let shown = cfrun(silent.path(), &["show", file.to_str().unwrap(), "probe_big"]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("batch_size 512 is capped"), "{}", stderr(&shown));
    // Two methods under one label in a best-over table: the best of both would read as one's.
    let best = dir.path().join("best.toml");
    std::fs::write(
        &best,
        r#"[experiment]
name = "best"
[sweep]
size = [8, 12]
[stages.shapes]
op = "dataset"
name = "synthetic"
classes = 6
size = "${size}"
train_size = 96
test_size = 48
[stages.noisy_labels]
op = "label_noise"
labels = "shapes.labels"
percent = 50
seed = 1
[stages.clean]
op = "linear_probe"
features = "shapes.images"
labels = "shapes.labels"
[stages.noisy]
op = "linear_probe"
features = "shapes.images"
labels = "noisy_labels.labels"
[stages.results]
op = "table"
inputs = ["clean.metrics", "noisy.metrics"]
rows = ["source"]
columns = ["metric"]
metrics = ["top1"]
best_over = "size"
labels = { clean = "probe", noisy = "probe" }
"#,
    )
    .unwrap();
    let out = cfrun(cache.path(), &["status", best.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("labelled `probe`"), "{}", stderr(&out));
    // Per-label clustering assigns test rows by their labels: no test purity or NMI is written.
    let shown = cfrun(cache.path(), &["show", file.to_str().unwrap(), "per_label", "--json"]);
    let v: Value = serde_json::from_slice(&shown.stdout).unwrap_or(Value::Null);
    let metrics = &v[0]["metrics"]["metrics"];
    assert!(metrics["purity"].is_number() && metrics.get("test_purity").is_none(), "{v}");
    // Wirings refused before anything runs, naming the field: tag sets where a class is read,
    // a RotNet network as a teacher, the same features joined twice, Jigsaw with RotNet's crops.
    let stage = |name: &str, body: &str| format!("[stages.{name}]\n{body}\n");
    for (body, says) in [
        (
            r#"op = "linear_probe"
features = "shapes.images"
labels = "tags.labels""#,
            "`weak_tags`' tag sets",
        ),
        (
            r#"op = "prototype"
features = "shapes.images"
labels = "tags.labels"
truth = "tags.labels""#,
            "`weak_tags`' tag sets",
        ),
        (
            r#"op = "per_label_kmeans"
features = "shapes.images"
labels = "tags.labels"
k = 12"#,
            "`weak_tags`' tag sets",
        ),
        (
            r#"op = "canvas"
images = "shapes.images"
labels = "tags.labels"
size = 16
train_size = 8
test_size = 8"#,
            "`weak_tags`' tag sets",
        ),
        (
            r#"op = "train"
images = "shapes.images"
labels = "shapes.labels"
teacher = "rot.model"
arch = "resnet_tiny"
epochs = 2"#,
            "the teacher is a `pretext` network",
        ),
        (
            r#"op = "concat"
inputs = ["feats.features", "feats.features"]"#,
            "is joined twice",
        ),
        (
            r#"op = "pretext"
task = "jigsaw"
images = "shapes.images"
permutations = "perms.permutations"
arch = "resnet_tiny"
crop_padding = 4"#,
            "`crop_padding` is a RotNet setting",
        ),
    ] {
        let wiring = dir.path().join("wiring.toml");
        let text = [
            "[experiment]\nname = \"wired\"\n".to_string(),
            data("shapes", 96),
            stage("tags", "op = \"weak_tags\"\nlabels = \"shapes.labels\""),
            stage("perms", "op = \"permutations\"\ncount = 10"),
            stage(
                "net",
                "op = \"random_net\"\nimages = \"shapes.images\"\nlabels = \"shapes.labels\"\narch = \"resnet_tiny\"",
            ),
            stage("feats", "op = \"extract\"\nmodel = \"net.model\"\nimages = \"shapes.images\""),
            stage(
                "rot",
                "op = \"pretext\"\ntask = \"rotnet\"\nimages = \"shapes.images\"\narch = \"resnet_tiny\"\nepochs = 2",
            ),
            stage("bad", body),
        ]
        .join("\n");
        std::fs::write(&wiring, text).unwrap();
        let out = cfrun(cache.path(), &["status", wiring.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{body}: {}", stderr(&out));
        assert!(stderr(&out).contains("wiring.toml:") && stderr(&out).contains(says), "{body}: {}", stderr(&out));
    }
}

/// The environment probes of several `command` stages run side by side while the plan is built:
/// here each probe waits for the other's mark, so probes run one after another would time out
/// (after 20 s) and refuse the plan.
#[test]
fn environment_probes_of_several_stages_run_side_by_side() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let probe = |mine: &str, theirs: &str| {
        format!(
            r#"["sh", "-c", 'touch "$0/{mine}"; i=0; while [ ! -e "$0/{theirs}" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; test -e "$0/{theirs}" && echo ready', "{}"]"#,
            dir.path().display()
        )
    };
    let file = dir.path().join("probes.toml");
    let stage = |name: &str, probe: String| {
        format!("[stages.{name}]\nop = \"command\"\nargv = [\"true\"]\nenv_probe = {probe}\noutputs = {{ m = \"metrics\" }}\n")
    };
    let text = format!(
        "[experiment]\nname = \"probes\"\nseed = 0\n\n{}\n{}",
        stage("one", probe("a", "b")),
        stage("two", probe("b", "a"))
    );
    std::fs::write(&file, text).unwrap();
    let out = cfrun(cache.path(), &["status", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("a").exists() && dir.path().join("b").exists());
}

/// `--cache` naming a folder of other files (a home, a repository: `--cache .`) is refused before
/// anything is created in it; an empty folder becomes a cache, and a cache stays usable whatever
/// else is later put in it.
#[test]
fn a_folder_of_other_files_is_not_taken_for_a_cache() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine\n").unwrap();
    let smoke = smoke();
    let smoke = smoke.to_str().unwrap();
    for args in [vec!["status", smoke], vec!["gc", smoke], vec![smoke], vec!["data", "list"]] {
        let out = cfrun(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("(notes.txt), not a cfrun cache"), "{args:?}: {}", stderr(&out));
    }
    // `--json` names the option at fault, as the README's list of locations says.
    let out = cfrun(dir.path(), &["status", smoke, "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["errors"][0]["location"], "--cache", "{v}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["notes.txt"], "nothing was created beside it");
    // A cache that cannot be made is the command line's fault for `exec` too (it exited 1).
    let out = cfrun(Path::new("/proc/cfrun-cannot-be-made"), &["exec", smoke, "shapes", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["errors"][0]["location"], "--cache", "{v}");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(cfrun(&empty, &["status", smoke]).status.success());
    // A run makes the empty folder a cache (reading it leaves it empty).
    assert!(cfrun(&empty, &[smoke]).status.success());
    std::fs::write(empty.join("README"), "what this cache is for\n").unwrap();
    let out = cfrun(&empty, &["status", smoke]);
    assert!(out.status.success(), "a tagged cache is known by its tag: {}", stderr(&out));
}

/// The commands that only read a cache (`status`, `show`, `report`, `data list`, and `gc`, which
/// finds nothing to collect) read a missing one, or an empty folder, as empty, say so, and create
/// nothing: a mistyped `--cache` leaves no cache skeleton. Nor does a `data fetch` of an unknown name.
#[test]
fn reading_commands_create_no_cache() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");
    let smoke = smoke();
    let smoke = smoke.to_str().unwrap();
    let pages = dir.path().join("pages");
    let pages = pages.to_str().unwrap();
    for args in [
        vec!["status", smoke],
        vec!["show", smoke, "shapes"],
        vec!["report", smoke, "-o", pages],
        vec!["data", "list"],
        vec!["gc", smoke],
    ] {
        let out = cfrun(&missing, &args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("does not exist: nothing is cached there"), "{args:?}: {}", stderr(&out));
        assert!(!missing.exists(), "{args:?} created the cache folder");
    }
    let status = cfrun(&missing, &["status", smoke]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("0 of 9 instances cached"));
    let fetch = cfrun(&missing, &["data", "fetch", "nosuch"]);
    assert_eq!(fetch.status.code(), Some(2), "{}", stderr(&fetch));
    assert!(!missing.exists(), "an unknown data set created the cache folder");
    // An empty folder made for the cache is not a cache yet: reading leaves it empty.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for args in [vec!["status", smoke], vec!["show", smoke, "shapes"], vec!["data", "list"], vec!["gc", smoke]] {
        let out = cfrun(&empty, &args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("is an empty folder: nothing is cached there"), "{args:?}: {}", stderr(&out));
        assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0, "{args:?} wrote into the empty folder");
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

#[test]
fn clusterfit_pipeline_end_to_end_with_resume_after_kill() {
    let cache = tempfile::tempdir().unwrap();
    let file = fixture("clusterfit_tiny.toml");
    let first = run_json(cache.path(), &file, &[]);
    assert!(first.values().all(|o| o == "ran" || o == "cached"), "{first:?}");
    assert_eq!(first.len(), 35);
    let out = cfrun(cache.path(), &[file.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let files = report_files(&v);
    for ext in ["table.md", "table.csv", "figure.svg", "figure.png"] {
        let f = files.iter().find(|f| f.ends_with(ext)).unwrap_or_else(|| panic!("no {ext} in {files:?}"));
        assert!(std::fs::metadata(f).unwrap().len() > 100, "{f}");
    }
    // Changing one K re-runs only that K's chain and the reports; N_pre is never trained again.
    let edited = run_json(cache.path(), &file, &["--set", "sweep.k=[4, 10]"]);
    let expect: BTreeSet<String> = ["clusters", "clusterfit", "feat_cf", "probe_cf"]
        .iter()
        .flat_map(|s| ["0", "50"].map(|p| format!("{s}[k=10,p={p}]")))
        .chain(["results".to_string(), "figure".to_string()])
        .collect();
    assert_eq!(ran(&edited), expect);

    // Kill a training run mid-way; the rerun resumes from its checkpoint and ends bit-identical.
    let killed = tempfile::tempdir().unwrap();
    let longer = ["--set", "stages.pretrain.epochs=6"];
    kill_when_logged(killed.path(), &file, &longer, "epoch 3/6", 0);
    let status = cfrun(killed.path(), &["status", file.to_str().unwrap(), longer[0], longer[1]]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("an interrupted run left epoch-000"), "status names the checkpoint: {status}");
    let out = cfrun(killed.path(), &[file.to_str().unwrap(), longer[0], longer[1]]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("resuming after epoch"), "{}", stderr(&out));
    let reference = tempfile::tempdir().unwrap();
    run_json(reference.path(), &file, &longer);
    assert_eq!(objects(killed.path()), objects(reference.path()));
}

#[test]
fn weak_supervision_pipeline_shares_its_prefix_and_reports_every_baseline() {
    let cache = tempfile::tempdir().unwrap();
    let file = fixture("weak_tiny.toml");
    let first = run_json(cache.path(), &file, &[]);
    assert!(first.values().all(|o| o == "ran" || o == "cached"), "{first:?}");
    let out = cfrun(cache.path(), &[file.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let table = report_files(&v).into_iter().find(|f| f.ends_with("table.md")).expect("a table");
    let table = std::fs::read_to_string(table).unwrap();
    for column in ["N_pre", "N_pre2x", "Distill.", "Prototype", "CF k=6", "CF k=24"] {
        assert!(table.contains(column), "no {column} column in\n{table}");
    }
    // The tags carry what weak_tags promises: a vocabulary of 6 x 2 synonyms + 1 polysemous + 2
    // non-visual tags, every image with at least one tag.
    let shown = cfrun(cache.path(), &["show", file.to_str().unwrap(), "tags", "--json"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    let text = shown.to_string();
    assert!(text.contains("\"vocabulary\":15.0") || text.contains("\"vocabulary\":15"), "{text}");
    // N_pre2x differs from N_pre only in epochs: changing it re-runs its own chain and the table,
    // never the data, the tags or N_pre.
    let edited = run_json(cache.path(), &file, &["--set", "stages.pretrain2x.epochs=5"]);
    assert_eq!(ran(&edited), set(&["pretrain2x", "feat_pre2x", "probe_pre2x", "results"]));
}

/// The device is provenance, not identity (README, "Devices"): a cache entry made on a GPU serves
/// a CPU run and the reverse, and asking for a GPU this binary cannot open fails before any work.
#[test]
fn device_is_recorded_but_not_part_of_the_recipe_key() {
    let cache = tempfile::tempdir().unwrap();
    let first = run_json(cache.path(), &smoke(), &["--device", "cpu"]);
    assert!(first.values().all(|o| o == "ran"), "{first:?}");
    // Pretend a GPU made every artifact: rewrite the device in each key record's provenance.
    for e in std::fs::read_dir(cache.path().join("keys")).unwrap() {
        let path = e.unwrap().path();
        let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["provenance"]["device"], "cpu");
        v["provenance"]["device"] = Value::from("cuda:0");
        // Sealed again as a run on the GPU would have sealed it (an unsealed edit is damage);
        // serde_json writes a value's keys sorted and compact, which is the canonical encoding.
        // The whole record's seal first (over the provenance without it), then the provenance's.
        v["provenance"].as_object_mut().unwrap().remove("record_seal");
        let fields = serde_json::json!({
            "key": v["key"], "object": v["object"], "outputs": v["outputs"], "provenance": v["provenance"]
        });
        let record_seal = blake3::hash(serde_json::to_string(&fields).unwrap().as_bytes());
        v["provenance"]["record_seal"] = Value::from(format!("blake3:{}", record_seal.to_hex()));
        let sealed = blake3::hash(serde_json::to_string(&v["provenance"]).unwrap().as_bytes());
        v["provenance_digest"] = Value::from(format!("blake3:{}", sealed.to_hex()));
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    }
    for device in ["cpu", "auto"] {
        let again = run_json(cache.path(), &smoke(), &["--device", device]);
        assert!(again.values().all(|o| o == "cached"), "--device {device}: {again:?}");
    }
    let show = cfrun(cache.path(), &["show", smoke().to_str().unwrap(), "clusters[k=4]", "--json"]);
    let v: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v[0]["provenance"]["device"], "cuda:0", "show tells which device made an artifact");

    if cfg!(not(feature = "cuda")) {
        let empty = tempfile::tempdir().unwrap();
        let out = cfrun(empty.path(), &[smoke().to_str().unwrap(), "--device", "cuda"]);
        assert_eq!(out.status.code(), Some(2), "a usage error: nothing ran");
        assert!(stderr(&out).contains("built without CUDA support"), "{}", stderr(&out));
        let keys = empty.path().join("keys");
        assert!(!keys.exists() || std::fs::read_dir(keys).unwrap().next().is_none(), "nothing ran");
    }
}

/// `check-device` compares the device path (on the CPU: candle's generic ops, which the GPU runs)
/// against cfrun's CPU kernels; here on the CPU, where everything must agree.
#[test]
fn check_device_passes_on_the_cpu_and_names_each_comparison() {
    let cache = tempfile::tempdir().unwrap();
    // r2plus1d_large on random clips is chaotic enough that fixed tolerances failed it on a correct
    // build: its tolerances now follow its measured rounding spread, printed with each check.
    let presets = "resnet_tiny,r2plus1d_large";
    let out = cfrun(cache.path(), &["check-device", "--device", "cpu", "--presets", presets, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let names: Vec<&str> = v["checks"].as_array().unwrap().iter().map(|c| c["what"].as_str().unwrap()).collect();
    assert_eq!(names.iter().filter(|n| n.contains("rounding spread")).count(), 4, "{names:?}");
    for part in [
        "resnet_tiny: forward + backward",
        "resnet_tiny: weights",
        "r2plus1d_large: weights",
        // Each recorded layer replayed alone, where a wrong kernel cannot hide in the chaos.
        "resnet_tiny: 11 convolutions one by one",
        "resnet_tiny: 11 batch norms one by one",
        "r2plus1d_large: 19 convolutions one by one",
        "r2plus1d_large: 19 batch norms one by one",
        "device-built batches, images",
        "device-built batches, clips",
        "device-written tag spreads",
        "device-cut Jigsaw puzzles",
        "SGD: flat update against per parameter",
        "BN running statistics: flat against per layer",
        "convolution weight gradient's column matrix (im2col)",
        // bf16 on a GPU; the CPU has no bf16 matmul, so f16 there.
        "f16 against f32 on the device",
        "f16: share of training images wrong",
        "k-means",
        "linear probe",
    ] {
        assert!(names.iter().any(|n| n.starts_with(part)), "no `{part}` check in {names:?}");
    }
    let bad = cfrun(cache.path(), &["check-device", "--device", "cpu", "--presets", "resnet_huge"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("unknown preset `resnet_huge`"), "{}", stderr(&bad));
    // The A/B switches of the convolution's and batch norm's backward: candle's own pass the same
    // checks (with TF32 GEMMs allowed, which the CPU ignores), and a value that names neither is
    // refused before anything runs.
    let with = |vars: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_cfrun"))
            .args(["check-device", "--device", "cpu", "--presets", "resnet_tiny", "--json", "--cache"])
            .arg(cache.path())
            .envs(vars.iter().copied())
            .output()
            .expect("cfrun starts")
    };
    let candle = with(&[("CFRUN_CONV_BACKWARD", "candle"), ("CFRUN_BN_BACKWARD", "candle"), ("CFRUN_GEMM_TF32", "1")]);
    assert!(candle.status.success(), "{}", stderr(&candle));
    assert_eq!(serde_json::from_slice::<Value>(&candle.stdout).unwrap()["ok"], true);
    for (var, value, said) in [
        ("CFRUN_CONV_BACKWARD", "cudnn", "CFRUN_CONV_BACKWARD=\"cudnn\": expected `cfrun` or `candle`"),
        ("CFRUN_BN_BACKWARD", "fused", "CFRUN_BN_BACKWARD=\"fused\": expected `cfrun` or `candle`"),
        ("CFRUN_GEMM_TF32", "yes", "CFRUN_GEMM_TF32=\"yes\": expected 1 (on) or 0 (off)"),
        ("CFRUN_CONV_COLUMNS", "gather", "CFRUN_CONV_COLUMNS=\"gather\": expected `im2col` or `taps`"),
        ("CFRUN_CONV_CUDNN", "plan", "CFRUN_CONV_CUDNN=\"plan\": expected `per-call` or `planned`"),
        // The test binary is built without CUDA: the GPU-only paths are refused, not ignored.
        ("CFRUN_CONV_CUDNN", "planned", "CFRUN_CONV_CUDNN=\"planned\": this binary was built without it (cfrun-cudnn"),
        ("CFRUN_BN_CUDA", "fused", "CFRUN_BN_CUDA=\"fused\": this binary was built without it (scripts/build-cuda.sh"),
        ("CFRUN_BN_CUDA", "kernels", "CFRUN_BN_CUDA=\"kernels\": expected `ops` or `fused`"),
    ] {
        let typo = with(&[(var, value)]);
        assert_eq!(typo.status.code(), Some(2));
        assert!(stderr(&typo).contains(said), "{}", stderr(&typo));
    }
}

#[test]
fn video_pipeline_end_to_end_is_cached_and_deterministic() {
    let cache = tempfile::tempdir().unwrap();
    let file = fixture("video_tiny.toml");
    let first = run_json(cache.path(), &file, &[]);
    assert!(first.values().all(|o| o == "ran" || o == "cached"), "{first:?}");
    assert_eq!(first.len(), 25);
    // Both clusterings scored against the clean verbs: per-label k-means wrote no NMI, and the
    // table left its row out without a word.
    let out = cfrun(cache.path(), &[file.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = v["reports"].as_array().unwrap().iter().find(|r| r["instance"] == "cluster_quality").unwrap();
    let table = report["files"].as_array().unwrap().iter().filter_map(Value::as_str).find(|f| f.ends_with(".md"));
    let quality = std::fs::read_to_string(table.unwrap()).unwrap();
    assert!(quality.contains("| k-means ") && quality.contains("| per-label k-means "), "{quality}");
    let out = cfrun(cache.path(), &[file.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["instances"].as_array().unwrap().iter().all(|i| i["outcome"] == "cached"), "{v}");
    let files = report_files(&v);
    assert_eq!(files.iter().filter(|f| f.ends_with("clips.png")).count(), 2, "{files:?}");
    assert!(files.iter().any(|f| f.ends_with("table.md")));
    let other = tempfile::tempdir().unwrap();
    run_json(other.path(), &file, &[]);
    assert_eq!(objects(cache.path()), objects(other.path()));
}

#[test]
fn selfsup_pipeline_end_to_end_with_jigsaw_resume_after_kill() {
    let cache = tempfile::tempdir().unwrap();
    let file = fixture("selfsup_tiny.toml");
    let first = run_json(cache.path(), &file, &[]);
    assert!(first.values().all(|o| o == "ran"), "{first:?}");
    for name in
        ["pretext[method=jigsaw]", "pretext[method=rotnet]", "multi_cf[k=8]", "map_cf[k=8,layer=res5,method=rotnet]"]
    {
        assert!(first.contains_key(name), "{name} missing from {first:?}");
    }
    let table = find_report(cache.path(), &file, "table.md");
    let text = std::fs::read_to_string(&table).unwrap();
    for row in ["| jigsaw | N_pre  ", "| rotnet | N_cf  ", "| multi-task N_cf | 8", "best layer = res"] {
        assert!(text.contains(row), "`{row}` not in\n{text}");
    }
    assert!(std::fs::metadata(find_report(cache.path(), &file, "figure.png")).unwrap().len() > 100);

    // Kill Jigsaw pre-training mid-way; the rerun resumes from its checkpoint and ends bit-identical.
    let killed = tempfile::tempdir().unwrap();
    let longer = ["--set", "stages.pretext.epochs=5", "--set", "sweep.method=[\"jigsaw\"]"];
    kill_when_logged(killed.path(), &file, &longer, "epoch 2/5", 0);
    let out = cfrun(killed.path(), &[file.to_str().unwrap(), longer[0], longer[1], longer[2], longer[3]]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("resuming after epoch"), "{}", stderr(&out));
    let reference = tempfile::tempdir().unwrap();
    run_json(reference.path(), &file, &longer);
    assert_eq!(objects(killed.path()), objects(reference.path()));

    // Puzzles cut by the device pipeline (a GPU's default; here on the CPU device) give the same
    // objects as the host's.
    let resident = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cfrun"))
        .args([file.to_str().unwrap(), "--cache"])
        .arg(resident.path())
        .args(longer)
        .env("CFRUN_TRAIN_PIPELINE", "resident")
        .env("CFRUN_LOG", "cfrun=debug")
        .output()
        .expect("cfrun starts");
    assert!(out.status.success() && stderr(&out).contains("jigsaw pipeline pipeline=Resident"), "{}", stderr(&out));
    assert_eq!(objects(resident.path()), objects(reference.path()));
}

/// The first report file ending in `suffix` that a run of `file` lists.
fn find_report(cache: &Path, file: &Path, suffix: &str) -> PathBuf {
    let out = cfrun(cache, &[file.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    report_files(&v)
        .into_iter()
        .find(|f| f.ends_with(suffix))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no {suffix}"))
}

/// Every report file listed in a `--json` run summary.
fn report_files(v: &Value) -> Vec<String> {
    v["reports"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()))
        .collect()
}

/// A panic inside a stage (a bug) fails that stage and its dependants only; cfrun must finish,
/// exit non-zero, keep what completed, and not hang waiting for the stage that died.
#[test]
fn a_panicking_stage_fails_alone_and_the_run_ends() {
    let cache = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cfrun"));
    cmd.arg(smoke()).arg("--json").arg("--cache").arg(cache.path());
    cmd.env("CFRUN_FAILPOINT_PANIC", "clusters[k=4]").env_remove("CFRUN_CACHE");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(cmd.output().unwrap()));
    let out = rx.recv_timeout(std::time::Duration::from_secs(120)).expect("cfrun hung after a panic in a stage");
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcome =
        |name: &str| v["instances"].as_array().unwrap().iter().find(|i| i["name"] == name).unwrap()["outcome"].clone();
    assert_eq!(outcome("clusters[k=4]"), "failed", "{v}");
    assert_eq!(outcome("clusters[k=16]"), "ran", "{v}");
    assert_eq!(outcome("clustering"), "skipped", "{v}");
    let again = run_json(cache.path(), &smoke(), &[]);
    assert_eq!(again["clusters[k=4]"], "ran");
    assert_eq!(again["clusters[k=16]"], "cached");
}

/// A `within` claim whose band is as wide as all the metric's values span holds whatever the
/// series: warned of (a margin of 2 "points" on NMI, from 0 to 1, once held silently). And a
/// claim on series whose replicates are copies decides nothing (its zero-width interval held).
#[test]
fn a_band_wider_than_the_values_is_warned_of_and_copies_decide_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("claims_tiny.toml");
    let text = std::fs::read_to_string(fixture("claims_tiny.toml")).unwrap().replace(
        r#"inputs = ["clean.metrics", "noisy.metrics", "twin.metrics"]"#,
        r#"inputs = ["clean.metrics", "noisy.metrics", "twin.metrics", "fit_a.metrics", "fit_b.metrics"]"#,
    );
    let claim = |name: &str, a: &str, b: &str, rest: &str| {
        format!(
            "\n[[stages.verdicts.claims]]\nname = \"{name}\"\nsection = \"forced\"\nstatement = \"{name}\"\n\
             a = {{ source = \"{a}\" }}\nb = {{ source = \"{b}\" }}\n{rest}\n"
        )
    };
    // L-BFGS probes on fixed pixels draw nothing: their replicates are copies.
    let lbfgs = |name: &str, decay: f64| {
        format!(
            "\n[stages.{name}]\nop = \"linear_probe\"\nfeatures = \"shapes.images\"\nlabels = \"shapes.labels\"\n\
             solver = \"lbfgs\"\nepochs = 30\nweight_decay = {decay}\n"
        )
    };
    let text = [
        text,
        lbfgs("fit_a", 1e-4),
        lbfgs("fit_b", 1e-1),
        claim("close", "clean", "noisy", "expect = \"within\"\nmargin = 1000"),
        claim("copies", "fit_a", "fit_b", "expect = \"greater\""),
    ]
    .concat();
    std::fs::write(&file, text).unwrap();
    let out = cfrun(cache.path(), &[file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("verdicts: claim `close`'s band ±1000 is as wide as all of `top1`'s values span"), "{err}");
    assert!(!err.contains("claim `clean_beats_noisy`'s band"), "{err}");
    let verdicts = std::fs::read_to_string(find_report(cache.path(), &file, "claims.md")).unwrap();
    let row = verdicts.lines().find(|l| l.starts_with("| copies:")).unwrap_or_default();
    assert!(row.ends_with("| **inconclusive (identical replicates)** |"), "{verdicts}");
    assert!(verdicts.contains("(identical replicates: no interval)"), "{verdicts}");
}

/// Replicates expand every stage that draws random numbers (with a distinct, recorded seed) and
/// share the rest; adding one reruns only it and the aggregators; claims reach each verdict.
#[test]
fn replicates_seed_each_stochastic_stage_and_claims_reach_every_verdict() {
    let cache = tempfile::tempdir().unwrap();
    let file = fixture("claims_tiny.toml");
    let first = run_json(cache.path(), &file, &[]);
    // The data set is shared; probes and label noise run once per replicate.
    assert!(first.contains_key("shapes") && !first.keys().any(|n| n.starts_with("shapes[")), "{first:?}");
    for r in 0..3 {
        assert!(first.contains_key(&format!("noisy_labels[replicate={r}]")), "{first:?}");
    }
    // Seeds: replicate 0 keeps the experiment seed (1), the others differ from it and each other.
    let show = cfrun(cache.path(), &["show", file.to_str().unwrap(), "noisy_labels", "--json"]);
    let v: Value = serde_json::from_slice(&show.stdout).unwrap();
    let seeds: BTreeMap<String, u64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["instance"].as_str().unwrap().to_string(), i["provenance"]["seed"].as_u64().unwrap()))
        .collect();
    assert_eq!(seeds["noisy_labels[replicate=0]"], 1, "{seeds:?}");
    assert_eq!(seeds.values().collect::<BTreeSet<_>>().len(), 3, "{seeds:?}");

    let verdicts = std::fs::read_to_string(find_report(cache.path(), &file, "claims.md")).unwrap();
    let row = |name: &str| verdicts.lines().find(|l| l.starts_with(&format!("| {name}:"))).unwrap().to_string();
    assert!(row("clean_beats_noisy").ends_with("| **holds** |"), "{verdicts}");
    assert!(row("noisy_beats_clean").ends_with("| **reversed** |"), "{verdicts}");
    assert!(row("clean_beats_itself").ends_with("| **inconclusive** |"), "{verdicts}");
    let table = std::fs::read_to_string(find_report(cache.path(), &file, "table.md")).unwrap();
    assert!(table.contains(" ± ") && table.contains("n = 3 replicates (Student t"), "{table}");
    let csv = std::fs::read_to_string(find_report(cache.path(), &file, "table.csv")).unwrap();
    assert!(csv.lines().next().unwrap().contains("top1 (replicates)"), "{csv}");
    // Each per-replicate value in claims.csv says whose it is.
    let claims = std::fs::read_to_string(find_report(cache.path(), &file, "claims.csv")).unwrap();
    assert!(claims.lines().next().unwrap().contains(",per_replicate,replicates,"), "{claims}");
    assert!(claims.lines().skip(1).all(|l| l.contains(",0 1 2,")), "{claims}");

    // Nothing changed: nothing runs. A fourth replicate: only it and the aggregators.
    assert!(ran(&run_json(cache.path(), &file, &[])).is_empty());
    let more = run_json(cache.path(), &file, &["--set", "experiment.replicates=4"]);
    let fresh = ran(&more);
    assert!(fresh.iter().all(|n| n.contains("replicate=3") || n == "results" || n == "verdicts"), "{fresh:?}");
    assert!(fresh.contains("noisy_labels[replicate=3]") && fresh.contains("verdicts"), "{fresh:?}");

    // One replicate: the same keys as replicate 0, and no verdict without an interval.
    let one = cfrun(cache.path(), &[file.to_str().unwrap(), "--json", "--set", "experiment.replicates=1"]);
    let v: Value = serde_json::from_slice(&one.stdout).unwrap();
    let ran_now: BTreeSet<String> = v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["outcome"] == "ran")
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ran_now, set(&["results", "verdicts"]));
    let md = report_files(&v).into_iter().find(|f| f.ends_with("claims.md")).unwrap();
    let verdicts = std::fs::read_to_string(md).unwrap();
    assert_eq!(verdicts.matches("**inconclusive (one replicate)**").count(), 3, "{verdicts}");

    // A margin on a directional claim is its threshold: clean labels beat noisy ones, but not by
    // 500 points (it was once accepted and judged against 0). Only the claims rerun.
    let dir = tempfile::tempdir().unwrap();
    let strict = dir.path().join("margin.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text.replacen(
        "b = { source = \"noisy\" }\nexpect = \"greater\"\n",
        "b = { source = \"noisy\" }\nexpect = \"greater\"\nmargin = 500.0\n",
        1,
    );
    assert!(text.contains("margin = 500.0"));
    std::fs::write(&strict, text).unwrap();
    assert_eq!(ran(&run_json(cache.path(), &strict, &[])), set(&["verdicts"]));
    let verdicts = std::fs::read_to_string(find_report(cache.path(), &strict, "claims.md")).unwrap();
    let row = verdicts.lines().find(|l| l.starts_with("| clean_beats_noisy:")).unwrap();
    // Refuted short of the threshold, though clean labels do beat noisy ones: the row says so.
    assert!(row.contains("threshold +500") && row.ends_with("| **reversed (short of the threshold)** |"), "{verdicts}");
    assert!(verdicts.contains("Each check is its own 95 % test"), "{verdicts}");
    // claims.csv says so too: "reversed" alone would read as noisy labels beating clean ones.
    let csv = std::fs::read_to_string(find_report(cache.path(), &strict, "claims.csv")).unwrap();
    let row = csv.lines().find(|l| l.starts_with("clean_beats_noisy,")).unwrap();
    assert!(row.ends_with(",reversed (short of the threshold)"), "{csv}");
}

/// A claim or a table on `top5` of probes whose labels have four classes (`top5` needs more
/// than five) is refused before anything runs, naming why: the plan knows the classes. Where it
/// cannot (labels of `per_label_kmeans`, whose clusters per label only running tells), the claim
/// fails as it runs, naming the stages and what they wrote; it said only that series `a` matched
/// no instance.
#[test]
fn a_claim_on_an_unwritten_metric_names_what_the_stages_wrote() {
    let cache = tempfile::tempdir().unwrap();
    let file = fixture("claims_tiny.toml");
    let out = cfrun(cache.path(), &["--set", "stages.verdicts.metric=\"top5\"", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let said = "series a (source = clean) matches no instance; `clean` will not write `top5`: top5 needs more than \
                five classes; its labels have 4";
    assert!(stderr(&out).contains(said), "{}", stderr(&out));
    let out = cfrun(cache.path(), &["--set", "stages.results.metrics=[\"top5\"]", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let said = "`metrics` names `top5`, which `clean` will not write: top5 needs more than five classes";
    assert!(stderr(&out).contains(said), "{}", stderr(&out));
    assert!(!cache.path().join("objects").exists(), "nothing ran");
    // A claim on `top5` of probes of ten classes stands beside probes of four in the same stage.
    let dir = tempfile::tempdir().unwrap();
    let wide = "[stages.wide]\nop = \"dataset\"\nname = \"synthetic\"\nclasses = 10\nsize = 8\ntrain_size = 200\n\
                test_size = 100\n\n[stages.wide_a]\nop = \"linear_probe\"\nfeatures = \"wide.images\"\n\
                labels = \"wide.labels\"\n\n[stages.wide_b]\nop = \"linear_probe\"\nfeatures = \"wide.images\"\n\
                labels = \"wide.labels\"\nepochs = 2\n\n[stages.verdicts]";
    let claim = "\n[[stages.verdicts.claims]]\nname = \"wide\"\nstatement = \"more epochs\"\nmetric = \"top5\"\n\
                 a = { source = \"wide_b\" }\nb = { source = \"wide_a\" }\nexpect = \"greater\"\n";
    let text = std::fs::read_to_string(&file).unwrap().replacen("[stages.verdicts]", wide, 1).replacen(
        "inputs = [\"clean.metrics\", \"noisy.metrics\", \"twin.metrics\"]",
        "inputs = [\"clean.metrics\", \"noisy.metrics\", \"twin.metrics\", \"wide_a.metrics\", \"wide_b.metrics\"]",
        1,
    ) + claim;
    let mixed = dir.path().join("mixed.toml");
    std::fs::write(&mixed, text).unwrap();
    let out = cfrun(cache.path(), &["status", mixed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // A table of `top5` over both: the probe of four classes would have no cell, and is named why.
    let both = ["--set", "stages.results.inputs=[\"clean.metrics\", \"wide_a.metrics\"]"];
    let top5 = ["--set", "stages.results.metrics=[\"top5\"]"];
    let out = cfrun(cache.path(), &[&both[..], &top5[..], &["status", mixed.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("`metrics` names `top5`, which `clean` will not write"), "{}", stderr(&out));

    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&file).unwrap().replacen(
        "[stages.noisy_labels]",
        "[stages.clusters]\nop = \"per_label_kmeans\"\nfeatures = \"shapes.images\"\nlabels = \"shapes.labels\"\nk = 4\n\n[stages.noisy_labels]",
        1,
    );
    let text = text
        .replace("labels = \"shapes.labels\"\nepochs = 4", "labels = \"clusters.labels\"\nepochs = 4")
        .replace("labels = \"shapes.labels\"\npercent", "labels = \"clusters.labels\"\npercent");
    let unknown = dir.path().join("clusters.toml");
    std::fs::write(&unknown, text).unwrap();
    let out = cfrun(cache.path(), &["--set", "stages.verdicts.metric=\"top5\"", unknown.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = "`clean`, `noisy`, `twin` wrote no `top5` (they wrote: top1, train_top1); did you mean `top1`?";
    assert!(stderr(&out).contains(said), "{}", stderr(&out));
}

/// `family = "holm"` adds a family-wise column beside each check's own verdict, with the
/// one-sided p-values a t test gives (scipy's `ttest_1samp(..., alternative="greater")` on the
/// per-replicate values: 0.007175 for both forced differences) and Holm's adjustment over the
/// six one-sided tests of the three checks (6 x 0.007175); unset, the page has no such column.
#[test]
fn claims_decided_as_a_family_show_p_values_and_holms_verdicts() {
    let cache = tempfile::tempdir().unwrap();
    let file = fixture("claims_tiny.toml");
    let out = cfrun(cache.path(), &["--set", "stages.verdicts.family=\"holm\"", file.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let read = |suffix: &str| {
        let path = report_files(&v).into_iter().find(|f| f.ends_with(suffix)).unwrap();
        std::fs::read_to_string(path).unwrap()
    };
    let page = read("claims.md");
    let row = |name: &str| page.lines().find(|l| l.starts_with(&format!("| {name}:"))).unwrap().to_string();
    assert!(page.contains("| verdict | family-wise (Holm): one-sided p, adjusted |"), "{page}");
    assert!(row("clean_beats_noisy").ends_with("| **holds** | **holds**: p 0.0072, adjusted 0.043 |"), "{page}");
    assert!(row("noisy_beats_clean").ends_with("| **reversed**: p 0.0072, adjusted 0.043 |"), "{page}");
    assert!(row("clean_beats_itself").ends_with("| **inconclusive**: p 1.0, adjusted 1.0 |"), "{page}");
    assert!(
        page.contains("Family-wise at 5 % (Holm over the 3 checks with an interval): 1 hold, 1 reversed"),
        "{page}"
    );
    let csv = read("claims.csv");
    assert!(csv.lines().next().unwrap().ends_with(",verdict,p,p_holm,verdict_holm"), "{csv}");
    let clean = csv.lines().find(|l| l.starts_with("clean_beats_noisy,")).unwrap();
    let fields: Vec<&str> = clean.rsplitn(4, ',').collect();
    let (p, holm): (f64, f64) = (fields[2].parse().unwrap(), fields[1].parse().unwrap());
    assert!((p - 0.007175).abs() < 1e-5 && (holm - 6.0 * p).abs() < 1e-12, "{clean}");

    // Unset, it is another recipe (it ran), and its page has no family column.
    let plain = run_json(cache.path(), &file, &[]);
    assert_eq!(plain["verdicts"], "ran", "{plain:?}");
    let page = std::fs::read_to_string(find_report(cache.path(), &file, "claims.md")).unwrap();
    assert!(!page.contains("family-wise") && page.contains("nothing corrects for the number of checks"), "{page}");
}

/// A network that fails to fit its labels (an absurd learning rate) stops the study at that stage
/// with a clear message instead of feeding chance-level features to what depends on it.
#[test]
fn a_network_below_its_training_floor_fails_and_its_dependants_are_skipped() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("diverges.toml");
    std::fs::write(
        &file,
        r#"
[experiment]
name = "diverges"
seed = 0

[stages.shapes]
op = "dataset"
name = "synthetic"
classes = 4
size = 16
train_size = 128
test_size = 32

[stages.pretrain]
op = "train"
images = "shapes.images"
labels = "shapes.labels"
arch = "resnet_tiny"
epochs = 2
batch_size = 64
lr = 100000.0
warmup_epochs = 0
min_train_top1 = 60

[stages.feats]
op = "extract"
model = "pretrain.model"
images = "shapes.images"

[stages.probe]
op = "linear_probe"
features = "feats.features"
labels = "shapes.labels"
"#,
    )
    .unwrap();
    let out = cfrun(cache.path(), &[file.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("training did not fit its labels") && err.contains("min_train_top1 = 60"), "{err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcome =
        |n: &str| v["instances"].as_array().unwrap().iter().find(|i| i["name"] == n).unwrap()["outcome"].clone();
    assert_eq!(outcome("pretrain"), "failed");
    assert_eq!(outcome("feats"), "skipped");
    assert_eq!(outcome("probe"), "skipped");
    // `status` says it failed and why, not that an interrupted run left a checkpoint.
    let status = cfrun(cache.path(), &["status", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    let line = text.lines().find(|l| l.contains("pretrain")).unwrap_or_default();
    assert!(line.starts_with("failed") && line.contains("failed in its last run: training did not fit"), "{text}");
    assert!(!line.contains("interrupted") && !line.contains("never run"), "{text}");
    let v: Value =
        serde_json::from_slice(&cfrun(cache.path(), &["status", file.to_str().unwrap(), "--json"]).stdout).unwrap();
    let pretrain = v["instances"].as_array().unwrap().iter().find(|i| i["instance"] == "pretrain").unwrap();
    assert_eq!(pretrain["state"], "failed", "{pretrain}");
    assert!(pretrain["error"].as_str().unwrap_or_default().contains("min_train_top1 = 60"), "{pretrain}");
    assert!(!pretrain["because"].to_string().contains("never run"), "{pretrain}");
    // `show` agrees, with the whole error.
    let shown = cfrun(cache.path(), &["show", file.to_str().unwrap(), "pretrain", "--json"]);
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown[0]["state"], "failed", "{shown}");
    assert_eq!(shown[0]["error"], pretrain["error"], "{shown}");
    assert!(!shown[0]["because"].to_string().contains("never run"), "{shown}");

    // A rate so large the loss overflows: the run stops at the epoch it diverged, floor or not,
    // and publishes neither the network nor a NaN metric.
    let out = cfrun(cache.path(), &[file.to_str().unwrap(), "--json", "--set", "stages.pretrain.lr=1e308"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("training diverged: the mean loss of epoch 1 of 2 is NaN"), "{err}");
    assert_eq!(std::fs::read_dir(cache.path().join("keys")).unwrap().count(), 1, "only the data set is published");
}

/// A safetensors file of one-dimensional or two-dimensional tensors, written by hand so the tests
/// can make files no well-behaved writer would.
fn safetensors(tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        let begin = data.len();
        data.extend_from_slice(bytes);
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [begin, data.len()]}),
        );
    }
    let text = serde_json::to_vec(&header).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend(data);
    out
}

/// Runs `file` from `dir` (where a command stage's code files are) with `--json`.
fn run_in(dir: &Path, file: &str, cache: &Path, extra: &[&str]) -> (Output, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_cfrun"))
        .current_dir(dir)
        .arg(file)
        .arg("--json")
        .args(extra)
        .arg("--cache")
        .arg(cache)
        .env("CFRUN_LOG", "info")
        .env_remove("CFRUN_CACHE")
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, v)
}

fn outcome_of(v: &Value, name: &str) -> (String, String) {
    let i = v["instances"].as_array().unwrap().iter().find(|i| i["name"] == name).unwrap();
    (i["outcome"].as_str().unwrap().to_string(), i["error"].as_str().unwrap_or("").to_string())
}

/// An experiment `name`: tiny generated shapes, then a `command` stage `slow` running `script`
/// under `sh -c` with the images as input.
fn shapes_then_shell(name: &str, script: &str) -> String {
    format!(
        "[experiment]\nname = \"{name}\"\nseed = 0\n\n[stages.shapes]\nop = \"dataset\"\nname = \"synthetic\"\n\
         classes = 4\nsize = 8\ntrain_size = 12\ntest_size = 8\n\n[stages.slow]\nop = \"command\"\n\
         argv = {}\ninputs = {{ images = \"shapes.images\" }}\noutputs = {{ m = \"metrics\" }}\n",
        serde_json::to_string(&["sh", "-c", script]).unwrap()
    )
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn process_gone(pid: &str) -> bool {
    let pid: i32 = pid.parse().expect("a pid");
    cfrun::proc_stat::state(pid).is_none_or(|state| state == 'Z')
}

/// Waits (10 s at most) for process `pid` to end; fails with `failure`, killing it, if it does not.
fn gone_within_10_s(pid: &str, failure: &str) {
    let ended = std::time::Instant::now();
    while !process_gone(pid) {
        if ended.elapsed().as_secs() >= 10 {
            let _ = Command::new("kill").args(["-9", pid]).status();
            panic!("{failure}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Waits for the command stage's process `pid` to end after cfrun was `how` (interrupted,
/// terminated); fails, killing it, if it outlives cfrun.
fn outlives_no_command(pid: &str, how: &str) {
    gone_within_10_s(pid, &format!("the command stage's process {pid} outlived the {how} cfrun"));
}

/// A killed cfrun takes with it what a command stage started in the background, not just the
/// process it started itself (a shell's job, a framework's worker holding a GPU), even what left
/// the command's process group and session.
#[test]
fn a_killed_run_leaves_no_process_of_a_command_stage_behind() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pid_file = d.join("background.pid");
    let escaped_file = d.join("escaped.pid");
    // One job in the command's group, one that left it (setsid); the first pid is written last.
    let script = format!(
        "setsid sh -c 'echo $$ > {e}.part && mv {e}.part {e}; exec sleep 300' & \
         while [ ! -e {e} ]; do sleep 0.05; done; sleep 300 & echo $! > '{p}'; wait",
        e = escaped_file.display(),
        p = pid_file.display()
    );
    std::fs::write(d.join("orphans.toml"), shapes_then_shell("orphans", &script)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cfrun"))
        .arg(d.join("orphans.toml"))
        .arg("--cache")
        .arg(d.join("cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let pid = loop {
        match std::fs::read_to_string(&pid_file) {
            Ok(text) if text.ends_with('\n') => break text.trim().to_string(),
            _ => {
                assert!(started.elapsed().as_secs() < 60, "the command stage never started its background job");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    };
    let escaped = std::fs::read_to_string(&escaped_file).unwrap().trim().to_string();
    assert!(!process_gone(&pid) && !process_gone(&escaped), "the background jobs should be running");
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = std::time::Instant::now();
    while !process_gone(&pid) || !process_gone(&escaped) {
        if killed.elapsed().as_secs() >= 10 {
            // Do not leave them behind for the next test run either.
            let _ = Command::new("kill").args(["-9", &pid, &escaped]).status();
            panic!("the command stage's background jobs {pid} or {escaped} (setsid) outlived the killed cfrun");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Starts `cfrun DIR/stop.toml --json EXTRA` (tiny shapes, then a command stage `slow` that
/// starts `sleep 300` in the background and waits) in a process group of its own, as a shell
/// starts a command, and returns it with the sleep's pid once the command stage is running.
fn start_a_sleeping_command(d: &Path, cache: &Path, extra: &[&str]) -> (std::process::Child, String) {
    start_a_sleeping_command_under(None, d, cache, extra)
}

/// [`start_a_sleeping_command`], with cfrun started by `launcher` (`nohup`) when given.
fn start_a_sleeping_command_under(
    launcher: Option<&str>,
    d: &Path,
    cache: &Path,
    extra: &[&str],
) -> (std::process::Child, String) {
    use std::os::unix::process::CommandExt;
    let pid_file = d.join("sleep.pid");
    let _ = std::fs::remove_file(&pid_file);
    let script = format!("sleep 300 & echo $! > '{p}.part' && mv '{p}.part' '{p}'; wait", p = pid_file.display());
    std::fs::write(d.join("stop.toml"), shapes_then_shell("stop", &script)).unwrap();
    let mut command = match launcher {
        Some(l) => {
            let mut c = Command::new(l);
            c.arg(env!("CARGO_BIN_EXE_cfrun"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_cfrun")),
    };
    let child = command
        .arg(d.join("stop.toml"))
        .arg("--json")
        .args(extra)
        .arg("--cache")
        .arg(cache)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let sleep_pid = wait_for(60, "the command stage to start", || {
        std::fs::read_to_string(&pid_file).ok().map(|t| t.trim().to_string())
    });
    (child, sleep_pid)
}

/// SIGTERM (`kill`, a scheduler ending the job that runs cfrun) and SIGHUP (the terminal or ssh
/// session closing) end a run as Ctrl-C does, with the summary, under the code a shell gives a
/// process the signal ended (143, 129), so a wrapper can tell them apart. SIGHUP used to end the
/// driver on the spot, without a summary and without cancelling its jobs; under `nohup` it is
/// still ignored.
#[test]
fn sigterm_and_sighup_end_a_local_run_like_ctrl_c_with_exit_143_and_129() {
    let dir = tempfile::tempdir().unwrap();
    for (signal, code) in [("TERM", 143), ("HUP", 129)] {
        let cache = dir.path().join(signal);
        let (child, sleep_pid) = start_a_sleeping_command(dir.path(), &cache, &[]);
        assert!(Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap()
            .success());
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "SIG{signal}: {err}");
        assert!(err.contains("every finished instance is cached"), "{err}");
        let v: Value = serde_json::from_slice(&out.stdout).expect("--json prints its object after the signal");
        assert_eq!((&v["interrupted"], &v["ok"]), (&json!(true), &json!(false)), "{v}");
        outlives_no_command(&sleep_pid, "terminated");
    }
    // Under `nohup` SIGHUP stays ignored: the run outlives the session (until a SIGTERM here).
    let (child, sleep_pid) = start_a_sleeping_command_under(Some("nohup"), dir.path(), &dir.path().join("nohup"), &[]);
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(!process_gone(&pid), "a SIGHUP under nohup ended the run");
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    outlives_no_command(&sleep_pid, "terminated");
}

/// A pseudo-terminal `(master, slave)`, neither inherited by children (a child holding the
/// master would keep the terminal open).
fn open_terminal() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two descriptors into the ints given; the name, termios and size are optional.
    let opened =
        unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
    for fd in [master, slave] {
        // SAFETY: F_SETFD on a descriptor just opened.
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) }, 0);
    }
    // SAFETY: both descriptors were just opened and are owned here alone.
    unsafe { (std::os::fd::OwnedFd::from_raw_fd(master), std::os::fd::OwnedFd::from_raw_fd(slave)) }
}

/// About 2-4 s of training with a bar per epoch, `epochs` of them.
fn training_on_a_terminal(dir: &Path, epochs: usize) -> PathBuf {
    let file = dir.join(format!("terminal{epochs}.toml"));
    let text = format!(
        "[experiment]\nname = \"terminal\"\nseed = 0\n\n[stages.shapes]\nop = \"dataset\"\nname = \"synthetic\"\n\
         train_size = 3000\ntest_size = 16\n\n[stages.net]\nop = \"train\"\nimages = \"shapes.images\"\n\
         labels = \"shapes.labels\"\narch = \"resnet_tiny\"\nepochs = {epochs}\n"
    );
    std::fs::write(&file, text).unwrap();
    file
}

/// Starts `cfrun --cache CACHE ARGS` with stdout and stderr on a new terminal whose `TERM` is
/// `term`; returns the child and the terminal's master end.
fn start_on_a_terminal(cache: &Path, args: &[&str], term: &str) -> (std::process::Child, std::fs::File) {
    let (master, slave) = open_terminal();
    let child = Command::new(env!("CARGO_BIN_EXE_cfrun"))
        .arg("--cache")
        .arg(cache)
        .args(args)
        .env("TERM", term)
        .env_remove("CFRUN_LOG")
        .env_remove("CFRUN_CACHE")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    (child, std::fs::File::from(master))
}

/// A terminal gone under a running study with no SIGHUP (its pty closed while cfrun is not the
/// session leader: a terminal emulator killed, a container's console dropped) stops the bars
/// and the log, not the run: it finishes with exit 0 and everything it ran is cached. It used to
/// abort at the next log line (indicatif unwrapped the terminal's EIO: SIGABRT, exit 134).
#[test]
fn a_terminal_closed_under_a_run_stops_the_bars_not_the_run() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let file = training_on_a_terminal(dir.path(), 4);
    let cache = dir.path().join("cache");
    let (child, mut terminal) = start_on_a_terminal(&cache, &["run", file.to_str().unwrap()], "xterm");
    // Read the terminal until the training's bar is drawn, then close its other end.
    let (mut seen, mut buf) = (Vec::new(), [0u8; 4096]);
    let started = std::time::Instant::now();
    while !String::from_utf8_lossy(&seen).contains("epoch 1/4") {
        let n = terminal.read(&mut buf).unwrap_or(0);
        assert!(n > 0 && started.elapsed().as_secs() < 60, "no bar drawn: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).contains("\x1b["), "no bar escapes on the terminal");
    drop(terminal);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", out.status);
    let status = cfrun(&cache, &["status", file.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(said.contains("2 of 2 instances cached"), "{said}{}", stderr(&status));
}

/// Ctrl-C on a terminal clears the bars before the summary: the last frame of each was left on
/// the screen, with the interruption notice written through it.
#[test]
fn ctrl_c_on_a_terminal_clears_the_bars() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let file = training_on_a_terminal(dir.path(), 4);
    let (mut child, mut terminal) =
        start_on_a_terminal(&dir.path().join("cache"), &["run", file.to_str().unwrap()], "xterm");
    let (mut seen, mut buf) = (Vec::new(), [0u8; 4096]);
    while !String::from_utf8_lossy(&seen).contains(" eta ") {
        let n = terminal.read(&mut buf).unwrap_or(0);
        assert!(n > 0, "no bar drawn: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    // SAFETY: kill(2) on the child's pid, which it keeps until waited for.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let _ = terminal.read_to_end(&mut seen);
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let shown = String::from_utf8_lossy(&seen);
    let (frame, cleared) = (shown.rfind(" eta ").unwrap(), shown.rfind("\x1b[2K").unwrap_or(0));
    assert!(cleared > frame, "the last bar frame was not cleared:\n{}", &shown[frame.saturating_sub(300)..]);
    assert!(shown[cleared..].contains("interrupted: every finished instance is cached"), "{shown}");
}

/// On a terminal that moves no cursor (`TERM=dumb`) no bar is drawn, where indicatif would hide
/// them and with them every step's progress: log lines come without colour, each epoch's naming
/// its instance (jobs side by side share the log). With `-q` no bar is
/// drawn on any terminal (stderr is for warnings and errors).
#[test]
fn no_bars_on_a_dumb_terminal_nor_with_quiet() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let file = training_on_a_terminal(dir.path(), 2);
    let shown = |term: &str, quiet: bool| {
        let cache = dir.path().join(format!("{term}{quiet}"));
        let mut args = vec!["run", file.to_str().unwrap()];
        if quiet {
            args.push("-q");
        }
        let (mut child, mut terminal) = start_on_a_terminal(&cache, &args, term);
        let mut seen = Vec::new();
        // Read until the child's end closes the terminal (EIO once no process holds it).
        let _ = terminal.read_to_end(&mut seen);
        assert_eq!(child.wait().unwrap().code(), Some(0), "{}", String::from_utf8_lossy(&seen));
        String::from_utf8_lossy(&seen).to_string()
    };
    let xterm = shown("xterm", false);
    assert!(xterm.contains("\x1b[") && xterm.contains("epoch 1/2"), "{xterm}");
    let dumb = shown("dumb", false);
    assert!(!dumb.contains('\x1b') && dumb.contains("net epoch 1/2: loss"), "{dumb}");
    let quiet = shown("xterm", true);
    assert!(!quiet.contains('\x1b') && !quiet.contains("epoch"), "{quiet}");
}

/// Ctrl-C (SIGINT) during a local run ends it at once with its summary: `--json` still gets its
/// object, finished instances are reported (and cached), the running one is reported as
/// interrupted, the exit code is 130, and the running command's process is gone.
#[test]
fn ctrl_c_ends_a_local_run_with_its_summary_and_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cache = d.join("cache");
    let (child, sleep_pid) = start_a_sleeping_command(d, &cache, &[]);
    let interrupted = std::time::Instant::now();
    let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    // A bound against hangs, not a speed goal: the run ends within a wait's look (0.1 s).
    assert!(interrupted.elapsed().as_secs() < 20, "cfrun took {:?} to end after Ctrl-C", interrupted.elapsed());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted: every finished instance is cached"), "{err}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("--json prints its object after a Ctrl-C");
    assert_eq!(v["interrupted"], true, "{v}");
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(outcome_of(&v, "shapes").0, "ran", "{v}");
    assert_eq!(outcome_of(&v, "slow"), ("skipped".into(), "interrupted while running or queued to run".into()), "{v}");
    let slow = v["instances"].as_array().unwrap().iter().find(|i| i["name"] == "slow").unwrap();
    assert!(slow["key"].as_str().is_some_and(|k| k.starts_with("blake3:")), "its key is known: {slow}");
    outlives_no_command(&sleep_pid, "interrupted");
    // What finished is cached: the rerun computes only the interrupted stage (stopped at once).
    let status = cfrun(&cache, &["status", d.join("stop.toml").to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_slice(&status.stdout).unwrap();
    let states: BTreeMap<String, String> = v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["instance"].as_str().unwrap().to_string(), i["state"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(states["shapes"], "cached", "{v}");
    assert_ne!(states["slow"], "cached", "{v}");
    // The stopped stage's scratch folder (read-only input copies) stays until the next run on
    // the otherwise idle cache, which removes it first.
    let leftovers = || std::fs::read_dir(cache.join("tmp")).unwrap().count();
    assert!(leftovers() > 0, "the interrupted command's scratch folder is left in tmp/");
    let only_shapes = shapes_then_shell("stop", "true");
    let only_shapes = &only_shapes[..only_shapes.find("[stages.slow]").unwrap()];
    std::fs::write(d.join("shapes.toml"), only_shapes).unwrap();
    let (out, v) = run_in(d, "shapes.toml", &cache, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(outcome_of(&v, "shapes").0, "cached", "{v}");
    assert_eq!(leftovers(), 0, "{}", stderr(&out));
}

/// Sends `signal` to the watcher of a command stage whose program (run after `trap`, a shell
/// line or nothing) started a process that left its session (setsid) and then loops; returns
/// the run's output and JSON, and whether the escaped process is gone (killed here if not).
fn signal_the_watcher(signal: &str, trap: &str) -> (std::process::Output, Value, bool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (watcher, escaped) = (d.join("watcher.pid"), d.join("escaped.pid"));
    let script = format!(
        "{trap} setsid sh -c 'echo $$ > {e}.part && mv {e}.part {e}; exec sleep 300' & \
         while [ ! -e {e} ]; do sleep 0.05; done; echo $PPID > {w}.part && mv {w}.part {w}; \
         while true; do sleep 0.05; done",
        e = escaped.display(),
        w = watcher.display()
    );
    let toml = format!(
        "[experiment]\nname = \"sig\"\nseed = 0\n\n[stages.s]\nop = \"command\"\nargv = {}\ntimeout = 60\noutputs = {{ m = \"metrics\" }}\n",
        serde_json::to_string(&["sh", "-c", &script]).unwrap()
    );
    std::fs::write(d.join("sig.toml"), toml).unwrap();
    let run = {
        let d = d.to_path_buf();
        std::thread::spawn(move || run_in(&d, "sig.toml", &d.join("cache"), &[]))
    };
    let started = std::time::Instant::now();
    while !watcher.exists() {
        assert!(started.elapsed().as_secs() < 30, "the command never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = std::fs::read_to_string(&watcher).unwrap().trim().to_string();
    let escaped = std::fs::read_to_string(&escaped).unwrap().trim().to_string();
    assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success());
    let (out, v) = run.join().unwrap();
    let gone = process_gone(&escaped);
    if !gone {
        let _ = Command::new("kill").args(["-9", &escaped]).status();
    }
    (out, v, gone)
}

/// A SIGTERM sent to a command's watcher (`pkill`, Slurm's step signal) reaches the program,
/// which may end as it likes; the watcher then still stops what the program started, even a
/// process that left its session, instead of dying at once and leaving everything behind.
#[test]
fn a_signal_to_the_watcher_reaches_the_program_and_leaves_nothing_behind() {
    let (out, v, gone) = signal_the_watcher("-TERM", "trap 'echo got TERM >&2; exit 7' TERM;");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let (outcome, error) = outcome_of(&v, "s");
    assert_eq!(outcome, "failed");
    assert!(error.contains("exited with status 7") && error.contains("got TERM"), "{error}");
    assert!(gone, "the process that left the command's session outlived its stage");
}

/// A watcher killed outright (SIGKILL: no chance to clean up) takes its program with it; a
/// process that had left the program's session and still holds the command's output is found
/// by the pipe it holds and killed, and the stage fails saying so (it once read "killed at its
/// timeout", and the process ran on).
#[test]
fn a_process_outliving_a_killed_watcher_is_found_by_its_pipe_and_stopped() {
    let (out, v, gone) = signal_the_watcher("-KILL", "");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let (outcome, error) = outcome_of(&v, "s");
    assert_eq!(outcome, "failed");
    assert!(error.contains("was killed with its watcher") && error.contains("cfrun killed it"), "{error}");
    assert!(gone, "the process that left the command's session outlived its killed watcher");
}

/// Two stages with one recipe are computed once, and the second takes no job slot meanwhile: it
/// waits in the backlog, then finds the result cached. Two such pairs with `--jobs 2`: each
/// pair's command waits until the other pair's has started, which it can only if the waiting
/// twin leaves the second slot free (it did not, and the commands timed out).
#[test]
fn one_recipe_under_two_names_runs_once_without_taking_a_slot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let metrics = r#"{"values": {"top1": 1}}"#.replace('{', "{{").replace('}', "}}");
    let stage = |name: &str, me: &str, other: &str| {
        let script = format!(
            "touch '{m}'; while [ ! -e '{o}' ]; do sleep 0.05; done; echo '{metrics}' > out/m/metrics.json",
            m = d.join(me).display(),
            o = d.join(other).display()
        );
        format!(
            "[stages.{name}]\nop = \"command\"\nargv = {}\ntimeout = 20\noutputs = {{ m = \"metrics\" }}\n\n",
            serde_json::to_string(&["sh", "-c", &script]).unwrap()
        )
    };
    let toml = format!(
        "[experiment]\nname = \"twins\"\nseed = 0\n\n{}{}{}{}",
        stage("a1", "a", "c"),
        stage("a2", "a", "c"),
        stage("c1", "c", "a"),
        stage("c2", "c", "a")
    );
    std::fs::write(d.join("twins.toml"), toml).unwrap();
    let (out, v) = run_in(d, "twins.toml", &d.join("cache"), &["--jobs", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for pair in [["a1", "a2"], ["c1", "c2"]] {
        let mut outcomes = pair.map(|name| outcome_of(&v, name).0);
        outcomes.sort();
        assert_eq!(outcomes, ["cached", "ran"], "{}", stderr(&out));
    }
    assert!(!stderr(&out).contains("waiting for lock"), "{}", stderr(&out));
}

/// What a command does with links and escaped processes stays in its scratch folder: a link put
/// in place of `out` fails the stage without cfrun changing or moving the folder it points to; a
/// hard link to a private file is published as a copy of its own, the file's mode untouched; a
/// process that left the command's group and session (setsid) is stopped when the command ends,
/// like any background job, instead of outliving its stage or holding cfrun until it ends.
#[test]
fn a_command_stage_cannot_reach_outside_its_scratch_folder() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let metrics = r#"{"values": {"top1": 1}}"#;
    let victim = d.join("victim");
    std::fs::create_dir_all(victim.join("m")).unwrap();
    std::fs::write(victim.join("m/metrics.json"), metrics).unwrap();
    std::fs::set_permissions(victim.join("m/metrics.json"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let private = d.join("private.json");
    std::fs::write(&private, metrics).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    let stage = |name: &str, script: &str| {
        format!(
            "[stages.{name}]\nop = \"command\"\nargv = {}\ninputs = {{ images = \"shapes.images\" }}\noutputs = {{ m = \"metrics\" }}\n\n",
            serde_json::to_string(&["sh", "-c", script]).unwrap()
        )
    };
    let mut toml = String::from(
        "[experiment]\nname = \"cmd_reach\"\nseed = 0\n\n[stages.shapes]\nop = \"dataset\"\nname = \"synthetic\"\nclasses = 4\nsize = 8\ntrain_size = 12\ntest_size = 8\n\n",
    );
    toml += &stage("linked_out", &format!("rm -rf out && ln -s '{}' out", victim.display()));
    toml += &stage("hard_link", &format!("ln '{}' out/m/metrics.json", private.display()));
    // Braces doubled: argv's placeholders are `{...}`.
    let braced = metrics.replace('{', "{{").replace('}', "}}");
    // The command ends only once the escaped process has left the group: ending sooner raced the
    // group kill against setsid (on a loaded machine the kill won and the stage rightly ran).
    let left = d.join("left.pid");
    toml += &stage(
        "escaped",
        &format!(
            "setsid sh -c 'echo $$ > {l}.part && mv {l}.part {l}; exec sleep 25' & while [ ! -e {l} ]; do sleep 0.05; done; echo '{braced}' > out/m/metrics.json",
            l = left.display()
        ),
    );
    std::fs::write(d.join("reach.toml"), toml).unwrap();
    let cache = d.join("cache");
    let started = std::time::Instant::now();
    let (out, v) = run_in(d, "reach.toml", &cache, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(started.elapsed().as_secs() < 20, "cfrun waited for the escaped process");
    let (outcome, error) = outcome_of(&v, "linked_out");
    assert_eq!(outcome, "failed");
    assert!(error.contains("replaced it with something that is not a folder"), "{error}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&victim.join("m/metrics.json")), 0o600, "cfrun changed a mode outside its folders");
    assert!(victim.join("m/metrics.json").exists(), "cfrun moved a folder outside the cache into it");
    assert_eq!(outcome_of(&v, "escaped").0, "ran");
    let escaped = std::fs::read_to_string(&left).unwrap().trim().to_string();
    if !process_gone(&escaped) {
        let _ = Command::new("kill").args(["-9", &escaped]).status();
        panic!("the process {escaped} that left the command's session outlived its stage");
    }
    assert_eq!(outcome_of(&v, "hard_link").0, "ran");
    assert_eq!(mode(&private), 0o600, "cfrun changed the mode of a hard-linked file outside the cache");
    assert_eq!(std::fs::metadata(&private).unwrap().nlink(), 1, "the cache shares the file's bytes");
}

/// A huge file in a report output is named on the page, not inlined (a 1 GiB one took 13 GB of
/// memory and made a 2.5 GB page); the small files beside it still are.
#[test]
fn the_report_page_names_a_huge_report_file_instead_of_inlining_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let toml = "[experiment]\nname = \"big\"\nseed = 0\n\n[stages.rep]\nop = \"command\"\n\
                argv = [\"sh\", \"-c\", \"truncate -s 20M out/r/huge.txt && echo '# small heading' > out/r/small.md\"]\n\
                outputs = { r = \"report\" }\n";
    std::fs::write(d.join("big.toml"), toml).unwrap();
    let cache = d.join("cache");
    let (out, _) = run_in(d, "big.toml", &cache, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = Command::new(env!("CARGO_BIN_EXE_cfrun"))
        .current_dir(d)
        .args(["report", "big.toml", "-o", "pages", "--cache", cache.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(page.status.success(), "{}", stderr(&page));
    let html = std::fs::read_to_string(d.join("pages/big.html")).unwrap();
    assert!(html.len() < 1024 * 1024, "the page is {} bytes", html.len());
    assert!(html.contains("huge.txt (20.0 MiB, too large to include"), "{html}");
    assert!(html.contains("small heading"));
}

/// What a command prints to stderr or writes in a report reaches the terminal with its escape
/// sequences shown, not obeyed (one could clear the screen or hide a failure), and a long report
/// is cut there with its path named.
#[test]
fn a_command_cannot_drive_the_terminal_through_its_stderr_or_report() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let toml = "[experiment]\nname = \"esc\"\nseed = 0\n\n\
                [stages.rep]\nop = \"command\"\n\
                argv = [\"sh\", \"-c\", \"printf '# title\\\\033[2J\\\\n' > out/r/a.md && head -c 300000 /dev/zero | tr '\\\\0' x >> out/r/a.md\"]\n\
                outputs = { r = \"report\" }\n\n\
                [stages.bad]\nop = \"command\"\n\
                argv = [\"sh\", \"-c\", \"printf 'oops\\\\033]0;title\\\\007\\\\n' >&2; exit 3\"]\n\
                outputs = { r = \"report\" }\n";
    std::fs::write(d.join("esc.toml"), toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cfrun"))
        .current_dir(d)
        .args(["run", "esc.toml", "--cache", "cache"])
        .env_remove("CFRUN_CACHE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let (text, err) = (String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!text.contains('\u{1b}') && !err.contains('\u{1b}') && !err.contains('\u{7}'), "{err}");
    assert!(text.contains("# title\\u{1b}[2J"), "{}", &text[..200.min(text.len())]);
    assert!(text.len() < 100_000 && text.contains("(cut) — the whole report is "), "{} bytes", text.len());
    assert!(err.contains("FAILED bad") && err.contains("oops\\u{1b}]0;title\\u{7}"), "{err}");
}

/// A bare program name that no folder on PATH holds would fail every instance after its inputs
/// were computed: a run that would compute it is refused before anything runs, at `argv`, with
/// the PATH it was looked up on. Commands that only read, and a run that serves the stage from
/// the cache, need no program.
#[test]
fn a_program_not_on_path_is_refused_before_anything_runs() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let toml = "[experiment]\nname = \"cmd_path\"\nseed = 0\n\n[stages.shapes]\nop = \"dataset\"\nname = \"synthetic\"\n\
                classes = 4\nsize = 8\ntrain_size = 12\ntest_size = 8\n\n[stages.probe]\nop = \"command\"\n\
                argv = [\"cfrun-test-mkm\", \"{out.m}\"]\ninputs = { images = \"shapes.images\" }\noutputs = { m = \"metrics\" }\n";
    std::fs::write(dir.path().join("e.toml"), toml).unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let program = bin.join("cfrun-test-mkm");
    std::fs::write(&program, "#!/bin/sh\necho '{\"values\": {\"top1\": 1}}' > \"$1/metrics.json\"\n").unwrap();
    let cache = dir.path().join("cache");
    let cfrun_with_path = |command: &str, path: &str| {
        Command::new(env!("CARGO_BIN_EXE_cfrun"))
            .current_dir(dir.path())
            .args([command, "e.toml", "--cache", cache.to_str().unwrap()])
            .env("PATH", path)
            .output()
            .unwrap()
    };
    let out = cfrun_with_path("run", "/usr/bin:/bin");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("`cfrun-test-mkm` is not a program on PATH (PATH=/usr/bin:/bin)"), "{err}");
    assert!(err.contains("e.toml:15:"), "{err}");
    assert!(!cache.exists(), "a refused plan leaves no cache behind");
    // Found but not executable: said so.
    let with_bin = format!("{}:/usr/bin:/bin", bin.display());
    let out = cfrun_with_path("run", &with_bin);
    assert!(stderr(&out).contains("cfrun-test-mkm is there but not executable"), "{}", stderr(&out));
    // Reading needs no program; computing needs it; serving from the cache does not.
    assert!(cfrun_with_path("status", "/usr/bin:/bin").status.success());
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = cfrun_with_path("run", &with_bin);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cfrun_with_path("run", "/usr/bin:/bin");
    assert!(out.status.success(), "a cached command is served without its program: {}", stderr(&out));
    // A cached result found damaged must be computed again: the refusal says why it computes.
    let object = objects(&cache)["probe"].trim_start_matches("blake3:").to_string();
    let metrics = cache.join("objects").join(object).join("m/metrics.json");
    std::fs::write(&metrics, "{\"values\": {\"top1\": 0.5}}\n").unwrap();
    let out = cfrun_with_path("run", "/usr/bin:/bin");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("not a program on PATH")
            && err.contains("; probe must be computed again: its cached result is damaged: m/metrics.json"),
        "{err}"
    );
    // In a sweep whose first instance never ran, the damaged one is still the one named.
    let swept = |values: &str| {
        let text = toml
            .replace("argv = [\"cfrun-test-mkm\", \"{out.m}\"]", "argv = [\"cfrun-test-mkm\", \"{out.m}\", \"${v}\"]");
        std::fs::write(dir.path().join("e.toml"), format!("{text}\n[sweep]\nv = [{values}]\n")).unwrap();
    };
    swept("1");
    assert!(cfrun_with_path("run", &with_bin).status.success());
    let object = objects(&cache)["probe[v=1]"].trim_start_matches("blake3:").to_string();
    std::fs::write(cache.join("objects").join(object).join("m/metrics.json"), "{\"values\": {\"top1\": 0.5}}\n")
        .unwrap();
    swept("0, 1");
    let err = stderr(&cfrun_with_path("run", "/usr/bin:/bin"));
    assert!(err.contains("; probe[v=1] must be computed again: its cached result is damaged"), "{err}");
}

/// `seeded = false` runs a deterministic command once for every replicate (a preprocessing step
/// need not be repeated); left out, a command runs per replicate under the key it always had;
/// `{seed}` in a stage that draws nothing is refused.
#[test]
fn an_unseeded_command_runs_once_for_every_replicate() {
    let dir = tempfile::tempdir().unwrap();
    let command = |name: &str, extra: &str| {
        format!(
            "[stages.{name}]\nop = \"command\"\nargv = [\"sh\", \"-c\", \"echo '{{{{\\\"values\\\": {{{{\\\"top1\\\": 1}}}}}}}}' > out/m/metrics.json{extra}\"]\n\
             inputs = {{ images = \"shapes.images\" }}\noutputs = {{ m = \"metrics\" }}\n"
        )
    };
    // A claim pairs the stage computed once with each replicate of the other.
    let claim = "[stages.verdicts]\nop = \"claims\"\ninputs = [\"noisy.m\", \"prep.m\"]\nmetric = \"top1\"\n\n\
                 [[stages.verdicts.claims]]\nname = \"same\"\nstatement = \"x\"\na = { source = \"noisy\" }\n\
                 b = { source = \"prep\" }\nexpect = \"within\"\nmargin = 1\n";
    let toml = format!(
        "[experiment]\nname = \"seeded\"\nseed = 0\nreplicates = 2\n\n[stages.shapes]\nop = \"dataset\"\nname = \"synthetic\"\n\
         classes = 4\nsize = 8\ntrain_size = 12\ntest_size = 8\nseed = 1\n\n{}seeded = false\n\n{}\n{claim}",
        command("prep", ""),
        command("noisy", "; echo {seed} > /dev/null")
    );
    let file = dir.path().join("s.toml");
    std::fs::write(&file, &toml).unwrap();
    let cache = dir.path().join("cache");
    let ran = run_json(&cache, &file, &[]);
    let names: Vec<&str> = ran.keys().map(String::as_str).collect();
    assert_eq!(names, ["noisy[replicate=0]", "noisy[replicate=1]", "prep", "shapes", "verdicts"], "{ran:?}");
    // It has no seed: a new experiment seed leaves it cached.
    let reseeded = cfrun(&cache, &["status", file.to_str().unwrap(), "--set", "experiment.seed=5"]);
    let said = String::from_utf8_lossy(&reseeded.stdout).to_string();
    assert!(said.contains("cached  prep") && said.contains("stale   noisy[replicate=0]"), "{said}");
    // The default is not in the canonical parameters: keys made before the field stay.
    let dag = cfrun(&cache, &["dag", file.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_slice(&dag.stdout).unwrap();
    let params = |name: &str| {
        v["instances"].as_array().unwrap().iter().find(|i| i["instance"] == name).unwrap()["params"].clone()
    };
    assert!(params("noisy[replicate=0]").get("seeded").is_none(), "{v}");
    assert_eq!(params("prep")["seeded"], false, "{v}");
    let bad = toml.replacen("out/m/metrics.json\"]", "out/m/metrics.json; echo {seed}\"]", 1);
    std::fs::write(&file, bad).unwrap();
    let out = cfrun(&cache, &["status", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("uses {seed}, but the stage has `seeded = false`"), "{}", stderr(&out));
    // Swept, it would be read before the sweep expands: refused.
    let swept = toml
        .replace("seeded = false", "seeded = \"${s}\"")
        .replace("[stages.shapes]", "[sweep]\ns = [true, false]\n\n[stages.shapes]");
    std::fs::write(&file, swept).unwrap();
    let out = cfrun(&cache, &["status", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("`seeded` is swept"), "{}", stderr(&out));
}

/// A stage's `env_probe` runs again just before and just after its command: an environment that
/// changed since the plan (here by the stage it waits for) or while the command ran fails the
/// stage and publishes nothing; the next plan probes the new environment and runs it.
#[test]
fn a_command_whose_environment_changed_since_the_plan_fails() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (before, during, metrics) = (d.join("before"), d.join("during"), d.join("metrics.json"));
    std::fs::write(&before, "1\n").unwrap();
    std::fs::write(&during, "1\n").unwrap();
    std::fs::write(&metrics, r#"{"values": {"v": 1}}"#).unwrap();
    let (before, during, metrics) = (before.display(), during.display(), metrics.display());
    let toml = format!(
        r#"[experiment]
name = "env"
seed = 0

[stages.upgrade]
op = "command"
argv = ["sh", "-c", 'echo 2 > "$0"; cp "$1" out/m/metrics.json', "{before}", "{metrics}"]
outputs = {{ m = "metrics" }}

[stages.after_upgrade]
op = "command"
argv = ["sh", "-c", 'cp "$0" out/m/metrics.json', "{metrics}"]
inputs = {{ m = "upgrade.m" }}
env_probe = ["cat", "{before}"]
outputs = {{ m = "metrics" }}

[stages.upgrades_itself]
op = "command"
argv = ["sh", "-c", 'echo 2 > "$0"; cp "$1" out/m/metrics.json', "{during}", "{metrics}"]
env_probe = ["cat", "{during}"]
outputs = {{ m = "metrics" }}
"#
    );
    let file = d.join("env.toml");
    std::fs::write(&file, toml).unwrap();
    let cache = d.join("cache");
    let out = cfrun(&cache, &[file.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    for (stage, file, when) in [("after_upgrade", &before, "before"), ("upgrades_itself", &during, "after")] {
        let said = format!(
            "the environment changed since the plan probed it: `cat {file}` {when} the command ran printed `2` on \
             line 1, where the stage's key has `1`; nothing was published"
        );
        assert!(err.contains(&said), "{stage}: {err}");
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcome = |v: &Value, n: &str| {
        v["instances"].as_array().unwrap().iter().find(|i| i["name"] == n).unwrap()["outcome"].clone()
    };
    assert_eq!((outcome(&v, "after_upgrade"), outcome(&v, "upgrades_itself")), ("failed".into(), "failed".into()));
    assert_eq!(outcome(&v, "upgrade"), "ran");
    let again = cfrun(&cache, &[file.to_str().unwrap(), "--json"]);
    assert!(again.status.success(), "{}", stderr(&again));
    let v: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!((outcome(&v, "after_upgrade"), outcome(&v, "upgrades_itself")), ("ran".into(), "ran".into()));
}

#[test]
fn command_stage_failures_are_clear_and_publish_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let u32s = |v: &[u32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let meta = r#"{"num_classes": 4, "class_names": [], "source": "test"}"#;
    std::fs::write(d.join("meta.json"), meta).unwrap();
    std::fs::write(
        d.join("f32.safetensors"),
        safetensors(&[("train", "F32", vec![2], vec![0; 8]), ("test", "F32", vec![1], vec![0; 4])]),
    )
    .unwrap();
    std::fs::write(d.join("train_only.safetensors"), safetensors(&[("train", "U32", vec![2], u32s(&[0, 1]))])).unwrap();
    std::fs::write(
        d.join("short.safetensors"),
        safetensors(&[("train", "U32", vec![2], u32s(&[0, 1])), ("test", "U32", vec![1], u32s(&[2]))]),
    )
    .unwrap();
    let copy = |f: &str| format!("cp {f} out/l/labels.safetensors && cp meta.json out/l/meta.json");
    let metric = r#"echo '{{"values": {{"top1": 1}}}}' > out/m/metrics.json"#;
    let stage = |name: &str, argv: &str, outputs: &str, extra: &str| {
        format!("[stages.{name}]\nop = \"command\"\nargv = {argv}\ninputs = {{ images = \"shapes.images\" }}\noutputs = {outputs}\n{extra}\n")
    };
    let sh = |script: &str| serde_json::to_string(&["sh", "-c", script]).unwrap();
    let code = r#"code = ["meta.json", "f32.safetensors", "train_only.safetensors", "short.safetensors"]"#;
    let mut toml = String::from(
        "[experiment]\nname = \"cmd_bad\"\nseed = 0\n\n[stages.shapes]\nop = \"dataset\"\nname = \"synthetic\"\nclasses = 4\nsize = 8\ntrain_size = 12\ntest_size = 8\n\n",
    );
    let m = "{ m = \"metrics\" }";
    let l = "{ l = \"labels\" }";
    toml += &stage("exits", &sh("echo the probe broke >&2; exit 3"), m, "");
    toml += &stage("slow", &sh("sleep 30; sleep 30"), m, "timeout = 0.5");
    toml += &stage("silent", r#"["true"]"#, m, "");
    toml += &stage("undeclared", &sh(&format!("mkdir out/extra && {metric}")), m, "");
    toml += &stage("dtype", &sh(&copy("f32.safetensors")), l, code);
    toml += &stage("split", &sh(&copy("train_only.safetensors")), l, code);
    toml += &stage("rows", &sh(&copy("short.safetensors")), l, code);
    toml += &stage("good", &sh(metric), m, "");
    // Two hundred thousand metric names, none of them the one a table asks for.
    // (Braces doubled: single ones name inputs and outputs in argv.)
    let many = r#"awk 'BEGIN {{ printf "{{\"values\": {{"; for (i = 0; i < 200000; i++) printf "%s\"m%d\": 1", (i ? ", " : ""), i; print "}}}}" }}' > out/m/metrics.json"#;
    toml += &stage("many", &sh(many), m, "");
    toml += "[stages.tab]\nop = \"table\"\ninputs = [\"many.m\"]\nrows = [\"source\"]\ncolumns = [\"metric\"]\nmetrics = [\"top1\"]\n\n";
    toml += "[stages.after]\nop = \"linear_probe\"\nfeatures = \"shapes.images\"\nlabels = \"dtype.l\"\nepochs = 1\n";
    std::fs::write(d.join("bad.toml"), toml).unwrap();
    let cache = d.join("cache");
    let started = std::time::Instant::now();
    let (out, v) = run_in(d, "bad.toml", &cache, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(started.elapsed().as_secs() < 20, "the timeout must kill the whole process group");
    let expect = [
        ("exits", "exited with status 3; last lines of stderr:\n    the probe broke"),
        ("slow", "timed out after 0.5 s (its `timeout`) and was killed"),
        ("silent", "wrote nothing into its output `out/m`"),
        ("undeclared", "wrote an undeclared output `out/extra` (declared: m)"),
        ("dtype", "output `l` (labels) is malformed: out/l/labels.safetensors: tensor `train` is F32, but must be U32"),
        ("split", "out/l/labels.safetensors: has no tensor `test` (it has: train)"),
        ("rows", "has 2 train and 1 test rows, but the stage's inputs have 12 and 8"),
        ("tab", "written by none of the gathered stages (many); they wrote: m0, m1, m10, m100,"),
    ];
    for (name, msg) in expect {
        let (outcome, error) = outcome_of(&v, name);
        assert_eq!(outcome, "failed", "{name}: {error}");
        assert!(error.contains(msg), "{name}: expected `{msg}` in `{error}`");
        assert!(stderr(&out).contains(&format!("{name} failed: ")), "{}", stderr(&out));
    }
    assert_eq!(outcome_of(&v, "after").0, "skipped");
    assert_eq!(outcome_of(&v, "good").0, "ran");
    // A failure that quotes its input is said in a screenful, not in 2 MB: the line went into
    // the run log too, whose readers skip lines over 1 MiB, so `status` called it never run.
    let (_, error) = outcome_of(&v, "tab");
    assert!(error.len() < 2_000 && error.ends_with("and 199970 more"), "{} bytes: {}", error.len(), &error[..200]);
    // `status` lists the failure with the command's last lines of stderr below it.
    let status = Command::new(env!("CARGO_BIN_EXE_cfrun"))
        .current_dir(d)
        .args(["status", "bad.toml", "--cache", cache.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("exited with status 3; last lines of stderr:\n          the probe broke\n"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("failed") && l.contains(" tab ")), "{text}");
    // Only `shapes`, `good` and `many` were published; no scratch folder or staged output is left behind.
    assert_eq!(std::fs::read_dir(cache.join("keys")).unwrap().count(), 3);
    assert_eq!(std::fs::read_dir(cache.join("tmp")).unwrap().count(), 0);

    // The report shows each failure with its error, and what was skipped because of it.
    let page = Command::new(env!("CARGO_BIN_EXE_cfrun"))
        .current_dir(d)
        .args(["report", "bad.toml", "-o", "pages", "--cache", cache.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(page.status.success(), "{}", stderr(&page));
    let html = std::fs::read_to_string(d.join("pages/cmd_bad.html")).unwrap();
    assert_eq!(html.matches("<span class=\"badge failed\">failed</span>").count(), 8);
    assert!(html.contains("<span class=\"badge skipped\">skipped</span>"));
    assert!(html.contains("exited with status 3; last lines of stderr:\n    the probe broke"));
}

/// Debian's Chromium, installed with apt-get when missing and possible; `None` (with the reason
/// printed) when it cannot be had.
fn chromium() -> Option<PathBuf> {
    let find = || {
        ["chromium", "chromium-browser"].iter().find_map(|name| {
            std::env::var_os("PATH")
                .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file()))
        })
    };
    if let Some(path) = find() {
        return Some(path);
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root {
        let install = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium";
        let _ = Command::new("sh").args(["-c", install]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
    let found = find();
    if found.is_none() {
        eprintln!("SKIPPED: Chromium is not installed and `apt-get install chromium` was not possible here");
    }
    found
}

fn headless(browser: &Path, profile: &Path, args: &[&str], page: &Path) -> Output {
    Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--enable-logging=stderr", "--v=0"])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium starts")
}

#[test]
fn the_report_opens_in_chromium_with_every_table_and_no_console_message() {
    let Some(browser) = chromium() else { return };
    let cache = tempfile::tempdir().unwrap();
    let file = fixture("clusterfit_tiny.toml");
    run_json(cache.path(), &file, &[]);
    let out_dir = cache.path().join("pages");
    let out = cfrun(cache.path(), &["report", file.to_str().unwrap(), "-o", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = out_dir.join("clusterfit_tiny.html");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), page.to_str().unwrap());

    let profile = tempfile::tempdir().unwrap();
    let dom = headless(&browser, profile.path(), &["--dump-dom"], &page);
    let html = String::from_utf8_lossy(&dom.stdout);
    let log = stderr(&dom);
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    for expected in [
        "<h1>clusterfit_tiny</h1>",
        "<th class=\"right\">p=50</th>",
        "<td class=\"left\">Distillation</td>",
        "<img src=\"data:image/png;base64,",
        "training accuracy (%)",
        "clusterfit[k=12,p=50]",
        "id=\"stage-probe_cf\"",
        "<section id=\"history\">",
    ] {
        assert!(html.contains(expected), "the rendered page lacks `{expected}`");
    }
    assert_eq!(html.matches("<span class=\"badge cached\">").count(), 0, "every instance ran in the one run");

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-clusterfit_tiny.png");
    let profile = tempfile::tempdir().unwrap();
    let arg = format!("--screenshot={}", shot.display());
    let taken = headless(&browser, profile.path(), &[&arg, "--window-size=1280,2000"], &page);
    assert!(taken.status.success(), "{}", stderr(&taken));
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "screenshot {} is {} bytes", shot.display(), png.len());
    eprintln!("screenshot: {}", shot.display());
}

#[test]
fn python_probe_stage_is_cached_and_reruns_exactly_when_its_code_changes() {
    let ok =
        Command::new("python3").args(["-c", "import numpy, safetensors, sklearn"]).status().is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: python3 with numpy, safetensors and scikit-learn is not on PATH (.ci/run installs them)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python");
    std::fs::create_dir_all(d.join("examples/python")).unwrap();
    for f in ["sk_probe.py", "cfrun_io.py", "env.py"] {
        std::fs::copy(examples.join(f), d.join("examples/python").join(f)).unwrap();
    }
    std::fs::copy(fixture("python_tiny.toml"), d.join("study.toml")).unwrap();
    let cache = d.join("cache");
    let outcomes = |v: &Value| -> BTreeMap<String, String> {
        v["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["name"].as_str().unwrap().into(), i["outcome"].as_str().unwrap().into()))
            .collect()
    };
    let (out, v) = run_in(d, "study.toml", &cache, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(outcomes(&v).values().all(|o| o == "ran"), "{v}");
    let table = report_files(&v).into_iter().find(|f| f.ends_with("table.md")).unwrap();
    let table = std::fs::read_to_string(table).unwrap();
    assert!(table.contains("scikit-learn") && table.contains("cfrun"), "{table}");

    let (_, v) = run_in(d, "study.toml", &cache, &[]);
    assert!(outcomes(&v).values().all(|o| o == "cached"), "{v}");

    // A comment in the script: its stage reruns, writes the same bytes, and the table stays cached.
    let script = d.join("examples/python/sk_probe.py");
    let text = std::fs::read_to_string(&script).unwrap();
    std::fs::write(&script, format!("{text}\n# a comment\n")).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_cfrun"))
        .current_dir(d)
        .args(["status", "study.toml", "--cache", cache.to_str().unwrap()])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("code.\"examples/python/sk_probe.py\" \"blake3:"), "{status}");
    let (_, v) = run_in(d, "study.toml", &cache, &[]);
    assert_eq!(ran(&outcomes(&v)), set(&["sk_probe[p=0]", "sk_probe[p=50]"]));

    // A change to what it writes: the stage and its dependant rerun, nothing else.
    std::fs::write(&script, text.replace("(lbfgs)", "(L-BFGS)")).unwrap();
    let (_, v) = run_in(d, "study.toml", &cache, &[]);
    assert_eq!(ran(&outcomes(&v)), set(&["sk_probe[p=0]", "sk_probe[p=50]", "results"]));

    // Files that are not code do not matter.
    std::fs::write(d.join("examples/python/notes.txt"), "not code").unwrap();
    let (_, v) = run_in(d, "study.toml", &cache, &[]);
    assert!(outcomes(&v).values().all(|o| o == "cached"), "{v}");

    // A second replicate's seed is a 64-bit number, which the example takes (scikit-learn's
    // `random_state` stops at 2^32 - 1).
    let (out, v) = run_in(d, "study.toml", &cache, &["--set", "experiment.replicates=2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(outcomes(&v)["sk_probe[p=50,replicate=1]"], "ran", "{v}");
}

/// The random-features floor: an untrained network is a model like any other (extract and probe
/// read it), its weights depend only on the seed, and another seed gives other weights.
#[test]
fn random_net_is_a_seeded_untrained_model_that_probes_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("floor.toml");
    std::fs::write(
        &file,
        r#"
[experiment]
name = "floor"
seed = 5
replicates = 2

[stages.shapes]
op = "dataset"
name = "synthetic"
classes = 4
size = 16
train_size = 96
test_size = 32

[stages.random]
op = "random_net"
images = "shapes.images"
labels = "shapes.labels"
arch = "resnet_tiny"

[stages.feats]
op = "extract"
model = "random.model"
images = "shapes.images"

[stages.probe]
op = "linear_probe"
features = "feats.features"
labels = "shapes.labels"
epochs = 2
"#,
    )
    .unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ran = run_json(a.path(), &file, &[]);
    assert!(ran.values().all(|o| o == "ran"), "{ran:?}");
    run_json(b.path(), &file, &[]);
    let (oa, ob) = (objects(a.path()), objects(b.path()));
    assert_eq!(oa, ob);
    assert_ne!(oa["random[replicate=0]"], oa["random[replicate=1]"]);
}

/// `solver = "lbfgs"` runs the converged probe from a config: deterministic across caches, keyed
/// apart from the SGD probe (whose key omits the default solver, so existing probes keep theirs),
/// and an edit of its `tol` reruns that probe alone.
#[test]
fn an_lbfgs_probe_runs_from_a_config_and_only_its_own_edits_rerun_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probes.toml");
    let write = |tol: &str| {
        std::fs::write(
            &file,
            format!(
                r#"
[experiment]
name = "probes"
seed = 2

[stages.shapes]
op = "dataset"
name = "synthetic"
classes = 4
size = 12
train_size = 200
test_size = 80

[stages.sgd]
op = "linear_probe"
features = "shapes.images"
labels = "shapes.labels"
epochs = 3

[stages.lbfgs]
op = "linear_probe"
features = "shapes.images"
labels = "shapes.labels"
solver = "lbfgs"
epochs = 300
tol = {tol}
"#
            ),
        )
        .unwrap()
    };
    write("1e-4");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ran = run_json(a.path(), &file, &[]);
    assert_eq!(ran, ["shapes", "sgd", "lbfgs"].iter().map(|n| (n.to_string(), "ran".to_string())).collect());
    run_json(b.path(), &file, &[]);
    let (oa, ob) = (objects(a.path()), objects(b.path()));
    assert_eq!(oa, ob, "the same config from empty caches gives the same objects");
    assert_ne!(oa["sgd"], oa["lbfgs"]);
    let sgd_key = std::fs::read_to_string(key_file(a.path(), "sgd")).unwrap();
    assert!(!sgd_key.contains("solver") && !sgd_key.contains("tol"), "{sgd_key}");
    write("1e-3");
    let ran = run_json(a.path(), &file, &[]);
    assert_eq!(ran["lbfgs"], "ran", "{ran:?}");
    assert_eq!((ran["sgd"].as_str(), ran["shapes"].as_str()), ("cached", "cached"), "{ran:?}");
}

/// Instances extracting several taps of one network share one pass (the deepest runs first
/// and leaves the shallower taps' features for its siblings), and each tap's features have the
/// bits its instance computes alone.
#[test]
fn sibling_taps_share_one_pass_and_match_each_tap_alone() {
    let dir = tempfile::tempdir().unwrap();
    let head = r#"
[experiment]
name = "taps"
seed = 2

[stages.shapes]
op = "dataset"
name = "synthetic"
classes = 4
size = 16
train_size = 40
test_size = 24

[stages.random]
op = "random_net"
images = "shapes.images"
labels = "shapes.labels"
arch = "resnet_tiny"
"#;
    let feat = |name: &str, tap: &str| {
        format!("\n[stages.{name}]\nop = \"extract\"\nmodel = \"random.model\"\nimages = \"shapes.images\"\ntap = \"{tap}\"\npool = \"dim64\"\nbatch_size = 16\n")
    };
    let shared = dir.path().join("shared.toml");
    std::fs::write(
        &shared,
        format!("{head}\n[sweep]\nlayer = [\"conv1\", \"res3\", \"res5\"]\n{}", feat("feat", "${layer}")),
    )
    .unwrap();
    let alone = dir.path().join("alone.toml");
    let stages: String = ["conv1", "res3", "res5"].iter().map(|t| feat(&format!("feat_{t}"), t)).collect();
    std::fs::write(&alone, format!("{head}{stages}")).unwrap();

    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let out = cfrun(a.path(), &["run", "-j", "1", shared.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert_eq!(log.matches("features from a sibling's pass").count(), 2, "{log}");
    let out = cfrun(b.path(), &["run", "-j", "1", alone.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("features from a sibling's pass"));
    let (oa, ob) = (objects(a.path()), objects(b.path()));
    for tap in ["conv1", "res3", "res5"] {
        assert_eq!(oa[&format!("feat[layer={tap}]")], ob[&format!("feat_{tap}")], "{tap}");
    }
}

// ---- Cache guarantees (README "Guarantees"): damage, tampering, gc against live runs, links ----

/// The object folder of an instance's published result.
fn object_dir(cache: &Path, instance: &str) -> PathBuf {
    cache.join("objects").join(objects(cache)[instance].trim_start_matches("blake3:"))
}

/// The key file of an instance's published result.
fn key_file(cache: &Path, instance: &str) -> PathBuf {
    std::fs::read_dir(cache.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            v["provenance"]["instance"] == instance
        })
        .unwrap_or_else(|| panic!("no key for {instance}"))
}

fn flip_last_byte(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(file, bytes).unwrap();
}

/// A damaged object is never kept when the same bytes are published again: rebuilding the
/// producer repairs it, and its consumer is computed from the repaired bytes.
#[test]
fn republishing_over_a_damaged_object_repairs_it_and_consumers_read_good_bytes() {
    let cache = tempfile::tempdir().unwrap();
    let reference = tempfile::tempdir().unwrap();
    run_json(cache.path(), &smoke(), &[]);
    run_json(reference.path(), &smoke(), &[]);
    flip_last_byte(&object_dir(cache.path(), "shapes").join("labels/labels.safetensors"));
    std::fs::remove_file(key_file(cache.path(), "shapes")).unwrap();
    std::fs::remove_file(key_file(cache.path(), "noisy[p=0]")).unwrap();
    let out = cfrun(cache.path(), &[smoke().to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("damaged"), "the repair is reported: {}", stderr(&out));
    assert_eq!(objects(cache.path()), objects(reference.path()));
    let again = cfrun(cache.path(), &["status", smoke().to_str().unwrap(), "--verify"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("9 of 9 instances cached"));
}

/// Output digests are recomputed from the files, not read from the manifest: a file and its
/// manifest entry copied from a sibling object are caught, and so is a file planted in a report.
/// The manifest itself must list the files as they are: one with an entry dropped (a reader
/// would miss that file) or a path leading out of the object (a reader would print or copy
/// what it points at) is damage, and the object is rebuilt.
#[test]
fn a_file_copied_with_its_manifest_entry_an_altered_manifest_or_a_planted_file_is_caught() {
    let cache = tempfile::tempdir().unwrap();
    run_json(cache.path(), &smoke(), &[]);
    let before = objects(cache.path());
    let (target, sibling) = (object_dir(cache.path(), "clusters[k=4]"), object_dir(cache.path(), "clusters[k=16]"));
    let rel = "labels/labels.safetensors";
    std::fs::copy(sibling.join(rel), target.join(rel)).unwrap();
    let entry = |dir: &Path| -> Value {
        let m: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        m["files"].as_array().unwrap().iter().find(|f| f["path"] == rel).unwrap().clone()
    };
    let sibling_entry = entry(&sibling);
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(target.join("manifest.json")).unwrap()).unwrap();
    for f in manifest["files"].as_array_mut().unwrap() {
        if f["path"] == rel {
            *f = sibling_entry.clone();
        }
    }
    std::fs::write(target.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    std::fs::write(object_dir(cache.path(), "results").join("report/planted.md"), "| fake | 99.9 |\n").unwrap();
    let edit_manifest = |dir: &Path, edit: &dyn Fn(&mut Vec<Value>)| {
        let mut m: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        edit(m["files"].as_array_mut().unwrap());
        std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    };
    edit_manifest(&object_dir(cache.path(), "noisy[p=50]"), &|files| {
        files.pop();
    });
    std::fs::write(cache.path().join("outside.md"), "| forged | 12.3 |\n").unwrap();
    edit_manifest(&object_dir(cache.path(), "clustering"), &|files| {
        for f in files.iter_mut().filter(|f| f["path"] == "report/table.md") {
            f["path"] = Value::from("report/../../../outside.md");
        }
    });

    let out = cfrun(cache.path(), &[smoke().to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcome =
        |n: &str| v["instances"].as_array().unwrap().iter().find(|i| i["name"] == n).unwrap()["outcome"].clone();
    assert_eq!(outcome("clusters[k=4]"), "ran", "{}", stderr(&out));
    assert_eq!(outcome("results"), "ran", "{}", stderr(&out));
    assert_eq!(outcome("noisy[p=50]"), "ran", "{}", stderr(&out));
    assert_eq!(outcome("clustering"), "ran", "{}", stderr(&out));
    assert!(report_files(&v).iter().all(|f| !f.contains("planted") && !f.contains("outside")), "{v}");
    assert_eq!(objects(cache.path()), before, "rebuilt bytes equal the originals");
    let plain = cfrun(cache.path(), &[smoke().to_str().unwrap()]);
    let printed = String::from_utf8_lossy(&plain.stdout);
    assert!(!printed.contains("fake") && !printed.contains("forged"), "{printed}");
}

/// `report` re-hashes what it shows: a table edited in place, its size unchanged (which only a
/// full check sees), is shown as damaged and its numbers stay off the page.
#[test]
fn report_shows_a_table_edited_in_place_as_damaged_not_its_numbers() {
    let cache = tempfile::tempdir().unwrap();
    run_json(cache.path(), &smoke(), &[]);
    let table = object_dir(cache.path(), "results").join("report/table.md");
    let text = std::fs::read_to_string(&table).unwrap();
    let cell = text
        .lines()
        .filter_map(|l| l.split('|').nth(2).map(|c| c.trim().to_string()))
        .find(|c| c.parse::<f64>().is_ok())
        .unwrap();
    assert_eq!(cell.len(), 4, "a cell like 66.0: {text}");
    std::fs::write(&table, text.replacen(&cell, "98.7", 1)).unwrap();
    let pages = tempfile::tempdir().unwrap();
    let out = cfrun(cache.path(), &["report", smoke().to_str().unwrap(), "-o", pages.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = std::fs::read_to_string(pages.path().join("smoke.html")).unwrap();
    assert!(!page.contains("98.7"), "an unverified number reached the page");
    assert!(page.contains("damaged"), "the damaged result is named");
    // And said on stderr: the page was written, but what it leaves out is worth a word.
    assert!(stderr(&out).contains("shown as damaged, not their numbers: results"), "{}", stderr(&out));
}

/// `status` checks sizes and the file list by default and re-hashes with `--verify`; `show`
/// re-hashes what it would print and refuses to print a damaged result.
#[test]
fn status_and_show_report_damage_instead_of_calling_it_cached() {
    let cache = tempfile::tempdir().unwrap();
    run_json(cache.path(), &smoke(), &[]);
    let file = smoke();
    let file = file.to_str().unwrap();
    let line = |out: &Output, inst: &str| {
        String::from_utf8_lossy(&out.stdout).lines().find(|l| l.contains(inst)).unwrap().to_string()
    };
    // Same size, one bit changed: only a full check can see it.
    flip_last_byte(&object_dir(cache.path(), "probe_noisy[p=0]").join("metrics/metrics.json"));
    assert!(line(&cfrun(cache.path(), &["status", file]), "probe_noisy[p=0]").starts_with("cached"));
    let verified = cfrun(cache.path(), &["status", file, "--verify"]);
    assert!(line(&verified, "probe_noisy[p=0]").starts_with("damaged"), "{}", line(&verified, "probe_noisy[p=0]"));
    // The table below it waits on the rebuild, which on one device gives the same bytes.
    let below = line(&verified, "results");
    assert!(below.ends_with("its own result is kept if the rebuild gives the same bytes"), "{below}");
    let show = cfrun(cache.path(), &["show", file, "probe_noisy[p=0]", "--json"]);
    assert_eq!(show.status.code(), Some(1));
    assert!(stderr(&show).contains("damaged"), "{}", stderr(&show));
    let v: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v[0]["state"], "damaged");
    assert!(v[0].get("metrics").is_none(), "damaged metrics are not printed: {v}");
    // A truncated file changes its size: the quick check sees it.
    let labels = object_dir(cache.path(), "noisy[p=50]").join("labels/labels.safetensors");
    let len = std::fs::metadata(&labels).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&labels).unwrap().set_len(len - 1).unwrap();
    assert!(line(&cfrun(cache.path(), &["status", file]), "noisy[p=50]").starts_with("damaged"));
}

/// `gc` waits for a running process on the same cache instead of deleting its staging folders
/// and inputs; the run ends normally, and gc then removes stale lock files and reports exactly
/// what it removed.
#[test]
fn gc_waits_for_a_running_process_and_then_cleans_up() {
    let cache = tempfile::tempdir().unwrap();
    let slow = ["--set", "stages.probe_noisy.epochs=400", "--set", "stages.shapes.train_size=3000"];
    let mut run = Command::new(env!("CARGO_BIN_EXE_cfrun"))
        .arg(smoke())
        .args(slow)
        .arg("--cache")
        .arg(cache.path())
        .env("CFRUN_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(run.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("running probe_noisy") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut reader, &mut line).unwrap() > 0, "run ended early");
    }
    // An unrelated experiment: without the lock, gc would delete everything the run made.
    let other = cache.path().join("other.toml");
    std::fs::write(&other, "[experiment]\nname = \"other\"\n[stages.d]\nop = \"dataset\"\nname = \"synthetic\"\n")
        .unwrap();
    let mut gc = Command::new(env!("CARGO_BIN_EXE_cfrun"))
        .args(["gc", other.to_str().unwrap(), "--json", "--cache"])
        .arg(cache.path())
        .env("CFRUN_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    // Once gc waits, a process started after it waits behind it instead of slipping in.
    let (waiting, gc_waits) = std::sync::mpsc::channel();
    let mut gc_err = std::io::BufReader::new(gc.stderr.take().unwrap());
    let gc_log = std::thread::spawn(move || {
        let mut all = String::new();
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut gc_err, &mut line).unwrap_or(0) > 0 {
            if line.contains("waiting for the cfrun processes") {
                let _ = waiting.send(());
            }
            all.push_str(&line);
            line.clear();
        }
        all
    });
    gc_waits.recv_timeout(std::time::Duration::from_secs(60)).expect("gc says it waits");
    let late = Command::new(env!("CARGO_BIN_EXE_cfrun"))
        .args(["status", other.to_str().unwrap(), "--json", "--cache"])
        .arg(cache.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = run.wait().unwrap();
    assert!(status.success(), "the run survived gc");
    let gc_out = gc.wait_with_output().unwrap();
    let late = late.wait_with_output().unwrap();
    let gc_stderr = gc_log.join().unwrap();
    assert!(gc_out.status.success(), "{gc_stderr}");
    assert!(stderr(&late).contains("waiting for `cfrun gc`"), "{}", stderr(&late));
    let gc = gc_out;
    let v: Value = serde_json::from_slice(&gc.stdout).unwrap();
    let listed: BTreeSet<String> =
        v["objects"].as_array().unwrap().iter().map(|o| o.as_str().unwrap().to_string()).collect();
    assert_eq!(listed.len(), 9, "every object of the finished run is garbage for `other`: {v}");
    assert!(v["locks"].as_u64().unwrap() >= 9, "stale per-key lock files are removed: {v}");
    let left: Vec<_> = std::fs::read_dir(cache.path().join("objects")).unwrap().collect();
    assert!(left.is_empty(), "what gc reports removed is gone");
    assert_eq!(std::fs::read_dir(cache.path().join("locks")).unwrap().count(), 0);
}

/// A link planted in place of the run log or of a lock file makes cfrun refuse, never write
/// through it to a file outside the cache.
/// The cache root itself may be a link (a cache kept on another disk): a run, a rerun and the
/// reading commands go through to its target. It was refused once, after writing through it.
#[test]
fn a_cache_root_that_is_a_link_is_used_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let (target, link) = (dir.path().join("target"), dir.path().join("link"));
    std::fs::create_dir(&target).unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let first = run_json(&link, &smoke(), &[]);
    assert!(first.values().all(|o| o == "ran"), "{first:?}");
    let again = run_json(&link, &smoke(), &[]);
    assert!(again.values().all(|o| o == "cached"), "{again:?}");
    let status = cfrun(&link, &["status", smoke().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("9 of 9 instances cached"), "{}", stderr(&status));
    assert!(target.join("objects").is_dir() && std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
}

#[test]
fn links_planted_in_the_cache_are_refused_not_followed() {
    let cache = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    run_json(cache.path(), &smoke(), &[]);
    let victim = outside.path().join("victim.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    let log = cache.path().join("runs.jsonl");
    std::fs::remove_file(&log).unwrap();
    std::os::unix::fs::symlink(&victim, &log).unwrap();
    let out = cfrun(cache.path(), &[smoke().to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a cache that cannot be written is a failure, not invalid input: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    std::fs::remove_file(&log).unwrap();

    // A dangling link as the lock file of an instance that must run again.
    let key = key_file(cache.path(), "noisy[p=50]");
    let hex = key.file_stem().unwrap().to_str().unwrap().to_string();
    std::fs::remove_file(&key).unwrap();
    let lock = cache.path().join("locks").join(format!("{hex}.lock"));
    let _ = std::fs::remove_file(&lock);
    let created = outside.path().join("created-by-cfrun");
    std::os::unix::fs::symlink(&created, &lock).unwrap();
    let out = cfrun(cache.path(), &[smoke().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    assert!(!created.exists(), "nothing is created outside the cache");

    // A FIFO, or a link to an endless file, as a cluster job's spec: refused at once.
    let jobs = cache.path().join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    let job = "ab".repeat(32);
    let spec = jobs.join(format!("{job}.json"));
    assert!(Command::new("mkfifo").arg(&spec).status().unwrap().success());
    let mut exec = Command::new(env!("CARGO_BIN_EXE_cfrun"))
        .args(["exec", &job, "--cache"])
        .arg(cache.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let ended = loop {
        if let Some(status) = exec.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = exec.kill();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(ended.and_then(|s| s.code()), Some(2), "exec refuses a FIFO spec at once");
    std::fs::remove_file(&spec).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &spec).unwrap();
    let out = cfrun(cache.path(), &["exec", &job]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
}

/// A job spec is checked like the stage it came from: one edited to a parameter out of range
/// (and renamed to the key its recipe now hashes to) is refused with exit 2, naming the field;
/// an `epochs` of 2^62 panicked allocating the loss curve.
#[test]
fn a_job_spec_with_a_parameter_out_of_range_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let file = fixture("train_tiny.toml");
    let out = cfrun(cache.path(), &[file.to_str().unwrap(), "--executor", "processes", "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let jobs = cache.path().join("jobs");
    let spec_of = |op: &str| {
        std::fs::read_dir(&jobs).unwrap().map(|e| e.unwrap().path()).find(|p| {
            p.extension().is_some_and(|x| x == "json")
                && serde_json::from_slice::<Value>(&std::fs::read(p).unwrap()).is_ok_and(|v| v["recipe"]["op"] == op)
        })
    };
    let probe = spec_of("linear_probe").expect("the probe ran as a job");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&probe).unwrap()).unwrap();
    v["recipe"]["params"]["epochs"] = Value::from(1u64 << 62);
    std::fs::write(&probe, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let key = probe.file_stem().unwrap().to_str().unwrap().to_string();
    let renamed = cfrun(cache.path(), &["exec", &key]);
    let err = stderr(&renamed);
    let hashed = err.split("hashes to blake3:").nth(1).and_then(|r| r.get(..64)).expect(&err).to_string();
    std::fs::rename(&probe, jobs.join(format!("{hashed}.json"))).unwrap();
    let out = cfrun(cache.path(), &["exec", &hashed]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("its parameters: `epochs` is 4611686018427387904"), "{}", stderr(&out));
}

/// What a command stage prints is kept with its result (the last lines of each stream, and how
/// many there were), so a warning it printed is still shown when the result is served from the
/// cache; a user's script printed into the void before (found by a usability trial).
#[test]
fn a_commands_output_is_kept_with_its_result() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        r#"[experiment]
name = "c"
[stages.cmd]
op = "command"
argv = ["sh", "-c", 'for i in $(seq 1 25); do echo "line $i"; done; echo "UserWarning: few samples" >&2; mkdir -p "$0"; echo "{{\"values\":{{\"a\":1}}}}" > "$0/metrics.json"', "{out.m}"]
outputs = { m = "metrics" }
seeded = false
"#,
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let cache = dir.path().join("cache");
    let out = cfrun(&cache, &[path]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("cmd: the command printed 25 lines on stdout and 1 on stderr"), "{}", stderr(&out));
    let again = cfrun(&cache, &[path, "--json"]);
    assert_eq!(outcomes(&serde_json::from_slice(&again.stdout).unwrap())["cmd"], "cached");
    let shown = cfrun(&cache, &["show", path, "cmd", "--json"]);
    let v: Value = serde_json::from_slice(&shown.stdout).unwrap();
    let output = &v[0]["provenance"]["output"];
    assert_eq!(output["stderr"], json!({"lines": 1, "last": ["UserWarning: few samples"]}), "{v}");
    assert_eq!(output["stdout"]["lines"], 25, "{v}");
    let last = output["stdout"]["last"].as_array().unwrap();
    assert_eq!((last.len(), last[0].as_str(), last[19].as_str()), (20, Some("line 6"), Some("line 25")));
    let text = cfrun(&cache, &["show", path, "cmd"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("  stderr     1 line:\n             UserWarning: few samples\n"), "{text}");
}

/// Two files with one experiment name (a copied study) share its records and what `gc` keeps:
/// `run`, `gc` and `report` warn, naming the other file, while it is there, whichever ran last (found by a
/// usability trial, whose `gc --dry-run` of one file would have removed the other's results).
#[test]
fn two_files_with_one_experiment_name_are_warned_of() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[experiment]\nname = \"twin\"\n[stages.d]\nop = \"dataset\"\nname = \"synthetic\"\n\
                train_size = 40\ntest_size = 20\n";
    let (a, b) = (dir.path().join("a.toml"), dir.path().join("b.toml"));
    std::fs::write(&a, text).unwrap();
    std::fs::write(&b, text).unwrap();
    let cache = dir.path().join("cache");
    let warned = |args: &[&str]| {
        let out = cfrun(&cache, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        err.lines().find(|l| l.contains("was also run from")).map(str::to_string)
    };
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    assert_eq!(warned(&[a]), None, "the first file of the name");
    assert_eq!(warned(&[a]), None, "the same file again");
    let line = warned(&[b]).expect("b shares a's name");
    assert!(
        line.contains("a.toml:") && line.contains("give ") && line.contains("b.toml an `[experiment] name`"),
        "{line}"
    );
    let line = warned(&["gc", a, "--dry-run"]).expect("gc of a, b also ran");
    assert!(line.contains("b.toml:"), "{line}");
    let line = warned(&["gc", b, "--dry-run"]).expect("gc of b, the last file to run: a ran too");
    assert!(line.contains("a.toml:"), "{line}");
    assert_eq!(warned(&["gc", a, b, "--dry-run"]), None, "a gc of both keeps what both compute");
    let pages = dir.path().join("pages");
    assert!(warned(&["report", a, "-o", pages.to_str().unwrap()]).is_some());
    // The other file gone (renamed, say), the name is this file's again.
    std::fs::remove_file(b).unwrap();
    assert_eq!(warned(&[a]), None);
}

/// A switch that changes a network's bits keys every stage apart (README "Devices"): candle's
/// convolution backward moves an f16 network's bits on the CPU, where f16 does not take the fast
/// kernels. Its run is neither served the default's results nor leaves its own for a default
/// run; `status` names the switch; and a job started without the driver's switch refuses its
/// spec rather than publish other bits under the key. (Before, one key held whichever ran first.)
#[test]
fn a_switch_that_changes_the_bits_keys_results_apart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f16.toml");
    std::fs::write(
        &file,
        "[experiment]\nname = \"f16\"\nseed = 5\n\n[stages.shapes]\nop = \"dataset\"\nname = \"synthetic\"\n\
         classes = 4\nsize = 16\ntrain_size = 128\ntest_size = 32\n\n[stages.model]\nop = \"train\"\n\
         images = \"shapes.images\"\nlabels = \"shapes.labels\"\narch = \"resnet_tiny\"\nepochs = 1\n\
         batch_size = 32\nwarmup_epochs = 0\nprecision = \"f16\"\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let switched = |cache: &Path, args: &[&str]| {
        cfrun_command(cache, args).env("CFRUN_CONV_BACKWARD", "candle").output().expect("cfrun starts")
    };
    let cache = dir.path().join("cache");
    let plain = run_json(&cache, &file, &[]);
    assert!(plain.values().all(|o| o == "ran"), "{plain:?}");
    let default_objects = objects(&cache);

    let out = switched(&cache, &["status", path]);
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &stderr(&out);
    assert!(text.contains("CFRUN_CONV_BACKWARD (unset) -> candle"), "{text}");
    let out = switched(&cache, &[path, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ran = outcomes(&serde_json::from_slice(&out.stdout).unwrap());
    assert!(ran.values().all(|o| o == "ran"), "served the default's results under the switch: {ran:?}");
    let both = std::fs::read_dir(cache.join("keys")).unwrap().count();
    assert_eq!(both, 4, "two keys a stage");

    // The default run is served its own results, which differ from the switch's.
    let again = run_json(&cache, &file, &[]);
    assert!(again.values().all(|o| o == "cached"), "{again:?}");
    let separate = tempfile::tempdir().unwrap();
    let out = switched(separate.path(), &[path, "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(objects(separate.path())["model"], default_objects["model"], "the switch no longer moves f16 bits");

    // `gc` keeps both, whatever switches it runs under itself: each run's are recorded.
    let gc_plain = cfrun(&cache, &["gc", path, "--dry-run"]);
    let gc_other = cfrun_command(&cache, &["gc", path, "--dry-run"]).env("CFRUN_GEMM_TF32", "1").output().unwrap();
    for out in [gc_plain, gc_other] {
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success() && said.contains("would free 0 objects"), "{said}{}", stderr(&out));
    }

    // A job written by a driver with the switch, started without it.
    let jobs_cache = dir.path().join("jobs-cache");
    let out = switched(&jobs_cache, &[path, "--executor", "processes", "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let spec = std::fs::read_dir(jobs_cache.join("jobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .expect("a job spec");
    let key = spec.file_stem().unwrap().to_str().unwrap().to_string();
    let out = cfrun(&jobs_cache, &["exec", &key]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("keyed with the switches CFRUN_CONV_BACKWARD=candle, but this process has none"),
        "{}",
        stderr(&out)
    );
    assert!(switched(&jobs_cache, &["exec", &key]).status.success(), "the same job with the switch");
}

// ---- Front end: no input hangs or crashes it (README "Guarantees") ----

/// Generated inputs of every size class end in a located exit-2 error within seconds, with a
/// short stderr that echoes no raw control character.
#[test]
fn generated_inputs_end_in_exit_2_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let head = "[experiment]\nname = \"g\"\n";
    let values = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    let dataset = "[stages.d]\nop = \"dataset\"\nname = \"synthetic\"\n";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "million-instance sweep with a dependant",
            format!(
                "{head}[sweep]\na = [{v}]\nb = [{v}]\n{dataset}[stages.n]\nop = \"label_noise\"\nlabels = \"d.labels\"\n\
                 percent = \"${{a}}\"\nseed = \"${{b}}\"\n[stages.m]\nop = \"label_noise\"\nlabels = \"n.labels\"\npercent = 1\n",
                v = values(1000)
            ),
            "limit of 20000 instances",
        ),
        (
            "fifteen thousand stages with dangling references",
            format!("{head}{}", (0..15_000).map(|i| format!("[stages.t{i}]\nop=\"label_noise\"\nlabels=\"q{i}.labels\"\n")).collect::<String>()),
            "more than the 1000 allowed",
        ),
        (
            "a table gathering one sweep fifty thousand times",
            format!(
                "{head}[sweep]\na = [{v}]\n{dataset}[stages.n]\nop = \"kmeans\"\nfeatures = \"d.images\"\nk = 2\n\
                 seed = \"${{a}}\"\n[stages.t]\nop = \"table\"\ninputs = [{refs}]\nrows = [\"a\"]\ncolumns = [\"source\"]\n\
                 metrics = [\"top1\"]\n",
                v = values(1000),
                refs = vec!["\"n.metrics\""; 50_000].join(",")
            ),
            "read more than 1000000 upstream instances in all",
        ),
        (
            "placeholders that grow into gigabytes once substituted",
            format!(
                "{head}[sweep]\na = [{}]\n{dataset}path = \"{}\"\n",
                (0..3000).map(|i| format!("\"{i:05}{}\"", "x".repeat(120))).collect::<Vec<_>>().join(", "),
                "${a}".repeat(100_000)
            ),
            "more than the 64 MB allowed",
        ),
        ("a hundred thousand errors", format!("{head}{}", (0..100_000).map(|i| format!("x{i}=1\n")).collect::<String>()), "more problems"),
        ("a megabyte-long name", format!("{head}{dataset}{} = 1\n", "a".repeat(900_000)), "unknown field"),
        ("an axis with 20k values", format!("{head}[sweep]\na = [{}]\n{dataset}", values(20_000)), "more than the 10000 allowed"),
        ("a file over the size limit", format!("{head}# {}\n", "x".repeat(2_000_000)), "bytes an experiment file may have"),
        ("nesting a hundred thousand deep", format!("{head}x = {}{}\n", "[".repeat(100_000), "]".repeat(100_000)), "invalid TOML"),
        ("raw control characters", format!("{head}[stages.d]\nop = \"da\\u001b]0;t\\u0007ta\"\n\x1b[2J = 1\n"), "error"),
        ("claims over a 6000-value sweep, each claim per value, twenty times", {
            let claim = |i: usize, each: &str| {
                format!("[[stages.c.claims]]\nname = \"c{i}\"\nstatement = \"s\"\na = {{source = \"p\"}}\nb = {{source = \"q\"}}\nexpect = \"greater\"\n{each}")
            };
            let probes = "[stages.p]\nop = \"linear_probe\"\nfeatures = \"d.images\"\nlabels = \"d.labels\"\nweight_decay = \"${a}\"\n\
                          [stages.q]\nop = \"linear_probe\"\nfeatures = \"d.images\"\nlabels = \"d.labels\"\n\
                          [stages.c]\nop = \"claims\"\ninputs = [\"p.metrics\", \"q.metrics\"]\nmetric = \"top1\"\n";
            let claims: String = (0..20).map(|i| claim(i, "each = [\"a\"]\n")).collect();
            format!("{head}replicates = 3\n[sweep]\na = [{}]\n{dataset}{probes}{claims}", values(6000))
        }, "more than 100000 cases"),
        ("a thousand and one claims", {
            let claims: String = (0..1001)
                .map(|i| format!("[[stages.c.claims]]\nname = \"c{i}\"\nstatement = \"s\"\na = {{source = \"p\"}}\nb = {{source = \"p\"}}\nexpect = \"greater\"\n"))
                .collect();
            let probe = "[stages.p]\nop = \"linear_probe\"\nfeatures = \"d.images\"\nlabels = \"d.labels\"\n";
            format!("{head}{dataset}{probe}[stages.c]\nop = \"claims\"\ninputs = [\"p.metrics\"]\nmetric = \"top1\"\n{claims}")
        }, "at most 1000"),
        ("a sweep over 64 axes", {
            let axes: String = (0..64).map(|i| format!("a{i} = [1, 2]\n")).collect();
            let uses: String = (0..64).map(|i| format!("${{a{i}}}")).collect();
            format!("{head}[sweep]\n{axes}{dataset}[stages.n]\nop = \"label_noise\"\nlabels = \"d.labels\"\npercent = \"{uses}\"\n")
        }, "instances"),
    ];
    let cache = tempfile::tempdir().unwrap();
    let mut files: Vec<(String, PathBuf, &str)> = Vec::new();
    for (i, (what, text, expect)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("gen{i}.toml"));
        std::fs::write(&path, text).unwrap();
        files.push((what.to_string(), path, expect));
    }
    files.push(("/dev/zero".into(), PathBuf::from("/dev/zero"), "not a regular file"));
    for (what, path, expect) in files {
        let started = std::time::Instant::now();
        let out = cfrun(cache.path(), &["dag", path.to_str().unwrap()]);
        let secs = started.elapsed().as_secs_f64();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{what}: {}", &err[..err.len().min(2000)]);
        // A bound against hangs and blow-ups, not a speed goal: the slowest case takes about 1.5 s
        // alone and once took 10.3 s beside a study run and the rest of the suite.
        assert!(secs < 30.0, "{what} took {secs:.1}s");
        assert!(err.len() < 64_000, "{what}: {} bytes of errors", err.len());
        assert!(err.contains(expect), "{what}: expected `{expect}` in {}", &err[..err.len().min(2000)]);
        assert!(!out.stderr.iter().any(|&b| b == 0x1b || b == 0x07), "{what}: raw control characters echoed");
        assert!(err.contains(":") && err.contains("error"), "{what}: {err}");
    }
}

/// A 6-epoch training on generated shapes killed after its second epoch: the experiment file,
/// the cache, and the one sealed checkpoint's folder.
fn training_killed_after_two_epochs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let file = dir.join("ck.toml");
    std::fs::write(
        &file,
        "[experiment]\nname = \"ck\"\n[stages.shapes]\nop = \"dataset\"\nname = \"synthetic\"\nclasses = 4\nsize = 16\n\
         train_size = 3000\ntest_size = 40\n[stages.net]\nop = \"train\"\nimages = \"shapes.images\"\n\
         labels = \"shapes.labels\"\narch = \"resnet_tiny\"\nepochs = 6\nbatch_size = 64\n",
    )
    .unwrap();
    let cache = dir.join("cache");
    kill_when_logged(&cache, &file, &[], "epoch 2/6", 0);
    let folders: Vec<PathBuf> = std::fs::read_dir(cache.join("checkpoints"))
        .unwrap()
        .flat_map(|k| std::fs::read_dir(k.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("state.safetensors").exists())
        .collect();
    assert_eq!(folders.len(), 1, "one sealed checkpoint: {folders:?}");
    (file, cache, folders[0].clone())
}

/// A checkpoint edited between a kill and the rerun is not resumed from: the stage trains from
/// the start and ends bit-identical to an uninterrupted run.
#[test]
fn an_edited_checkpoint_is_refused_and_training_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let (file, cache, checkpoint) = training_killed_after_two_epochs(dir.path());
    flip_last_byte(&checkpoint.join("state.safetensors"));
    let out = cfrun(&cache, &[file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("not resuming from the checkpoint"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("resuming after epoch"), "{}", stderr(&out));
    let reference = tempfile::tempdir().unwrap();
    run_json(reference.path(), &file, &[]);
    assert_eq!(objects(&cache), objects(reference.path()));
}

/// A checkpoint names the device that wrote it (sealed with it), and a CPU run does not resume
/// from one a GPU wrote: it would publish neither device's bits. Here a CPU checkpoint is made to
/// say `cuda`, its seal updated to match, as a run on a GPU would have left it.
#[test]
fn a_checkpoint_written_on_another_device_is_not_resumed_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let (file, cache, checkpoint) = training_killed_after_two_epochs(dir.path());
    assert_eq!(std::fs::read_to_string(checkpoint.join("device")).unwrap(), "cpu");
    std::fs::write(checkpoint.join("device"), "cuda").unwrap();
    let seal_path = checkpoint.parent().unwrap().join("latest");
    let mut seal: Value = serde_json::from_slice(&std::fs::read(&seal_path).unwrap()).unwrap();
    let entry = seal["files"].as_array_mut().unwrap().iter_mut().find(|f| f["path"] == "device").unwrap();
    entry["size"] = json!(4);
    entry["hash"] = json!(format!("blake3:{}", blake3::hash(b"cuda").to_hex()));
    std::fs::write(&seal_path, serde_json::to_vec(&seal).unwrap()).unwrap();
    let out = cfrun(&cache, &[file.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("it was written on cuda and this run computes on cpu"), "{err}");
    assert!(!err.contains("resuming after epoch"), "{err}");
    let reference = tempfile::tempdir().unwrap();
    run_json(reference.path(), &file, &[]);
    assert_eq!(objects(&cache), objects(reference.path()));
}

// ---- Slurm: a real one-node cluster started by scripts/slurm-local.sh --------------------------

/// Whether a real Slurm cluster answers on this machine, starting one with
/// `scripts/slurm-local.sh` if needed. The tests skip (saying why) only when `CFRUN_SKIP_SLURM`
/// holds the reason Slurm cannot be installed here; otherwise a cluster that does not come up
/// fails them.
fn slurm_up(test: &str) -> bool {
    static UP: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    if let Ok(why) = std::env::var("CFRUN_SKIP_SLURM") {
        eprintln!("SKIPPED {test}: Slurm cannot be installed here ({why})");
        return false;
    }
    let mut up = UP.lock().unwrap_or_else(|e| e.into_inner());
    if !*up {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-local.sh");
        let out = Command::new(&script).output().expect("scripts/slurm-local.sh runs");
        assert!(
            out.status.success(),
            "scripts/slurm-local.sh failed (set CFRUN_SKIP_SLURM=REASON where Slurm cannot be installed):\n{}",
            stderr(&out)
        );
        *up = true;
    }
    true
}

/// `cfrun ARGS --executor slurm` with a short poll, returning the `--json` summary.
fn slurm_json(cache: &Path, file: &Path, extra: &[&str]) -> Value {
    let mut args = vec![file.to_str().unwrap(), "--json", "--executor", "slurm", "--poll-max", "0.5"];
    args.extend_from_slice(extra);
    let out = cfrun(cache, &args);
    assert!(out.status.success(), "slurm run failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("json on stdout")
}

fn outcomes(v: &Value) -> BTreeMap<String, String> {
    v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap().to_string(), i["outcome"].as_str().unwrap().to_string()))
        .collect()
}

/// Job ids of the claims (jobs submitted and not yet finished) in a cache.
fn claimed_jobs(cache: &Path) -> Vec<(String, String)> {
    let Ok(rd) = std::fs::read_dir(cache.join("jobs")) else { return Vec::new() };
    rd.filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "claim"))
        .filter_map(|e| {
            let v: Value = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            Some((v["instance"].as_str()?.to_string(), v["job_id"].as_str()?.to_string()))
        })
        .collect()
}

/// What `squeue` lists of `job` while it is pending, running or completing (empty once gone).
fn still_queued(job: &str) -> String {
    let queue = Command::new("squeue")
        .args(["--noheader", "--states=PENDING,RUNNING,COMPLETING", "--jobs", job])
        .output()
        .unwrap();
    String::from_utf8_lossy(&queue.stdout).trim().to_string()
}

/// Polls `f` every 100 ms for up to `secs` seconds.
fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn spawn_slurm_driver(cache: &Path, file: &Path, extra: &[&str]) -> std::process::Child {
    slurm_driver(cache, file, "0.5").args(extra).spawn().unwrap()
}

/// `cfrun FILE --json --executor slurm --poll-max POLL_MAX --cache CACHE`, its output piped.
fn slurm_driver(cache: &Path, file: &Path, poll_max: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cfrun"));
    cmd.arg(file)
        .args(["--json", "--executor", "slurm", "--poll-max", poll_max, "--cache"])
        .arg(cache)
        .env("CFRUN_LOG", "info")
        .env_remove("CFRUN_CACHE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn slurm_runs_match_local_digests_two_drivers_compute_once_and_a_rerun_submits_nothing() {
    if !slurm_up("slurm_runs_match_local_digests") {
        return;
    }
    let local = tempfile::tempdir().unwrap();
    run_json(local.path(), &smoke(), &[]);
    // Two drivers on one cache, started together: every instance is computed once in all.
    let cache = tempfile::tempdir().unwrap();
    let drivers = [spawn_slurm_driver(cache.path(), &smoke(), &[]), spawn_slurm_driver(cache.path(), &smoke(), &[])];
    let mut ran: BTreeMap<String, usize> = BTreeMap::new();
    for d in drivers {
        let out = d.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        for (name, outcome) in outcomes(&v) {
            *ran.entry(name).or_default() += usize::from(outcome == "ran");
        }
    }
    assert_eq!(ran.len(), 9);
    assert!(ran.values().all(|&n| n == 1), "{ran:?}");
    // And each key was submitted once in all: the driver that asks second follows the first's
    // job (one log per job or array task: shapes, two k-means, two probes).
    let logs = std::fs::read_dir(cache.path().join("jobs/logs")).unwrap().count();
    assert_eq!(logs, 5, "jobs submitted by the two drivers together");
    assert_eq!(objects(cache.path()), objects(local.path()));
    // A second run finds everything published and submits nothing.
    let again = slurm_json(cache.path(), &smoke(), &[]);
    assert_eq!(again["submitted"], 0, "{again}");
    assert!(outcomes(&again).values().all(|o| o == "cached"), "{again}");
    // Provenance names the job and the node of a stage that ran as a job.
    let show = cfrun(cache.path(), &["show", smoke().to_str().unwrap(), "clusters[k=4]", "--json"]);
    let v: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert!(v[0]["provenance"]["slurm"]["job_id"].as_str().is_some_and(|j| !j.is_empty()), "{v}");
    assert!(v[0]["provenance"]["slurm"]["node"].as_str().is_some_and(|n| !n.is_empty()), "{v}");
    // A job spec is checked before anything runs: it must hash to its key, and its inputs' bytes
    // to the digests its recipe holds.
    let key = v[0]["key"].as_str().unwrap().trim_start_matches("blake3:").to_string();
    let spec_path = cache.path().join("jobs").join(format!("{key}.json"));
    let spec = std::fs::read_to_string(&spec_path).unwrap();
    std::fs::write(&spec_path, spec.replace("\"iterations\": 10", "\"iterations\": 11")).unwrap();
    let tampered = cfrun(cache.path(), &["exec", &key]);
    assert_eq!(tampered.status.code(), Some(2), "{}", stderr(&tampered));
    assert!(stderr(&tampered).contains("not to its name"), "{}", stderr(&tampered));
    std::fs::write(&spec_path, &spec).unwrap();
    // The names of a gathered input label the table's rows: they must be the ones its recipe
    // hashed, and a name its stage and axes (once unchecked, so a swapped label was published).
    let show = cfrun(cache.path(), &["show", smoke().to_str().unwrap(), "results", "--json"]);
    let results: Value = serde_json::from_slice(&show.stdout).unwrap();
    let results_key = results[0]["key"].as_str().unwrap().trim_start_matches("blake3:").to_string();
    let results_record = cache.path().join("keys").join(format!("{results_key}.json"));
    // Tables run in the driver: this one as a job, to get its spec.
    std::fs::remove_file(&results_record).unwrap();
    let as_job = slurm_json(cache.path(), &smoke(), &["--set", "stages.results.resources.in_driver=false"]);
    assert_eq!(as_job["submitted"], 1, "{as_job}");
    let results_spec = cache.path().join("jobs").join(format!("{results_key}.json"));
    let good: Value = serde_json::from_slice(&std::fs::read(&results_spec).unwrap()).unwrap();
    std::fs::remove_file(&results_record).unwrap();
    for (edit, message) in
        [("axes", "not the ones the recipe hashed"), ("instance", "does not match its stage and axes")]
    {
        let mut bad = good.clone();
        let first = bad["inputs"].as_object_mut().unwrap().values_mut().next().unwrap();
        match edit {
            "axes" => first[0]["axes"]["p"] = Value::from(7),
            _ => first[0]["instance"] = Value::from("probe_noisy[p=7]"),
        }
        std::fs::write(&results_spec, serde_json::to_vec_pretty(&bad).unwrap()).unwrap();
        let out = cfrun(cache.path(), &["exec", &results_key]);
        assert_eq!(out.status.code(), Some(2), "{edit}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{edit}: {}", stderr(&out));
    }
    std::fs::write(&results_spec, serde_json::to_vec_pretty(&good).unwrap()).unwrap();
    let relabelled = cfrun(cache.path(), &["exec", &results_key]);
    assert!(relabelled.status.success(), "{}", stderr(&relabelled));
    let input = v[0]["provenance"]["inputs"]["features"][0]["digest"].as_str().unwrap().to_string();
    let shapes = objects(cache.path())["shapes"].clone();
    let images = cache.path().join("objects").join(shapes.trim_start_matches("blake3:")).join("images");
    let file = std::fs::read_dir(&images).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    std::fs::remove_file(cache.path().join("keys").join(format!("{key}.json"))).unwrap();
    let damaged = cfrun(cache.path(), &["exec", &key]);
    assert_eq!(damaged.status.code(), Some(2), "{}", stderr(&damaged));
    assert!(
        stderr(&damaged).contains("input `features` (shapes)") && stderr(&damaged).contains("has changed"),
        "{input}: {}",
        stderr(&damaged)
    );
}

#[test]
fn slurm_job_killed_mid_training_is_retried_and_resumes_bit_identical() {
    if !slurm_up("slurm_job_killed_mid_training") {
        return;
    }
    let file = fixture("train_tiny.toml");
    let longer = ["--set", "stages.model.epochs=100"];
    let cache = tempfile::tempdir().unwrap();
    let driver = spawn_slurm_driver(cache.path(), &file, &longer);
    // Once the training job has written a checkpoint, kill -9 its process on the node.
    let job = wait_for(120, "a training checkpoint", || {
        let job = claimed_jobs(cache.path()).into_iter().find(|(i, _)| i == "model")?.1;
        let ckpt = std::fs::read_dir(cache.path().join("checkpoints")).ok()?.filter_map(|e| e.ok()).next()?;
        ckpt.path().join("latest").exists().then_some(job)
    });
    let pids = Command::new("scontrol").args(["listpids", &job]).output().unwrap();
    let text = String::from_utf8_lossy(&pids.stdout).to_string();
    let pid = text.lines().skip(1).find_map(|l| l.split_whitespace().next()).expect("the job has a process");
    assert!(Command::new("kill").args(["-9", pid]).status().unwrap().success());
    let out = driver.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("job {job} killed by signal 9")) && err.contains("submitting it again"), "{err}");
    let logs: String = std::fs::read_dir(cache.path().join("jobs/logs"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect();
    assert!(logs.contains("model: resuming after epoch"), "{logs}");
    let reference = tempfile::tempdir().unwrap();
    run_json(reference.path(), &file, &longer);
    assert_eq!(objects(cache.path()), objects(reference.path()));
}

#[test]
fn slurm_status_shows_running_jobs_and_ctrl_c_leaves_no_job_in_the_queue() {
    if !slurm_up("slurm_ctrl_c") {
        return;
    }
    let file = fixture("train_tiny.toml");
    let long = ["--set", "stages.model.epochs=100000"];
    let cache = tempfile::tempdir().unwrap();
    let driver = spawn_slurm_driver(cache.path(), &file, &long);
    let job = wait_for(60, "the training job", || claimed_jobs(cache.path()).into_iter().find(|(i, _)| i == "model"));
    let status = wait_for(60, "status to show the job", || {
        let out = cfrun(cache.path(), &["status", file.to_str().unwrap(), long[0], long[1], "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        let model = v["instances"].as_array()?.iter().find(|i| i["instance"] == "model")?.clone();
        (model["state"] == "running").then_some(model)
    });
    assert_eq!(status["job"]["id"], job.1.as_str(), "{status}");
    assert!(!status["because"].to_string().contains("never run"), "{status}");
    // In words: the job and where it runs, not "never run" nor an interrupted run's checkpoint.
    let text = cfrun(cache.path(), &["status", file.to_str().unwrap(), long[0], long[1]]);
    let said = String::from_utf8_lossy(&text.stdout);
    let line = said.lines().find(|l| l.contains(" model")).unwrap_or_default().to_string();
    assert!(line.contains(&format!("job {} ", job.1)), "{said}");
    assert!(!line.contains("never run") && !line.contains("interrupted run"), "{line}");
    let queued = || still_queued(&job.1);
    // A second driver on the same cache follows the job; its Ctrl-C cancels nothing of the first
    // driver's (it once cancelled every job it followed, failing the other run).
    let mut follower = spawn_slurm_driver(cache.path(), &file, &long);
    let (lines, drain) = drain_stderr(&mut follower);
    wait_for_line(&lines, "following job", "the second driver did not follow the job");
    assert!(Command::new("kill").args(["-INT", &follower.id().to_string()]).status().unwrap().success());
    let ended = follower.wait().unwrap();
    let log = drain.join().unwrap();
    assert_eq!(ended.code(), Some(130), "{log}");
    assert!(!queued().is_empty(), "the first driver's job was cancelled by the second's Ctrl-C");
    assert!(claimed_jobs(cache.path()).iter().any(|(i, _)| i == "model"), "the follower dropped the job's claim");
    assert!(Command::new("kill").args(["-INT", &driver.id().to_string()]).status().unwrap().success());
    let out = driver.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let listed = queued();
    assert!(listed.is_empty(), "job still queued after Ctrl-C: {listed}");
    assert!(claimed_jobs(cache.path()).is_empty());
}

#[test]
fn slurm_ctrl_c_reports_a_job_that_published_before_it_as_ran() {
    if !slurm_up("slurm_ctrl_c_published") {
        return;
    }
    // The first job publishes; Ctrl-C comes before the driver's next look at the cache (its
    // pauses grow while nothing ends). The summary said "skipped: interrupted" of a result that was
    // in the cache; the rerun then served it, so only the report was wrong.
    let file = fixture("train_tiny.toml");
    let cache = tempfile::tempdir().unwrap();
    let mut driver = slurm_driver(cache.path(), &file, "30").spawn().unwrap();
    let (_lines, log) = drain_stderr(&mut driver);
    wait_for(60, "the data set's result", || {
        let keys = std::fs::read_dir(cache.path().join("keys")).ok()?;
        keys.filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("\"shapes\"")))
            .then_some(())
    });
    assert!(Command::new("kill").args(["-INT", &driver.id().to_string()]).status().unwrap().success());
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut driver.stdout.take().unwrap(), &mut stdout).unwrap();
    let ended = driver.wait().unwrap();
    let log = log.join().unwrap();
    assert_eq!(ended.code(), Some(130), "{log}");
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{log}"));
    let shapes = v["instances"].as_array().unwrap().iter().find(|i| i["name"] == "shapes").unwrap();
    assert_eq!(shapes["outcome"], "ran", "{shapes}\n{log}");
}

/// Reads `child`'s stderr to the end in a thread (a closed pipe would end it by SIGPIPE): each
/// line as it comes, and the whole log when it ends.
fn drain_stderr(
    child: &mut std::process::Child,
) -> (std::sync::mpsc::Receiver<String>, std::thread::JoinHandle<String>) {
    let log = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let drain = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufRead::lines(log).map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    (rx, drain)
}

/// Waits up to a minute for a line containing `marker`.
fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, marker: &str, failure: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(marker) => return,
            Ok(_) => continue,
            Err(_) => panic!("{failure}"),
        }
    }
}

#[test]
fn slurm_a_followed_job_cancelled_by_its_driver_is_submitted_by_the_follower() {
    if !slurm_up("slurm_follower_takes_over") {
        return;
    }
    // Driver A submits the training; B, on the same cache, follows it. A's Ctrl-C cancels it:
    // B's run still needs the network, so B submits the job as its own (it resumes from A's
    // checkpoint) and finishes. Before, B failed the instance and skipped all below it.
    let file = fixture("train_tiny.toml");
    let longer = ["--set", "stages.model.epochs=40"];
    let cache = tempfile::tempdir().unwrap();
    let mut first = spawn_slurm_driver(cache.path(), &file, &longer);
    let (_first_lines, first_log) = drain_stderr(&mut first);
    // Generous: on a busy one-node cluster (the other Slurm tests run beside this one) the data
    // set's job may wait for a CPU.
    wait_for(180, "the training job", || claimed_jobs(cache.path()).into_iter().find(|(i, _)| i == "model"));
    let mut second = spawn_slurm_driver(cache.path(), &file, &longer);
    let (lines, second_log) = drain_stderr(&mut second);
    wait_for_line(&lines, "following job", "the second driver did not follow the job");
    assert!(Command::new("kill").args(["-INT", &first.id().to_string()]).status().unwrap().success());
    assert_eq!(first.wait().unwrap().code(), Some(130), "{}", first_log.join().unwrap());
    let ended = second.wait().unwrap();
    let log = second_log.join().unwrap();
    assert!(ended.success(), "{log}");
    assert!(log.contains("(another cfrun's) was cancelled") && log.contains("submitting it for this run"), "{log}");
    let reference = tempfile::tempdir().unwrap();
    run_json(reference.path(), &file, &longer);
    assert_eq!(objects(cache.path()), objects(reference.path()));
}

/// Two stages written alike are one recipe: under Slurm it is submitted once, and the twin is
/// served its result when it publishes (before, each was submitted, the second job only waiting
/// on the key's lock to find the result cached).
#[test]
fn slurm_submits_one_job_for_a_recipe_under_two_names() {
    if !slurm_up("slurm_twins") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("train_tiny.toml")).unwrap();
    let model = &text[text.find("[stages.model]").unwrap()..text.find("[stages.feats]").unwrap()];
    let twin = model.replace("[stages.model", "[stages.model2");
    let file = dir.path().join("twins.toml");
    std::fs::write(&file, format!("{text}\n{twin}")).unwrap();
    let v = slurm_json(&dir.path().join("cache"), &file, &[]);
    let o = outcomes(&v);
    assert_eq!((o["model"].as_str(), o["model2"].as_str()), ("ran", "cached"), "{v}");
    assert_eq!(v["submitted"], 4, "shapes, model, feats, probe: one job each, none for the twin: {v}");
}

/// A job that completed cleanly published its key, though the driver's node may not see the new
/// file yet (an NFS client's cached directory attributes): the driver looks again for a while
/// instead of failing a good job. Simulated by a job that moves the key files out of sight as
/// it ends; the test puts them back a few seconds later.
#[test]
fn slurm_waits_for_a_completed_jobs_result_to_show_on_a_lagging_file_system() {
    if !slurm_up("slurm_publish_lag") {
        return;
    }
    let bin = tempfile::tempdir().unwrap();
    let hidden = bin.path().join("hidden");
    std::fs::create_dir(&hidden).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let keys = std::fs::canonicalize(cache.path()).unwrap().join("keys");
    let dir = bin.path().display().to_string();
    // The first job's script loses its `exec` and moves every key file away once cfrun is done.
    write_wrapper(bin.path(), "sbatch", |real| {
        format!(
            "#!/bin/sh\nREAL='{real}'\nif [ \"$1\" != --version ] && [ ! -e '{dir}/done' ]; then\n  : > '{dir}/done'\n  \
             n=$#\n  for a in \"$@\"; do\n    case \"$a\" in --wrap=*)\n      \
             a=\"--wrap=$(printf '%s\\n' \"${{a#--wrap=}}\" | sed 's/^exec //') && mv '{keys}'/* '{hidden}'/\";;\n    \
             esac\n    set -- \"$@\" \"$a\"\n  done\n  shift $n\nfi\nexec \"$REAL\" \"$@\"\n",
            keys = keys.display(),
            hidden = hidden.display()
        )
    });
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    let driver = slurm_driver(cache.path(), &fixture("train_tiny.toml"), "0.5").env("PATH", path).spawn().unwrap();
    let moved = wait_for(120, "the first job to hide its key", || {
        std::fs::read_dir(&hidden).unwrap().next().map(|e| e.unwrap().path())
    });
    // Long enough for the driver to see the job COMPLETED (it asks the queue every second).
    std::thread::sleep(std::time::Duration::from_secs(4));
    std::fs::rename(&moved, keys.join(moved.file_name().unwrap())).unwrap();
    let out = driver.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("completed, its result not in sight yet; looking again"), "{err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(outcomes(&v).values().all(|o| o == "ran"), "{v}");
}

/// A folder holding an `sbatch` that runs `first` (shell) in place of the first submission and
/// hands every other call to the real sbatch; each submission adds a line to `calls` there.
fn sbatch_wrapper(first: &str) -> tempfile::TempDir {
    let bin = tempfile::tempdir().unwrap();
    let dir = bin.path().display().to_string();
    write_wrapper(bin.path(), "sbatch", |real| {
        format!(
            "#!/bin/sh\nREAL='{real}'\nif [ \"$1\" != --version ]; then\n  echo >> '{dir}/calls'\n  \
             if [ ! -e '{dir}/done' ]; then\n    : > '{dir}/done'\n    {first}\n  fi\nfi\nexec \"$REAL\" \"$@\"\n"
        )
    });
    bin
}

/// Writes an executable `bin/program` whose text `script` makes from the real program's path.
fn write_wrapper(bin: &Path, program: &str, script: impl FnOnce(&str) -> String) {
    let real = Command::new("sh").args(["-c", &format!("command -v {program}")]).output().unwrap();
    let path = bin.join(program);
    std::fs::write(&path, script(String::from_utf8_lossy(&real.stdout).trim())).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// Runs train_tiny under Slurm with `bin` first on PATH; returns the output and the number of
/// submissions the wrapper saw.
fn run_with_sbatch_wrapper(bin: &Path) -> (Output, usize) {
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let cache = tempfile::tempdir().unwrap();
    let out = slurm_driver(cache.path(), &fixture("train_tiny.toml"), "0.5").env("PATH", path).output().unwrap();
    let calls = std::fs::read_to_string(bin.join("calls")).unwrap_or_default().lines().count();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!((v["ran"].as_u64(), v["failed"].as_u64()), (Some(4), Some(0)), "{v}\n{}", stderr(&out));
    (out, calls)
}

const TIMED_OUT: &str =
    "echo 'sbatch: error: Batch job submission failed: Socket timed out on send/recv operation' >&2";

#[test]
fn slurm_submits_again_when_the_controller_did_not_answer() {
    if !slurm_up("slurm_sbatch_timeout") {
        return;
    }
    // The first submission refused as Slurm does when the controller times out, nothing queued.
    // Before, that failed the instance and skipped everything below it.
    let bin = sbatch_wrapper(&format!("{TIMED_OUT}; exit 1"));
    let (out, calls) = run_with_sbatch_wrapper(bin.path());
    let err = stderr(&out);
    assert!(err.contains("Socket timed out") && err.contains("submitting again in 2 s"), "{err}");
    assert_eq!(calls, 5, "four jobs, one submitted twice: {err}");
}

#[test]
fn slurm_finds_a_job_whose_submission_timed_out_after_the_controller_took_it() {
    if !slurm_up("slurm_sbatch_timeout_taken") {
        return;
    }
    // The first submission reaches the controller, but sbatch reports a timeout: the job is found
    // in the queue by its comment and followed, not submitted a second time; the first look for
    // it fails as well (the controller still busy) and is tried again (before, the job was
    // submitted anew and the first ran untracked).
    let bin = sbatch_wrapper(&format!("\"$REAL\" \"$@\" > /dev/null; {TIMED_OUT}; exit 1"));
    let dir = bin.path().display().to_string();
    write_wrapper(bin.path(), "squeue", |real| {
        format!(
            "#!/bin/sh\ncase \"$*\" in *%k*)\n  if [ ! -e '{dir}/looked' ]; then\n    : > '{dir}/looked'\n    \
             echo 'squeue: error: Socket timed out on send/recv operation' >&2\n    exit 1\n  fi;;\nesac\n\
             exec '{real}' \"$@\"\n"
        )
    });
    let (out, calls) = run_with_sbatch_wrapper(bin.path());
    let err = stderr(&out);
    assert!(err.contains("looking for its job failed"), "{err}");
    assert!(err.contains("sbatch timed out, but the controller took the job"), "{err}");
    assert_eq!(calls, 4, "one submission per job: {err}");
}

#[test]
fn slurm_gives_up_on_a_queue_that_stops_answering_and_a_rerun_follows_its_job() {
    if !slurm_up("slurm_queue_patience") {
        return;
    }
    // While squeue fails the driver cannot tell a job that died from one still running. Before,
    // it asked again forever; now, after `queue_patience` of failures, the job counts as failed
    // and is left running with its claim, and a rerun takes it over instead of submitting it again.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gate = d.join("gate");
    let script = format!(
        "while [ ! -e '{}' ]; do sleep 0.1; done; echo '{{{{\"values\": {{{{\"top1\": 1}}}}}}}}' > out/m/metrics.json",
        gate.display()
    );
    let toml = format!(
        "[experiment]\nname = \"silent\"\nseed = 0\n\n[stages.wait]\nop = \"command\"\nargv = {}\n\
         timeout = 120\noutputs = {{ m = \"metrics\" }}\n",
        serde_json::to_string(&["sh", "-c", &script]).unwrap()
    );
    let file = d.join("silent.toml");
    std::fs::write(&file, toml).unwrap();
    let bin = tempfile::tempdir().unwrap();
    write_wrapper(bin.path(), "squeue", |_| {
        "#!/bin/sh\necho 'squeue: error: Unable to contact slurm controller (connect failure)' >&2\nexit 1\n".into()
    });
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    let cache = d.join("cache");
    let mut driver =
        slurm_driver(&cache, &file, "0.5").args(["--queue-patience", "2"]).env("PATH", path).spawn().unwrap();
    let started = std::time::Instant::now();
    while driver.try_wait().unwrap().is_none() {
        if started.elapsed().as_secs() > 60 {
            driver.kill().unwrap();
            panic!("the driver still waits on a silent queue after 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = driver.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (outcome, error) = outcome_of(&v, "wait");
    assert_eq!(outcome, "failed");
    assert!(error.contains("has not answered for") && error.contains("connect failure"), "{error}");
    let job = error.split("job ").nth(1).and_then(|t| t.split(' ').next()).unwrap().to_string();
    let q = Command::new("squeue").args(["-h", "-o", "%T", "-j", &job]).output().unwrap();
    let state = String::from_utf8_lossy(&q.stdout).trim().to_string();
    assert!(state == "PENDING" || state == "RUNNING", "job {job} was not left running: {state:?}");
    // The queue answers again: the rerun takes the job over, its driver being gone (or finds
    // its result), and submits nothing.
    std::fs::write(&gate, "").unwrap();
    let out = slurm_driver(&cache, &file, "0.5").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    match outcome_of(&v, "wait").0.as_str() {
        "ran" => assert!(stderr(&out).contains(&format!("taking over job {job}")), "{}", stderr(&out)),
        other => assert_eq!(other, "cached", "{}", stderr(&out)),
    }
    assert_eq!(std::fs::read_dir(cache.join("jobs/logs")).unwrap().count(), 1, "one sbatch in all");
}

/// A Ctrl-C whose cancel the controller does not take (scancel fails) keeps the job's claim, so
/// `status` shows it running and a rerun takes it over instead of submitting its key again; and it
/// ends the run at once, without asking a queue for 30 s whether the cancel took (found by an
/// audit: the claims were dropped and the Ctrl-C took a minute).
#[test]
fn slurm_a_cancel_the_controller_refused_keeps_the_claim() {
    if !slurm_up("slurm_cancel_refused") {
        return;
    }
    let bin = tempfile::tempdir().unwrap();
    write_wrapper(bin.path(), "scancel", |_| {
        "#!/bin/sh\necho 'scancel: error: Unable to contact slurm controller (connect failure)' >&2\nexit 1\n".into()
    });
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    let file = fixture("train_tiny.toml");
    let cache = tempfile::tempdir().unwrap();
    let driver = slurm_driver(cache.path(), &file, "0.5")
        .args(["--set", "stages.model.epochs=100000"])
        .env("PATH", path)
        .spawn()
        .unwrap();
    let job = wait_for(60, "the training job", || claimed_jobs(cache.path()).into_iter().find(|(i, _)| i == "model"));
    let asked = std::time::Instant::now();
    assert!(Command::new("kill").args(["-INT", &driver.id().to_string()]).status().unwrap().success());
    let out = driver.wait_with_output().unwrap();
    let took = asked.elapsed().as_secs();
    let _ = Command::new("scancel").arg(&job.1).status();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("has not confirmed the cancel"), "{}", stderr(&out));
    assert!(claimed_jobs(cache.path()).contains(&job), "the claim of a job that may still run was dropped");
    assert!(took < 20, "the Ctrl-C took {took} s");
}

/// A job that publishes while the queue is not answering counts as ran when the driver gives up
/// on the queue (it was reported failed, 11 s after it had published).
#[test]
fn slurm_giving_up_on_the_queue_looks_at_the_cache_first() {
    if !slurm_up("slurm_patience_published") {
        return;
    }
    let bin = tempfile::tempdir().unwrap();
    // Every look at the queue fails, as a controller that went away does. The first fails at
    // once, before the job may finish; the second lets the job finish (a marker the job waits
    // for) and fails 3 s after the real queue shows it completed: the job has published while
    // the queue was silent, and the 2 s patience is spent when the look ends, so the driver
    // gives up before its next look at the cache. No timing to race under load.
    let go = bin.path().join("go");
    write_wrapper(bin.path(), "squeue", |real| {
        let calls = bin.path().join("calls");
        format!(
            r#"#!/bin/sh
echo x >> '{calls}'
if [ "$(wc -l < '{calls}')" -ge 2 ]; then
    touch '{go}'
    i=0
    while [ $i -lt 600 ] && ! '{real}' "$@" 2>/dev/null | grep -q '|COMPLETED|'; do sleep 0.1; i=$((i+1)); done
    sleep 3
else
    sleep 1
fi
echo 'squeue: error: Unable to contact slurm controller (connect failure)' >&2
exit 1
"#,
            calls = calls.display(),
            go = go.display()
        )
    });
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    let toml = "[experiment]\nname = \"quick\"\nseed = 0\n\n[stages.q]\nop = \"command\"\n\
                argv = [\"sh\", \"-c\", \"while [ ! -e {go} ]; do sleep 0.1; done; echo '{{\\\"values\\\": {{\\\"top1\\\": 1}}}}' > out/m/metrics.json\"]\n\
                outputs = { m = \"metrics\" }\n";
    let toml = toml.replace("{go}", &go.display().to_string());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("quick.toml");
    std::fs::write(&file, toml).unwrap();
    let cache = dir.path().join("cache");
    let out = slurm_driver(&cache, &file, "0.5").args(["--queue-patience", "2"]).env("PATH", path).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(outcome_of(&v, "q").0, "ran", "{v}\n{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn slurm_drives_gpu_jobs_from_a_login_node_without_a_gpu() {
    if !slurm_up("slurm_device") {
        return;
    }
    // This binary has no CUDA, like a login node without a GPU. Under Slurm the driver computes
    // only the stages it keeps, so `--device cuda` is for the jobs; and a job that asks for no GPU
    // is granted none, so it computes on the CPU. Before, the driver opened CUDA itself and
    // refused the run; a k-means job was started with `--device cuda` and no card.
    let file = fixture("train_tiny.toml");
    let no_gpus = ["model", "feats", "probe"].map(|s| format!("stages.{s}.resources.gpus=0"));
    let mut args = vec!["--executor", "slurm", "--device", "cuda"];
    for s in &no_gpus {
        args.extend(["--set", s.as_str()]);
    }
    let cache = tempfile::tempdir().unwrap();
    let ran = run_json(cache.path(), &file, &args);
    assert!(ran.values().all(|o| o == "ran"), "{ran:?}");
    let local = tempfile::tempdir().unwrap();
    let mut sets = vec![];
    for s in &no_gpus {
        sets.extend(["--set", s.as_str()]);
    }
    run_json(local.path(), &file, &sets);
    assert_eq!(objects(cache.path()), objects(local.path()));
    // bf16 is checked against the device each stage will compute on: refused for a training job
    // that asks for no GPU (exit 2, at the field), let through for one that asks for one
    // (`exec::resources` tests `computes_on`, which decides it).
    let bf16 = "stages.model.precision=bf16";
    let mut refused = args.clone();
    refused.extend(["--set", bf16]);
    let mut argv = vec![file.to_str().unwrap()];
    argv.extend(&refused);
    let out = cfrun(cache.path(), &argv);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("precision") && stderr(&out).contains("resources.gpus"), "{}", stderr(&out));
    // Jobs run this binary, which has no CUDA: with `--device auto` every job computes on the CPU
    // and asks for no GPU, so bf16 is refused for the one that would have asked...
    if !cfg!(feature = "cuda") {
        let argv = [file.to_str().unwrap(), "--executor", "slurm", "--device", "auto", "--set", bf16];
        let out = cfrun(cache.path(), &argv);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("has no CUDA, so every job computes on the CPU"), "{}", stderr(&out));
        // ...and `--device cuda` is refused before anything is submitted, not in each job after
        // its wait for a GPU.
        let out = cfrun(cache.path(), &[file.to_str().unwrap(), "--executor", "slurm", "--device", "cuda"]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("the jobs that ask for a GPU: this cfrun was built without CUDA"),
            "{}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("submitted"), "{}", stderr(&out));
    }
}

/// A cache on a mount whose locks stay on each client (NFS with local_lock=all here) is refused
/// before anything is submitted, naming the mount option.
#[test]
fn slurm_refuses_a_cache_whose_locks_would_not_hold_across_nodes() {
    let cache = tempfile::tempdir().unwrap();
    let real = std::fs::canonicalize(cache.path()).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let table = elsewhere.path().join("mountinfo");
    let line = format!("40 1 0:50 / {} rw - nfs4 srv:/export rw,vers=4.2,local_lock=all\n", real.display());
    std::fs::write(&table, format!("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n{line}")).unwrap();
    // Refused before anything is submitted: Slurm's commands here answer only `--version` (which
    // says Slurm is there) and fail otherwise, so the test runs where Slurm is not installed too.
    let bin = elsewhere.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for tool in ["sbatch", "squeue", "sinfo", "scancel", "sacct"] {
        let shim = "#!/bin/sh\n[ \"$1\" = --version ] && echo 'slurm (test shim)' && exit 0\necho \"$0 $* must not be called\" >&2\nexit 1\n";
        std::fs::write(bin.join(tool), shim).unwrap();
        std::fs::set_permissions(bin.join(tool), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new(env!("CARGO_BIN_EXE_cfrun"))
        .args([smoke().to_str().unwrap(), "--executor", "slurm", "--cache"])
        .arg(cache.path())
        .env("CFRUN_MOUNTINFO", &table)
        .env("PATH", path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("local_lock") && stderr(&out).contains("nfs4"), "{}", stderr(&out));
    assert!(!cache.path().join("keys").read_dir().unwrap().any(|_| true));
}

/// `cfrun exec` (what a cluster job runs) computes one instance whose inputs are cached, by
/// instance name or by the key of a job spec, and refuses what it cannot check.
#[test]
fn exec_computes_one_instance_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let file = smoke();
    let f = file.to_str().unwrap();
    let early = cfrun(cache.path(), &["exec", f, "clusters[k=4]"]);
    assert_eq!(early.status.code(), Some(2), "{}", stderr(&early));
    assert!(stderr(&early).contains("inputs are not all cached"), "{}", stderr(&early));
    let shapes = cfrun(cache.path(), &["exec", f, "shapes"]);
    assert!(shapes.status.success(), "{}", stderr(&shapes));
    assert!(String::from_utf8_lossy(&shapes.stdout).starts_with("ran shapes blake3:"));
    let k4 = cfrun(cache.path(), &["exec", f, "clusters[k=4]", "--json"]);
    let v: Value = serde_json::from_slice(&k4.stdout).unwrap();
    assert_eq!(v["outcome"], "ran", "{v}");
    let again = cfrun(cache.path(), &["exec", f, "clusters[k=4]", "--json"]);
    let v: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(v["outcome"], "cached", "{v}");
    let rest = run_json(cache.path(), &file, &[]);
    assert_eq!(rest["clusters[k=4]"], "cached");
    assert_eq!(rest["clusters[k=16]"], "ran");
    let unknown = cfrun(cache.path(), &["exec", &"ab".repeat(32)]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("was it submitted by a cfrun driver"), "{}", stderr(&unknown));
    // A job by key in a folder that is no cache yet: refused, and no cache is made there.
    let nowhere = cache.path().join("no-cache-here");
    let none = cfrun(&nowhere, &["exec", &"ab".repeat(32)]);
    assert_eq!(none.status.code(), Some(2), "{}", stderr(&none));
    assert!(stderr(&none).contains("was it submitted by a cfrun driver"), "{}", stderr(&none));
    assert!(!nowhere.exists(), "exec made a cache where there was none");
}

/// A stage that fails inside its job is reported with the job id, its log's path and last lines;
/// only its dependants are skipped.
#[test]
fn slurm_failed_job_is_reported_with_its_log() {
    if !slurm_up("slurm_failed_job_is_reported_with_its_log") {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let file = fixture("floor_tiny.toml");
    let args = [file.to_str().unwrap(), "--json", "--executor", "slurm", "--poll-max", "0.5"];
    let out = cfrun(cache.path(), &[&args[..], &["--set", "sweep.floor=[100]"]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed = v["instances"].as_array().unwrap().iter().find(|i| i["name"] == "model[floor=100]").unwrap();
    assert_eq!(failed["outcome"], "failed", "{v}");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("exit code 1") && error.contains("/jobs/logs/"), "{error}");
    assert!(error.contains("last lines") && error.contains("training did not fit its labels"), "{error}");
    assert_eq!(outcomes(&v)["fit"], "skipped");
    assert_eq!(outcomes(&v)["pixels"], "ran");
}

/// A job asking for more CPUs than the node has is accepted by `sbatch` and then pending forever
/// (`PartitionConfig`): it is cancelled and its instance fails, naming the reason, instead of the
/// driver waiting without a word.
#[test]
fn slurm_a_job_that_can_never_start_is_cancelled_and_named() {
    if !slurm_up("slurm_a_job_that_can_never_start_is_cancelled_and_named") {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let file = fixture("train_tiny.toml");
    // One CPU more than the node has (sinfo's CPUs per node; this machine's as a fallback).
    let sinfo = Command::new("sinfo").args(["-h", "-o", "%c"]).output().unwrap();
    let node: usize = String::from_utf8_lossy(&sinfo.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // The first stage's job: nothing has to run before it, so a busy cluster cannot slow the test.
    let cpus = format!("stages.shapes.resources.cpus={}", node + 1);
    // Under `timeout`: before the fix this run waited forever.
    let out = Command::new("timeout")
        .arg("120")
        .arg(env!("CARGO_BIN_EXE_cfrun"))
        .args([file.to_str().unwrap(), "--json", "--executor", "slurm", "--poll-max", "0.5", "--set", &cpus])
        .arg("--cache")
        .arg(cache.path())
        .env_remove("CFRUN_CACHE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed = v["instances"].as_array().unwrap().iter().find(|i| i["name"] == "shapes").unwrap();
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("cannot start") && error.contains("PartitionConfig") && error.contains("was cancelled"),
        "{error}"
    );
    assert!(error.contains("[stages.shapes.resources]"), "{error}");
    assert_eq!((&outcomes(&v)["model"][..], &outcomes(&v)["probe"][..]), ("skipped", "skipped"));
    let job = error.split_whitespace().nth(1).unwrap();
    let queue = Command::new("squeue").args(["-h", "-j", job, "-t", "PENDING,RUNNING"]).output().unwrap();
    assert!(String::from_utf8_lossy(&queue.stdout).trim().is_empty(), "job {job} left in the queue");
}

/// `cfrun [OPTIONS] FILE` is `cfrun run [OPTIONS] FILE`, also when an option with a value comes
/// before the file (the value is not taken for the file).
#[test]
fn the_run_shorthand_accepts_options_before_the_file() {
    let cache = tempfile::tempdir().unwrap();
    let file = fixture("claims_tiny.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_cfrun"))
        .args(["--set", "experiment.replicates=2", "--cache"])
        .arg(cache.path())
        .arg(&file)
        .arg("--json")
        .env_remove("CFRUN_CACHE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["instances"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"noisy[replicate=1]") && !names.contains(&"noisy[replicate=2]"), "{names:?}");
}

/// Global options may come before a subcommand: `cfrun --cache DIR status FILE`.
#[test]
fn global_options_may_precede_the_subcommand() {
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cfrun"))
        .arg("--cache")
        .arg(cache.path())
        .args(["--json", "status"])
        .arg(fixture("claims_tiny.toml"))
        .env_remove("CFRUN_CACHE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.is_object() || v.is_array(), "{v}");
}

/// The folders under `src/` whose files name `crate::OTHER` (outside comments and the trailing
/// `#[cfg(test)]` module): folder -> the folders it imports.
fn folder_imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let folders: BTreeSet<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for folder in &folders {
        let mut stack = vec![src.join(folder)];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text.split("\n#[cfg(test)]").next().unwrap_or_default();
                for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                    for (i, _) in line.match_indices("crate::") {
                        let name: String =
                            line[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                        if &name != folder && folders.contains(&name) {
                            edges.entry(folder.clone()).or_default().insert(name);
                        }
                    }
                }
            }
        }
    }
    edges
}

/// The layering of docs/ARCHITECTURE.md: no folder imports, through any chain, a folder that
/// imports it back.
#[test]
fn no_import_cycle_between_source_folders() {
    let edges = folder_imports();
    assert!(edges.get("ops").is_some_and(|to| to.contains("artifact")), "the scan sees imports: {edges:?}");
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|p| p == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for folder in edges.keys() {
        if let Some(cycle) = visit(folder, &edges, &mut Vec::new(), &mut done) {
            panic!("import cycle between folders: {}", cycle.join(" -> "));
        }
    }
}

/// A local run reports how busy the cores were: CPU seconds in `--json`, "CPU x of n cores" in
/// the summary line.
#[test]
fn run_reports_cpu_use() {
    let cache = tempfile::tempdir().unwrap();
    let out = cfrun(cache.path(), &[smoke().to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (cpu, wall) = (v["cpu_seconds"].as_f64().unwrap(), v["wall_seconds"].as_f64().unwrap());
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    assert!(cpu > 0.0 && cpu <= wall * cores + 0.5, "cpu {cpu} s, wall {wall} s, {cores} cores");
    // Each instance is named `instance`, as in every other command's JSON (and `name`, as before).
    let first = &v["instances"][0];
    assert!(first["instance"].is_string() && first["instance"] == first["name"], "{first}");
    let again = cfrun(cache.path(), &[smoke().to_str().unwrap()]);
    let line = stderr(&again);
    let line = line.lines().last().unwrap();
    assert!(line.contains(" cached, ") && line.contains(" CPU ") && line.ends_with(" cores"), "{line}");
}

/// A synthetic data set of `train_size` images and one 2-epoch resnet_tiny `train` stage, `net`,
/// whose table ends with `extra` (its first line is line 17 of the file).
fn tiny_training(name: &str, train_size: usize, extra: &str) -> String {
    format!(
        "[experiment]\nname = \"{name}\"\nseed = 0\n\n[stages.shapes]\nop = \"dataset\"\nname = \"synthetic\"\n\
         train_size = {train_size}\ntest_size = 8\n\n[stages.net]\nop = \"train\"\nimages = \"shapes.images\"\n\
         labels = \"shapes.labels\"\narch = \"resnet_tiny\"\nepochs = 2\n{extra}"
    )
}

/// `precision = "bf16"` is refused on the CPU before anything runs: exit 2 at the field, with
/// the valid choices, and no cache created; `status` still reads the file.
#[test]
fn bf16_training_is_refused_on_the_cpu_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bf16.toml");
    std::fs::write(&file, tiny_training("bf16", 16, "precision = \"bf16\"\n")).unwrap();
    let cache = dir.path().join("cache");
    let out = cfrun(&cache, &["run", file.to_str().unwrap(), "--device", "cpu"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("needs a GPU") && err.contains("bf16.toml:17:"), "{err}");
    assert!(err.contains("\"f16\"") && err.contains("--device cuda"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!cache.exists(), "a refused run created a cache");
    // A check of the device, not of the file: commands that only read the experiment accept it.
    let status = cfrun(&cache, &["status", file.to_str().unwrap()]);
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
}

/// A training batch that cannot fit where it computes is refused by `cfrun run` before anything
/// runs (it ended in an allocation abort part-way), against this machine's memory for a local
/// run and the job's `resources.mem` under Slurm; commands that only read the experiment accept
/// it, as another machine may run it (the check was once made at plan time, so `status` on a
/// small machine refused an experiment meant for a larger one).
#[test]
fn a_batch_beyond_the_memory_where_it_computes_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let toml = |size: usize, batch: usize, widths: &str, mem: &str| {
        let train = if batch > 10_000 { 70_000 } else { 2_000 };
        format!(
            "[experiment]\nname = \"bad\"\nseed = 0\n\n[stages.shapes]\nop = \"dataset\"\nname = \"synthetic\"\n\
             size = {size}\ntrain_size = {train}\ntest_size = 40\n\n[stages.net]\nop = \"train\"\n\
             images = \"shapes.images\"\nlabels = \"shapes.labels\"\narch = \"resnet_tiny\"\n{widths}\
             epochs = 2\nbatch_size = {batch}\n{mem}"
        )
    };
    // Exit 2, its message returned.
    let refused = |cache: &Path, args: &[&str]| {
        let out = cfrun(cache, args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        err
    };
    let file = dir.path().join("batch.toml");
    std::fs::write(&file, toml(64, 65536, "widths = [4096, 4096, 4096, 4096]\n", "")).unwrap();
    let cache = dir.path().join("cache");
    let err = refused(&cache, &["run", file.to_str().unwrap(), "--device", "cpu"]);
    assert!(err.contains("a batch of 65536 examples of 64x64 through `resnet_tiny` keeps at least 18 TB"), "{err}");
    assert!(err.contains("more than this machine's") && err.contains("batch.toml:19:"), "{err}");
    assert!(err.contains("help: one example alone keeps") || err.contains("help: use at most"), "{err}");
    assert!(!cache.exists(), "a refused run created a cache");
    let status = cfrun(&cache, &["status", file.to_str().unwrap()]);
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));

    // Under Slurm the job's memory counts: this batch fits any machine that runs the tests, not
    // the 1 MiB the job asks for. Refused before sbatch is looked for.
    std::fs::write(&file, toml(16, 64, "", "\n[stages.net.resources]\nmem = \"1M\"\n")).unwrap();
    let err = refused(&cache, &["run", file.to_str().unwrap(), "--executor", "slurm"]);
    assert!(err.contains("more than the job's (resources.mem) 1 MB of memory"), "{err}");
    assert!(err.contains("help: use at most ") && err.contains(" examples per batch there"), "{err}");
    assert!(!cache.exists(), "a refused run created a cache");

    // `cfrun exec FILE INSTANCE` (a job started by hand) checks the same before it trains: its
    // 2,000 examples of 16x16 through 4096-wide layers keep tens of GB.
    std::fs::write(&file, toml(16, 2_000, "widths = [4096, 4096, 4096, 4096]\n", "")).unwrap();
    let shapes = cfrun(&cache, &["exec", file.to_str().unwrap(), "shapes", "--device", "cpu"]);
    assert!(shapes.status.success(), "{}", stderr(&shapes));
    let err = refused(&cache, &["exec", file.to_str().unwrap(), "net", "--device", "cpu"]);
    assert!(err.contains("a batch of 2000 examples of 16x16") && err.contains("more than this machine's"), "{err}");

    // Weights that cannot fit, whatever the batch: 4 x 64 blocks of 8192 channels (it ended in an
    // allocation abort while the network was built).
    let huge = "widths = [8192, 8192, 8192, 8192]\nblocks = [64, 64, 64, 64]\n";
    std::fs::write(&file, toml(16, 1, huge, "")).unwrap();
    let fresh = dir.path().join("fresh");
    let err = refused(&fresh, &["run", file.to_str().unwrap(), "--device", "cpu"]);
    assert!(err.contains("has at least 137438953472 weights, 3 f32 copies of which take 2 TB"), "{err}");
    assert!(err.contains("batch.toml:17:") && err.contains("help: use narrower widths"), "{err}");
    assert!(!fresh.exists(), "a refused run created a cache");
}

/// `CFRUN_TRAIN_PROFILE=1` logs, per epoch, each phase's issue and wait time per step (the GPU
/// session's profile where nsys is absent), and changes no artifact; a bad value is refused.
#[test]
fn the_step_profile_is_logged_per_epoch_and_changes_no_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prof.toml");
    std::fs::write(&file, tiny_training("prof", 32, "batch_size = 16\n")).unwrap();
    let run = |cache: &Path, value: &str| {
        Command::new(env!("CARGO_BIN_EXE_cfrun"))
            .args(["run", file.to_str().unwrap(), "--cache"])
            .arg(cache)
            .env("CFRUN_LOG", "info")
            .env("CFRUN_TRAIN_PROFILE", value)
            .output()
            .expect("cfrun starts")
    };
    let (plain, profiled) = (dir.path().join("plain"), dir.path().join("profiled"));
    let a = run(&plain, "0");
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(!stderr(&a).contains("step profile"), "{}", stderr(&a));
    let b = run(&profiled, "1");
    let err = stderr(&b);
    assert!(b.status.success(), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("step profile")).collect();
    assert_eq!(lines.len(), 2, "one line per epoch: {err}");
    for phase in ["batch=", "forward=", "backward=", "update="] {
        assert!(lines[0].contains(phase) && lines[0].contains("steps=2"), "{}", lines[0]);
    }
    assert_eq!(objects(&plain), objects(&profiled), "the profile changed an artifact");
    let bad = run(&dir.path().join("bad"), "yes");
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("CFRUN_TRAIN_PROFILE=\"yes\""), "{}", stderr(&bad));
}

/// A process-wide A/B switch read from the environment (`nn/pipeline.rs`, `nn/sgd/update.rs`).
struct Switch<'a> {
    /// The variable.
    env: &'a str,
    /// The debug log line that names the choice: `... {log} {key}={Choice}`.
    log: &'a str,
    key: &'a str,
    /// The choice logged when the variable is unset (on the CPU).
    default: &'a str,
    /// Each value and the choice it logs.
    values: &'a [(&'a str, &'a str)],
    /// A value that names no choice, and the start of the error that refuses it.
    bad: (&'a str, &'a str),
}

/// Runs `file` with `switch` unset and at each of its values, each in a cache of its own under
/// `dir` (named after `tag`): every run logs its choice and makes the unset run's objects bit
/// for bit; the bad value is refused with exit 2 before anything runs.
fn assert_switch_keeps_the_bits(dir: &Path, tag: &str, file: &Path, switch: &Switch) {
    let run = |cache: &Path, value: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cfrun"));
        cmd.args(["run", file.to_str().unwrap(), "--cache"]).arg(cache).env("CFRUN_LOG", "cfrun=debug");
        if let Some(v) = value {
            cmd.env(switch.env, v);
        }
        cmd.output().expect("cfrun starts")
    };
    let logs = |out: &Output, shown: &str| {
        let suffix = format!("{}={shown}", switch.key);
        stderr(out).lines().any(|l| l.contains(switch.log) && l.ends_with(&suffix))
    };
    let default = dir.join(format!("{tag}-default"));
    let a = run(&default, None);
    assert!(a.status.success() && logs(&a, switch.default), "{tag}: {}", stderr(&a));
    for (value, shown) in switch.values {
        let cache = dir.join(format!("{tag}-{value}"));
        let b = run(&cache, Some(value));
        assert!(b.status.success() && logs(&b, shown), "{tag}, {value}: {}", stderr(&b));
        assert_eq!(objects(&default), objects(&cache), "{tag}: {}={value} changed an artifact", switch.env);
    }
    let bad = run(&dir.join(format!("{tag}-bad")), Some(switch.bad.0));
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains(switch.bad.1), "{}", stderr(&bad));
}

/// `CFRUN_TRAIN_PIPELINE` (the GPU bench's A/B of the resident pipeline's two changes) chooses
/// how batches reach the network, on the CPU too, and every choice trains the same bits, for
/// labels and for tag sets (spread on the device by the resident pipeline); a name that is no
/// pipeline is refused before anything runs.
#[test]
fn the_batch_pipelines_train_the_same_bits() {
    let dir = tempfile::tempdir().unwrap();
    let augment = "batch_size = 16\ncrop_padding = 2\nhflip = true\n";
    let tags = tiny_training("pipe", 32, augment).replace("labels = \"shapes.labels\"", "labels = \"tags.labels\"")
        + "\n[stages.tags]\nop = \"weak_tags\"\nlabels = \"shapes.labels\"\nsynonyms = 2\npolysemous = 1\n\
           nonvisual = 1\nnoise = 0.2\npolysemy = 0.3\nextra = 0.5\ndrop = 0.1\nnonvisual_rate = 0.3\n";
    let switch = Switch {
        env: "CFRUN_TRAIN_PIPELINE",
        log: "batch pipeline",
        key: "pipeline",
        default: "Host",
        values: &[("resident-sync", "ResidentSynced"), ("resident", "Resident"), ("host", "Host")],
        bad: ("device", "CFRUN_TRAIN_PIPELINE=\"device\": expected `host`"),
    };
    for (name, text) in [("labels", tiny_training("pipe", 32, augment)), ("tags", tags)] {
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, text).unwrap();
        assert_switch_keeps_the_bits(dir.path(), name, &file, &switch);
    }
}

/// A `code` file that is a symbolic link is refused before anything runs, at its entry, with
/// what to list instead (cfrun hashes files without following links).
#[test]
fn a_code_file_that_is_a_link_is_refused_with_what_to_list() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("train.py"), "print(1)\n").unwrap();
    std::os::unix::fs::symlink("train.py", dir.path().join("link.py")).unwrap();
    let toml = "[experiment]\nname = \"link\"\nseed = 0\n\n[stages.cmd]\nop = \"command\"\nargv = [\"true\"]\n\
                code = [\"train.py\", \"link.py\"]\noutputs = { m = \"metrics\" }\n";
    std::fs::write(dir.path().join("link.toml"), toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cfrun"))
        .args(["run", "link.toml", "--cache", "cache"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`code[1]` = \"link.py\": is a symbolic link; list the file it points to"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("cache"), "not a cache matter: {}", stderr(&out));
}

/// The process-wide CUDA switches, `CFRUN_CUDA_EVENTS` (`exec/cuda_events.rs`, cudarc's event
/// tracking), `CFRUN_CUDA_POOL` (`exec/cuda_pool.rs`, the driver's memory pool) and
/// `CFRUN_CUDA_PARAMS` (`nn/cuda_params.rs`, candle's upload cache), the GPU bench's A/Bs, are
/// read before anything runs: each of their values is accepted and leaves the objects as they
/// are (on the CPU there are no CUDA events, pools or uploads to change), any other value
/// is refused with exit 2, naming the variable and the valid values.
#[test]
fn the_cuda_switches_are_checked_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.toml");
    std::fs::write(&file, tiny_training("events", 32, "batch_size = 16\n")).unwrap();
    let run = |cache: &str, setting: Option<(&str, &str)>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cfrun"));
        cmd.args(["run", file.to_str().unwrap(), "--cache"]).arg(dir.path().join(cache));
        if let Some((var, value)) = setting {
            cmd.env(var, value);
        }
        cmd.output().expect("cfrun starts")
    };
    let plain = run("plain", None);
    assert!(plain.status.success(), "{}", stderr(&plain));
    let switches = [
        ("CFRUN_CUDA_EVENTS", ["track", "off"], "`track` or `off`"),
        ("CFRUN_CUDA_POOL", ["release", "keep"], "`release` or `keep`"),
        ("CFRUN_CUDA_PARAMS", ["upload", "cached"], "`upload` or `cached`"),
    ];
    for (var, values, valid) in switches {
        for value in values {
            let cache = format!("{var}-{value}");
            let out = run(&cache, Some((var, value)));
            assert!(out.status.success(), "{var}={value}: {}", stderr(&out));
            assert_eq!(objects(&dir.path().join("plain")), objects(&dir.path().join(&cache)), "{var}={value}");
        }
        let bad = run("bad", Some((var, "none")));
        assert_eq!(bad.status.code(), Some(2), "{var}");
        assert!(stderr(&bad).contains(&format!("{var}=\"none\": expected {valid}")), "{}", stderr(&bad));
        assert!(!dir.path().join("bad").exists(), "{var}: refused before the cache was made");
    }
}

/// `CFRUN_SGD_UPDATE` chooses how the optimiser writes its update (`nn/sgd/update.rs`; flat is
/// the GPU's default): the choice is logged, every one makes the default's objects bit for bit,
/// and a wrong name is refused with exit 2 before anything runs.
#[test]
fn the_sgd_updates_train_the_same_bits() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sgd.toml");
    std::fs::write(&file, tiny_training("sgd", 32, "batch_size = 16\n")).unwrap();
    let switch = Switch {
        env: "CFRUN_SGD_UPDATE",
        log: "sgd update",
        key: "update",
        default: "Slices",
        values: &[("flat", "Flat"), ("per-param", "PerParam"), ("slices", "Slices")],
        bad: ("fused", "CFRUN_SGD_UPDATE=\"fused\": expected `slices`"),
    };
    assert_switch_keeps_the_bits(dir.path(), "sgd", &file, &switch);
}

/// `CFRUN_BN_STATS` chooses how batch norm's running statistics are updated
/// (`nn/running_stats.rs`; flat is the GPU's default): the choice is logged, each makes the
/// default's objects bit for bit, and a wrong name is refused with exit 2 before anything runs.
/// On the CPU the layers' own kernels update their statistics inside the op, so no layer hands
/// over here; the flat path's bits are `nn::tests::flat_running_statistics_train_the_per_layer_bits`'s
/// (candle's generic batch norm, as off the CPU) and `check-device`'s on a GPU.
#[test]
fn the_running_statistics_updates_train_the_same_bits() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stats.toml");
    std::fs::write(&file, tiny_training("stats", 32, "batch_size = 16\n")).unwrap();
    let switch = Switch {
        env: "CFRUN_BN_STATS",
        log: "bn running statistics",
        key: "update",
        default: "PerLayer",
        values: &[("flat", "Flat"), ("per-layer", "PerLayer")],
        bad: ("fused", "CFRUN_BN_STATS=\"fused\": expected `per-layer` or `flat`"),
    };
    assert_switch_keeps_the_bits(dir.path(), "stats", &file, &switch);
}

/// Writes DIR/jobs.toml: tiny shapes, then two replicates of a resnet_tiny training (2 epochs)
/// and of an extraction from it.
fn two_replicates_of_shapes_net_feats(dir: &Path) -> PathBuf {
    let file = dir.join("jobs.toml");
    let text = "[experiment]\nname = \"jobs\"\nseed = 0\nreplicates = 2\n\n[stages.shapes]\nop = \"dataset\"\n\
                name = \"synthetic\"\ntrain_size = 64\ntest_size = 16\n\n[stages.net]\nop = \"train\"\n\
                images = \"shapes.images\"\nlabels = \"shapes.labels\"\narch = \"resnet_tiny\"\nepochs = 2\n\n\
                [stages.feats]\nop = \"extract\"\nmodel = \"net.model\"\nimages = \"shapes.images\"\ntap = \"res5\"\n";
    std::fs::write(&file, text).unwrap();
    file
}

/// Jobs side by side on the CPU each get a thread pool of their own (`exec/local.rs`), those
/// that start together splitting the free threads, so a lone job gets them all; the artifacts
/// are the bits one job at a time gives.
#[test]
fn parallel_jobs_give_the_artifacts_of_one_job() {
    let dir = tempfile::tempdir().unwrap();
    let file = two_replicates_of_shapes_net_feats(dir.path());
    // Four threads, so that every share is visible whatever the machine: `starts on N of 4`.
    let run = |cache: &Path, jobs: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_cfrun"))
            .args(["run", file.to_str().unwrap(), "--jobs", jobs, "--cache"])
            .arg(cache)
            .env("CFRUN_LOG", "cfrun=debug")
            .env("RAYON_NUM_THREADS", "4")
            .output()
            .expect("cfrun starts");
        assert!(out.status.success(), "{}", stderr(&out));
        let err = stderr(&out);
        // "... DEBUG INSTANCE starts on N of 4 threads"
        let starts: Vec<(&str, usize)> = err
            .lines()
            .filter_map(|l| l.split_once(" starts on "))
            .map(|(head, tail)| (head.rsplit(' ').next().unwrap(), tail.split(' ').next().unwrap().parse().unwrap()))
            .collect();
        let width = |stage: &str| starts.iter().filter(|(name, _)| name.starts_with(stage)).map(|&(_, n)| n).collect();
        (width("shapes"), width("net["), width("feats["))
    };
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    // One at a time: every job on all four threads.
    assert_eq!(run(&one, "1"), (vec![4], vec![4, 4], vec![4, 4]));
    // Two at a time: the lone data set on all four, the replicates side by side on two each;
    // an extraction gets the threads free when its network ends: two, or four once the other
    // replicate is done (which depends on timing).
    let (shapes, nets, feats) = run(&two, "2");
    assert_eq!((shapes, nets), (vec![4], vec![2, 2]));
    assert!(feats.len() == 2 && feats.iter().all(|&n| n == 2 || n == 4), "{feats:?}");
    let (oa, ob) = (objects(&one), objects(&two));
    assert_eq!(oa.len(), 5, "{oa:?}");
    assert_eq!(oa, ob);
    // No jobs at all would run nothing: refused, not read as one.
    let none = cfrun(&dir.path().join("none"), &["run", file.to_str().unwrap(), "--jobs", "0"]);
    assert_eq!(none.status.code(), Some(2), "{}", stderr(&none));
    assert!(stderr(&none).contains("'--jobs <JOBS>': must be at least 1"), "{}", stderr(&none));
}

/// `--executor processes` runs each job as a `cfrun exec` child on its share of the threads and
/// publishes the bits the threads of one process give; a rerun starts no child. A stage that
/// fails in its child is reported with the child's own error, one whose child dies with what
/// the child printed last, and only their dependants are skipped.
#[test]
fn jobs_run_as_processes_give_the_artifacts_of_threads_and_report_their_deaths() {
    let dir = tempfile::tempdir().unwrap();
    let file = two_replicates_of_shapes_net_feats(dir.path());
    let run_file = |file: &Path, cache: &Path, extra: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cfrun"))
            .args(["run", file.to_str().unwrap(), "--json", "--jobs", "2", "--cache"])
            .arg(cache)
            .args(extra)
            .env("CFRUN_LOG", "cfrun=debug")
            .env("RAYON_NUM_THREADS", "4")
            .env_remove("CFRUN_FAILPOINT_PANIC")
            .env_remove("CFRUN_FAILPOINT_ABORT")
            .envs(env.iter().copied())
            .output()
            .expect("cfrun starts");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out, v)
    };
    let run = |cache: &Path, extra: &[&str], env: &[(&str, &str)]| run_file(&file, cache, extra, env);
    // "... DEBUG INSTANCE runs in process PID on N threads", logged by the driver.
    let children = |err: &str| -> Vec<(String, usize)> {
        err.lines()
            .filter_map(|l| l.split_once(" runs in process "))
            .map(|(head, tail)| {
                let threads = tail.split(' ').nth(2).unwrap().parse().unwrap();
                (head.rsplit(' ').next().unwrap().to_string(), threads)
            })
            .collect()
    };
    let (threads, processes) = (dir.path().join("threads"), dir.path().join("processes"));
    let (out, _) = run(&threads, &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (out, v) = run(&processes, &["--executor", "processes"], &[]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(v["instances"].as_array().unwrap().iter().all(|i| i["outcome"] == "ran"), "{v}");
    let started = children(&err);
    assert_eq!(started.len(), 5, "every instance in a child of its own: {err}");
    // The lone data set gets all four threads, the two networks that start together two each.
    assert!(started.contains(&("shapes".to_string(), 4)), "{started:?}");
    let nets: Vec<usize> = started.iter().filter(|(n, _)| n.starts_with("net[")).map(|&(_, t)| t).collect();
    assert_eq!(nets, vec![2, 2], "{started:?}");
    // And the children took them: each network's provenance records the threads it ran on.
    let mut seen = 0;
    for key in std::fs::read_dir(processes.join("keys")).unwrap() {
        let v: Value = serde_json::from_slice(&std::fs::read(key.unwrap().path()).unwrap()).unwrap();
        if v["provenance"]["instance"].as_str().is_some_and(|n| n.starts_with("net[")) {
            assert_eq!(v["provenance"]["threads"], 2, "{v}");
            seen += 1;
        }
    }
    assert_eq!(seen, 2);
    // The children's own log lines come back through the driver.
    assert!(err.contains("epoch 2/2"), "{err}");
    assert_eq!(objects(&threads), objects(&processes));
    let (out, v) = run(&processes, &["--executor", "processes"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(v["instances"].as_array().unwrap().iter().all(|i| i["outcome"] == "cached"), "{v}");
    assert!(children(&stderr(&out)).is_empty(), "a cached instance starts no child: {}", stderr(&out));

    // One network's stage fails (a panic, caught in the child), the other's child aborts.
    let broken = dir.path().join("broken");
    let env = [("CFRUN_FAILPOINT_PANIC", "net[replicate=0]"), ("CFRUN_FAILPOINT_ABORT", "net[replicate=1]")];
    let (out, v) = run(&broken, &["--executor", "processes"], &env);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(outcome_of(&v, "shapes").0, "ran", "{v}");
    let (outcome, why) = outcome_of(&v, "net[replicate=0]");
    assert_eq!(outcome, "failed", "{v}");
    assert!(why.contains("panicked: failpoint CFRUN_FAILPOINT_PANIC"), "the child's own error: {why}");
    // Said by the driver (its log and summary), not a third time by the child itself.
    assert!(!err.contains("error: net[replicate=0] failed"), "{err}");
    let (outcome, why) = outcome_of(&v, "net[replicate=1]");
    assert_eq!(outcome, "failed", "{v}");
    assert!(why.contains("`cfrun exec` was killed by SIGABRT") && why.contains("(signal 6)"), "{why}");
    assert!(why.contains("its last lines:") && why.contains("failpoint CFRUN_FAILPOINT_ABORT: aborting"), "{why}");
    for r in 0..2 {
        assert_eq!(outcome_of(&v, &format!("feats[replicate={r}]")).0, "skipped", "{v}");
    }
    // A child that dies after publishing (the OOM killer, say): the cache is the truth, so the
    // instance ran and what depends on it goes on. Before, it failed and its dependants were skipped.
    let late = dir.path().join("late");
    let (out, v) = run(&late, &["--executor", "processes"], &[("CFRUN_FAILPOINT_ABORT", "net[replicate=0]@published")]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("after publishing; the result is used"), "{err}");
    assert_eq!(outcome_of(&v, "net[replicate=0]").0, "ran", "{v}");
    assert_eq!(outcome_of(&v, "feats[replicate=0]").0, "ran", "{v}");
    assert_eq!(objects(&late), objects(&threads));
    // Two stages of one recipe, ready together: one child computes it, the other job waits for
    // it and is served from the cache without a child of its own.
    let twins = dir.path().join("twins.toml");
    let net =
        "op = \"train\"\nimages = \"shapes.images\"\nlabels = \"shapes.labels\"\narch = \"resnet_tiny\"\nepochs = 2\n";
    let text = format!(
        "[experiment]\nname = \"twins\"\nseed = 0\n\n[stages.shapes]\nop = \"dataset\"\nname = \"synthetic\"\n\
         train_size = 32\ntest_size = 8\n\n[stages.a]\n{net}\n[stages.b]\n{net}"
    );
    std::fs::write(&twins, text).unwrap();
    let (out, v) = run_file(&twins, &dir.path().join("twins"), &["--executor", "processes"], &[]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let mut outcomes = [outcome_of(&v, "a").0, outcome_of(&v, "b").0];
    outcomes.sort();
    assert_eq!(outcomes, ["cached", "ran"], "{v}");
    let names: Vec<String> = children(&err).into_iter().map(|(name, _)| name).collect();
    assert_eq!(names.len(), 2, "shapes and one of the twins: {names:?}");
    assert!(names.contains(&"shapes".to_string()), "{names:?}");
}

/// Ctrl-C during a run of jobs as processes (sent to the whole process group, as a terminal
/// does) ends it with its summary, the running job reported interrupted, not failed, and stops
/// the children and what their stages started. A driver killed outright takes them along too.
#[test]
fn ctrl_c_stops_the_jobs_run_as_processes_and_what_they_started() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (cache, extra) = (d.join("cache"), ["--executor", "processes"]);
    let outlives_no_run = |pid: &str, what: &str| gone_within_10_s(pid, &format!("{what} {pid} outlived the run"));
    let (child, sleep_pid) = start_a_sleeping_command(d, &cache, &extra);
    let group = format!("-{}", child.id());
    let sent = Command::new("kill").args(["-INT", "--", &group]).status().unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted: stopping 1 running instance process(es)"), "{err}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("--json prints its object after a Ctrl-C");
    assert_eq!(outcome_of(&v, "shapes").0, "ran", "{v}");
    assert_eq!(outcome_of(&v, "slow"), ("skipped".into(), "interrupted while running or queued to run".into()), "{v}");
    outlives_no_run(&sleep_pid, "the command stage's process");
    // Killed outright: the child learns it from its closed stdin and ends with its stage.
    let (mut child, sleep_pid) = start_a_sleeping_command(d, &cache, &extra);
    let exec_pid = job_exec_pid(&cache);
    child.kill().unwrap();
    child.wait().unwrap();
    outlives_no_run(&exec_pid, "the job's `cfrun exec`");
    outlives_no_run(&sleep_pid, "the command stage's process");
    // A data set's downloader has no watcher of its own: the child's whole group goes, on
    // Ctrl-C and with a killed driver alike. Here `curl` (found on PATH) hangs.
    use std::os::unix::process::CommandExt;
    let (pid_file, path) = hanging_curl(d);
    for ctrl_c in [true, false] {
        let _ = std::fs::remove_file(&pid_file);
        let mut child = Command::new(env!("CARGO_BIN_EXE_cfrun"))
            .arg(d.join("fetch.toml"))
            .args(extra)
            .arg("--cache")
            .arg(d.join("fetch-cache"))
            .env("PATH", &path)
            .env_remove("CFRUN_DATA")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let curl_pid = wait_for(60, "the download to start", || {
            std::fs::read_to_string(&pid_file).ok().map(|t| t.trim().to_string())
        });
        if ctrl_c {
            let group = format!("-{}", child.id());
            assert!(Command::new("kill").args(["-INT", "--", &group]).status().unwrap().success());
        } else {
            child.kill().unwrap();
        }
        child.wait().unwrap();
        outlives_no_run(&curl_pid, "the data set's downloader");
    }
}

/// A dataset's or a video's `path` that names no folder is refused by `run` before anything runs
/// (exit 2, at the field), not skipped for the registries; commands that only read the experiment
/// still work, so a folder moved after a run does not lock `status` out.
#[test]
fn a_missing_dataset_folder_is_refused_by_run_but_not_by_status() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let stages = [
        "[stages.fashion]\nop = \"dataset\"\nname = \"fashion-mnist\"\npath = \"data/fashoin\"\ntrain_size = 100\n\
         test_size = 40\n",
        "[stages.clips]\nop = \"video\"\nsource = \"fashion-mnist\"\npath = \"data/fashoin\"\ntrain_size = 100\n\
         test_size = 40\n",
    ];
    for stage in stages {
        let file = dir.path().join("path.toml");
        std::fs::write(&file, format!("[experiment]\nname = \"path\"\nseed = 0\n\n{stage}")).unwrap();
        let out = cfrun(&cache, &["run", file.to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("`path` = \"data/fashoin\" is not a folder") && err.contains("path.toml:8:"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!cache.join("keys").exists() || objects(&cache).is_empty(), "nothing ran");
        let status = cfrun(&cache, &["status", file.to_str().unwrap()]);
        assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    }
}

/// What the report ops publish for fixed metrics, and the label and permutation ops for fixed
/// inputs, pinned beside each op's version: a change to the bytes of a table, claims page, figure,
/// label set or permutation set must come with a new op version, or a cache made before it serves
/// the old bytes under the same key (claims and table both missed one, found on 2026-12-04). On a
/// failure: if the change is meant, bump `version` in the op's file with a comment saying why, and
/// put the new version and object here. (Ops computing on floats through kernels chosen by the CPU
/// are left out.)
const OUTPUT_PINS: &[(&str, &str, u64, &str)] = &[
    ("noisy[replicate=1]", "label_noise", 1, "blake3:10c23bcf81013b482dcfe5d90e9b9f66c7cbb6a1a2b9f6b83841d1a4ce03c88e"),
    ("perms", "permutations", 1, "blake3:46a97449aacf5e4d4f6330a1d7c9221f8fc1ab31d30140ceb9246a6c0bc83f9e"),
    ("tags[replicate=2]", "weak_tags", 1, "blake3:200fa7c27489b4172b41544f6c08f260502e0a00201df1af1d826b9e6ae256e8"),
    ("figure", "plot", 7, "blake3:dadf34772b9949b89121acc5668bc85f78498efbae6180fc71d74e282f50a8d2"),
    ("results", "table", 8, "blake3:eba4040d7530548b2e564f0d20a7a678e502b7d8f006eb3a95336e398d7608a0"),
    ("untitled", "table", 8, "blake3:7ffe9b11a61191a1d08f56dfa5efdf4e4b6428a6149be1761b68c6599c917cdf"),
    ("verdicts", "claims", 18, "blake3:99e64a94034f93fce26210a1883e77733d4b793c4eb9ac30230e820bae369980"),
];

/// Three replicates of three fixed series (command stages writing their metrics from the axis and
/// a digit of the seed: the last, the second and the third from last, so that their differences
/// vary from replicate to replicate, except a slope that is a tie), then every report op over
/// them (an untitled table, a paper value in a cell, a `within` claim, an order reversed in one
/// of its steps, and a tie among them); the label
/// ops on a generated data set's labels; and a Jigsaw permutation set: `OUTPUT_PINS`.
const PINNED_STUDY: &str = r#"[experiment]
name = "pins"
seed = 0
replicates = 3

[sweep]
p = [0, 50]

[stages.pre]
op = "command"
argv = ["sh", "-c", 'mkdir -p "$0"; d=$(printf %s "$2" | tail -c 1); printf "{{\"values\":{{\"top1\":%s.%s}}}}" $((70 - $1 / 5)) "$d" > "$0/metrics.json"', "{out.m}", "${p}", "{seed}"]
outputs = { m = "metrics" }

[stages.cf]
op = "command"
argv = ["sh", "-c", 'mkdir -p "$0"; d=$(printf %s "$2" | tail -c 2 | head -c 1); printf "{{\"values\":{{\"top1\":%s.%s}}}}" $((72 - $1 / 10)) "$d" > "$0/metrics.json"', "{out.m}", "${p}", "{seed}"]
outputs = { m = "metrics" }

[stages.floor]
op = "command"
argv = ["sh", "-c", 'mkdir -p "$0"; d=$(printf %s "$2" | tail -c 3 | head -c 1); printf "{{\"values\":{{\"top1\":%s.%s}}}}" $((68 - $1 / 25)) "$d" > "$0/metrics.json"', "{out.m}", "${p}", "{seed}"]
outputs = { m = "metrics" }

# Ops of integer draws on labels alone (the images' bytes, drawn with floats, are not pinned).
[stages.shapes]
op = "dataset"
name = "synthetic"
classes = 6
size = 8
train_size = 60
test_size = 12

[stages.noisy]
op = "label_noise"
labels = "shapes.labels"
percent = 50

[stages.perms]
op = "permutations"
count = 12

[stages.tags]
op = "weak_tags"
labels = "shapes.labels"
synonyms = 2
polysemous = 1
nonvisual = 2
noise = 0.3
polysemy = 0.3
extra = 0.2
drop = 0.1

[stages.results]
op = "table"
inputs = ["pre.m", "cf.m"]
title = "Pinned top-1 (%)"
rows = ["source"]
columns = ["p"]
metrics = ["top1"]
labels = { pre = "N_pre", cf = "N_cf" }
paper = [{ row = "N_cf", column = "p=50", value = 66.6 }]

[stages.untitled]
op = "table"
inputs = ["pre.m", "cf.m"]
rows = ["p"]
columns = ["source"]
metrics = ["top1"]

[stages.figure]
op = "plot"
inputs = ["pre.m", "cf.m"]
title = "Pinned figure"
x = "p"
series = ["source"]
metric = "top1"
x_label = "p"
y_label = "top-1 (%)"

[stages.verdicts]
op = "claims"
inputs = ["pre.m", "cf.m", "floor.m"]
title = "Pinned claims"
metric = "top1"
labels = { pre = "N_pre", cf = "N_cf" }

[[stages.verdicts.claims]]
name = "cf_above"
section = "pins"
statement = "N_cf above N_pre"
a = { source = "cf" }
b = { source = "pre" }
each = ["p"]
expect = "greater"
paper = "-"

[[stages.verdicts.claims]]
name = "drops_less"
section = "pins"
statement = "N_cf drops less with p"
kind = "trend"
a = { source = "cf" }
b = { source = "pre" }
along = "p"
expect = "increasing"
paper = "-"

[[stages.verdicts.claims]]
name = "close"
section = "pins"
statement = "N_pre within 3 points of N_cf"
a = { source = "pre" }
b = { source = "cf" }
each = ["p"]
expect = "within"
margin = 3.0
paper = "-"

[[stages.verdicts.claims]]
name = "between"
section = "pins"
statement = "N_pre between N_cf and the floor (reversed in its second step at p = 50)"
kind = "order"
series = [{ source = "cf" }, { source = "pre" }, { source = "floor" }]
each = ["p"]
expect = "greater"
paper = "-"
"#;

#[test]
fn pinned_ops_change_their_bytes_only_with_their_version() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pins.toml");
    std::fs::write(&file, PINNED_STUDY).unwrap();
    let cache = dir.path().join("cache");
    let outcomes = run_json(&cache, &file, &[]);
    assert!(outcomes.values().all(|o| o == "ran"), "{outcomes:?}");
    let published: BTreeMap<String, (String, u64, String)> = std::fs::read_dir(cache.join("keys"))
        .unwrap()
        .map(|e| {
            let v: Value = serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
            let p = &v["provenance"];
            let fact = (
                p["op"].as_str().unwrap().to_string(),
                p["op_version"].as_u64().unwrap(),
                v["object"].as_str().unwrap().to_string(),
            );
            (p["instance"].as_str().unwrap().to_string(), fact)
        })
        .collect();
    let mut wrong = Vec::new();
    for &(instance, op, version, object) in OUTPUT_PINS {
        let (got_op, got_version, got_object) = &published[instance];
        assert_eq!(got_op, op, "{instance}");
        if (*got_version, got_object.as_str()) != (version, object) {
            let why = if *got_version == version {
                format!("its bytes changed but `version` did not: bump it in the {op} op's file, saying why, then pin")
            } else {
                "its version moved: pin".to_string()
            };
            wrong.push(format!("{instance} ({op}): {why} (\"{instance}\", \"{op}\", {got_version}, \"{got_object}\")"));
        }
    }
    assert!(wrong.is_empty(), "pinned ops:\n{}", wrong.join("\n"));
}

/// A folder where the gc gate's lock file goes leaves `gc` unable to keep later runs out: a run
/// still goes on (it needs no gate), but says so instead of logging it at debug level.
#[test]
fn a_run_that_cannot_pass_the_gc_gate_says_so() {
    let cache = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(cache.path().join("gc.lock")).unwrap();
    let out = cfrun(cache.path(), &[fixture("claims_tiny.toml").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("going on without the gate that keeps later runs out while `cfrun gc` waits"), "{err}");
    assert!(err.contains("gc.lock"), "{err}");
}

/// A cached result this process may not read is reported as such, by path, before anything is
/// computed, and left in place; it was taken for damage, evicted, and its inputs' work redone
/// before failing to replace it. As root (CI), the run reading it drops to user 65534, since
/// root reads anything.
#[test]
fn a_cached_result_cfrun_may_not_read_is_not_taken_for_damage() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The binary and the file where user 65534 can reach them.
    let (bin, file) = (root.join("cfrun"), root.join("claims_tiny.toml"));
    std::fs::copy(env!("CARGO_BIN_EXE_cfrun"), &bin).unwrap();
    std::fs::copy(fixture("claims_tiny.toml"), &file).unwrap();
    let cache = root.join("cache");
    let first = run_json(&cache, &file, &[]);
    assert_eq!(first.len(), 15, "{first:?}");
    let as_root = unsafe { libc::geteuid() } == 0;
    let cfrun_as_user = |before: &[&str], after: &[&str]| {
        let mut cmd = Command::new(&bin);
        cmd.args(before)
            .arg(&file)
            .args(after)
            .arg("--cache")
            .arg(&cache)
            .env("CFRUN_LOG", "info")
            .env_remove("CFRUN_CACHE");
        if as_root {
            cmd.uid(65534).gid(65534);
        }
        cmd.output().unwrap()
    };
    let run = || cfrun_as_user(&[], &[]);
    if as_root {
        let chown = Command::new("chown").args(["-R", "65534:65534"]).arg(&cache).status().unwrap();
        assert!(chown.success());
    }
    let show = cfrun(&cache, &["show", file.to_str().unwrap(), "noisy_labels[replicate=0]", "--json"]);
    let v: Value = serde_json::from_slice(&show.stdout).unwrap();
    let object = PathBuf::from(v[0]["object"].as_str().unwrap_or_else(|| panic!("{v}")));
    std::fs::set_permissions(&object, std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = run();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("FAILED noisy_labels[replicate=0]: cache: {}: Permission denied", object.display())),
        "{err}"
    );
    assert!(!err.contains("damaged") && !err.contains("running noisy"), "{err}");
    // `show` prints nothing of it and fails, as for damage.
    let shown = cfrun_as_user(&["show"], &["noisy_labels[replicate=0]"]);
    let err = stderr(&shown);
    assert_eq!(shown.status.code(), Some(1), "{err}");
    let said = format!("{err}{}", String::from_utf8_lossy(&shown.stdout));
    assert!(said.contains("cfrun may not read its cached result"), "{said}");
    std::fs::set_permissions(&object, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("0 ran, 15 cached"), "{}", stderr(&out));
}

/// A checkpoint left beside a published result (a run stopped between the two) goes at the next
/// run that serves the result, not only at `gc`.
#[test]
fn a_checkpoint_left_beside_a_published_result_goes_when_it_is_served() {
    let cache = tempfile::tempdir().unwrap();
    let file = fixture("train_tiny.toml");
    run_json(cache.path(), &file, &[]);
    let key = key_file(cache.path(), "model");
    let left = cache.path().join("checkpoints").join(key.file_stem().unwrap()).join("epoch-0001");
    std::fs::create_dir_all(&left).unwrap();
    std::fs::write(left.join("state.json"), b"{}").unwrap();
    let again = run_json(cache.path(), &file, &[]);
    assert!(again.values().all(|o| o == "cached"), "{again:?}");
    assert!(!left.parent().unwrap().exists(), "the checkpoint folder is still there");
}

/// A run prints its verdicts after the tables they judge, wherever the file declares them.
#[test]
fn verdicts_are_printed_after_the_tables_they_judge() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("claims_tiny.toml")).unwrap();
    let (start, end) = (text.find("[stages.results]").unwrap(), text.find("[stages.verdicts]").unwrap());
    let moved = format!("{}{}\n{}", &text[..start], &text[end..], &text[start..end]);
    let file = dir.path().join("claims_first.toml");
    std::fs::write(&file, moved).unwrap();
    let out = cfrun(&dir.path().join("cache"), &[file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    let at = |heading: &str| printed.find(heading).unwrap_or_else(|| panic!("no {heading} in {printed}"));
    assert!(at("## results") < at("## verdicts"), "{printed}");
}

/// A job's `cfrun exec` stopped on its own (SIGSTOP to it alone) is named with the command that
/// lets it go on, instead of the run waiting in silence; a Ctrl-C still ends the run and it.
#[test]
fn a_stopped_job_process_is_named_and_a_ctrl_c_still_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cache = d.join("cache");
    let (mut child, sleep_pid) = start_a_sleeping_command(d, &cache, &["--executor", "processes"]);
    let (lines, drain) = drain_stderr(&mut child);
    let exec_pid = job_exec_pid(&cache);
    assert!(Command::new("kill").args(["-STOP", &exec_pid]).status().unwrap().success());
    wait_for_line(&lines, "is stopped; the run waits for it", "the stopped child was not named");
    let group = format!("-{}", child.id());
    assert!(Command::new("kill").args(["-INT", "--", &group]).status().unwrap().success());
    let status = child.wait().unwrap();
    let err = drain.join().unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    let said =
        format!("slow: its `cfrun exec` process {exec_pid} is stopped; the run waits for it (`kill -CONT {exec_pid}`");
    assert_eq!(err.matches(&said).count(), 1, "said once: {err}");
    gone_within_10_s(&exec_pid, "the stopped `cfrun exec` outlived the run");
    gone_within_10_s(&sleep_pid, "the command stage's process outlived the run");
}

/// A data set's downloader (here a `curl` on PATH that hangs) dies with a cfrun killed outright
/// (SIGKILL) under the default executor: it was left running on, an orphan.
#[test]
fn a_download_dies_with_a_cfrun_killed_outright() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (pid_file, path) = hanging_curl(d);
    let mut child = Command::new(env!("CARGO_BIN_EXE_cfrun"))
        .arg(d.join("fetch.toml"))
        .arg("--cache")
        .arg(d.join("cache"))
        .env("PATH", &path)
        .env_remove("CFRUN_DATA")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let curl_pid =
        wait_for(60, "the download to start", || std::fs::read_to_string(&pid_file).ok().map(|t| t.trim().to_string()));
    child.kill().unwrap();
    child.wait().unwrap();
    gone_within_10_s(&curl_pid, "the downloader outlived a cfrun killed outright");
}

/// A Slurm driver on a training of 100,000 epochs, once it has seen the training's job run:
/// the driver, its stderr's lines and the thread that gathers them, and the job's id.
struct RunningJob {
    driver: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    drain: std::thread::JoinHandle<String>,
    id: String,
}

fn slurm_training_running(cache: &Path) -> RunningJob {
    let file = fixture("train_tiny.toml");
    let mut driver = spawn_slurm_driver(cache, &file, &["--set", "stages.model.epochs=100000"]);
    let (lines, drain) = drain_stderr(&mut driver);
    let (_, id) = wait_for(60, "the training job", || claimed_jobs(cache).into_iter().find(|(i, _)| i == "model"));
    wait_for_line(&lines, &format!("model: job {id} is running on "), "the driver never saw the job run");
    RunningJob { driver, lines, drain, id }
}

impl RunningJob {
    /// Runs `scontrol ARGS JOB`, which must succeed.
    fn scontrol(&self, args: &[&str]) {
        let out = Command::new("scontrol").args(args).arg(&self.id).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// Interrupts the driver: its exit code and its whole log.
    fn interrupt(mut self) -> (Option<i32>, String) {
        assert!(Command::new("kill").args(["-INT", &self.driver.id().to_string()]).status().unwrap().success());
        let ended = self.driver.wait().unwrap();
        let _ = Command::new("scancel").arg(&self.id).status();
        (ended.code(), self.drain.join().unwrap())
    }
}

/// A partition the cluster lacks, an empty one and an sbatch option cfrun gives every job itself
/// are refused with exit 2 before anything runs: `sbatch` refused each job after the stages
/// before it had run (exit 1), and `--output` sent the job's log where failures did not look.
#[test]
fn slurm_refuses_unknown_partitions_and_its_own_sbatch_options_before_anything_runs() {
    if !slurm_up("slurm_bad_options") {
        return;
    }
    let file = fixture("train_tiny.toml");
    let cache = tempfile::tempdir().unwrap();
    for (extra, said) in [
        (
            vec!["--partition", "nope"],
            "the cluster has no partition nope (executor.partition or --partition; its partitions: ",
        ),
        (vec!["--partition="], "--partition must not be empty"),
        (vec!["--sbatch-arg=--output=/tmp/x-%j.log"], "must be an option other than --output, which cfrun sets"),
        (vec!["--sbatch-arg="], "--sbatch-arg=: must be a non-empty sbatch option"),
    ] {
        let mut args = vec![file.to_str().unwrap(), "--executor", "slurm"];
        args.extend(extra.iter().copied());
        let out = cfrun(cache.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(said), "{extra:?}: {}", stderr(&out));
        let published = std::fs::read_dir(cache.path().join("objects")).map_or(0, |d| d.count());
        assert_eq!(published, 0, "{extra:?}: something ran");
    }
}

/// A job whose driver was killed outright (SIGKILL, its login node lost) is taken over by the
/// next driver on the cache, whose Ctrl-C then cancels it. Before, that driver followed the job
/// as another run's, and left it running to its time limit (12 h for a training) after its own
/// Ctrl-C, without a word.
#[test]
fn slurm_a_job_whose_driver_was_killed_is_taken_over_and_cancelled_on_ctrl_c() {
    if !slurm_up("slurm_takeover") {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let RunningJob { mut driver, drain, id, .. } = slurm_training_running(cache.path());
    driver.kill().unwrap();
    driver.wait().unwrap();
    drain.join().unwrap();
    let file = fixture("train_tiny.toml");
    let mut next = spawn_slurm_driver(cache.path(), &file, &["--set", "stages.model.epochs=100000"]);
    let (lines, next_log) = drain_stderr(&mut next);
    wait_for_line(&lines, &format!("taking over job {id}"), "the next driver did not take the job over");
    assert!(Command::new("kill").args(["-INT", &next.id().to_string()]).status().unwrap().success());
    let ended = next.wait().unwrap();
    let log = next_log.join().unwrap();
    let listed = still_queued(&id);
    let _ = Command::new("scancel").arg(&id).status();
    assert_eq!(ended.code(), Some(130), "{log}");
    assert!(listed.is_empty(), "the job outlived the Ctrl-C of the driver that took it over: {listed}\n{log}");
    assert!(claimed_jobs(cache.path()).is_empty(), "{log}");
}

/// A job put back in the queue after it started (a node that went down, a preemption; here
/// `scontrol requeue`) is named, instead of the driver waiting on it without a word.
#[test]
fn slurm_names_a_job_requeued_after_it_started() {
    if !slurm_up("slurm_requeued") {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let job = slurm_training_running(cache.path());
    job.scontrol(&["requeue"]);
    wait_for_line(&job.lines, "is back in the queue after it had started", "the requeue was not named");
    let id = job.id.clone();
    let (code, log) = job.interrupt();
    assert_eq!(code, Some(130), "{log}");
    assert_eq!(log.matches(&format!("job {id} is back in the queue")).count(), 1, "{log}");
}

/// A job held in `SPECIAL_EXIT` (requeued and held, as an epilog does on some exit codes) is
/// named requeued, then held, and waited for; it was taken for ended and its instance failed.
#[test]
fn slurm_waits_for_a_job_held_in_special_exit() {
    if !slurm_up("slurm_special_exit") {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let mut job = slurm_training_running(cache.path());
    job.scontrol(&["requeuehold", "state=specialexit"]);
    wait_for_line(&job.lines, &format!("model: job {} is held (", job.id), "the hold was not named");
    // Still waited for: the driver neither fails the instance nor ends.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(job.driver.try_wait().unwrap().is_none(), "the driver ended while the job was held");
    let id = job.id.clone();
    let (code, log) = job.interrupt();
    assert_eq!(code, Some(130), "{log}");
    assert!(!log.contains("failed"), "{log}");
    assert_eq!(log.matches(&format!("job {id} is back in the queue")).count(), 1, "{log}");
}

/// Makes `DIR/fetch.toml` (MNIST alone) and a `curl` in `DIR/bin` that writes its pid to the
/// returned file and hangs; returns that file and a PATH that finds that `curl` first.
fn hanging_curl(d: &Path) -> (PathBuf, String) {
    use std::os::unix::fs::PermissionsExt;
    let (bin, pid_file) = (d.join("bin"), d.join("curl.pid"));
    std::fs::create_dir(&bin).unwrap();
    let script =
        format!("#!/bin/sh\necho $$ > '{p}.part' && mv '{p}.part' '{p}'\nexec sleep 300\n", p = pid_file.display());
    std::fs::write(bin.join("curl"), script).unwrap();
    std::fs::set_permissions(bin.join("curl"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        d.join("fetch.toml"),
        "[experiment]\nname = \"fetch\"\n\n[stages.digits]\nop = \"dataset\"\nname = \"mnist\"\n",
    )
    .unwrap();
    (pid_file, format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()))
}

/// The pid of the `cfrun exec` running a job on `cache`, once there is one.
fn job_exec_pid(cache: &Path) -> String {
    let own = format!("--cache\0{}\0", std::fs::canonicalize(cache).unwrap().display());
    wait_for(30, "the job's `cfrun exec`", || {
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline);
            (cmdline.contains("\0exec\0") && cmdline.contains(&own))
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
    })
}

/// A command's optional centroids file is checked a block at a time: one of 2 GiB (sparse, all
/// zeros) is published by a cfrun limited to about 2.9 GiB of address space, where loading it
/// whole, as before, took twice the file and failed.
#[test]
fn a_huge_optional_centroids_file_is_checked_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bytes: u64 = 2 << 30;
    let header =
        format!(r#"{{"centroids":{{"dtype":"F32","shape":[{},1024],"data_offsets":[0,{bytes}]}}}}"#, bytes / 4096);
    let mut head = (header.len() as u64).to_le_bytes().to_vec();
    head.extend(header.as_bytes());
    std::fs::write(d.join("head.bin"), &head).unwrap();
    let size = head.len() as u64 + bytes;
    let script = format!(
        "cp in/labels/* out/out/ && cat '{}' > out/out/centroids.safetensors && truncate -s {size} out/out/centroids.safetensors",
        d.join("head.bin").display()
    );
    let toml = format!(
        "[experiment]\nname = \"big\"\nseed = 0\n\n[stages.shapes]\nop = \"dataset\"\nname = \"synthetic\"\n\
         classes = 4\nsize = 8\ntrain_size = 12\ntest_size = 8\n\n[stages.copy]\nop = \"command\"\n\
         argv = {}\ninputs = {{ labels = \"shapes.labels\" }}\noutputs = {{ out = \"labels\" }}\n",
        serde_json::to_string(&["sh", "-c", &script]).unwrap()
    );
    std::fs::write(d.join("big.toml"), toml).unwrap();
    // About 2.9 GiB: room for the allocator's first reservation (1 GiB) and more, not for the
    // old load's mapping of the file and its copy (4 GiB).
    let limited = format!(
        "ulimit -v 3000000; exec '{}' '{}' --cache '{}'",
        env!("CARGO_BIN_EXE_cfrun"),
        d.join("big.toml").display(),
        d.join("cache").display()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(limited)
        .env_remove("CFRUN_CACHE")
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("2 ran"), "{}", stderr(&out));
}

/// Output that cannot be written is a failure, not a panic and not a success: `ops`, `dag --json`
/// and `run --json` with stdout on a full disk (/dev/full) end with exit 1 and say why (they once
/// panicked with exit 101, and `run` lost its summary with exit 0); invalid input keeps its 2 when
/// stdout or stderr is full; a bad `CFRUN_*` switch under `--json` gives its one JSON value.
#[test]
fn output_that_cannot_be_written_fails_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let smoke = self::smoke();
    let smoke = smoke.to_str().unwrap();
    let full = |args: &[&str], stdout_full: bool| {
        let full = || std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
        let mut cmd = cfrun_command(&cache, args);
        if stdout_full {
            cmd.stdout(full()).stderr(std::process::Stdio::piped());
        } else {
            cmd.stdout(std::process::Stdio::piped()).stderr(full());
        }
        cmd.output().expect("cfrun starts")
    };
    for args in [&["ops"][..], &["dag", smoke, "--json"], &["run", smoke, "--json", "-q"]] {
        let out = full(args, true);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("output could not be written to stdout (No space left on device"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert_eq!(full(&["status", "nope.toml", "--json"], true).status.code(), Some(2));
    assert_eq!(full(&["status", "nope.toml"], false).status.code(), Some(2));

    let switch = cfrun_command(&cache, &["status", smoke, "--json"]).env("CFRUN_BN_STATS", "garbage").output().unwrap();
    assert_eq!(switch.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&switch.stdout).expect("one JSON value on stdout");
    assert_eq!(v["ok"], false);
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("CFRUN_BN_STATS"), "{v}");
}

/// Mistakes on the command line are told for what they are, and leave nothing behind: a misspelt
/// subcommand is named with the one meant (the `cfrun FILE` shorthand once took it for a file and
/// complained about the next argument); `exec FILE INSTANCE` with no such instance exits 2 before
/// creating the cache it names (it once left a cache skeleton).
#[test]
fn command_line_mistakes_are_named_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let smoke = self::smoke();
    let smoke = smoke.to_str().unwrap();
    let typo = cfrun(&cache, &["gcc", smoke, "--dry-run"]);
    assert_eq!(typo.status.code(), Some(2));
    assert!(stderr(&typo).contains("unknown command `gcc` (did you mean `gc`?)"), "{}", stderr(&typo));
    let nope = cfrun(&cache, &["exec", smoke, "nope"]);
    assert_eq!(nope.status.code(), Some(2), "{}", stderr(&nope));
    assert!(stderr(&nope).contains("no instance `nope`"), "{}", stderr(&nope));
    assert!(!cache.exists(), "exec created the cache before refusing its arguments");
    // An empty CFRUN_LOG is unset, not a filter that keeps errors only (hiding this warning).
    let quiet_log = cfrun_command(&cache, &["status", smoke]).env("CFRUN_LOG", "").output().unwrap();
    assert!(stderr(&quiet_log).contains("does not exist: nothing is cached there"), "{}", stderr(&quiet_log));
    // A file whose name reads like a command is still run.
    let named = dir.path().join("stat");
    std::fs::copy(smoke, &named).unwrap();
    let run = cfrun_command(&cache, &["stat", "-q"]).current_dir(dir.path()).output().unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
}

/// `exec --from-driver` ends its process group when the driver's pipe closes, which the driver
/// made for it; started by hand in another group (here a shell's, in a session of its own so that
/// a failure cannot reach the test's), it ends only itself and the shell goes on (it once killed
/// the shell with it). The job generates 70,000 images (about 2 s) so that it does not end before
/// the watcher sees stdin closed: smoke's 1,000 (20 ms) sometimes did on a loaded machine, and
/// then it exited 0 without testing the kill.
#[test]
fn exec_from_driver_by_hand_spares_its_callers_group() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.toml");
    std::fs::write(
        &file,
        "[experiment]\nname = \"big_shapes\"\nseed = 1\n\n[stages.shapes]\nop = \"dataset\"\n\
         name = \"synthetic\"\ntrain_size = 60000\ntest_size = 10000\n",
    )
    .unwrap();
    let script = format!(
        "{} exec {} shapes --from-driver --cache {} </dev/null; echo survived $?",
        env!("CARGO_BIN_EXE_cfrun"),
        file.display(),
        dir.path().join("cache").display()
    );
    let out = Command::new("setsid").args(["-w", "sh", "-c", &script]).output().expect("setsid runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("survived 137"), "the shell was killed with cfrun: {text} {}", stderr(&out));
}

/// README's "Your first experiment" quotes what `experiments/first.toml` does: the counts of
/// each command and the claims' intervals and verdicts at 3 and 8 replicates. They are the
/// output of this test's runs, so a change to the file, an op's bits or the README's numbers
/// that lets them part fails here. Like the pinned digests, the intervals hold on the CPUs
/// README's Determinism pins (x86-64 with AVX2 and FMA), not on others.
#[test]
fn the_first_experiment_does_what_the_readme_says() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let start = readme.find("\n## Your first experiment\n").expect("README has the walkthrough");
    let end = start + 1 + readme[start + 1..].find("\n## ").unwrap();
    let section = &readme[start..end];
    let file = root.join("experiments/first.toml");
    let path = file.to_str().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let summary = |out: &Output| {
        assert!(out.status.success(), "{}", stderr(out));
        let line = stderr(out).lines().last().unwrap_or_default().to_string();
        let counts = line.split(" in ").next().unwrap().to_string();
        assert!(section.contains(&format!("#   {counts} in ")), "README lacks `{counts}`:\n{section}");
        counts
    };

    let first = cfrun(cache.path(), &[path]);
    assert_eq!(summary(&first), "first: 48 instances, 48 ran, 0 cached, 0 failed, 0 skipped");
    let claims = |out: &Output| {
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        stdout.split("## verdicts").nth(1).expect("the claims are printed").to_string()
    };
    let three = claims(&first);
    let rows: Vec<&str> =
        section.lines().filter(|l| l.starts_with("| pre_above_floor") || l.starts_with("| cf_beats_pre")).collect();
    assert_eq!(rows.len(), 3, "{section}");
    for row in rows {
        let cells: Vec<&str> = row.split(" | ").collect();
        let (name, interval, verdict) = (cells[0].trim_start_matches("| "), cells[3], cells[4].trim_end_matches(" |"));
        let printed = three.lines().find(|l| l.starts_with(&format!("| {name}")) && l.contains(interval));
        let printed = printed
            .unwrap_or_else(|| panic!("README's `{name}` row `{interval}` is not what the run printed:\n{three}"));
        assert!(printed.ends_with(&format!("| {verdict} |")), "{printed}");
    }

    assert_eq!(summary(&cfrun(cache.path(), &[path])), "first: 48 instances, 0 ran, 48 cached, 0 failed, 0 skipped");
    let status = cfrun(cache.path(), &["status", path, "--set", "sweep.k=[8,32,128]"]);
    let status_text = String::from_utf8_lossy(&status.stdout);
    assert!(status_text.contains("missing clusters[k=128,replicate=0]  never run"), "{status_text}");
    assert!(status_text.trim_end().ends_with("46 of 60 instances cached"), "{status_text}");
    assert!(section.contains("#   46 of 60 instances cached"));

    let eight = cfrun(cache.path(), &[path, "--set", "experiment.replicates=8"]);
    assert_eq!(summary(&eight), "first: 123 instances, 77 ran, 46 cached, 0 failed, 0 skipped");
    let eight = claims(&eight);
    for (k, quoted) in [("8", "narrows to +2.15 [-2.41, +6.71]"), ("32", "mean falls to +0.29\n[-6.15, +6.74]")] {
        assert!(section.contains(quoted), "README lacks `{quoted}`");
        let row = eight.lines().find(|l| l.contains(&format!("| k = {k} |"))).unwrap();
        let interval = quoted.split_once(" to ").unwrap().1.replace('\n', " ");
        assert!(row.contains(&interval) && row.ends_with("| **inconclusive** |"), "{row}");
    }
    assert_eq!(eight.matches("**inconclusive**").count(), 2, "{eight}");
}

/// A program found through a relative folder on PATH from cfrun's folder, where `env_probe`
/// runs, but not from the command's scratch folder is refused before it runs: the command found
/// a later folder's program instead, the key held the other's version, and an edit of the
/// program that ran was served stale (found by review). Listed in `code`, it runs as its copy.
#[test]
fn a_program_the_probe_and_the_command_would_find_apart_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let tool = |folder: &str, version: &str, x: u32| {
        std::fs::create_dir_all(dir.path().join(folder)).unwrap();
        let file = dir.path().join(folder).join("tool");
        let script = format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo \"tool {version}\"; exit 0; fi\n\
             mkdir -p \"$1\" && echo '{{\"values\":{{\"x\":{x}}}}}' > \"$1/metrics.json\"\n"
        );
        std::fs::write(&file, script).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    tool("pbin", "1.0", 1);
    tool("abs", "9.9", 2);
    let stage = "[experiment]\nname = \"p\"\n[stages.t]\nop = \"command\"\nargv = [\"tool\", \"{out.m}\"]\n\
                 env_probe = [\"tool\", \"--version\"]\noutputs = { m = \"metrics\" }\nseeded = false\n";
    std::fs::write(dir.path().join("p.toml"), stage).unwrap();
    std::fs::write(dir.path().join("q.toml"), format!("{stage}code = [\"pbin/tool\"]\n")).unwrap();
    let path = format!("pbin:{}:{}", dir.path().join("abs").display(), std::env::var("PATH").unwrap());
    let cache = dir.path().join("cache");
    let run = |file: &str| cfrun_command(&cache, &[file]).current_dir(dir.path()).env("PATH", &path).output().unwrap();
    let refused = run("p.toml");
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("`tool` is in `pbin`, a relative folder on PATH"), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("argv = [\"./pbin/tool\"]"), "{}", stderr(&refused));
    let listed = run("q.toml");
    assert!(listed.status.success(), "{}", stderr(&listed));
    let shown = cfrun_command(&cache, &["show", "q.toml", "t", "--json"])
        .current_dir(dir.path())
        .env("PATH", &path)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(v[0]["metrics"]["m"]["x"], 1.0, "the listed copy of pbin/tool ran: {v}");
}

/// A rerun says again what cached results warned of when computed, in full for a stage's first
/// three instances and then as a count: a sweep repeating one warning thousands of times buried
/// the run's own output (found by a scale review).
#[test]
fn cached_warnings_are_said_for_a_few_instances_and_counted_for_the_rest() {
    let cache = tempfile::tempdir().unwrap();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/first.toml");
    let args = [
        file.to_str().unwrap(),
        "--set",
        "stages.n_pre.epochs=1",
        "--set",
        "stages.n_cf.epochs=1",
        "--set",
        "experiment.replicates=5",
    ];
    assert!(cfrun(cache.path(), &args).status.success());
    let again = cfrun(cache.path(), &args);
    let err = stderr(&again);
    let said = |stage: &str| {
        err.lines().filter(|l| l.contains(&format!("{stage}[")) && l.contains("(cached; when it was computed)")).count()
    };
    // One epoch fits no network: n_pre's 5 instances warn, 3 said and 2 counted.
    assert_eq!(said("n_pre"), 3, "{err}");
    assert!(err.contains("2 more cached instances of `n_pre` warned when they were computed"), "{err}");
    assert!(said("n_cf") <= 3, "{err}");
}
