//! Quantities written for people: sizes in decimal units, durations at the precision that
//! matters. One format each, so a run's summary, its log, `gc` and the study page agree. And
//! text from elsewhere made safe to print.

use std::fmt::Write as _;

/// `b` bytes in decimal units, to the nearest whole one (`80 GB`).
pub fn bytes(b: u64) -> String {
    bytes_to(b, 0)
}

/// `b` bytes in decimal units with `decimals` digits after the point (`33.0 KB`; whole bytes
/// as they are).
pub fn bytes_to(b: u64, decimals: usize) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut v = b as f64;
    let mut unit = 0;
    // Up a unit while the value would print as 1000 or more (999,950 bytes is `1.0 MB`, not
    // `1000.0 KB`).
    let places = |unit: usize| if unit == 0 { 0 } else { decimals };
    let rounds_to = |v: f64, unit: usize| {
        let scale = 10f64.powi(places(unit) as i32);
        (v * scale).round() / scale
    };
    while rounds_to(v, unit) >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit + 1 == UNITS.len() && v >= 1000.0 {
        return "more than 1000 PB".into();
    }
    let places = places(unit);
    format!("{v:.places$} {}", UNITS[unit])
}

/// `0.4 s`, `42.0 s`, `12 min 05 s`, `2 h 03 min`: a duration of `seconds`, in tenths under a
/// minute (an instance's wall time is often a fraction of a second), whole seconds under an hour
/// and whole minutes beyond. Negative or non-finite values read as they are.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return format!("{seconds} s");
    }
    let tenths = (seconds * 10.0).round() / 10.0;
    if tenths < 60.0 {
        return format!("{tenths:.1} s");
    }
    let s = seconds.round() as u64;
    match s {
        0..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

/// `text` with control and direction-changing characters escaped (`\u{1b}`), so that what a
/// stage, a command or a file wrote can never move the cursor, recolour or reorder the terminal,
/// and invisible ones too, so that a name holding one does not read as another; cut to
/// `max_chars` (`config::error::printable` cuts a message shorter).
pub fn printable_cut(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max_chars {
            out.push_str("… (cut)");
            break;
        }
        if (unsafe_to_print(c) || invisible(c)) && c != '\n' && c != '\t' {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// Control characters, those that reorder the text around them on a terminal or a page (the
/// Arabic letter mark among them), the line and paragraph separators, which break a line where a
/// reader sees none, and Unicode's noncharacters (U+FFFE, U+FFFF and the like), which XML, and so
/// an SVG figure, does not allow.
pub fn unsafe_to_print(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
        || matches!(c, '\u{fdd0}'..='\u{fdef}')
        || c as u32 & 0xfffe == 0xfffe
}

/// A path as a person reads it: [`printable_cut`] of its display form, whole (a path from the
/// command line can hold anything a file name can).
pub fn printable_path(path: &std::path::Path) -> String {
    printable_cut(&path.display().to_string(), usize::MAX)
}

/// Characters that print as nothing: zero-width spaces and joiners, the word joiner and its
/// kin, the byte order mark, the soft hyphen. Harmless to the text around them, so parameter
/// text may hold them (an emoji sequence needs its joiners), but `kmeans` with one attached reads
/// as `kmeans` in "unknown op `kmeans`", so messages escape them.
pub fn invisible(c: char) -> bool {
    matches!(c, '\u{00ad}' | '\u{200b}'..='\u{200d}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name with an invisible character attached is shown with it escaped, so it cannot read
    /// as the name it is not; the characters that reorder or control the terminal stay escaped.
    #[test]
    fn invisible_and_unsafe_characters_are_escaped_in_messages() {
        assert_eq!(printable_cut("kmeans\u{200b}", 100), "kmeans\\u{200b}");
        assert_eq!(printable_cut("\u{feff}op\u{ad}", 100), "\\u{feff}op\\u{ad}");
        assert_eq!(printable_cut("a\u{202e}b\u{1b}c\nd\te", 100), "a\\u{202e}b\\u{1b}c\nd\te");
        assert_eq!(printable_cut("kmeans", 100), "kmeans");
        assert!(!unsafe_to_print('\u{200d}'), "joiners stay allowed in parameter text");
    }

    #[test]
    fn sizes_read_in_the_unit_that_fits() {
        assert_eq!(bytes(80_400_000_000), "80 GB");
        assert_eq!(bytes_to(32_991, 1), "33.0 KB");
        assert_eq!(bytes_to(999, 1), "999 B");
        assert_eq!(bytes_to(1_234_567_890, 1), "1.2 GB");
        assert_eq!(bytes_to(999_950, 1), "1.0 MB");
        assert_eq!(bytes_to(999_949, 1), "999.9 KB");
        assert_eq!(bytes(999_600), "1 MB");
    }

    #[test]
    fn durations_read_at_the_precision_that_matters() {
        let at = |s: f64| duration(s);
        assert_eq!([at(0.0), at(0.04), at(0.44), at(59.94)], ["0.0 s", "0.0 s", "0.4 s", "59.9 s"]);
        // Never `60.0 s`: what rounds to a minute reads as one.
        assert_eq!([at(59.96), at(60.0), at(725.4)], ["1 min 00 s", "1 min 00 s", "12 min 05 s"]);
        assert_eq!([at(3599.4), at(3599.6), at(2.0 * 3600.0 + 185.0)], ["59 min 59 s", "1 h 00 min", "2 h 03 min"]);
        assert_eq!([at(f64::NAN), at(-1.0)], ["NaN s", "-1 s"]);
    }
}
