//! The fused batch norm's candle ops and their kernel launches: [`Stats`] (no gradient),
//! [`Normalize`] (whose backward is [`Grad`]'s two passes).
//!
//! Each layer's launches are the kernels' own: the statistics (two), the normalisation (one), the
//! gradient's sums (two) and its input (one). The function handles are looked up once per device.

use super::super::cuda_views::{self, cpu_refused};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaSlice, CudaView, DeviceRepr, LaunchArgs, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{CudaDType, CudaDevice, DeviceId, WrapErr};
use candle_core::{
    bail, CpuStorage, CudaStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor,
};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// `kernels.cu` as PTX, compiled by `build.rs`.
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/bn_kernels.ptx"));
/// The module's name among the device's custom modules.
const MODULE: &str = "cfrun_bn_kernels";
/// Threads per block: `THREADS` of `kernels.cu`, which its reductions assume.
const THREADS: u32 = 256;
/// Most blocks of an elementwise launch; the kernels loop over the rest.
const MAX_BLOCKS: usize = 1 << 16;
/// Values each thread of a per-channel sum takes, about: enough blocks to fill the card when a
/// channel is long (resnet_gpu's 28 x 28 layers: 100,352 values a channel, 25 blocks each).
const VALUES_PER_THREAD: usize = 16;
/// Most blocks per channel (the final sums add this many partial sums in one thread).
const MAX_SPLITS: usize = 1024;

/// The batch statistics of `x` (see [`super::batch_stats`]).
pub(super) fn batch_stats(x: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&Stats { eps: eps as f32 })
}

/// See [`super::normalize`].
pub(super) fn normalize(
    x: &Tensor,
    gb: &Tensor,
    stats: &Tensor,
    residual: Option<&Tensor>,
    relu: bool,
) -> Result<Tensor> {
    let op = Normalize { stats: stats.contiguous()?, relu };
    let (x, gb) = (x.contiguous()?, gb.contiguous()?);
    match residual {
        None => x.apply_op2(&gb, op),
        Some(r) => x.apply_op3(&gb, &r.contiguous()?, op),
    }
}

/// `N`, `C` and `H * W` as the kernels take them, the number of values, and the blocks per
/// channel of the per-channel sums.
#[derive(Clone, Copy, Debug)]
struct Dims {
    n: u32,
    c: u32,
    hw: u32,
    total: usize,
    splits: u32,
}

impl Dims {
    fn of(dims: &[usize]) -> Result<Self> {
        let &[n, c, h, w] = dims else { bail!("batch norm: expected an (N, C, H, W) tensor, got {dims:?}") };
        let total = n * c * h * w;
        if total > super::MAX_VALUES || total == 0 || c > super::MAX_CHANNELS {
            bail!(
                "batch norm on CUDA: {dims:?}; the kernels take 1 to {} values of at most {} channels",
                super::MAX_VALUES,
                super::MAX_CHANNELS
            );
        }
        let splits = (n * h * w).div_ceil(THREADS as usize * VALUES_PER_THREAD).clamp(1, MAX_SPLITS);
        // Each fits: their product does.
        Ok(Dims { n: n as u32, c: c as u32, hw: (h * w) as u32, total, splits: splits as u32 })
    }

    /// `splits` blocks per channel (the partial sums).
    fn per_slice(&self) -> LaunchConfig {
        LaunchConfig { grid_dim: (self.c * self.splits, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
    }

    /// One thread per channel (the final sums).
    fn per_channel(&self) -> LaunchConfig {
        LaunchConfig { grid_dim: (self.c.div_ceil(THREADS), 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
    }

    /// The partial sums' scratch: two doubles per block of [`Self::per_slice`].
    fn partials(&self, dev: &CudaDevice) -> Result<CudaSlice<f64>> {
        output::<f64>(dev, 2 * (self.c * self.splits) as usize)
    }

    /// Enough blocks for one thread per value, up to [`MAX_BLOCKS`] (the elementwise kernels).
    fn per_value(&self) -> LaunchConfig {
        let blocks = self.total.div_ceil(THREADS as usize).clamp(1, MAX_BLOCKS) as u32;
        LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
    }
}

/// The name [`view`] and [`tensor_view`] give in their errors.
const OP: &str = "batch norm on CUDA";

fn view<'a, T: CudaDType>(s: &'a CudaStorage, l: &Layout) -> Result<CudaView<'a, T>> {
    cuda_views::view(s, l, OP)
}

fn tensor_view<'a, T: CudaDType>(s: &'a Storage, l: &Layout) -> Result<CudaView<'a, T>> {
    cuda_views::tensor_view(s, l, OP)
}

/// An activation type the kernels take: f32, or bf16 under mixed precision (statistics, gamma,
/// beta and their gradients are f32 either way).
trait Act: CudaDType + DeviceRepr + 'static {
    /// The suffix of the kernels' names for this type.
    const SUFFIX: &'static str;
}

impl Act for f32 {
    const SUFFIX: &'static str = "f32";
}
impl Act for half::bf16 {
    const SUFFIX: &'static str = "bf16";
}

/// `f::<T>(args)` with `T` the activation type `dtype` names.
macro_rules! by_act {
    ($dtype:expr, $f:ident($($arg:expr),*)) => {
        match $dtype {
            DType::F32 => $f::<f32>($($arg),*),
            DType::BF16 => $f::<half::bf16>($($arg),*),
            other => bail!("batch norm on CUDA: activations of {other:?}; the kernels take f32 and bf16"),
        }
    };
}

/// Kernel `name` for `T` on `dev`.
fn kernel<T: Act>(dev: &CudaDevice, name: &str) -> Result<CudaFunction> {
    function(dev, &format!("{name}_{}", T::SUFFIX))
}

/// The kernel called `name` on `dev`: looked up in the driver once per device and name, since a
/// launch's host time is what this module exists to cut.
fn function(dev: &CudaDevice, name: &str) -> Result<CudaFunction> {
    type Known = HashMap<(DeviceId, String), CudaFunction>;
    static KNOWN: OnceLock<Mutex<Known>> = OnceLock::new();
    let key = (dev.id(), name.to_string());
    let known = KNOWN.get_or_init(Default::default);
    if let Some(f) = known.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(f.clone());
    }
    let f = dev.get_or_load_custom_func(name, MODULE, PTX)?.into_cuda_function();
    known.lock().unwrap_or_else(|e| e.into_inner()).insert(key, f.clone());
    Ok(f)
}

/// `len` values on `dev`, every one written by the kernel they are passed to.
fn output<T: DeviceRepr>(dev: &CudaDevice, len: usize) -> Result<CudaSlice<T>> {
    // SAFETY: each kernel below writes every value of its output before anything reads it.
    unsafe { dev.alloc::<T>(len) }
}

/// Fails unless `what` has the dims `want`: the kernels index their arguments by `(N, C, H*W)`
/// with raw pointers, so a mismatch would read past a buffer rather than fail.
fn expect_dims(what: &str, got: &[usize], want: &[usize]) -> Result<()> {
    if got != want {
        bail!("batch norm on CUDA: {what} of dims {got:?}, expected {want:?}");
    }
    Ok(())
}

/// The null pointer the kernels read as "no such argument".
const NULL: u64 = 0;

/// Pushes `view` onto `b`, or [`NULL`] where there is none (a residual, a ReLU's output).
fn arg_or_null<'a, 'b: 'a, 'c: 'b, T>(b: &mut LaunchArgs<'a>, view: Option<&'b CudaView<'c, T>>) {
    match view {
        Some(v) => b.arg(v),
        None => b.arg(&NULL),
    };
}

/// `(3, C)`: each channel's mean, its biased variance, and `1 / sqrt(variance + eps)`.
struct Stats {
    eps: f32,
}

impl CustomOp1 for Stats {
    fn name(&self) -> &'static str {
        "cfrun-bn-stats"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_refused(self.name())
    }

    fn cuda_fwd(&self, xs: &CudaStorage, xl: &Layout) -> Result<(CudaStorage, Shape)> {
        let d = Dims::of(xl.dims())?;
        let stats = by_act!(xs.dtype(), batch_stats_of(xs, xl, d, self.eps))?;
        Ok((CudaStorage::wrap_cuda_slice(stats, xs.device.clone()), Shape::from((3, d.c as usize))))
    }
}

fn batch_stats_of<T: Act>(xs: &CudaStorage, xl: &Layout, d: Dims, eps: f32) -> Result<CudaSlice<f32>> {
    let dev = &xs.device;
    let x = view::<T>(xs, xl)?;
    let mut part = d.partials(dev)?;
    let mut stats = output::<f32>(dev, 3 * d.c as usize)?;
    let stream = dev.cuda_stream();
    let func = kernel::<T>(dev, "cfrun_bn_stats_part")?;
    let mut b = stream.launch_builder(&func);
    b.arg(&x).arg(&mut part).arg(&d.n).arg(&d.c).arg(&d.hw).arg(&d.splits);
    // SAFETY: the arguments are the kernel's, in its order; `splits` blocks of THREADS per channel.
    unsafe { b.launch(d.per_slice()) }.w()?;
    drop(b);
    let func = kernel::<T>(dev, "cfrun_bn_stats_final")?;
    let mut b = stream.launch_builder(&func);
    b.arg(&x).arg(&part).arg(&mut stats).arg(&d.n).arg(&d.c).arg(&d.hw).arg(&d.splits).arg(&eps);
    // SAFETY: the arguments are the kernel's, in its order; one thread per channel.
    unsafe { b.launch(d.per_channel()) }.w()?;
    drop(b);
    Ok(stats)
}

/// `act(gamma * xhat + beta + residual)`: `CustomOp2(x, gb)` or `CustomOp3(x, gb, residual)`.
#[derive(Clone, Debug)]
struct Normalize {
    /// [`Stats`] of the input.
    stats: Tensor,
    relu: bool,
}

impl Normalize {
    fn forward(
        &self,
        xs: &CudaStorage,
        xl: &Layout,
        gbs: &CudaStorage,
        gbl: &Layout,
        r: Option<(&CudaStorage, &Layout)>,
    ) -> Result<(CudaStorage, Shape)> {
        let y = by_act!(xs.dtype(), normalized(self, xs, xl, gbs, gbl, r))?;
        Ok((y, xl.shape().clone()))
    }

    /// `(dx, d[gamma; beta], d residual)`, the last only when `residual`.
    fn grads(
        &self,
        x: &Tensor,
        gb: &Tensor,
        y: &Tensor,
        dy: &Tensor,
        residual: bool,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        // The ReLU's mask is the output's sign; without a ReLU there is none to read.
        let y = self.relu.then(|| y.clone());
        let grad = |pass| Grad { x: x.clone(), y: y.clone(), stats: self.stats.clone(), pass };
        let dgb = dy.apply_op1_no_bwd(&grad(Pass::Sums))?;
        let both = dy.apply_op1_no_bwd(&grad(Pass::Input { gb: gb.clone(), dgb: dgb.clone(), residual }))?;
        if residual {
            let dx = both.narrow(0, 0, 1)?.reshape(x.shape())?;
            let dr = both.narrow(0, 1, 1)?.reshape(x.shape())?;
            Ok((dx, dgb, Some(dr)))
        } else {
            Ok((both.reshape(x.shape())?, dgb, None))
        }
    }
}

/// [`Normalize`]'s forward in activation type `T`.
fn normalized<T: Act>(
    op: &Normalize,
    xs: &CudaStorage,
    xl: &Layout,
    gbs: &CudaStorage,
    gbl: &Layout,
    r: Option<(&CudaStorage, &Layout)>,
) -> Result<CudaStorage> {
    let d = Dims::of(xl.dims())?;
    let c = d.c as usize;
    expect_dims("[gamma; beta]", gbl.dims(), &[2, c])?;
    expect_dims("the statistics", op.stats.dims(), &[3, c])?;
    let dev = &xs.device;
    let (x, gb) = (view::<T>(xs, xl)?, view::<f32>(gbs, gbl)?);
    let r = r.map(|(s, l)| view::<T>(s, l)).transpose()?;
    let (ss, sl) = op.stats.storage_and_layout();
    let stats = tensor_view::<f32>(&ss, sl)?;
    let mut y = output::<T>(dev, d.total)?;
    let (func, stream) = (kernel::<T>(dev, "cfrun_bn_apply")?, dev.cuda_stream());
    let relu = i32::from(op.relu);
    let mut b = stream.launch_builder(&func);
    b.arg(&x).arg(&stats).arg(&gb);
    arg_or_null(&mut b, r.as_ref());
    b.arg(&mut y).arg(&d.n).arg(&d.c).arg(&d.hw).arg(&relu);
    // SAFETY: the arguments are the kernel's, in its order; the kernel loops over every value.
    unsafe { b.launch(d.per_value()) }.w()?;
    drop(b);
    Ok(CudaStorage::wrap_cuda_slice(y, dev.clone()))
}

impl CustomOp2 for Normalize {
    fn name(&self) -> &'static str {
        "cfrun-bn-normalize-fused"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_refused(CustomOp2::name(self))
    }

    fn cuda_fwd(&self, xs: &CudaStorage, xl: &Layout, gbs: &CudaStorage, gbl: &Layout) -> Result<(CudaStorage, Shape)> {
        self.forward(xs, xl, gbs, gbl, None)
    }

    fn bwd(&self, x: &Tensor, gb: &Tensor, y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dgb, _) = self.grads(x, gb, y, dy, false)?;
        Ok((Some(dx), Some(dgb)))
    }
}

impl CustomOp3 for Normalize {
    fn name(&self) -> &'static str {
        "cfrun-bn-add-normalize-fused"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        cpu_refused(CustomOp3::name(self))
    }

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xl: &Layout,
        gbs: &CudaStorage,
        gbl: &Layout,
        rs: &CudaStorage,
        rl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        if rl.dims() != xl.dims() {
            bail!("batch norm: residual {:?} and input {:?} differ", rl.dims(), xl.dims());
        }
        self.forward(xs, xl, gbs, gbl, Some((rs, rl)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gb: &Tensor,
        _r: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dgb, dr) = self.grads(x, gb, y, dy, true)?;
        Ok((Some(dx), Some(dgb), dr))
    }
}

/// One of the gradient's two kernels, applied to `dy`; `g` is `dy` masked by the ReLU.
struct Grad {
    x: Tensor,
    /// The forward's output, whose sign is the ReLU's mask; `None` without a ReLU.
    y: Option<Tensor>,
    stats: Tensor,
    pass: Pass,
}

enum Pass {
    /// `(2, C)`: `sum(g * xhat)` (d gamma), then `sum(g)` (d beta).
    Sums,
    /// `dx`, and with `residual` the residual's gradient after it: `(1 or 2, N*C*H*W)`.
    Input { gb: Tensor, dgb: Tensor, residual: bool },
}

impl CustomOp1 for Grad {
    fn name(&self) -> &'static str {
        match self.pass {
            Pass::Sums => "cfrun-bn-grad-sums",
            Pass::Input { .. } => "cfrun-bn-grad-input",
        }
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_refused(self.name())
    }

    fn cuda_fwd(&self, dys: &CudaStorage, dyl: &Layout) -> Result<(CudaStorage, Shape)> {
        by_act!(dys.dtype(), gradient(self, dys, dyl))
    }
}

/// One of [`Grad`]'s passes in activation type `T`.
fn gradient<T: Act>(op: &Grad, dys: &CudaStorage, dyl: &Layout) -> Result<(CudaStorage, Shape)> {
    let d = Dims::of(dyl.dims())?;
    expect_dims("the input", op.x.dims(), dyl.dims())?;
    if let Some(y) = &op.y {
        expect_dims("the output", y.dims(), dyl.dims())?;
    }
    expect_dims("the statistics", op.stats.dims(), &[3, d.c as usize])?;
    if let Pass::Input { gb, dgb, .. } = &op.pass {
        expect_dims("[gamma; beta]", gb.dims(), &[2, d.c as usize])?;
        expect_dims("their gradient", dgb.dims(), &[2, d.c as usize])?;
    }
    let dev = &dys.device;
    let dy = view::<T>(dys, dyl)?;
    let (xs, xl) = op.x.storage_and_layout();
    let x = tensor_view::<T>(&xs, xl)?;
    let (ss, sl) = op.stats.storage_and_layout();
    let stats = tensor_view::<f32>(&ss, sl)?;
    let yg = op.y.as_ref().map(|t| t.storage_and_layout());
    let y = yg.as_ref().map(|(s, l)| tensor_view::<T>(s, l)).transpose()?;
    let (n, c, hw) = (d.n, d.c, d.hw);
    let stream = dev.cuda_stream();
    match &op.pass {
        Pass::Sums => {
            let mut part = d.partials(dev)?;
            let mut dgb = output::<f32>(dev, 2 * d.c as usize)?;
            let func = kernel::<T>(dev, "cfrun_bn_grad_part")?;
            let mut b = stream.launch_builder(&func);
            b.arg(&x);
            arg_or_null(&mut b, y.as_ref());
            b.arg(&dy).arg(&stats).arg(&mut part).arg(&n).arg(&c).arg(&hw).arg(&d.splits);
            // SAFETY: the arguments are the kernel's, in its order; `splits` blocks of THREADS per channel.
            unsafe { b.launch(d.per_slice()) }.w()?;
            drop(b);
            let func = function(dev, "cfrun_bn_grad_final")?;
            let mut b = stream.launch_builder(&func);
            b.arg(&part).arg(&stats).arg(&mut dgb).arg(&c).arg(&d.splits);
            // SAFETY: the arguments are the kernel's, in its order; one thread per channel.
            unsafe { b.launch(d.per_channel()) }.w()?;
            drop(b);
            Ok((CudaStorage::wrap_cuda_slice(dgb, dev.clone()), Shape::from((2, d.c as usize))))
        }
        Pass::Input { gb, dgb, residual } => {
            let (gs, gl) = gb.storage_and_layout();
            let gb = tensor_view::<f32>(&gs, gl)?;
            let (ds, dl) = dgb.storage_and_layout();
            let dgb = tensor_view::<f32>(&ds, dl)?;
            let parts = if *residual { 2 } else { 1 };
            let mut out = output::<T>(dev, parts * d.total)?;
            let (mut dx, mut dr) = out.split_at_mut(d.total);
            let func = kernel::<T>(dev, "cfrun_bn_grad_input")?;
            let mut b = stream.launch_builder(&func);
            b.arg(&x);
            arg_or_null(&mut b, y.as_ref());
            b.arg(&dy).arg(&stats).arg(&gb).arg(&dgb).arg(&mut dx);
            if *residual {
                b.arg(&mut dr);
            } else {
                b.arg(&NULL);
            }
            b.arg(&n).arg(&c).arg(&hw);
            // SAFETY: the arguments are the kernel's, in its order; the kernel loops over every value.
            unsafe { b.launch(d.per_value()) }.w()?;
            drop(b);
            Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), Shape::from((parts, d.total))))
        }
    }
}
