//! Per thread and device: a cuDNN handle on the device's stream, one [`Plan`] per geometry and
//! data type, and one workspace grown to the largest any plan has needed.
//!
//! Thread-local because cuDNN handles are neither `Send` nor `Sync` (candle keeps its own the
//! same way). A device's ops all go to its one stream, so every plan's calls on it are ordered and
//! can share the workspace; the shared device of `Device::new_cuda` issues each thread's work on
//! that thread's stream, and each thread has its own workspace here.

use crate::nn::conv::Geom;
use candle_core::cuda_backend::cudarc::cudnn::sys::{
    cudnnConvolutionBwdDataAlgo_t as DataAlgo, cudnnConvolutionBwdFilterAlgo_t as FilterAlgo,
    cudnnConvolutionFwdAlgo_t as FwdAlgo, cudnnConvolutionMode_t, cudnnMathType_t, cudnnTensorFormat_t,
};
use candle_core::cuda_backend::cudarc::cudnn::{
    ConvBackwardData, ConvBackwardFilter, ConvDescriptor, ConvForward, Cudnn, CudnnDataType, CudnnError,
    FilterDescriptor, TensorDescriptor,
};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, DeviceRepr, ValidAsZeroBits};
use candle_core::cuda_backend::{CudaDType, CudaDevice, DeviceId};
use candle_core::{DType, Result, WithDType};
use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// Devices a thread keeps plans for: those of a `--jobs 8` run with room to spare. An entry keeps
/// its device's stream alive, so the oldest goes when a thread has met more.
const DEVICES: usize = 16;

/// A data type cuDNN convolves in, with the type it accumulates in: f32 for all three (bf16 in
/// f32 is cuDNN's only bf16 configuration; f16 in f32 rather than candle's f16, as PyTorch, since
/// a weight gradient sums `N * Ho * Wo` products, which f16 rounds badly and can overflow).
pub(super) trait ConvType:
    CudnnDataType + CudaDType + DeviceRepr + ValidAsZeroBits + WithDType + 'static
{
    /// The accumulation type of the convolution descriptor.
    type Compute: CudnnDataType + 'static;
    /// Whether the descriptor asks for tensor-core math outright. The half types do, as PyTorch
    /// sets them: mixed precision is for tensor cores, and candle's default math leaves the choice
    /// to cuDNN (bf16 trained 3.6x slower than f32 on 2026-12-04). f32 keeps the default math, the
    /// forward's bits then candle's (TF32 unless `NVIDIA_TF32_OVERRIDE=0`).
    const TENSOR_OPS: bool;
}

impl ConvType for f32 {
    type Compute = f32;
    const TENSOR_OPS: bool = false;
}
impl ConvType for half::bf16 {
    type Compute = f32;
    const TENSOR_OPS: bool = true;
}
impl ConvType for half::f16 {
    type Compute = f32;
    const TENSOR_OPS: bool = true;
}

/// The descriptors of one geometry in one data type, and each direction's algorithm and
/// workspace bytes once first asked for.
struct Plan<T: ConvType> {
    conv: ConvDescriptor<T::Compute>,
    x: TensorDescriptor<T>,
    w: FilterDescriptor<T>,
    y: TensorDescriptor<T>,
    forward: Option<(FwdAlgo, usize)>,
    data: Option<(DataAlgo, usize)>,
    filter: Option<(FilterAlgo, usize)>,
}

impl<T: ConvType> Plan<T> {
    fn new(cudnn: &Arc<Cudnn>, g: Geom) -> Result<Self> {
        let dims = |a: usize, b: usize, c: usize, d: usize| [a as i32, b as i32, c as i32, d as i32];
        let nchw = cudnnTensorFormat_t::CUDNN_TENSOR_NCHW;
        let (ho, wo) = (g.ho, g.wo);
        let (p, s) = (g.pad as i32, g.s as i32);
        let mut conv = cudnn.create_conv2d::<T::Compute>(
            [p, p],
            [s, s],
            [1, 1],
            cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
        )?;
        if T::TENSOR_OPS {
            conv.set_math_type(cudnnMathType_t::CUDNN_TENSOR_OP_MATH)?;
        }
        Ok(Plan {
            conv,
            x: cudnn.create_4d_tensor::<T>(nchw, dims(g.n, g.cin, g.h, g.w))?,
            w: cudnn.create_4d_filter::<T>(nchw, dims(g.cout, g.cin, g.k, g.k))?,
            y: cudnn.create_4d_tensor::<T>(nchw, dims(g.n, g.cout, ho, wo))?,
            forward: None,
            data: None,
            filter: None,
        })
    }

    fn forward_op(&self) -> ConvForward<'_, T, T::Compute, T> {
        ConvForward { conv: &self.conv, x: &self.x, w: &self.w, y: &self.y }
    }

    fn data_op(&self) -> ConvBackwardData<'_, T, T::Compute, T> {
        ConvBackwardData { conv: &self.conv, dx: &self.x, w: &self.w, dy: &self.y }
    }

    fn filter_op(&self) -> ConvBackwardFilter<'_, T, T::Compute, T> {
        ConvBackwardFilter { conv: &self.conv, x: &self.x, dw: &self.w, dy: &self.y }
    }
}

/// The algorithms to try, in order, each with its workspace bytes: `preferred`, then the
/// heuristics' own `picked` where it differs. A candidate whose workspace query fails is left out
/// (said once per plan): a working gradient that may not repeat bit for bit beats a training that
/// stops.
fn candidates<A: Copy + PartialEq + std::fmt::Debug>(
    preferred: A,
    picked: A,
    bytes: impl Fn(A) -> std::result::Result<usize, CudnnError>,
    g: Geom,
) -> Result<Vec<(A, usize)>> {
    match bytes(preferred) {
        Ok(b) if preferred == picked => Ok(vec![(preferred, b)]),
        Ok(b) => Ok(bytes(picked).map_or_else(|_| vec![(preferred, b)], |p| vec![(preferred, b), (picked, p)])),
        Err(e) if preferred != picked => {
            tracing::warn!(?g, ?preferred, ?picked, %e, "cuDNN: no deterministic gradient algorithm for this convolution; its heuristics' choice adds with atomics");
            Ok(vec![(picked, bytes(picked)?)])
        }
        Err(e) => Err(e.into()),
    }
}

/// The input gradient's algorithm: the heuristics' choice unless it adds with atomics.
fn deterministic_data(algo: DataAlgo) -> DataAlgo {
    match algo {
        DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 => DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
        other => other,
    }
}

/// The weight gradient's algorithm: the heuristics' choice unless it adds with atomics.
fn deterministic_filter(algo: FilterAlgo) -> FilterAlgo {
    match algo {
        FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 | FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3 => {
            FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1
        }
        other => other,
    }
}

/// What a thread keeps for one device.
struct DeviceState {
    id: DeviceId,
    cudnn: Arc<Cudnn>,
    plans: HashMap<(DType, Geom), Box<dyn Any>>,
    workspace: Option<CudaSlice<u8>>,
}

impl DeviceState {
    fn new(dev: &CudaDevice) -> Result<Self> {
        Ok(DeviceState { id: dev.id(), cudnn: Cudnn::new(dev.cuda_stream())?, plans: HashMap::new(), workspace: None })
    }

    /// The plan of `g` in `T`, made on first use; and the workspace, at least `bytes` once the
    /// caller knows how many (see [`workspace`]).
    fn plan<T: ConvType>(&mut self, g: Geom) -> Result<(&mut Plan<T>, &mut Option<CudaSlice<u8>>)> {
        let key = (T::DTYPE, g);
        if !self.plans.contains_key(&key) {
            let plan: Box<dyn Any> = Box::new(Plan::<T>::new(&self.cudnn, g)?);
            self.plans.insert(key, plan);
        }
        let plan = self.plans.get_mut(&key).and_then(|p| p.downcast_mut::<Plan<T>>());
        let Some(plan) = plan else { candle_core::bail!("cuDNN plan of {g:?} kept under the wrong data type") };
        Ok((plan, &mut self.workspace))
    }
}

/// `slot`'s workspace, grown to at least `bytes` (none when no bytes are needed). The one it
/// replaces is freed in stream order, after the calls already issued that use it.
fn workspace<'a>(
    slot: &'a mut Option<CudaSlice<u8>>,
    dev: &CudaDevice,
    bytes: usize,
) -> Result<Option<&'a mut CudaSlice<u8>>> {
    if bytes == 0 {
        return Ok(None);
    }
    if slot.as_ref().is_none_or(|w| w.len() < bytes) {
        *slot = None;
        // SAFETY: cuDNN's scratch space; nothing reads it before cuDNN writes it.
        *slot = Some(unsafe { dev.alloc::<u8>(bytes)? });
    }
    Ok(slot.as_mut())
}

thread_local! {
    static STATES: RefCell<Vec<DeviceState>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's state for `dev`, made on first use.
fn with_state<R>(dev: &CudaDevice, f: impl FnOnce(&mut DeviceState) -> Result<R>) -> Result<R> {
    STATES.with(|states| {
        let mut states = states.borrow_mut();
        let i = match states.iter().position(|s| s.id == dev.id()) {
            Some(i) => i,
            None => {
                if states.len() == DEVICES {
                    states.remove(0);
                }
                states.push(DeviceState::new(dev)?);
                states.len() - 1
            }
        };
        f(&mut states[i])
    })
}

/// One cuDNN call, `product`, on `g` in `T` into a new output of `len` values. The first call of
/// a plan tries its `candidates` in order (an algorithm with its workspace bytes) and keeps the
/// first that launches, in the plan's slot `which` selects: cuDNN may accept an algorithm's
/// workspace query and still refuse to run it, and a choice kept before it ran once would fail
/// every later step. Each caller's `launch` is a cuDNN call in an `unsafe` block, sound because its
/// views and the output hold the plan's descriptors' sizes in `T`, contiguous NCHW.
fn call<T: ConvType, A: Copy + std::fmt::Debug>(
    dev: &CudaDevice,
    (product, g): (&'static str, Geom),
    len: usize,
    which: fn(&mut Plan<T>) -> &mut Option<(A, usize)>,
    candidates: impl FnOnce(&Plan<T>) -> Result<Vec<(A, usize)>>,
    launch: impl Fn(&Plan<T>, A, Option<&mut CudaSlice<u8>>, &mut CudaSlice<T>) -> std::result::Result<(), CudnnError>,
) -> Result<CudaSlice<T>> {
    with_state(dev, |state| {
        let (plan, slot) = state.plan::<T>(g)?;
        // SAFETY: with beta = 0 cuDNN writes every output value and reads none.
        let mut out = unsafe { dev.alloc::<T>(len)? };
        if let Some((algo, bytes)) = *which(plan) {
            launch(plan, algo, workspace(slot, dev, bytes)?, &mut out)?;
            return Ok(out);
        }
        let tried = candidates(plan)?;
        let mut last = None;
        for (i, &(algo, bytes)) in tried.iter().enumerate() {
            match workspace(slot, dev, bytes).and_then(|ws| Ok(launch(plan, algo, ws, &mut out)?)) {
                Ok(()) => {
                    // Once per plan: which algorithm each product runs is what a GPU session reads.
                    tracing::info!(product, dtype = ?T::DTYPE, ?g, ?algo, workspace_bytes = bytes, "cuDNN plan");
                    if i > 0 {
                        // The first candidate is the deterministic one: this plan's runs may differ.
                        tracing::warn!(product, ?g, ?algo, "cuDNN: no deterministic gradient algorithm for this convolution ran; its heuristics' choice adds with atomics");
                    }
                    *which(plan) = Some((algo, bytes));
                    return Ok(out);
                }
                Err(e) => {
                    if let Some(&(next, _)) = tried.get(i + 1) {
                        tracing::warn!(product, ?g, ?algo, ?next, %e, "cuDNN could not run an algorithm it had sized (or allocate its workspace); trying the next");
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| candle_core::Error::Msg(format!("cuDNN {product}: no algorithm for {g:?}"))))
    })
}

/// `y = conv(x, w)`, `x` and `w` contiguous from their views' starts.
pub(super) fn forward<T: ConvType>(
    dev: &CudaDevice,
    g: Geom,
    x: &CudaView<'_, T>,
    w: &CudaView<'_, T>,
) -> Result<CudaSlice<T>> {
    let chosen = |plan: &Plan<T>| {
        let op = plan.forward_op();
        let algo = op.pick_algorithm()?;
        Ok(vec![(algo, op.get_workspace_size(algo)?)])
    };
    call(
        dev,
        ("forward", g),
        g.n * g.out_img(),
        |p| &mut p.forward,
        chosen,
        |plan, algo, ws, y| unsafe { plan.forward_op().launch(algo, ws, (T::one(), T::zero()), x, w, y) },
    )
}

/// `dX` from `dY` and `W`.
pub(super) fn input_grad<T: ConvType>(
    dev: &CudaDevice,
    g: Geom,
    dy: &CudaView<'_, T>,
    w: &CudaView<'_, T>,
) -> Result<CudaSlice<T>> {
    let chosen = |plan: &Plan<T>| {
        let op = plan.data_op();
        let picked = op.pick_algorithm()?;
        candidates(deterministic_data(picked), picked, |a| op.get_workspace_size(a), g)
    };
    call(
        dev,
        ("input gradient", g),
        g.n * g.in_img(),
        |p| &mut p.data,
        chosen,
        |plan, algo, ws, dx| unsafe { plan.data_op().launch(algo, ws, (T::one(), T::zero()), dx, w, dy) },
    )
}

/// `dW` from `X` and `dY`.
pub(super) fn weight_grad<T: ConvType>(
    dev: &CudaDevice,
    g: Geom,
    x: &CudaView<'_, T>,
    dy: &CudaView<'_, T>,
) -> Result<CudaSlice<T>> {
    let chosen = |plan: &Plan<T>| {
        let op = plan.filter_op();
        let picked = op.pick_algorithm()?;
        candidates(deterministic_filter(picked), picked, |a| op.get_workspace_size(a), g)
    };
    call(
        dev,
        ("weight gradient", g),
        g.cout * g.kdim(),
        |p| &mut p.filter,
        chosen,
        |plan, algo, ws, dw| unsafe { plan.filter_op().launch(algo, ws, (T::one(), T::zero()), x, dw, dy) },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::cuda_backend::cudarc::cudnn::sys::cudnnStatus_t;

    #[test]
    fn non_deterministic_gradient_algorithms_are_replaced() {
        assert_eq!(
            deterministic_data(DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_0),
            DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_1
        );
        let kept = DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED;
        assert_eq!(deterministic_data(kept), kept);
        for bad in [FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3] {
            assert_eq!(deterministic_filter(bad), FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1);
        }
        let kept = FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT;
        assert_eq!(deterministic_filter(kept), kept);
    }

    /// The deterministic choice first, cuDNN's own after it in case the first will not run; a
    /// choice whose workspace cannot be sized is never tried.
    #[test]
    fn candidates_put_the_deterministic_choice_first() {
        let g = Geom::new(&[2, 3, 8, 8], &[4, 3, 3, 3], 1, 1).unwrap();
        let sized = |a: u8| {
            if a == 9 {
                Err(CudnnError(cudnnStatus_t::CUDNN_STATUS_NOT_SUPPORTED))
            } else {
                Ok(100 * a as usize)
            }
        };
        assert_eq!(candidates(1u8, 1, sized, g).unwrap(), vec![(1, 100)]);
        assert_eq!(candidates(1u8, 2, sized, g).unwrap(), vec![(1, 100), (2, 200)]);
        assert_eq!(candidates(9u8, 2, sized, g).unwrap(), vec![(2, 200)]);
        assert_eq!(candidates(1u8, 9, sized, g).unwrap(), vec![(1, 100)]);
        assert!(candidates(9u8, 9, sized, g).is_err());
    }
}
