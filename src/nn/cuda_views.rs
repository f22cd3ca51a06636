//! The arguments of cfrun's own CUDA ops ([`super::conv_cudnn`], [`super::bn_cuda`]) as typed
//! device views: the values from the layout's start, which must be contiguous (the kernels and
//! cuDNN's descriptors read them packed).

use candle_core::cuda_backend::cudarc::driver::CudaView;
use candle_core::cuda_backend::CudaDType;
use candle_core::{bail, CpuStorage, CudaStorage, Layout, Result, Shape, Storage};

/// `s`'s values in `T` that `l` covers, exactly as many as its shape holds; `op` names the op in
/// the error of a strided layout. Kernels and cuDNN read through the raw pointer, so the view's
/// length bounds nothing on the device: each op checks its arguments' sizes before it launches.
pub(crate) fn view<'a, T: CudaDType>(s: &'a CudaStorage, l: &Layout, op: &str) -> Result<CudaView<'a, T>> {
    if !l.is_contiguous() {
        bail!("{op}: a non-contiguous argument");
    }
    let range = l.start_offset()..l.start_offset() + l.shape().elem_count();
    let values = s.as_cuda_slice::<T>()?;
    match values.try_slice(range.clone()) {
        Some(v) => Ok(v),
        None => bail!("{op}: values {range:?} of a buffer of {}", values.len()),
    }
}

/// [`view`] of a tensor's storage, read-locked by the caller (`Tensor::storage_and_layout`).
pub(crate) fn tensor_view<'a, T: CudaDType>(s: &'a Storage, l: &Layout, op: &str) -> Result<CudaView<'a, T>> {
    match s {
        Storage::Cuda(s) => view(s, l, op),
        _ => bail!("{op}: an argument is not on the CUDA device"),
    }
}

/// The CPU forward of an op that exists only on CUDA devices (the CPU has ops of its own).
pub(crate) fn cpu_refused(op: &str) -> Result<(CpuStorage, Shape)> {
    bail!("{op}: runs on CUDA devices only (the CPU path has its own op)")
}
