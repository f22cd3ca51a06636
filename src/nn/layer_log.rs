//! The convolutions and train-mode batch norms a run executes, recorded on request by shape.
//!
//! Why: `check-device` compares whole training runs, and for the deep video presets those are
//! chaotic (a relative 2^-20 in the initial weights moves the update of two SGD steps by half its
//! size), so a kernel that is wrong for one geometry could hide there. Replaying every recorded
//! layer as one op on the device and on the CPU ([`crate::eval::device_check`]) tests each kernel
//! where its arithmetic is well conditioned. Recording is per thread and off unless asked for.

use std::cell::RefCell;
use std::collections::BTreeMap;

/// One layer as it ran, by its input shapes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LayerCall {
    /// `conv2d(x, w)`: `x` `(N, Cin, H, W)`, `w` `(Cout, Cin, K, K)`.
    Conv {
        /// The input's shape.
        x: Vec<usize>,
        /// The weight's shape.
        w: Vec<usize>,
        /// Stride on both axes.
        stride: usize,
        /// Zero padding on all four sides.
        padding: usize,
    },
    /// A train-mode batch norm of `x` `(N, C, H, W)`, fused with a residual add and a ReLU or not.
    Norm {
        /// The input's shape.
        x: Vec<usize>,
        /// Whether a residual was added before the activation.
        residual: bool,
        /// Whether a ReLU followed.
        relu: bool,
    },
}

thread_local! {
    /// Each distinct layer of the recording in progress and how many times it ran.
    static LOG: RefCell<Option<BTreeMap<LayerCall, usize>>> = const { RefCell::new(None) };
}

/// Runs `f` and returns, beside its result, every distinct layer it ran on this thread (sorted).
/// If `f` panics, the recording around this one (or none) is back in place as the panic leaves.
pub fn recording<T>(f: impl FnOnce() -> T) -> (T, Vec<LayerCall>) {
    let (out, counted) = recording_counted(f);
    (out, counted.into_iter().map(|(call, _)| call).collect())
}

/// [`recording`] with the number of times each layer ran.
pub fn recording_counted<T>(f: impl FnOnce() -> T) -> (T, Vec<(LayerCall, usize)>) {
    /// The recording around this one, put back when this one ends, by return or by unwind.
    struct Outer(Option<BTreeMap<LayerCall, usize>>);
    impl Drop for Outer {
        fn drop(&mut self) {
            LOG.with(|log| *log.borrow_mut() = self.0.take());
        }
    }
    let outer = Outer(LOG.with(|log| log.borrow_mut().replace(BTreeMap::new())));
    let out = f();
    let calls = LOG.with(|log| log.borrow_mut().take());
    drop(outer);
    (out, calls.unwrap_or_default().into_iter().collect())
}

/// Notes a layer when a recording is on (`call` is built only then).
pub(crate) fn note(call: impl FnOnce() -> LayerCall) {
    LOG.with(|log| {
        if let Some(calls) = log.borrow_mut().as_mut() {
            *calls.entry(call()).or_default() += 1;
        }
    });
}

/// The multiply-accumulates of the convolutions in a counted recording (for the tests of the
/// networks' own counts).
#[cfg(test)]
pub(crate) fn recorded_conv_macs(calls: &[(LayerCall, usize)]) -> u64 {
    let macs = |(call, count): &(LayerCall, usize)| match call {
        LayerCall::Conv { x, w, stride, padding } => {
            let out = |side: usize| (side + 2 * padding - w[2]) / stride + 1;
            count * x[0] * out(x[2]) * out(x[3]) * w.iter().product::<usize>()
        }
        LayerCall::Norm { .. } => 0,
    };
    calls.iter().map(macs).sum::<usize>() as u64
}

/// Values the recorded convolutions wrote, for checking `conv_outputs` against what runs.
#[cfg(test)]
pub(crate) fn recorded_conv_outputs(calls: &[(LayerCall, usize)]) -> u64 {
    let outputs = |(call, count): &(LayerCall, usize)| match call {
        LayerCall::Conv { x, w, stride, padding } => {
            let out = |side: usize| (side + 2 * padding - w[2]) / stride + 1;
            count * x[0] * out(x[2]) * out(x[3]) * w[0]
        }
        LayerCall::Norm { .. } => 0,
    };
    calls.iter().map(outputs).sum::<usize>() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(n: usize) -> LayerCall {
        LayerCall::Conv { x: vec![n, 1, 4, 4], w: vec![2, 1, 3, 3], stride: 1, padding: 1 }
    }

    /// Only what runs inside `recording` is noted, each shape once (with its count when asked),
    /// and a nested recording leaves the outer one as it was.
    #[test]
    fn records_distinct_calls_inside_the_closure_only() {
        note(|| conv(9));
        let ((), calls) = recording(|| {
            note(|| conv(2));
            note(|| conv(1));
            note(|| conv(2));
            let ((), inner) = recording(|| note(|| conv(3)));
            assert_eq!(inner, vec![conv(3)]);
        });
        assert_eq!(calls, vec![conv(1), conv(2)]);
        assert_eq!(recording(|| ()).1, Vec::new());
        let (_, counted) = recording_counted(|| [2, 1, 2, 2].map(|n| note(|| conv(n))));
        assert_eq!(counted, vec![(conv(1), 1), (conv(2), 3)]);
    }

    /// A panic inside a nested recording leaves the outer one recording, and nothing on after
    /// the outermost.
    #[test]
    fn a_panic_inside_restores_the_recording_around_it() {
        let ((), calls) = recording(|| {
            let panicked = std::panic::catch_unwind(|| {
                recording(|| -> () {
                    note(|| conv(5));
                    panic!("inside")
                })
            });
            assert!(panicked.is_err());
            note(|| conv(4));
        });
        assert_eq!(calls, vec![conv(4)]);
        assert!(std::panic::catch_unwind(|| recording(|| -> () { panic!("outermost") })).is_err());
        assert!(LOG.with(|log| log.borrow().is_none()));
    }
}
