//! Tests of the repository's scripts that the GPU session depends on and CI can run without a GPU.

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
    assert!(text.contains("24 cells: inside the reference's 95 % CI in 24;"), "{text}");
    assert!(text.contains("largest difference is +0,"), "{text}");
    // Row 0 is fashion-mnist's N_pre: 83.77 at p = 0 in replicate 0, 83.27 ± 1.20 over three.
    let moved = compare(&replicate_zero(&reference, Some((0, "p=0", 10.0))));
    let text = String::from_utf8_lossy(&moved.stdout);
    assert!(moved.status.success());
    assert!(text.contains("| fashion-mnist | N_pre |  | p=0 | 93.77 | 83.77 | +10 | 83.27 ± 1.20 | no |"), "{text}");
    assert!(
        text.contains("inside the reference's 95 % CI in 23;") && text.contains("largest difference is +10,"),
        "{text}"
    );
    let unrelated = compare("target,source,k,p=0\nmnist,N_pre,,50\n");
    assert_eq!(unrelated.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unrelated.stderr).contains("no row of"),
        "{}",
        String::from_utf8_lossy(&unrelated.stderr)
    );
}
