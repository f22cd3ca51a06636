//! Numbers as text for tables, claims and chart ticks: fixed decimals where a reader takes them
//! in, an exponent beyond.

/// From this magnitude on a number is written with an exponent: an f64 holds about 16
/// significant digits, so a fixed-point 1e308 printed 309 characters, almost all of them zeros.
pub const EXPONENT_FROM: f64 = 1e15;

/// Whether `v` is written with an exponent.
fn takes_exponent(v: f64) -> bool {
    v.abs() >= EXPONENT_FROM && v.is_finite()
}

/// `v` with `decimals` digits after the point (after the mantissa's point beyond
/// [`EXPONENT_FROM`]: `1.50e20`), never a negative zero: a mean of -0.001 is `0.00`, not `-0.00`.
pub fn fixed(v: f64, decimals: usize) -> String {
    let s = if takes_exponent(v) { format!("{v:.decimals$e}") } else { format!("{v:.decimals$}") };
    match s.strip_prefix('-') {
        Some(zero) if zero.chars().all(|c| c == '0' || c == '.') => zero.to_string(),
        _ => s,
    }
}

/// [`fixed`] with its sign always written (`+0.50`); what rounds to zero is `+0.00`.
pub fn signed(v: f64, decimals: usize) -> String {
    Notation::Fixed(decimals).signed(v)
}

/// How the numbers of one row are written, so that they read alike and apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notation {
    /// This many decimals after the point, as [`fixed`] (an exponent beyond [`EXPONENT_FROM`]).
    Fixed(usize),
    /// Always an exponent, with this many decimals after the mantissa's point (`+2.50e-12`):
    /// numbers far below 1 whose differences fixed decimals would round away.
    Exponent(usize),
}

impl Notation {
    /// `v` with its sign always written; a text of zeros only takes `+`, never `-`.
    pub fn signed(self, v: f64) -> String {
        let s = match self {
            Notation::Fixed(d) if takes_exponent(v) => format!("{v:+.d$e}"),
            Notation::Fixed(d) => format!("{v:+.d$}"),
            Notation::Exponent(d) => format!("{v:+.d$e}"),
        };
        let mantissa = s.split('e').next().unwrap_or(&s);
        match s.strip_prefix('-') {
            Some(rest) if mantissa[1..].chars().all(|c| c == '0' || c == '.') => format!("+{rest}"),
            _ => s,
        }
    }
}

/// The shortest text that reads back as `v`, with an exponent beyond [`EXPONENT_FROM`].
pub fn shortest(v: f64) -> String {
    if takes_exponent(v) {
        format!("{v:e}")
    } else {
        v.to_string()
    }
}

/// `text` without the zeros that end its fraction, nor a point left bare (`2.500` is `2.5`,
/// `3.0` is `3`); a number without a point as it is.
pub fn trim_zeros(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

/// `v` with an exponent, at most `decimals` digits after the mantissa's point and no trailing
/// zeros (`1.235e20`, `-1e-13`).
pub fn exponent(v: f64, decimals: usize) -> String {
    let text = format!("{v:.decimals$e}");
    let (mantissa, power) = text.split_once('e').unwrap_or((&text, "0"));
    format!("{}e{power}", trim_zeros(mantissa))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_numbers_are_fixed_and_huge_ones_take_an_exponent() {
        assert_eq!(fixed(81.256, 2), "81.26");
        assert_eq!(fixed(999_999_999_999_999.0, 1), "999999999999999.0");
        assert_eq!(fixed(1e308, 2), "1.00e308");
        assert_eq!(fixed(-1.5e20, 1), "-1.5e20");
        assert_eq!(signed(0.5, 2), "+0.50");
        assert_eq!(signed(2.5e300, 2), "+2.50e300");
        assert_eq!(shortest(2.0), "2");
        assert_eq!(shortest(1e300), "1e300");
        assert_eq!(fixed(f64::INFINITY, 2), "inf");
        assert_eq!(fixed(-0.001, 2), "0.00");
        assert_eq!(fixed(-0.0, 0), "0");
        assert_eq!(fixed(-0.01, 2), "-0.01");
        assert_eq!([signed(-0.0, 2), signed(-0.001, 2), signed(-0.01, 2)], ["+0.00", "+0.00", "-0.01"]);
        assert_eq!(Notation::Exponent(2).signed(2.5e-12), "+2.50e-12");
        assert_eq!(Notation::Exponent(1).signed(-0.0), "+0.0e0");
        assert_eq!(Notation::Fixed(1).signed(-1.5e20), "-1.5e20");
        assert_eq!([trim_zeros("2.500"), trim_zeros("3.0"), trim_zeros("300")], ["2.5", "3", "300"]);
        assert_eq!(
            [exponent(1.2345678e20, 3), exponent(-1e-13, 3), exponent(2.5e-5, 1)],
            ["1.235e20", "-1e-13", "2.5e-5"]
        );
    }
}
