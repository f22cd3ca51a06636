//! Eval-mode conv + BN (+ residual) (+ ReLU) as one CPU op, for inference.
//!
//! Why: with running statistics, BN is a per-channel affine map, and as a separate op it is a
//! second pass over every activation (5-6 % of resnet_cpu's inference profile). Here the
//! convolution applies it to each group of images' output while that is still in cache
//! ([`Epilogue`]). The arithmetic is `bn_kernels::forward`'s, so the output has the same bits
//! as conv followed by BN; a test holds both paths to that.
//!
//! Inference only: the op has no backward and is applied without recording a graph.

use super::batchnorm::BatchNorm;
use super::bn_kernels::{Affine, Epilogue};
use super::conv::{self, Geom};
use super::cpu::f32_slice;
use super::fused::ConvParts;
use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

/// `act(bn(conv(x)) + r)` as a candle op on `(x, w)` or `(x, w, r)`.
struct ConvBnOp {
    stride: usize,
    padding: usize,
    affine: Affine,
}

impl ConvBnOp {
    fn run(
        &self,
        (sx, lx): (&CpuStorage, &Layout),
        (sw, lw): (&CpuStorage, &Layout),
        r: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(lx.dims(), lw.dims(), self.stride, self.padding)?;
        let out = [g.n, g.cout, g.ho, g.wo];
        if self.affine.channels() != g.cout {
            bail!("conv-bn: {} BN channels for {} output channels", self.affine.channels(), g.cout);
        }
        let residual = match r {
            Some((_, l)) if l.dims() != out => bail!("conv-bn: residual {:?}, output {out:?}", l.dims()),
            Some((s, l)) => Some(f32_slice(s, l)?),
            None => None,
        };
        let ep = Epilogue { affine: &self.affine, residual };
        let y = conv::forward_then(&g, f32_slice(sx, lx)?, f32_slice(sw, lw)?, Some(&ep));
        Ok((CpuStorage::F32(y), Shape::from(out.to_vec())))
    }
}

impl CustomOp2 for ConvBnOp {
    fn name(&self) -> &'static str {
        "cfrun-conv-bn-act"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        self.run((s1, l1), (s2, l2), None)
    }
}

impl CustomOp3 for ConvBnOp {
    fn name(&self) -> &'static str {
        "cfrun-conv-bn-add-act"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run((s1, l1), (s2, l2), Some((s3, l3)))
    }
}

/// `act(bn(conv(x)) + residual)` with `bn` in eval mode (running statistics), as one op on a
/// CPU f32 tensor. No gradient flows through the result.
pub(crate) fn conv_bn_act(
    x: &Tensor,
    conv: ConvParts<'_>,
    bn: &BatchNorm,
    residual: Option<&Tensor>,
    relu: bool,
) -> Result<Tensor> {
    let (mean, invstd) = bn.running_invstd()?;
    let (gamma, beta) = bn.affine();
    let affine = Affine::new(&gamma.to_vec1::<f32>()?, &beta.to_vec1::<f32>()?, &mean, &invstd, relu);
    let op = ConvBnOp { stride: conv.stride, padding: conv.padding, affine };
    let (x, w) = (x.contiguous()?, conv.weight.contiguous()?);
    match residual {
        None => x.apply_op2_no_bwd(&w, &op),
        Some(r) => x.apply_op3_no_bwd(&w, &r.contiguous()?, &op),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::init::init_weights;
    use crate::nn::resnet::{BasicBlock, Conv};
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    use rand::{Rng, SeedableRng};

    fn rand_vec(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(lo..hi)).collect()
    }

    /// Deterministic weights, and random gamma, beta and running statistics so that every
    /// term of the epilogue matters.
    fn randomise(vm: &VarMap) {
        init_weights(vm, 3).unwrap();
        for (i, (name, v)) in vm.data().lock().unwrap().iter().enumerate() {
            let (lo, hi) = if name.contains("running_var") { (0.2, 3.0) } else { (-1.0, 1.5) };
            if v.rank() == 1 {
                let vals = rand_vec(v.elem_count(), 100 + i as u64, lo, hi);
                v.set(&Tensor::from_vec(vals, v.shape(), &Device::Cpu).unwrap()).unwrap();
            }
        }
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
    }

    /// Blocks in eval mode give the per-layer ops' bits: im2col and both Winograd variants
    /// (planes of 9, 7 and 2 pixels, partial tiles included), with projection and identity
    /// shortcuts.
    #[test]
    fn eval_block_matches_per_layer_ops_bitwise() {
        let dev = Device::Cpu;
        for (i, &(cin, cout, stride, side)) in
            [(16, 32, 2, 18), (32, 32, 1, 7), (32, 32, 1, 2), (3, 5, 1, 6), (4, 8, 2, 7)].iter().enumerate()
        {
            let vm = VarMap::new();
            let block = BasicBlock::new(cin, cout, stride, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
            randomise(&vm);
            let x = Tensor::from_vec(rand_vec(5 * cin * side * side, i as u64, -1.0, 1.0), (5, cin, side, side), &dev)
                .unwrap();
            let fused = block.forward_t(&x, false).unwrap();
            let layers = block.forward_layers(&x, false).unwrap();
            assert_eq!(fused.dims(), layers.dims(), "case {i}");
            assert_eq!(bits(&fused), bits(&layers), "case {i}");
        }
    }

    /// A `cin -> cout` 3x3 conv and its BN, with randomised parameters.
    fn unit(cin: usize, cout: usize) -> (VarMap, Conv, BatchNorm) {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let (conv, bn) =
            (Conv::new(cin, cout, 3, 1, vb.pp("conv")).unwrap(), BatchNorm::new(cout, vb.pp("bn")).unwrap());
        randomise(&vm);
        (vm, conv, bn)
    }

    /// A stem unit (no residual) and a unit without ReLU against conv then BN.
    #[test]
    fn eval_unit_matches_conv_then_bn_bitwise() {
        let (_vm, conv, bn) = unit(2, 40);
        let x = Tensor::from_vec(rand_vec(3 * 2 * 8 * 8, 5, -1.0, 1.0), (3, 2, 8, 8), &Device::Cpu).unwrap();
        for relu in [true, false] {
            let fused = conv_bn_act(&x, conv.parts_for_tests(), &bn, None, relu).unwrap();
            let separate = bn.forward_act(&conv.forward(&x).unwrap(), None, relu, false).unwrap();
            assert_eq!(bits(&fused), bits(&separate), "relu {relu}");
        }
    }

    /// A residual of the wrong shape is an error, not a read out of bounds.
    #[test]
    fn rejects_a_mismatched_residual() {
        let dev = Device::Cpu;
        let (_vm, conv, bn) = unit(2, 4);
        let x = Tensor::zeros((1, 2, 5, 5), DType::F32, &dev).unwrap();
        let r = Tensor::zeros((1, 4, 5, 4), DType::F32, &dev).unwrap();
        assert!(conv_bn_act(&x, conv.parts_for_tests(), &bn, Some(&r), true).is_err());
    }
}
