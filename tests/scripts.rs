//! Tests of the repository's scripts that CI can run without a GPU: the GPU session's, and the
//! ones the study docs are made with.

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The committed 3-replicate results table cut to what a one-replicate run prints: the key columns
/// and, per value column, replicate 0's value; `bump` adds to one (row, column) cell.
fn replicate_zero(reference: &str, bump: Option<(usize, &str, f64)>) -> String {
    let mut lines = reference.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let values: Vec<&str> =
        head.iter().copied().filter(|c| head.contains(&format!("{c} (replicates)").as_str())).collect();
    let keys: Vec<usize> = (0..head.len()).filter(|&i| !head[i].contains(" (") && !values.contains(&head[i])).collect();
    let mut out = keys.iter().map(|&i| head[i]).chain(values.iter().copied()).collect::<Vec<_>>().join(",") + "\n";
    for (r, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        let mut row: Vec<String> = keys.iter().map(|&i| cells[i].to_string()).collect();
        for col in &values {
            let at = head.iter().position(|c| *c == format!("{col} (replicates)")).unwrap();
            let first = cells[at].split_whitespace().next().map(|v| v.parse::<f64>().unwrap());
            let v = match (first, bump) {
                (Some(v), Some((br, bc, by))) if br == r && bc == *col => Some(v + by),
                (v, _) => v,
            };
            row.push(v.map(|v| v.to_string()).unwrap_or_default());
        }
        out += &(row.join(",") + "\n");
    }
    out
}

/// `scripts/agreement.py` (the GPU session's comparison with docs/noise_sweep/) finds replicate 0
/// itself in agreement everywhere, and a cell moved by 10 points both as the largest difference and
/// outside the CPU's interval; input that matches nothing is refused with exit 2.
#[test]
fn agreement_sets_one_replicate_beside_the_committed_reference() {
    let reference = std::fs::read_to_string(repo().join("docs/noise_sweep/results.table.csv")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let compare = |table: &str| {
        let path = dir.path().join("results.csv");
        std::fs::write(&path, table).unwrap();
        Command::new("python3")
            .arg(repo().join("scripts/agreement.py"))
            .arg(repo().join("docs/noise_sweep"))
            .arg(format!("results={}", path.display()))
            .output()
            .expect("python3 runs")
    };
    let same = compare(&replicate_zero(&reference, None));
    let text = String::from_utf8_lossy(&same.stdout);
    assert!(same.status.success(), "{}", String::from_utf8_lossy(&same.stderr));
    assert!(
        text.contains(
            "24 cells: inside the reference's 95 % CI in 24, inside its 95 % interval for one replicate in 24;"
        ),
        "{text}"
    );
    assert!(text.contains("largest difference is +0,"), "{text}");
    // Row 0 is fashion-mnist's N_pre: 83.77 at p = 0 in replicate 0, 83.27 ± 1.20 over three, so
    // one replicate's interval is twice as wide (sqrt(3 + 1)).
    let moved = compare(&replicate_zero(&reference, Some((0, "p=0", 10.0))));
    let text = String::from_utf8_lossy(&moved.stdout);
    assert!(moved.status.success());
    assert!(
        text.contains(
            "| fashion-mnist | N_pre |  | p=0 | 93.77 | 83.77 | +10 | 83.27 ± 1.20 | no | 83.27 ± 2.39 | no |"
        ),
        "{text}"
    );
    assert!(
        text.contains("inside the reference's 95 % CI in 23, inside its 95 % interval for one replicate in 23;")
            && text.contains("largest difference is +10,"),
        "{text}"
    );
    // 2 points off: outside the CI of the mean (± 1.20), inside one replicate's interval (± 2.39).
    let near = compare(&replicate_zero(&reference, Some((0, "p=0", 1.5))));
    let text = String::from_utf8_lossy(&near.stdout);
    assert!(text.contains("| 85.27 | 83.77 | +1.5 | 83.27 ± 1.20 | no | 83.27 ± 2.39 | yes |"), "{text}");
    let unrelated = compare("target,source,k,p=0\nmnist,N_pre,,50\n");
    assert_eq!(unrelated.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unrelated.stderr).contains("no row of"),
        "{}",
        String::from_utf8_lossy(&unrelated.stderr)
    );
    // A reference without CI columns has no interval to be inside (not the mean taken for one),
    // and a table that cannot be compared is said in its section while the others still are.
    let reference_dir = dir.path().join("reference");
    std::fs::create_dir(&reference_dir).unwrap();
    std::fs::write(reference_dir.join("nmi.table.csv"), "k,p=0,p=0 (replicates)\n10,0.70,0.70 0.71 0.69\n").unwrap();
    let one = dir.path().join("nmi.csv");
    std::fs::write(&one, "k,p=0\n10,0.05\n").unwrap();
    let mixed = Command::new("python3")
        .arg(repo().join("scripts/agreement.py"))
        .arg(&reference_dir)
        .arg(format!("missing={}", one.display()))
        .arg(format!("nmi={}", one.display()))
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&mixed.stdout);
    assert_eq!(mixed.status.code(), Some(2), "one table could not be compared");
    assert!(text.contains("## missing") && text.contains("Not compared:"), "{text}");
    assert!(text.contains("| 10 | p=0 | 0.050 | 0.700 | -0.65 | 0.700 (no CI) | n/a |  | n/a |"), "{text}");
}

/// `scripts/gpu-report.py` (the README of a GPU session) computes each A/B and each
/// cfrun/PyTorch ratio from the runs both sides measured, reads PyTorch's GPU header lines, and
/// says what is missing instead of filling it in; with no cfrun.tsv it exits 2.
#[test]
fn gpu_report_turns_a_session_into_ratios() {
    let out = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(out.path().join(name), text).unwrap();
    let report = || {
        Command::new("python3")
            .arg(repo().join("scripts/gpu-report.py"))
            .arg(out.path())
            .output()
            .expect("python3 runs")
    };
    let empty = report();
    assert_eq!(empty.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("no cfrun.tsv"));
    let head = "label\tbinary\tjobs\tprecision\timages_per_stage\tepochs\twall_s\twall_img_s\tsteady_img_s\trc\n";
    let row = |label: &str, jobs: u32, prec: &str, steady: u32, rc: u32| {
        format!("{label}\tcfrun-cudnn\t{jobs}\t{prec}\t20480\t2\t10\t{}\t{steady}\t{rc}\n", steady * 9 / 10)
    };
    write(
        "cfrun.tsv",
        &[
            head.to_string(),
            row("f32-j1", 1, "f32", 1000, 0),
            row("f32-j1-candlebwd", 1, "f32", 250, 0),
            row("f32-j1-tf32", 1, "f32", 1200, 0),
            row("f32-j1-sync", 1, "f32", 800, 0),
            row("f32-j1-host", 1, "f32", 500, 0),
            row("f32-j1-sgdper", 1, "f32", 900, 0),
            row("f32-j1-bnlayer", 1, "f32", 800, 0),
            row("f32-j1-wtaps", 1, "f32", 625, 0),
            row("f32-j4", 4, "f32", 3000, 0),
            row("f32-j8", 8, "f32", 0, 124),
            row("bf16-j1", 1, "bf16", 1500, 0),
        ]
        .concat(),
    );
    write(
        "torch.txt",
        "torch 2.9.0+cu130, NVIDIA H200, batch 128, 1x28x28, fp32, eager, tf32 conv True matmul False\n\
         resnet_gpu   train   2400.0 img/s   (60 steps)\n\
         resnet_gpu   inference   9000.0 img/s   (60 steps)\n\
         torch 2.9.0+cu130, NVIDIA H200, batch 128, 1x28x28, amp-bf16, compiled, tf32 conv True matmul False\n\
         resnet_gpu   train   5000.0 img/s   (60 steps)\n",
    );
    write(
        "summary.txt",
        "[10:00:00 +0s] device cuda, preset resnet_gpu, binary cfrun-cudnn, budget 470s\n\
         [10:00:50 +50s] cfrun-cudnn could not run (check-device-first.stderr); every run below uses cfrun-cuda\n\
         [10:01:00 +60s] check-device: the im2col row did not pass (or did not run); every run below uses CFRUN_CONV_COLUMNS=taps\n",
    );
    write("env.txt", "GPU 0: NVIDIA H200 (UUID: GPU-0)\nNVIDIA H200, 580.95.05, 143771 MiB, Default\n");
    std::fs::create_dir(out.path().join("cfrun")).unwrap();
    write("cfrun/f32-j1.stderr", "DEBUG cfrun::nn::train: network size per example forward_macs=455800832\n");
    write(
        "projection.md",
        "# noise_sweep_full.toml: projected GPU time\n\n| part (--set) | train instances | images (M) | projected | fits |\n\
         |---|---:|---:|---:|---|\n| `(the whole study)` | 84 | 86.4 | 48.0 min | no (400 s left) |\n",
    );
    // A NaN on the device comes back from serde_json as null; a device side that failed to run
    // carries its error. (The compiled AMP mode above was cut off before its inference line.)
    write(
        "check-device.json",
        r#"{"device":"cuda:0","ok":false,"checks":[{"what":"resnet_gpu: weights","difference":null,"tolerance":0.005,"ok":false,"seconds":[1.0,0.5]},{"what":"k-means on the device","difference":null,"tolerance":0.0001,"ok":false,"seconds":[1.0,0.1],"error":"DriverError(CUDA_ERROR_ILLEGAL_ADDRESS)\nmore"}]}"#,
    );
    let done = report();
    let text = String::from_utf8_lossy(&done.stdout);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    for want in [
        "| cfrun's conv backward over candle's (f32-j1 / f32-j1-candlebwd) | 4.00x |",
        "| TF32 GEMMs over f32 (f32-j1-tf32 / f32-j1) | 1.20x |",
        "| sums read once per epoch over once per batch (f32-j1 / f32-j1-sync) | 1.25x |",
        "| batches built on the device over on the host, both synced per batch (f32-j1-sync / f32-j1-host) | 1.60x |",
        "| the resident pipeline over the host loop (f32-j1 / f32-j1-host) | 2.00x |",
        "| the flat SGD update over per parameter (f32-j1 / f32-j1-sgdper) | 1.11x |",
        "| flat BN running statistics over layer by layer (f32-j1 / f32-j1-bnlayer) | 1.25x |",
        "| im2col columns over tap by tap (f32-j1 / f32-j1-wtaps) | 1.60x |",
        "| 4 jobs over 1 (aggregate) | 3.00x |",
        "| 8 jobs over 1 (aggregate) | n/a |",
        "| bf16 over f32, 1 job(s) | 1.50x |",
        "| fp32, eager, tf32 conv True matmul False | 2400 | 1200 | 0.50x |",
        "| amp-bf16, compiled, tf32 conv True matmul False | 5000 | 1500 | 0.30x |",
        "cfrun's best aggregate, 3000 img/s with 4 jobs",
        "- name, driver, memory, compute mode: NVIDIA H200, 580.95.05, 143771 MiB, Default",
        "- cfrun-cudnn could not run (check-device-first.stderr); every run below uses cfrun-cuda",
        "- check-device: the im2col row did not pass (or did not run); every run below uses CFRUN_CONV_COLUMNS=taps",
        "Not measured (no profile-timers.txt).",
        "Run for real: no part of the study.",
        "One training image costs 2.73 GFLOP: 455.8 M multiply-accumulates forward",
        "NVIDIA H200: dense peaks 66.9 (FP32), 494.7 (TF32) and 989.4 (BF16) TFLOP/s (datasheet).",
        "| cfrun f32-j1 | 1000 | 2.73 | 4 % of FP32, 0.6 % of TF32 |",
        "| cfrun bf16-j1 | 1500 | 4.1 | 0.4 % of BF16 |",
        "| PyTorch amp-bf16, compiled, tf32 conv True matmul False | 5000 | 13.7 | 1.4 % of BF16 |",
        "At 100 % of peak one card would train 24,462 img/s in FP32, 180,890 in TF32 and 361,781 in BF16.",
        "noise_sweep_full trains 86.4 M images (236 PFLOP): at 100 % of peak 59 min in FP32, 8.0 min in TF32, \
         4.0 min in BF16. Training it in 10 minutes takes 394 TFLOP/s sustained: 80 % of the TF32 peak, 40 % of \
         the BF16 peak.",
        "2 checks FAILED",
        "  - resnet_gpu: weights: NaN (tolerance 0.005) FAILED",
        "    (the device side failed: `DriverError(CUDA_ERROR_ILLEGAL_ADDRESS)`)",
    ] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
}

/// `scripts/verdict-diff.py` finds no moved row between a run and itself, exactly the row whose
/// verdict changed otherwise (shown on both sides), and refuses a file that is not a claims CSV
/// with exit 2.
#[test]
fn verdict_diff_lists_exactly_the_rows_that_moved() {
    let reference = repo().join("docs/noise_sweep/verdicts.claims.csv");
    let text = std::fs::read_to_string(&reference).unwrap();
    let rows = text.lines().count() - 1;
    let dir = tempfile::tempdir().unwrap();
    let diff = |a: &Path, b: &Path| {
        Command::new("python3")
            .arg(repo().join("scripts/verdict-diff.py"))
            .arg(a)
            .arg(b)
            .output()
            .expect("python3 runs")
    };
    let same = diff(&reference, &reference);
    assert_eq!(same.status.code(), Some(0));
    let out = String::from_utf8_lossy(&same.stdout).to_string();
    assert!(out.ends_with(&format!("0 of {rows} rows differ in verdict.\n")), "{out}");
    assert!(!out.contains("**moved**"));
    let gap = text.lines().position(|l| l.starts_with("gap_grows,")).expect("a gap_grows row");
    let changed: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == gap {
                let (head, verdict) = l.rsplit_once(',').unwrap();
                format!("{head},{}", if verdict == "holds" { "reversed" } else { "holds" })
            } else {
                l.to_string()
            }
        })
        .collect();
    let moved_file = dir.path().join("moved.csv");
    std::fs::write(&moved_file, changed.join("\n") + "\n").unwrap();
    let moved = diff(&reference, &moved_file);
    let out = String::from_utf8_lossy(&moved.stdout).to_string();
    assert!(out.ends_with(&format!("1 of {rows} rows differ in verdict.\n")), "{out}");
    let line = out.lines().find(|l| l.contains("**moved**")).unwrap();
    assert!(line.starts_with("| gap_grows |"), "{line}");
    let bad = diff(&repo().join("README.md"), &reference);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a claims CSV"));
}

/// `benches/python/run_all.py --report-only` rewrites the committed `benches/RESULTS.md` byte for
/// byte from the committed `sections.json` and `run_meta.json`, whatever machine it runs on: the
/// header describes the run that measured, not the machine at hand (it once took the date, load,
/// CPU and Python packages of whoever rewrote it).
#[test]
fn bench_report_only_reproduces_the_committed_results() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("RESULTS.md");
    let run = Command::new("python3")
        .arg(repo().join("benches/python/run_all.py"))
        .args(["--report-only", "--out"])
        .arg(&out)
        .env("CFRUN_BENCH_TMP", dir.path().join("tmp"))
        .output()
        .expect("python3 runs");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let committed = std::fs::read_to_string(repo().join("benches/RESULTS.md")).unwrap();
    let rewritten = std::fs::read_to_string(&out).unwrap();
    assert!(rewritten == committed, "--report-only differs from benches/RESULTS.md:\n{rewritten}");
}

/// Only a full bench run replaces the committed `sections.json` (and so what `--report-only`
/// publishes): a `--quick` pass, another `--out` and a partial run with nothing saved keep their
/// sections beside their own report (a smoke test's figures once went over the record).
#[test]
fn only_a_full_bench_run_replaces_the_saved_sections() {
    let probe = r#"
import json, os, sys
sys.path.insert(0, os.path.join(sys.argv[1], "benches", "python"))
import run_all
cases = [(None, False, False, True), (None, True, False, True), (None, False, True, False), ("/elsewhere/r.md", False, False, True)]
print(json.dumps([run_all.destinations(*c) for c in cases]))
"#;
    let dir = tempfile::tempdir().unwrap();
    let run = Command::new("python3")
        .args(["-c", probe])
        .arg(repo())
        .env("CFRUN_BENCH_TMP", dir.path())
        .output()
        .expect("python3 runs");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let got: Vec<(String, String, bool)> = serde_json::from_slice(&run.stdout).unwrap();
    let benches = repo().join("benches");
    let b = |f: &str| benches.join(f).to_string_lossy().into_owned();
    let want = [
        (b("RESULTS.md"), b("sections.json"), true),
        (b("RESULTS.quick.md"), b("RESULTS.quick.sections.json"), false),
        (b("RESULTS.partial.md"), b("RESULTS.partial.sections.json"), false),
        ("/elsewhere/r.md".to_string(), "/elsewhere/r.sections.json".to_string(), false),
    ];
    assert_eq!(got, want);
}

/// `scripts/fuzz.py`: mutated fixtures (checks only, and numbers that reach the ops) give named
/// exit codes, no panic and nothing beside the file; damaged caches of `train_tiny` are repaired
/// to the same bytes. A stand-in cfrun that panics is reported, so the harness can fail.
#[test]
fn fuzzing_the_fixtures_and_a_damaged_cache_finds_nothing() {
    let fuzz = |args: &[&str], bin: &str| {
        Command::new("python3")
            .arg(repo().join("scripts/fuzz.py"))
            .args(args)
            .env("CFRUN_BIN", bin)
            .output()
            .expect("python3 runs")
    };
    let cfrun = env!("CARGO_BIN_EXE_cfrun");
    for args in [
        &["params", "--mode", "status", "--runs", "80", "--seed", "1"][..],
        &["params", "--mode", "num", "--runs", "12", "--seed", "4", "--timeout", "60"],
        &["damage", "--file", "tests/fixtures/train_tiny.toml", "--runs", "12", "--seed", "3"],
    ] {
        let out = fuzz(args, cfrun);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{args:?}\n{stdout}\n{stderr}");
        assert!(stderr.contains(", 0 listed"), "{args:?}\n{stderr}");
    }
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("cfrun");
    std::fs::write(&fake, "#!/bin/sh\necho \"thread 'main' panicked at src/main.rs\" >&2\nexit 101\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = fuzz(&["params", "--mode", "status", "--runs", "3"], fake.to_str().unwrap());
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"panic\"") && stdout.contains("exit 101"), "{stdout}");
}

/// `scripts/gpu-session.sh` hands the bench's many files back as one archive (the device tool
/// returns at most 8 files) with the bench's real exit status, and a session cut short, by its
/// LIMIT or by a signal, leaves a recent archive and no step of the bench running: a step under a
/// `timeout` of its own is a process group the outer kill does not reach.
#[test]
fn gpu_session_returns_the_bench_as_one_archive_even_when_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let bench = dir.path().join("bench.sh");
    let mark = dir.path().join("late");
    // Twelve files in two folders, then (when asked) a step that outlives the session.
    std::fs::write(
        &bench,
        "mkdir -p \"$OUT/a/b\"; for i in $(seq 1 10); do echo $i > \"$OUT/f$i.txt\"; done\n\
         echo deep > \"$OUT/a/b/deep.txt\"; echo log > \"$OUT/summary.txt\"\n\
         [ \"${1:-}\" = --mps ] && printf '%s\\n%s\\n' /tmp/the-pipe \"$CONTROL\" > \"$OUT/mps-pipe.txt\" && sleep 30\n\
         [ \"${1:-}\" = --hang ] && timeout 30 bash -c 'sleep 4; touch \"$MARK\"'\nexit 0\n",
    )
    .unwrap();
    // An MPS control that records what it is told (the bench leaves its pipe folder and this
    // binary in mps-pipe.txt until its daemon has quit).
    let control = dir.path().join("control");
    let told = dir.path().join("told");
    std::fs::write(&control, format!("#!/bin/sh\necho \"$CUDA_MPS_PIPE_DIRECTORY $(cat)\" >> {}\n", told.display()))
        .unwrap();
    std::fs::set_permissions(&control, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let session = |out: &Path, args: &[&str], timeout: &str, limit: &str| {
        std::fs::create_dir_all(out).unwrap();
        Command::new("timeout")
            .arg(timeout)
            .arg("bash")
            .arg(repo().join("scripts/gpu-session.sh"))
            .args(args)
            .env("OUT", out)
            .env("BENCH", &bench)
            .env("EVERY", "1")
            .env("LIMIT", limit)
            .env("MARK", &mark)
            .env("CONTROL", &control)
            .output()
            .unwrap()
    };
    let listed = |archive: &Path| {
        let out = Command::new("tar").arg("-tzf").arg(archive).output().unwrap();
        assert!(out.status.success(), "{archive:?} is not a whole archive");
        String::from_utf8(out.stdout).unwrap()
    };
    let names = |dir: &Path| {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    };

    let done = dir.path().join("done");
    let run = session(&done, &[], "30", "20");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(names(&done), ["results.tgz", "summary.txt"], "two files, not the bench's thirteen");
    let all = listed(&done.join("results.tgz"));
    for want in ["./f1.txt", "./f10.txt", "./a/b/deep.txt", "./bench.log"] {
        assert!(all.lines().any(|l| l == want), "{want} missing from:\n{all}");
    }
    assert!(String::from_utf8_lossy(&run.stdout).contains("bench.sh exit status: 0"));

    // Stopped at its LIMIT: the whole archive, the timeout's status, and the step is gone.
    let limited = dir.path().join("limited");
    let run = session(&limited, &["--hang"], "30", "1");
    assert!(run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("bench.sh exit status: 124"),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
    assert!(listed(&limited.join("results.tgz")).lines().any(|l| l == "./a/b/deep.txt"));

    // Stopped at its LIMIT while an MPS daemon of its own ran: the session quits the daemon.
    let mps = dir.path().join("mps");
    let run = session(&mps, &["--mps"], "30", "1");
    assert!(run.status.success());
    assert_eq!(std::fs::read_to_string(&told).unwrap_or_default(), "/tmp/the-pipe quit\n");
    assert!(String::from_utf8_lossy(&run.stdout).contains("told the MPS daemon the bench left to quit (rc=0)"));

    // Stopped by a signal: the last whole partial archive, and the step is gone.
    let cut = dir.path().join("cut");
    let run = session(&cut, &["--hang"], "3", "20");
    assert_eq!(run.status.code(), Some(124), "the session was cut short");
    assert_eq!(names(&cut), ["partial.tgz"], "only the last whole partial archive");
    assert!(listed(&cut.join("partial.tgz")).lines().any(|l| l == "./a/b/deep.txt"));
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(!mark.exists(), "a step of the bench ran on after its session ended");
}

/// `scripts/gpu-report.py` over a `STEPS=ab` session: each alternated A/B is called faster or
/// slower only when every pair clears both arms' spread (and 5 %), a pair whose losses differ
/// is said, cfrun and PyTorch are paired in the order they ran, the planned convolution's logged
/// algorithms are tabulated, and ncu's launches are summed per kernel in milliseconds whatever
/// unit each row has.
#[test]
fn gpu_report_reads_alternated_pairs_and_time_per_kernel() {
    let out = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = out.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap()
    };
    std::fs::create_dir(out.path().join("cfrun")).unwrap();
    let mut tsv =
        "label\tbinary\tjobs\tprecision\timages_per_stage\tepochs\twall_s\twall_img_s\tsteady_img_s\trc\n".to_string();
    let mut run = |label: &str, steady: u32, loss: &str| {
        tsv += &format!("{label}\tcfrun-cudnn\t1\tf32\t8192\t2\t9\t1800\t{steady}\t0\n");
        write(
            &format!("cfrun/{label}.stderr"),
            &format!("x DEBUG epoch done epoch=1 loss={loss} accuracy=0.9 seconds=2\n"),
        );
    };
    // events: clearly faster in all three pairs (baselines within 4 %), same losses.
    for (i, (b, v)) in [(3000, 6000), (3100, 6100), (2980, 5900)].iter().enumerate() {
        run(&format!("ab-events-j1-base{}", i + 1), *b, &format!("0.{i}1"));
        run(&format!("ab-events-j1-var{}", i + 1), *v, &format!("0.{i}1"));
    }
    // sgd: one pair inside the spread, so not shown; and the second pair's losses differ.
    for (i, (b, v)) in [(3000, 3600), (3300, 3310), (3000, 3700)].iter().enumerate() {
        run(&format!("ab-sgdper-base{}", i + 1), *b, "0.5");
        run(&format!("ab-sgdper-var{}", i + 1), *v, if i == 1 { "0.6" } else { "0.5" });
    }
    // An A/A-like pair whose baselines agree and whose other arm scatters: no verdict (each arm's
    // spread counts, not the baselines' alone).
    for (i, (b, v)) in [(3000, 2000), (3010, 2600), (3005, 2500)].iter().enumerate() {
        run(&format!("ab-aa-base{}", i + 1), *b, "0.8");
        run(&format!("ab-aa-var{}", i + 1), *v, "0.8");
    }
    // Processes under MPS, clearly faster: read only where every pair's server left its log (the
    // first arm's third pair has none: its processes ran without MPS).
    for (arm, div) in [("procs-mps-j4", 1), ("procs-mps-j8", 2)] {
        for (i, (b, v)) in [(3000, 9000), (3100, 9100), (2980, 8900)].iter().enumerate() {
            run(&format!("ab-{arm}-base{}", i + 1), b / div, "0.9");
            run(&format!("ab-{arm}-var{}", i + 1), v / div, "0.9");
            if arm.ends_with("j8") || i < 2 {
                write(
                    &format!("mps-log/ab-{arm}-var{}/server.log", i + 1),
                    "[2026-12-05 10:00:00] INFO Server started\n",
                );
            }
        }
    }
    run("ab-cfrun-1", 3000, "0.7");
    run("ab-cfrun-2", 3200, "0.7");
    write("cfrun.tsv", &tsv);
    write(
        "ab.tsv",
        "events-j1\t1\tCFRUN_CUDA_EVENTS=off\nsgdper\t1\tCFRUN_SGD_UPDATE=per-param\naa\t1\tCFRUN_CONV_CUDNN=per-call\n\
         procs-mps-j4\t4\texecutor=processes mps=1\nprocs-mps-j8\t8\texecutor=processes mps=1\n",
    );
    // STEPS=ab's step profile: a line per arm, the arm's name before a tab.
    write(
        "profile-timers.txt",
        "base\t2026-12-05T10:00:00Z  INFO step profile (ms per step, issue+wait): batch=0.7+2.8 forward=24.2+0.01 epoch=0 steps=32\n\
         pool\t2026-12-05T10:00:05Z  INFO step profile (ms per step, issue+wait): batch=0.6+0.2 forward=9.0+1.0 epoch=0 steps=32\n\
         leads\t2026-12-05T10:00:09Z  INFO step profile (ms per step, issue+wait): batch=0.5+0.1 forward=3.0+6.0 epoch=0 steps=32\n",
    );
    // The planned cuDNN convolution's own check-device rows come beside the default's.
    write(
        "check-device.json",
        r#"{"device":"cuda:0","ok":true,"checks":[{"what":"resnet_gpu: loss","difference":1e-7,"tolerance":0.001,"ok":true,"seconds":[1.0,0.5]}]}"#,
    );
    write(
        "check-device-planned.json",
        r#"{"device":"cuda:0","ok":false,"checks":[{"what":"resnet_gpu: 11 convolutions","difference":0.02,"tolerance":0.0001,"ok":false,"seconds":[1.0,0.5]}]}"#,
    );
    // The algorithms the planned convolution logged, summed per product, type and algorithm.
    let plan = |product: &str, n: usize, algo: &str, bytes: usize| {
        format!(
            "2026-12-05T10:00:00.0Z  INFO cuDNN plan product=\"{product}\" dtype=F32 g=Geom {{ n: {n}, cin: 64, h: 28, w: 28, cout: 64, k: 3, s: 1, pad: 1, ho: 28, wo: 28 }} algo={algo} workspace_bytes={bytes}\n"
        )
    };
    write(
        "check-device-planned.stderr",
        &[
            plan("forward", 32, "CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM", 0),
            plan("forward", 128, "CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM", 0),
            plan("weight gradient", 128, "CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1", 3 << 20),
            "x WARN cuDNN could not run an algorithm it had sized (or allocate its workspace); trying the next\n"
                .into(),
        ]
        .concat(),
    );
    write(
        "check-device-bnfused.json",
        r#"{"device":"cuda:0","ok":true,"checks":[{"what":"resnet_gpu: 11 batch norms","difference":2e-7,"tolerance":0.0001,"ok":true,"seconds":[1.0,0.5]}]}"#,
    );
    write(
        "torch.txt",
        "torch 2.11.0+cu130, NVIDIA H200, batch 128, 1x28x28, fp32, eager, tf32 conv True matmul False\n\
         resnet_gpu   train  12000.0 img/s   (60 steps)\n\
         torch 2.11.0+cu130, NVIDIA H200, batch 128, 1x28x28, fp32, eager, tf32 conv True matmul False\n\
         resnet_gpu   train  16000.0 img/s   (60 steps)\n",
    );
    write(
        "ncu.csv",
        "==PROF== Connected to process 1\n\
         \"ID\",\"Process ID\",\"Kernel Name\",\"Metric Name\",\"Metric Unit\",\"Metric Value\"\n\
         \"0\",\"1\",\"affine_f32\",\"gpu__time_duration.sum\",\"usecond\",\"2.50\"\n\
         \"1\",\"1\",\"cudnn_conv\",\"gpu__time_duration.sum\",\"msecond\",\"1.50\"\n\
         \"2\",\"1\",\"affine_f32\",\"gpu__time_duration.sum\",\"ns\",\"1,500\"\n",
    );
    let report = Command::new("python3").arg(repo().join("scripts/gpu-report.py")).arg(out.path()).output().unwrap();
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stderr));
    assert!(
        text.contains("| `CFRUN_CUDA_EVENTS=off` | 1 | 3000, 3100, 2980 | 6000, 6100, 5900 | 2.00x, 1.97x, 1.98x | 4 % | faster | yes |"),
        "{text}"
    );
    assert!(text.contains("| `CFRUN_SGD_UPDATE=per-param` | 1 | 3000, 3300, 3000 | 3600, 3310, 3700 | 1.20x, 1.00x, 1.23x | 12 % | not shown | no |"), "{text}");
    assert!(text.contains("| `CFRUN_CONV_CUDNN=per-call` | 1 | 3000, 3010, 3005 | 2000, 2600, 2500 | 0.67x, 0.86x, 0.83x | 30 % | not shown | yes |"), "{text}");
    assert!(
        text.contains("at the fastest arm's median rate, `CFRUN_CUDA_EVENTS=off` with 1 job(s), 6000 img/s: at least 240 min (at its baselines' 3000 img/s: 480 min; the goal is 10)."),
        "{text}"
    );
    assert!(text.contains("| 1 | 3000 | 12000 | 0.25x |") && text.contains("| 2 | 3200 | 16000 | 0.20x |"), "{text}");
    assert!(text.contains("- `check-device --device cuda` (strict f32): all checks passed\n  - resnet_gpu: loss: 1e-07 (tolerance 0.001)\n"), "{text}");
    assert!(
        text.contains("- `CFRUN_CONV_CUDNN=planned check-device --device cuda` (strict f32): 1 checks FAILED\n  - resnet_gpu: 11 convolutions: 0.02 (tolerance 0.0001) FAILED\n"),
        "{text}"
    );
    assert!(
        text.contains("- `CFRUN_BN_CUDA=fused check-device --device cuda` (strict f32): all checks passed\n  - resnet_gpu: 11 batch norms: 2e-07"),
        "{text}"
    );
    assert!(
        text.contains("| forward | F32 | `CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM` | 2 | 0.0 |"),
        "{text}"
    );
    assert!(text.contains("| weight gradient | F32 | `CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1` | 1 | 3.0 |"), "{text}");
    assert!(text.contains("1 warnings \"cuDNN could not run an algorithm\""), "{text}");
    assert!(
        text.contains("| `executor=processes mps=1` | 4 | 3000, 3100, 2980 | 9000, 9100, 8900 | 3.00x, 2.94x, 2.99x | 4 % | no MPS server ran: not read | yes |"),
        "{text}"
    );
    assert!(
        text.contains("| `executor=processes mps=1` | 8 | 1500, 1550, 1490 | 4500, 4550, 4450 | 3.00x, 2.94x, 2.99x | 4 % | faster | yes |"),
        "{text}"
    );
    assert!(
        text.contains("base: (ms per step, issue+wait): batch=0.7+2.8 forward=24.2+0.01 epoch=0 steps=32\npool: (ms per step, issue+wait): batch=0.6+0.2 forward=9.0+1.0 epoch=0 steps=32\nleads: (ms per step, issue+wait): batch=0.5+0.1 forward=3.0+6.0"),
        "{text}"
    );
    assert!(text.contains("`leads`: every lead on"), "{text}");
    assert!(text.contains("3 launches profiled, 1.50 ms of kernel time in all"), "{text}");
    assert!(text.contains("| `cudnn_conv` | 1 | 1.500 | 99.7 % | 1500.0 |"), "{text}");
    assert!(text.contains("| `affine_f32` | 2 | 0.004 | 0.3 % | 2.0 |"), "{text}");
}

/// Compiles `source`, CUDA kernels with `tests/cuda/emulate.h`'s stand-ins, as C++20 into `exe`.
fn compile_emulated(source: &Path, exe: &Path) {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let built = Command::new(&cxx)
        .args(["-std=c++20", "-O1", "-pthread", "-I"])
        .arg(repo().join("tests/cuda"))
        .arg("-o")
        .arg(exe)
        .arg(source)
        .output()
        .unwrap_or_else(|e| panic!("`{cxx}` (a C++20 compiler; .ci/run installs g++) did not start: {e}"));
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
}

/// The fused batch norm's CUDA kernels (`src/nn/bn_cuda/kernels.cu`), compiled as C++ with a
/// thread-per-CUDA-thread emulation (`tests/cuda/emulate.h`, and `tests/cuda/cuda_bf16.h` for
/// CUDA's bf16) and run against batch norm's definition and finite differences, in f32 and bf16
/// (`tests/cuda/bn_kernels.cpp`): their indexing, reductions and gradient formulas are checked on
/// every machine, a GPU's check-device does the rest.
#[test]
fn bn_cuda_kernels_match_the_definition_when_emulated() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("bn_kernels");
    compile_emulated(&repo().join("tests/cuda/bn_kernels.cpp"), &exe);
    let ran = Command::new(&exe).output().unwrap();
    let said = String::from_utf8_lossy(&ran.stdout);
    assert!(ran.status.success() && said.trim() == "ok", "{said}");
}

/// The emulation's barrier (`tests/cuda/emulate.h`): a kernel whose threads do not all reach a
/// `__syncthreads` (one returns early: undefined on a GPU) ends the program with a message naming
/// the block and thread, instead of throwing the later barriers out of step and hanging the suite.
#[test]
fn an_emulated_kernel_that_skips_a_barrier_fails_and_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("diverge.cpp");
    std::fs::write(
        &source,
        r#"#include "emulate.h"
#include <atomic>
static std::atomic<int> sum{0};
__global__ void k(bool early) {
    __shared__ int seen[4];
    if (early && threadIdx.x == 3) return;
    seen[threadIdx.x] = (int)threadIdx.x;
    __syncthreads();
    sum += seen[(threadIdx.x + 1) % 4];
}
int main(int argc, char**) {
    launch(3, 4, [&] { k(argc > 1); });
    std::printf("%d\n", sum.load());
}
"#,
    )
    .unwrap();
    let exe = dir.path().join("diverge");
    compile_emulated(&source, &exe);
    // Every thread at every barrier: 3 blocks of 0 + 1 + 2 + 3.
    let whole = Command::new(&exe).output().unwrap();
    assert!(whole.status.success(), "{}", String::from_utf8_lossy(&whole.stderr));
    assert_eq!(String::from_utf8_lossy(&whole.stdout).trim(), "18");
    // Thread 3 returns before the barrier: a failure within the test's time, saying why.
    let start = std::time::Instant::now();
    let early = Command::new("timeout").arg("20").arg(&exe).arg("early").output().unwrap();
    let said = String::from_utf8_lossy(&early.stderr);
    assert!(!early.status.success() && early.status.code() != Some(124), "hung or passed: {said}");
    // Whichever of them arrived first: thread 3 at the block's end, another at __syncthreads.
    let early = ["thread 3 reached the block's end but thread", "but thread 3 had reached the block's end"];
    assert!(said.contains("in block 0, thread ") && early.iter().any(|e| said.contains(e)), "{said}");
    assert!(said.contains("__syncthreads"), "{said}");
    assert!(start.elapsed().as_secs() < 10);
}

/// A claims CSV of one replicate: each row has a mean and no interval, as the claims stage writes
/// it for n = 1.
const ONE_REPLICATE: &str = "\
claim,section,statement,case,part,quantity,metric,mean,ci_low,ci_high,n,per_replicate,replicates,paper,verdict
cf_beats_pre,§4.1,N_cf beats N_pre,\"target = mnist\",0,N_cf − N_pre,top1,1.25,,,1,1.25,0,+2.0,inconclusive (one replicate)
gap_grows,§4.1,The gap grows with noise,\"target = mnist\",0,gap,top1,-0.5,,,1,-0.5,0,(not in the paper),inconclusive (one replicate)
";

/// Both verdict scripts read a one-replicate run (its mean shown with "no CI", not a traceback),
/// and `verdict-diff.py` refuses a CSV holding one row twice with exit 2 and the line, where it
/// once kept the last silently.
#[test]
fn verdict_scripts_read_a_one_replicate_run_and_refuse_a_doubled_row() {
    let dir = tempfile::tempdir().unwrap();
    let study = dir.path().join("one");
    std::fs::create_dir(&study).unwrap();
    let csv = study.join("verdicts.claims.csv");
    std::fs::write(&csv, ONE_REPLICATE).unwrap();
    let run = |script: &str, args: &[&Path]| {
        Command::new("python3").arg(repo().join("scripts").join(script)).args(args).output().expect("python3 runs")
    };
    let diff = run("verdict-diff.py", &[&csv, &csv]);
    assert_eq!(diff.status.code(), Some(0), "{}", String::from_utf8_lossy(&diff.stderr));
    let out = String::from_utf8_lossy(&diff.stdout);
    assert!(out.contains("+1.2 no CI n = 1: inconclusive (one replicate)"), "{out}");
    assert!(out.ends_with("0 of 2 rows differ in verdict.\n"), "{out}");
    let table = run("reproduction-table.py", &[&study]);
    assert_eq!(table.status.code(), Some(0), "{}", String::from_utf8_lossy(&table.stderr));
    let out = String::from_utf8_lossy(&table.stdout);
    assert!(out.contains("mnist: +1.2 (no CI) -> **inconclusive (one replicate)**"), "{out}");
    assert!(out.contains("mnist: -0.50 (no CI)"), "{out}");

    let doubled = dir.path().join("doubled.csv");
    let second_row = ONE_REPLICATE.lines().nth(1).unwrap();
    std::fs::write(&doubled, format!("{ONE_REPLICATE}{second_row}\n")).unwrap();
    let refused = run("verdict-diff.py", &[&csv, &doubled]);
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("doubled.csv:4: a second row for claim 'cf_beats_pre'"), "{err}");
}

/// `scripts/reproduction.sh` makes the committed docs/REPRODUCTION.md byte for byte from the
/// committed study docs, so neither can change without the other; and a part that fails leaves
/// the page it would have replaced whole (it once left it cut short at the failure).
#[test]
fn the_reproduction_page_is_up_to_date_and_a_failure_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("REPRODUCTION.md");
    let made = Command::new("sh")
        .arg(repo().join("scripts/reproduction.sh"))
        .current_dir(repo())
        .env("REPRODUCTION_OUT", &fresh)
        .output()
        .expect("sh runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let committed = std::fs::read_to_string(repo().join("docs/REPRODUCTION.md")).unwrap();
    assert!(
        std::fs::read_to_string(&fresh).unwrap() == committed,
        "docs/REPRODUCTION.md is not what `sh scripts/reproduction.sh` makes from docs/: run it and commit the page"
    );

    // A tree of its own: the head, and one study whose claims CSV has a mean that is no number.
    let root = dir.path().join("tree");
    std::fs::create_dir_all(root.join("docs/reproduction")).unwrap();
    std::fs::create_dir_all(root.join("docs/noise_sweep")).unwrap();
    std::fs::write(root.join("docs/reproduction/head.md"), "# head\n").unwrap();
    std::fs::write(root.join("docs/reproduction/not-run.md"), "not run\n").unwrap();
    let broken = ONE_REPLICATE.replacen(",1.25,,,1,", ",abc,0,1,1,", 1);
    std::fs::write(root.join("docs/noise_sweep/verdicts.claims.csv"), broken).unwrap();
    let page = root.join("docs/REPRODUCTION.md");
    std::fs::write(&page, "the last good page\n").unwrap();
    let failed =
        Command::new("sh").arg(repo().join("scripts/reproduction.sh")).current_dir(&root).output().expect("sh runs");
    assert!(!failed.status.success());
    assert_eq!(std::fs::read_to_string(&page).unwrap(), "the last good page\n");
    assert!(!root.join("docs/REPRODUCTION.md.tmp").exists());
}

/// An experiment whose run completes in part: `shown` is made, `bad` fails and `lost` is skipped.
const PARTIAL: &str = r#"[experiment]
name = "partial"
seed = 0

[stages.good]
op = "command"
argv = ["sh", "-c", 'mkdir -p "$0"; echo "{{\"values\":{{\"top1\":50}}}}" > "$0/metrics.json"', "{out.m}"]
outputs = { m = "metrics" }

[stages.bad]
op = "command"
argv = ["sh", "-c", "exit 3"]
outputs = { m = "metrics" }

[stages.shown]
op = "table"
inputs = ["good.m"]
rows = ["source"]
columns = ["metric"]
metrics = ["top1"]

[stages.lost]
op = "table"
inputs = ["bad.m"]
rows = ["source"]
columns = ["metric"]
metrics = ["top1"]
"#;

/// `scripts/study-docs.sh` copies a run's tables into the docs folder; when the run completes
/// only in part it copies nothing and fails (it once copied the part, beside whatever an earlier
/// run had left there, and exited 0).
#[test]
fn study_docs_copies_a_run_and_nothing_of_a_partial_one() {
    let dir = tempfile::tempdir().unwrap();
    let docs = |root: &Path, exp: &str, out: &Path| {
        Command::new("sh")
            .arg(repo().join("scripts/study-docs.sh"))
            .arg(dir.path().join("cache"))
            .arg(exp)
            .arg(out)
            .current_dir(root)
            .env("CFRUN", env!("CARGO_BIN_EXE_cfrun"))
            .output()
            .expect("sh runs")
    };
    let good = dir.path().join("out dir");
    let made = docs(repo(), "smoke", &good);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let mut files: Vec<String> =
        std::fs::read_dir(&good).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(files, ["clustering.table.csv", "clustering.table.md", "results.table.csv", "results.table.md"]);

    let root = dir.path().join("tree");
    std::fs::create_dir_all(root.join("experiments")).unwrap();
    std::fs::write(root.join("experiments/partial.toml"), PARTIAL).unwrap();
    let bad = dir.path().join("bad");
    let failed = docs(&root, "partial", &bad);
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains("bad failed: command `sh` exited with status 3"), "{err}");
    assert!(err.contains("nothing copied"), "{err}");
    assert_eq!(std::fs::read_dir(&bad).unwrap().count(), 0);
}
