//! A ResNet for small images (CIFAR-style: 3x3 stem, no max-pool) with BasicBlocks.
//!
//! Shapes for input `(N, in_channels, H, W)` (28x28 or 32x32; any size >= 8 works):
//!
//! | tap / var prefix | layers | output |
//! |---|---|---|
//! | `conv1` (+ `bn1`) | 3x3 conv stride 1, BN, ReLU | `(N, stem_width, H, W)` |
//! | `res2` | `blocks[0]` BasicBlocks, stride 1 | `(N, widths[0], H, W)` |
//! | `res3` | `blocks[1]` BasicBlocks, first stride 2 | `(N, widths[1], ceil(H/2), ceil(W/2))` |
//! | `res4` | same, stride 2 | `(N, widths[2], ceil(H/4), ..)` |
//! | `res5` | same, stride 2 | `(N, widths[3], ceil(H/8), ..)` |
//! | `fc` | global average pool of `res5`, linear | `(N, num_classes)` |
//!
//! A BasicBlock is `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, the shortcut being
//! the identity or, when the stride or width changes, `shortcut.conv` (1x1, strided) +
//! `shortcut.bn`. Var names follow the prefixes, e.g. `res3.0.conv1.weight`,
//! `res3.0.shortcut.bn.running_var`, `fc.bias`; they are the safetensors keys.

use super::batchnorm::BatchNorm;
use super::conv::conv2d;
use super::eval_unit::conv_bn_act;
use super::fused::{train_forward, ConvParts};
use super::{use_fused_kernels, NnError};
use candle_core::{DType, Result, Tensor};
use candle_nn::{Init, Linear, VarBuilder};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Architecture of a [`ResNet`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// Channels of the input images (1 for grey).
    pub in_channels: usize,
    /// Output channels of the stem conv.
    pub stem_width: usize,
    /// Channels of res2..res5.
    pub widths: [usize; 4],
    /// BasicBlocks in res2..res5 (each >= 1).
    pub blocks: [usize; 4],
    /// Outputs of the linear head.
    pub num_classes: usize,
}

impl ResNetConfig {
    /// For tests: 4/8/8/8 channels, one block per stage; trains in milliseconds per batch.
    pub fn resnet_tiny(in_channels: usize, num_classes: usize) -> Self {
        ResNetConfig { in_channels, stem_width: 4, widths: [4, 8, 8, 8], blocks: [1; 4], num_classes }
    }
    /// Half the CPU preset's widths (8/16/32/64 channels, one block per stage): about 1.5x its
    /// training speed on 2 cores, so replicated studies can train networks until they fit.
    pub fn resnet_small(in_channels: usize, num_classes: usize) -> Self {
        ResNetConfig { in_channels, stem_width: 8, widths: [8, 16, 32, 64], blocks: [1; 4], num_classes }
    }
    /// The main CPU preset: 16/32/64/128 channels, one block per stage.
    pub fn resnet_cpu(in_channels: usize, num_classes: usize) -> Self {
        ResNetConfig { in_channels, stem_width: 16, widths: [16, 32, 64, 128], blocks: [1; 4], num_classes }
    }
    /// A GPU-sized preset: 64/128/256/512 channels, two blocks per stage (ResNet-18 widths).
    pub fn resnet_gpu(in_channels: usize, num_classes: usize) -> Self {
        ResNetConfig { in_channels, stem_width: 64, widths: [64, 128, 256, 512], blocks: [2; 4], num_classes }
    }
    /// The preset called `name` (`resnet_tiny`, `resnet_small`, `resnet_cpu`, `resnet_gpu`).
    pub fn preset(name: &str, in_channels: usize, num_classes: usize) -> Option<Self> {
        match name {
            "resnet_tiny" => Some(Self::resnet_tiny(in_channels, num_classes)),
            "resnet_small" => Some(Self::resnet_small(in_channels, num_classes)),
            "resnet_cpu" => Some(Self::resnet_cpu(in_channels, num_classes)),
            "resnet_gpu" => Some(Self::resnet_gpu(in_channels, num_classes)),
            _ => None,
        }
    }
    /// Channels of the feature map at `tap`.
    pub fn channels(&self, tap: Tap) -> usize {
        match tap {
            Tap::Conv1 => self.stem_width,
            t => self.widths[t.stage().unwrap_or(0)],
        }
    }
    /// Multiply-accumulates of one `h x w` image's forward pass: every convolution and the
    /// linear head. Batch norm, ReLU, pooling and the residual additions are left out: they are
    /// passes over memory, not products. A training step costs about three times this per image
    /// (the forward, then each layer's input gradient and weight gradient).
    pub fn forward_macs(&self, h: usize, w: usize) -> u64 {
        let convs: u64 = self.convolutions(h, w).iter().map(|c| c.macs).sum();
        convs + (self.widths[3] * self.num_classes) as u64
    }

    /// Values every convolution of one `h x w` image's forward pass writes: what a training
    /// step keeps for its backward pass at the least (batch norm and ReLU keep as much again).
    pub fn conv_outputs(&self, h: usize, w: usize) -> u64 {
        self.convolutions(h, w).iter().map(|c| c.outputs).sum()
    }

    /// Every convolution of one `h x w` image's forward pass, in order, as `Conv::new` builds
    /// them (a `k x k` kernel with padding `k / 2`).
    fn convolutions(&self, h: usize, w: usize) -> Vec<ConvCost> {
        let conv = |(h, w): (usize, usize), cin: usize, cout: usize, k: usize, stride: usize| {
            let out = |x: usize| (x + 2 * (k / 2) - k) / stride + 1;
            let (ho, wo) = (out(h), out(w));
            let cost = ConvCost { outputs: (ho * wo * cout) as u64, macs: (ho * wo * cout * cin * k * k) as u64 };
            ((ho, wo), cost)
        };
        let (mut size, stem) = conv((h, w), self.in_channels, self.stem_width, 3, 1);
        let mut all = vec![stem];
        let mut cin = self.stem_width;
        for (s, (&width, &blocks)) in self.widths.iter().zip(&self.blocks).enumerate() {
            for b in 0..blocks {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                let (mid, first) = conv(size, cin, width, 3, stride);
                all.extend([first, conv(mid, width, width, 3, 1).1]);
                if stride != 1 || cin != width {
                    all.push(conv(size, cin, width, 1, stride).1);
                }
                (size, cin) = (mid, width);
            }
        }
        all
    }

    /// Rejects zero sizes.
    pub fn validate(&self) -> std::result::Result<(), NnError> {
        let zero = self.in_channels == 0
            || self.stem_width == 0
            || self.num_classes == 0
            || self.widths.contains(&0)
            || self.blocks.contains(&0);
        if zero {
            return Err(NnError::invalid(format!("architecture has a zero size: {self:?}")));
        }
        Ok(())
    }
}

/// One convolution of a forward pass: the values it writes and its multiply-accumulates.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvCost {
    /// Values of its output, per example.
    pub outputs: u64,
    /// Multiply-accumulates, per example.
    pub macs: u64,
}

/// A named point in the network whose activations can be extracted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tap {
    /// After the stem conv + BN + ReLU.
    Conv1,
    /// After stage res2.
    Res2,
    /// After stage res3.
    Res3,
    /// After stage res4.
    Res4,
    /// After stage res5 (pooled: the penultimate feature).
    Res5,
}

impl Tap {
    /// All taps, shallow to deep.
    pub const ALL: [Tap; 5] = [Tap::Conv1, Tap::Res2, Tap::Res3, Tap::Res4, Tap::Res5];

    /// Index 0..4 of the residual stage, `None` for the stem.
    fn stage(self) -> Option<usize> {
        match self {
            Tap::Conv1 => None,
            Tap::Res2 => Some(0),
            Tap::Res3 => Some(1),
            Tap::Res4 => Some(2),
            Tap::Res5 => Some(3),
        }
    }

    /// Every tap's name, shallow to deep.
    pub const NAMES: [&'static str; 5] = ["conv1", "res2", "res3", "res4", "res5"];

    /// The name used in configs and var prefixes.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl fmt::Display for Tap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Tap {
    type Err = NnError;
    fn from_str(s: &str) -> std::result::Result<Self, NnError> {
        Tap::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| NnError::invalid(format!("unknown tap `{s}` (expected one of {})", Tap::NAMES.join(", "))))
    }
}

/// A bias-free conv layer (the fast CPU op on CPU).
#[derive(Clone, Debug)]
pub struct Conv {
    weight: Tensor,
    stride: usize,
    padding: usize,
}

impl Conv {
    /// `k x k` conv, `cin -> cout`, padding `k / 2`; Kaiming-normal (fan-out) init hint.
    pub fn new(cin: usize, cout: usize, k: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let std = (2.0 / (cout * k * k) as f64).sqrt();
        let weight = vb.get_with_hints((cout, cin, k, k), "weight", Init::Randn { mean: 0.0, stdev: std })?;
        Ok(Conv { weight, stride, padding: k / 2 })
    }
    /// `(N, cin, H, W) -> (N, cout, Ho, Wo)`.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        conv2d(xs, &self.weight.to_dtype(xs.dtype())?, self.stride, self.padding)
    }

    /// The weight, stride and padding, as the fused ops take them.
    pub(crate) fn parts(&self) -> ConvParts<'_> {
        ConvParts { weight: &self.weight, stride: self.stride, padding: self.padding }
    }

    #[cfg(test)]
    pub(crate) fn parts_for_tests(&self) -> ConvParts<'_> {
        self.parts()
    }
}

/// Whether to run the fused training ops (CPU, f32, fast kernels enabled, train mode).
fn fused(xs: &Tensor, train: bool) -> bool {
    train && use_fused_kernels(xs.device(), xs.dtype())
}

/// Whether to run the fused inference ops (the same, in eval mode).
fn eval_fused(xs: &Tensor, train: bool) -> bool {
    !train && use_fused_kernels(xs.device(), xs.dtype())
}

/// `bn.forward_act`, run in f32 for reduced-precision (bf16) activations, so that mixed
/// precision keeps batch-norm statistics in f32; the result comes back in `x`'s dtype. For f32
/// activations, and in train mode where the fused CUDA kernels take bf16 as it is and compute in
/// f32 themselves, it is `bn.forward_act` itself.
fn bn_act(bn: &BatchNorm, x: &Tensor, residual: Option<&Tensor>, relu: bool, train: bool) -> Result<Tensor> {
    if x.dtype() == DType::F32 || (train && super::batchnorm::fuses(x)) {
        return bn.forward_act(x, residual, relu, train);
    }
    let residual = residual.map(|r| r.to_dtype(DType::F32)).transpose()?;
    bn.forward_act(&x.to_dtype(DType::F32)?, residual.as_ref(), relu, train)?.to_dtype(x.dtype())
}

/// The two-conv residual block of ResNet-18/34.
#[derive(Clone, Debug)]
pub struct BasicBlock {
    conv1: Conv,
    bn1: BatchNorm,
    conv2: Conv,
    bn2: BatchNorm,
    shortcut: Option<(Conv, BatchNorm)>,
}

impl BasicBlock {
    /// A block `cin -> cout` whose first conv has `stride`.
    pub fn new(cin: usize, cout: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let shortcut = if stride != 1 || cin != cout {
            let sc = vb.pp("shortcut");
            Some((Conv::new(cin, cout, 1, stride, sc.pp("conv"))?, BatchNorm::new(cout, sc.pp("bn"))?))
        } else {
            None
        };
        Ok(BasicBlock {
            conv1: Conv::new(cin, cout, 3, stride, vb.pp("conv1"))?,
            bn1: BatchNorm::new(cout, vb.pp("bn1"))?,
            conv2: Conv::new(cout, cout, 3, 1, vb.pp("conv2"))?,
            bn2: BatchNorm::new(cout, vb.pp("bn2"))?,
            shortcut,
        })
    }

    /// `(N, cin, H, W) -> (N, cout, H / stride, W / stride)`.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if fused(xs, train) {
            let mut units = vec![(self.conv1.parts(), &self.bn1), (self.conv2.parts(), &self.bn2)];
            if let Some((conv, bn)) = &self.shortcut {
                units.push((conv.parts(), bn));
            }
            return train_forward(xs, &units, true);
        }
        if eval_fused(xs, train) {
            let h = conv_bn_act(xs, self.conv1.parts(), &self.bn1, None, true)?;
            let skip = match &self.shortcut {
                Some((conv, bn)) => conv_bn_act(xs, conv.parts(), bn, None, false)?,
                None => xs.clone(),
            };
            return conv_bn_act(&h, self.conv2.parts(), &self.bn2, Some(&skip), true);
        }
        self.forward_layers(xs, train)
    }

    /// The same as [`BasicBlock::forward_t`] with one candle op per layer.
    pub(crate) fn forward_layers(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let h = bn_act(&self.bn1, &self.conv1.forward(xs)?, None, true, train)?;
        let h = self.conv2.forward(&h)?;
        let skip = match &self.shortcut {
            Some((conv, bn)) => bn_act(bn, &conv.forward(xs)?, None, false, train)?,
            None => xs.clone(),
        };
        bn_act(&self.bn2, &h, Some(&skip), true, train)
    }
}

/// The classifier head, `cin` features to `num_classes` logits, within PyTorch's `Linear` bounds
/// (re-drawn deterministically by [`super::init_weights`] for training).
pub(super) fn classifier(cin: usize, num_classes: usize, vb: VarBuilder) -> Result<Linear> {
    let bound = 1.0 / (cin as f64).sqrt();
    let init = Init::Uniform { lo: -bound, up: bound };
    let w = vb.get_with_hints((num_classes, cin), "weight", init)?;
    let b = vb.get_with_hints(num_classes, "bias", init)?;
    Ok(Linear::new(w, Some(b)))
}

/// The network: stem, four residual stages, global average pooling, linear head.
#[derive(Clone, Debug)]
pub struct ResNet {
    conv1: Conv,
    bn1: BatchNorm,
    stages: Vec<Vec<BasicBlock>>,
    fc: Linear,
}

impl ResNet {
    /// Builds the network, creating missing vars in `vb` (see [`super::init_weights`] for the
    /// deterministic initialisation used in training).
    pub fn new(cfg: &ResNetConfig, vb: VarBuilder) -> Result<Self> {
        let mut stages = Vec::with_capacity(4);
        let mut cin = cfg.stem_width;
        for (s, (&width, &blocks)) in cfg.widths.iter().zip(&cfg.blocks).enumerate() {
            let svb = vb.pp(Tap::ALL[s + 1].name());
            let stage = (0..blocks)
                .map(|b| {
                    let stride = if s > 0 && b == 0 { 2 } else { 1 };
                    let block = BasicBlock::new(cin, width, stride, svb.pp(b));
                    cin = width;
                    block
                })
                .collect::<Result<Vec<_>>>()?;
            stages.push(stage);
        }
        let fc = classifier(cin, cfg.num_classes, vb.pp("fc"))?;
        Ok(ResNet {
            conv1: Conv::new(cfg.in_channels, cfg.stem_width, 3, 1, vb.pp("conv1"))?,
            bn1: BatchNorm::new(cfg.stem_width, vb.pp("bn1"))?,
            stages,
            fc,
        })
    }

    /// The feature map at `tap`, `(N, C, h, w)`; stops computing there.
    pub fn forward_to(&self, xs: &Tensor, tap: Tap, train: bool) -> Result<Tensor> {
        let mut maps = self.forward_taps(xs, &[tap], train)?;
        Ok(maps.remove(0))
    }

    /// The feature maps at each of `taps` (in the order given) from one pass that stops at the
    /// deepest; each map is the tensor [`Self::forward_to`] returns for its tap.
    pub fn forward_taps(&self, xs: &Tensor, taps: &[Tap], train: bool) -> Result<Vec<Tensor>> {
        let mut maps: [Option<Tensor>; 5] = Default::default();
        let mut h = if fused(xs, train) {
            train_forward(xs, &[(self.conv1.parts(), &self.bn1)], false)?
        } else if eval_fused(xs, train) {
            conv_bn_act(xs, self.conv1.parts(), &self.bn1, None, true)?
        } else {
            bn_act(&self.bn1, &self.conv1.forward(xs)?, None, true, train)?
        };
        let deepest = taps.iter().copied().max().unwrap_or(Tap::Conv1);
        for (depth, stage) in std::iter::once(None).chain(self.stages.iter().map(Some)).enumerate() {
            if let Some(stage) = stage {
                for block in stage {
                    h = block.forward_t(&h, train)?;
                }
            }
            if taps.contains(&Tap::ALL[depth]) {
                maps[depth] = Some(h.clone());
            }
            if Tap::ALL[depth] == deepest {
                break;
            }
        }
        let maps: Option<Vec<Tensor>> = taps.iter().map(|&t| maps[t as usize].clone()).collect();
        maps.ok_or_else(|| candle_core::Error::Msg("a tap the network does not have".into()))
    }

    /// Global-average-pooled res5 features `(N, widths[3])` (the penultimate layer).
    pub fn embed(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_to(xs, Tap::Res5, train)?.to_dtype(DType::F32)?.mean((2, 3))
    }

    /// Logits `(N, num_classes)`.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        super::dense::linear(&self.fc, &self.embed(xs, train)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::layer_log::{recorded_conv_macs, recorded_conv_outputs, recording_counted};
    use crate::nn::{with_cpu_kernels, CpuKernels};
    use candle_core::Device;
    use candle_nn::VarMap;

    /// resnet_gpu on one 28x28 grey image, counted by hand from the table at the top: the stem
    /// (1 -> 64 at 28x28), res2 (four 64 -> 64 convs at 28x28), res3 to res5 (a strided conv, a
    /// 1x1 strided shortcut and three convs at the new width, on 14x14, 7x7 and 4x4), the head.
    #[test]
    fn resnet_gpu_costs_what_its_layers_add_up_to() {
        let stem = 28 * 28 * 64 * 9;
        let res2 = 4 * (28 * 28 * 64 * 64 * 9);
        let stage = |side: usize, cin: usize, c: usize| side * side * c * (cin * 9 + cin + 3 * c * 9);
        let by_hand = stem + res2 + stage(14, 64, 128) + stage(7, 128, 256) + stage(4, 256, 512) + 512 * 10;
        assert_eq!(ResNetConfig::resnet_gpu(1, 10).forward_macs(28, 28), by_hand as u64);
        assert_eq!(by_hand, 455_800_832);
    }

    /// The count agrees with the convolutions a forward pass runs, recorded one by one, for odd
    /// sizes (where a strided conv rounds up) and wider stages too.
    #[test]
    fn forward_macs_match_the_convolutions_a_forward_pass_runs() {
        let configs = [
            ResNetConfig::resnet_tiny(3, 7),
            ResNetConfig {
                in_channels: 2,
                stem_width: 6,
                widths: [6, 8, 12, 16],
                blocks: [2, 1, 2, 1],
                num_classes: 5,
            },
        ];
        for cfg in configs {
            for (h, w) in [(28, 28), (13, 9)] {
                let vm = VarMap::new();
                let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
                let net = ResNet::new(&cfg, vb).unwrap();
                let xs = Tensor::zeros((1, cfg.in_channels, h, w), DType::F32, &Device::Cpu).unwrap();
                let (logits, calls) =
                    recording_counted(|| with_cpu_kernels(CpuKernels::Layers, || net.forward_t(&xs, false)));
                assert_eq!(logits.unwrap().dims(), &[1, cfg.num_classes]);
                let head = (cfg.widths[3] * cfg.num_classes) as u64;
                assert_eq!(cfg.forward_macs(h, w), recorded_conv_macs(&calls) + head, "{cfg:?} at {h}x{w}");
                assert_eq!(cfg.conv_outputs(h, w), recorded_conv_outputs(&calls), "{cfg:?} at {h}x{w}");
            }
        }
    }
}
