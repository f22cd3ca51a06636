//! Axis ranges and tick placement ("nice" 1-2-5 steps, like matplotlib's default locator).

/// Tick positions (in the axis' own domain) and their labels.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ticks {
    pub pos: Vec<f64>,
    pub labels: Vec<String>,
}

/// Pads `[min, max]` by `frac` of its span on both sides so extreme points do not sit
/// on the frame; a degenerate span gets a fixed margin so a flat line is centred.
pub(crate) fn padded_range(min: f64, max: f64, frac: f64) -> (f64, f64) {
    let span = max - min;
    if !span.is_finite() || span <= f64::EPSILON * max.abs().max(1.0) {
        let m = (min.abs() * 0.05).max(0.5);
        return (min - m, max + m);
    }
    (min - frac * span, max + frac * span)
}

/// A step from the 1-2-5 series giving roughly `target` intervals over `span`.
fn nice_step(span: f64, target: usize) -> f64 {
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let m = if norm < 1.5 {
        1.0
    } else if norm < 3.0 {
        2.0
    } else if norm < 7.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// Nice ticks inside `[lo, hi]` with about `target` intervals.
pub(crate) fn nice_ticks(lo: f64, hi: f64, target: usize) -> Ticks {
    let step = nice_step(hi - lo, target);
    // Enough decimals to tell neighbouring ticks apart, no more (step 0.5 -> 1 decimal).
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    // Integer multiples avoid the drift of repeatedly adding a float step.
    let pos: Vec<f64> = (first..=last).map(|i| i as f64 * step).collect();
    let labels = pos.iter().map(|&v| super::number::fixed(v, decimals)).collect();
    Ticks { pos, labels }
}

/// Ticks at powers of ten for a log10 domain `[lo, hi]` (positions are exponents).
pub(crate) fn decade_ticks(lo: f64, hi: f64) -> Ticks {
    let pos: Vec<f64> = (lo.ceil() as i64..=hi.floor() as i64).map(|e| e as f64).collect();
    let labels = pos
        .iter()
        .map(|&e| {
            if (-4.0..=5.0).contains(&e) {
                // Plain numbers read better than 1e3 in the usual K or batch-size sweeps.
                super::number::fixed(10f64.powf(e), (-e).max(0.0) as usize)
            } else {
                format!("1e{e}")
            }
        })
        .collect();
    Ticks { pos, labels }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ticks_follow_1_2_5() {
        let t = nice_ticks(37.2, 81.9, 5);
        assert_eq!(t.labels, ["40", "50", "60", "70", "80"]);
        let t = nice_ticks(-0.12, 1.07, 5);
        assert_eq!(t.labels, ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        assert_eq!(crate::report::number::fixed(-0.0001, 2), "0.00");
    }

    #[test]
    fn padded_range_handles_flat_data() {
        assert_eq!(padded_range(10.0, 10.0, 0.1), (9.5, 10.5));
        let (lo, hi) = padded_range(0.0, 80.0, 0.05);
        assert_eq!((lo, hi), (-4.0, 84.0));
    }

    #[test]
    fn decades_label_plainly() {
        let t = decade_ticks(0.9, 3.2);
        assert_eq!(t.labels, ["10", "100", "1000"]);
    }
}
