//! Limits that keep every input, however large or generated, to a quick exit-2 error instead of
//! a hang, an allocation abort or gigabytes of memory: sizes of the file and of what it expands
//! to, checked before anything runs, and per-parameter sizes checked against the machine.

use super::params::ParamError;

/// Largest experiment file read (real ones are a few kilobytes).
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// Most stage instances one experiment may expand to, checked before expanding.
pub const MAX_INSTANCES: usize = 20_000;
/// Most stages in one file (checks that relate stages to each other grow with its square).
pub const MAX_STAGES: usize = 1_000;
/// Most input edges between instances (a table gathering a sweep counts one per instance).
pub const MAX_INPUT_EDGES: usize = 1_000_000;
/// Most bytes of parameters all instances together may hold once placeholders are substituted
/// (bounded from the raw text and the longest axis value before expanding).
pub const MAX_PARAM_BYTES: usize = 64 << 20;
/// Most values one sweep axis may list.
pub const MAX_AXIS_VALUES: usize = 10_000;
/// Longest name (stage, axis, experiment, field) and longest string axis value.
pub const MAX_NAME_CHARS: usize = 128;
/// Most keys in one `--set` path (`stages.clusters.k` has three).
pub const MAX_SET_PATH: usize = 16;
/// Most errors reported for one file; the rest are counted, not listed.
pub const MAX_ERRORS: usize = 50;

/// Bytes of memory of this machine (`MemTotal`), or 16 GiB where that cannot be read. Read
/// once per process: checks ask for it per instance, and it does not change under a run.
pub fn machine_memory() -> u64 {
    static MEMORY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MEMORY.get_or_init(read_machine_memory)
}

fn read_machine_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb.saturating_mul(1024))
        })
        .unwrap_or(16 << 30)
}

/// An error unless `count` items of `bytes_each` bytes fit in this machine's memory.
pub fn fits_in_memory(field: &str, count: u64, bytes_each: u64, what: &str) -> Result<(), ParamError> {
    let need = count.saturating_mul(bytes_each);
    let have = machine_memory();
    if need <= have {
        return Ok(());
    }
    Err(ParamError::field(
        field,
        format!(
            "`{field}` = {count} asks for {} of {what}, more than this machine's {} of memory",
            crate::human::bytes(need),
            crate::human::bytes(have)
        ),
        Some(format!("use at most {} here", have / bytes_each.max(1))),
    ))
}

/// An error unless `value` is at most `max` (for sizes that allocate per unit).
pub fn at_most(field: &str, value: usize, max: usize) -> Result<(), ParamError> {
    if value > max {
        return Err(ParamError::range(field, value, &format!("at most {max}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_sizes_are_refused_and_sane_ones_pass() {
        assert!(fits_in_memory("train_size", 60_000, 784, "images").is_ok());
        let e = fits_in_memory("train_size", 1_000_000_000_000, 784, "images").unwrap_err();
        assert_eq!(e.path, "train_size");
        assert!(e.message.contains("784 TB"), "{}", e.message);
        assert!(fits_in_memory("n", u64::MAX, u64::MAX, "x").is_err());
        assert!(at_most("widths", 5000, 4096).is_err());
    }
}
