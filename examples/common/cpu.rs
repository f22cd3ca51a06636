//! Process CPU time, shared by the examples that report it beside wall time.

/// User + system CPU seconds of the whole process (all threads) from
/// `/proc/self/stat`, at its 10 ms resolution; 0 where that is unavailable.
/// On a shared machine this counts the work done, not the wait for a core.
pub fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the ")" that closes the command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // CLK_TCK is 100 on Linux x86-64.
    (ticks(11) + ticks(12)) / 100.0
}
