//! One type for every network the training loop, the checkpoints and extraction handle: an image
//! [`ResNet`] or a video [`R2Plus1D`].
//!
//! [`Arch`] is serialised *untagged*: a ResNet's architecture JSON is exactly what it was before
//! video networks existed, so existing models, checkpoints and training states (and their
//! content digests) stay valid. An R(2+1)D config is recognised by its own required fields
//! (`temporal_kernel`, ...) and rejects unknown ones, so the two can never be confused.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::r2plus1d::{R2Plus1D, R2Plus1DConfig};
use super::resnet::{ResNet, ResNetConfig, Tap};
use super::NnError;

/// A network architecture.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Arch {
    /// A video network; listed first so its stricter shape is tried first when reading.
    R2Plus1D(R2Plus1DConfig),
    /// An image network.
    ResNet(ResNetConfig),
}

/// Every preset name, images first.
pub const PRESETS: &[&str] = &[
    "resnet_tiny",
    "resnet_small",
    "resnet_cpu",
    "resnet_gpu",
    "r2plus1d_tiny",
    "r2plus1d_small",
    "r2plus1d_large",
    "r2plus1d_gpu",
];

impl From<ResNetConfig> for Arch {
    fn from(c: ResNetConfig) -> Self {
        Arch::ResNet(c)
    }
}

impl From<R2Plus1DConfig> for Arch {
    fn from(c: R2Plus1DConfig) -> Self {
        Arch::R2Plus1D(c)
    }
}

impl Arch {
    /// The preset called `name` (see [`PRESETS`]).
    pub fn preset(name: &str, in_channels: usize, num_classes: usize) -> Option<Self> {
        ResNetConfig::preset(name, in_channels, num_classes)
            .map(Arch::ResNet)
            .or_else(|| R2Plus1DConfig::preset(name, in_channels, num_classes).map(Arch::R2Plus1D))
    }

    /// Whether it takes clips `(N, C, T, H, W)` rather than images.
    pub fn is_video(&self) -> bool {
        matches!(self, Arch::R2Plus1D(_))
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        match self {
            Arch::ResNet(c) => c.in_channels,
            Arch::R2Plus1D(c) => c.in_channels,
        }
    }

    /// Outputs of the head.
    pub fn num_classes(&self) -> usize {
        match self {
            Arch::ResNet(c) => c.num_classes,
            Arch::R2Plus1D(c) => c.num_classes,
        }
    }

    /// Mutable access to the common size fields: stem width, stage widths, blocks per stage.
    pub fn sizes_mut(&mut self) -> (&mut usize, &mut [usize; 4], &mut [usize; 4]) {
        match self {
            Arch::ResNet(c) => (&mut c.stem_width, &mut c.widths, &mut c.blocks),
            Arch::R2Plus1D(c) => (&mut c.stem_width, &mut c.widths, &mut c.blocks),
        }
    }

    /// Rejects impossible sizes.
    pub fn validate(&self) -> std::result::Result<(), NnError> {
        match self {
            Arch::ResNet(c) => c.validate(),
            Arch::R2Plus1D(c) => c.validate(),
        }
    }

    /// The input tensor shape of a batch of `b` examples with `c` channels and `t` frames.
    pub fn input_shape(&self, b: usize, c: usize, t: usize, h: usize, w: usize) -> Vec<usize> {
        if self.is_video() {
            vec![b, c, t, h, w]
        } else {
            vec![b, c * t, h, w]
        }
    }

    /// Multiply-accumulates of one example's forward pass, an image or a clip of `t` frames of
    /// `h x w` ([`ResNetConfig::forward_macs`], [`R2Plus1DConfig::forward_macs`]).
    pub fn forward_macs(&self, t: usize, h: usize, w: usize) -> u64 {
        match self {
            Arch::ResNet(c) => c.forward_macs(h, w),
            Arch::R2Plus1D(c) => c.forward_macs(t, h, w),
        }
    }

    /// Values the convolutions of one example's forward pass write ([`ResNetConfig::conv_outputs`],
    /// [`R2Plus1DConfig::conv_outputs`]): a lower bound of what training holds per example.
    pub fn conv_outputs(&self, t: usize, h: usize, w: usize) -> u64 {
        match self {
            Arch::ResNet(c) => c.conv_outputs(h, w),
            Arch::R2Plus1D(c) => c.conv_outputs(t, h, w),
        }
    }

    /// Builds the network over `vb`.
    pub fn build(&self, vb: VarBuilder) -> Result<Net> {
        Ok(match self {
            Arch::ResNet(c) => Net::ResNet(ResNet::new(c, vb)?),
            Arch::R2Plus1D(c) => Net::R2Plus1D(R2Plus1D::new(c, vb)?),
        })
    }
}

/// A built network.
#[derive(Clone, Debug)]
pub enum Net {
    /// An image ResNet.
    ResNet(ResNet),
    /// A video R(2+1)D.
    R2Plus1D(R2Plus1D),
}

impl Net {
    /// The feature map at `tap`: `(N, C, h, w)` for images, `(N, C, T', h, w)` for clips.
    pub fn forward_to(&self, xs: &Tensor, tap: Tap, train: bool) -> Result<Tensor> {
        match self {
            Net::ResNet(m) => m.forward_to(xs, tap, train),
            Net::R2Plus1D(m) => m.forward_to(xs, tap, train),
        }
    }

    /// The feature maps at each of `taps` (in the order given), each as [`Net::forward_to`]
    /// returns it; images from one pass, clips one pass per tap.
    pub fn forward_taps(&self, xs: &Tensor, taps: &[Tap], train: bool) -> Result<Vec<Tensor>> {
        match self {
            Net::ResNet(m) => m.forward_taps(xs, taps, train),
            Net::R2Plus1D(m) => taps.iter().map(|&t| m.forward_to(xs, t, train)).collect(),
        }
    }

    /// Pooled res5 features `(N, D)`.
    pub fn embed(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Net::ResNet(m) => m.embed(xs, train),
            Net::R2Plus1D(m) => m.embed(xs, train),
        }
    }

    /// Logits `(N, num_classes)`.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Net::ResNet(m) => m.forward_t(xs, train),
            Net::R2Plus1D(m) => m.forward_t(xs, train),
        }
    }
}
