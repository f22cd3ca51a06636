//! Fused nearest-centroid search: the points x centroids product and its
//! argmin in one register-blocked kernel, so no dot-product tile is written
//! to memory and neither operand is re-packed per block of rows.
//!
//! Centroids are repacked once per assignment into panels of 16 (one lane
//! per centroid, `d x 16` floats each); the kernel broadcasts each row's
//! values straight from the caller's row-major matrix. Every (row, centroid)
//! value is `fma(dot, -2 s, ||c||^2)` with `dot` a fused multiply-add chain in
//! ascending column order, whichever path computes it, so the AVX2 kernel and
//! the portable one give bit-identical labels and inertias.

/// Centroids per panel: two AVX2 vectors.
const LANES: usize = 16;
/// Rows per register tile: 6 rows x 2 vectors = 12 accumulators, which with
/// two centroid vectors and a broadcast fills the 16 AVX2 registers.
const TILE_ROWS: usize = 6;
/// Bytes of centroid panels one sweep over a row tile touches: sized to stay
/// in a core's L2 cache while the tile's rows stay in L1.
const CHUNK_BYTES: usize = 256 * 1024;

/// Centroids repacked for the kernel, with their squared norms.
pub(super) struct PackedCentroids {
    /// Panel-major: panel `p` holds `d x 16` floats, lane `l` being centroid `16 p + l` (zero padding).
    data: Vec<f32>,
    /// Squared norm per packed lane; `+inf` for padding, so it is never the nearest.
    cn: Vec<f32>,
    d: usize,
    panels: usize,
}

impl PackedCentroids {
    /// Packs row-major `k x d` centroids.
    pub(super) fn new(centroids: &[f32], k: usize, d: usize) -> Self {
        let panels = k.div_ceil(LANES);
        let mut data = vec![0f32; panels * LANES * d];
        let mut cn = vec![f32::INFINITY; panels * LANES];
        for (j, c) in centroids.chunks_exact(d).enumerate() {
            let panel = &mut data[(j / LANES) * LANES * d..][..LANES * d];
            for (p, &v) in c.iter().enumerate() {
                panel[p * LANES + j % LANES] = v;
            }
            // f64 accumulation: the norm is added to every distance, so its error counts once per pair.
            cn[j] = c.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() as f32;
        }
        Self { data, cn, d, panels }
    }

    /// The largest centroid squared norm (padding excluded).
    pub(super) fn max_norm(&self) -> f32 {
        self.cn.iter().copied().filter(|v| v.is_finite()).fold(0.0, f32::max)
    }

    fn panel(&self, p: usize) -> &[f32] {
        &self.data[p * LANES * self.d..][..LANES * self.d]
    }

    /// Panels per cache-sized chunk (at least one).
    fn chunk_panels(&self) -> usize {
        (CHUNK_BYTES / (LANES * self.d * 4)).max(1)
    }
}

/// Per-thread scratch: the running best value and index of every lane of every row of a block
/// (rows padded to a multiple of [`ROW_PAD`]), and the AVX-512 kernel's zero-padded last row tile.
#[derive(Default)]
pub(super) struct Scratch {
    best: Vec<f32>,
    second: Vec<f32>,
    index: Vec<u32>,
    tile: Vec<f32>,
}

/// Rows the lane scratch is padded to: the AVX-512 kernel runs its last tile on whole groups of
/// four rows, padding with zero rows whose results [`finish`] never reads.
const ROW_PAD: usize = 4;

/// The implementations of the sweep; all give bit-identical results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
    /// One (row, centroid) pair at a time; runs anywhere.
    Portable,
    /// 6 rows x 16 centroids in AVX2 registers.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// 12 rows x 16 centroids in AVX-512 registers, rows read in place.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub(super) fn best() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Self::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Self::Avx2;
            }
        }
        Self::Portable
    }

    /// Every kernel this CPU runs, the portable one first (for tests).
    #[cfg(test)]
    pub(super) fn available() -> Vec<Self> {
        let mut all = vec![Self::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                all.push(Self::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                all.push(Self::Avx512);
            }
        }
        all
    }
}

/// A dense block of rows as the kernel reads them.
pub(super) struct Rows<'a> {
    /// Row-major `m x d` stored values.
    pub x: &'a [f32],
    /// Per-row factor mapping stored to visible values (1 when absent).
    pub scale: Option<&'a [f32]>,
    /// Squared norms of the visible rows.
    pub xn: &'a [f32],
}

/// What the kernel finds per row.
pub(super) struct Found<'a> {
    /// Nearest centroid.
    pub labels: &'a mut [u32],
    /// Squared distance to it, clamped at zero.
    pub dist: &'a mut [f64],
    /// The second smallest `||c||^2 - 2 s x.c` (without `||x||^2`; `+inf` when k = 1).
    pub second: &'a mut [f32],
}

/// For each row of `rows`, finds the nearest centroid (smallest
/// `||c||^2 - 2 s x.c`, ties to the lowest index, NaNs never chosen), its
/// squared distance `xn + min` clamped at zero, and the runner-up value.
pub(super) fn nearest_block(rows: &Rows<'_>, c: &PackedCentroids, out: Found<'_>, scr: &mut Scratch) {
    nearest_block_with(Kernel::best(), rows, c, out, scr)
}

/// [`nearest_block`] with a given kernel, which the CPU must support.
pub(super) fn nearest_block_with(
    kernel: Kernel,
    rows: &Rows<'_>,
    c: &PackedCentroids,
    out: Found<'_>,
    scr: &mut Scratch,
) {
    let m = out.labels.len();
    debug_assert_eq!(rows.x.len(), m * c.d);
    let slots = m.next_multiple_of(ROW_PAD) * LANES;
    for v in [&mut scr.best, &mut scr.second] {
        v.clear();
        v.resize(slots, f32::INFINITY);
    }
    scr.index.clear();
    scr.index.resize(slots, 0);
    match kernel {
        Kernel::Portable => portable_sweep(rows.x, rows.scale, c, scr),
        // SAFETY (all arms): `Kernel::best` and the tests pick only kernels the CPU supports.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { avx2::sweep(rows.x, rows.scale, c, scr) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe {
            avx512::sweep(rows.x, rows.scale, c, scr);
            return avx512::finish(rows.xn, out, scr);
        },
    }
    finish(rows.xn, out, scr)
}

/// The value the kernel compares for row `x` (`f = -2 s`) and centroid `c`,
/// bit for bit: `fma(dot, f, ||c||^2)`, `dot` a fused chain in column order.
#[inline(always)]
fn value(x: &[f32], f: f32, c: &[f32], cn: f32) -> f32 {
    let dot = x.iter().zip(c).fold(0f32, |acc, (&a, &b)| a.mul_add(b, acc));
    dot.mul_add(f, cn)
}

/// [`value`] of rows `which` of `rows` against their own centroids `labels[r]`,
/// into `out` (one value per listed row). Eight rows' chains are interleaved so
/// they run at the FMA units' throughput rather than their latency; each chain
/// is unchanged, so every value is bit-identical to the kernel's.
pub(super) fn own_values(
    rows: &Rows<'_>,
    c: &PackedCentroids,
    centroids: &[f32],
    labels: &[u32],
    which: &[usize],
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports FMA.
        return unsafe { own_values_fma(rows, c, centroids, labels, which, out) };
    }
    own_values_impl(rows, c, centroids, labels, which, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
fn own_values_fma(
    rows: &Rows<'_>,
    c: &PackedCentroids,
    centroids: &[f32],
    labels: &[u32],
    which: &[usize],
    out: &mut [f32],
) {
    own_values_impl(rows, c, centroids, labels, which, out)
}

#[inline(always)]
fn own_values_impl(
    rows: &Rows<'_>,
    c: &PackedCentroids,
    centroids: &[f32],
    labels: &[u32],
    which: &[usize],
    out: &mut [f32],
) {
    const W: usize = 8;
    let d = c.d;
    let mut groups = which.chunks_exact(W);
    let mut outs = out.chunks_exact_mut(W);
    for (rs, os) in (&mut groups).zip(&mut outs) {
        let xs: [&[f32]; W] = std::array::from_fn(|i| &rows.x[rs[i] * d..][..d]);
        let cs: [&[f32]; W] = std::array::from_fn(|i| &centroids[labels[rs[i]] as usize * d..][..d]);
        let mut acc = [0f32; W];
        for q in 0..d {
            for i in 0..W {
                acc[i] = xs[i][q].mul_add(cs[i][q], acc[i]);
            }
        }
        for i in 0..W {
            let (r, j) = (rs[i], labels[rs[i]] as usize);
            os[i] = acc[i].mul_add(minus_two_scale(rows.scale, r), c.cn[j]);
        }
    }
    for (&r, o) in groups.remainder().iter().zip(outs.into_remainder()) {
        let j = labels[r] as usize;
        *o = value(&rows.x[r * d..][..d], minus_two_scale(rows.scale, r), &centroids[j * d..][..d], c.cn[j]);
    }
}

/// `-2 s`, exact (a power-of-two multiple).
#[inline(always)]
pub(super) fn minus_two_scale(scale: Option<&[f32]>, r: usize) -> f32 {
    -2.0 * scale.map_or(1.0, |s| s[r])
}

/// Reduces each row's 16 lanes to its label (lowest index among equal
/// minima), distance and runner-up.
fn finish(xn: &[f32], out: Found<'_>, scr: &Scratch) {
    for (r, ((label, dist), second)) in
        out.labels.iter_mut().zip(out.dist.iter_mut()).zip(out.second.iter_mut()).enumerate()
    {
        let lanes = r * LANES..(r + 1) * LANES;
        let (bv, bs, bi) = (&scr.best[lanes.clone()], &scr.second[lanes.clone()], &scr.index[lanes]);
        let mut w = 0;
        for l in 1..LANES {
            if bv[l] < bv[w] || (bv[l] == bv[w] && bi[l] < bi[w]) {
                w = l;
            }
        }
        *label = bi[w];
        // The runner-up is the winning lane's second or another lane's best.
        *second = (0..LANES).map(|l| if l == w { bs[l] } else { bv[l] }).fold(f32::INFINITY, f32::min);
        // Rounding can push a tiny true distance below zero.
        *dist = (f64::from(xn[r]) + f64::from(bv[w])).max(0.0);
    }
}

/// The reference path: the same values and per-lane updates as the AVX2
/// kernel, one (row, centroid) pair at a time.
fn portable_sweep(rows: &[f32], scale: Option<&[f32]>, c: &PackedCentroids, scr: &mut Scratch) {
    let d = c.d;
    let mut col = vec![0f32; d];
    for p in 0..c.panels {
        let panel = c.panel(p);
        for lane in 0..LANES {
            for (q, v) in col.iter_mut().enumerate() {
                *v = panel[q * LANES + lane];
            }
            let j = p * LANES + lane;
            for (r, x) in rows.chunks_exact(d).enumerate() {
                let v = value(x, minus_two_scale(scale, r), &col, c.cn[j]);
                let slot = r * LANES + lane;
                if v < scr.best[slot] {
                    scr.second[slot] = scr.best[slot];
                    scr.best[slot] = v;
                    scr.index[slot] = j as u32;
                } else if v < scr.second[slot] {
                    scr.second[slot] = v;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512;

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{minus_two_scale, PackedCentroids, Scratch, LANES, TILE_ROWS};

    /// `v`, hidden from the optimiser. A blend of a loaded vector stored back to the same address
    /// is otherwise turned into `vmaskmovps`, which AMD CPUs run as slow microcode (it took a
    /// quarter of the sweep's time on Zen 4).
    #[target_feature(enable = "avx")]
    #[inline]
    fn opaque(mut v: __m256) -> __m256 {
        // SAFETY: an empty instruction sequence; it only pins `v` to a register.
        unsafe { std::arch::asm!("/* {0} */", inout(ymm_reg) v, options(pure, nomem, nostack, preserves_flags)) };
        v
    }

    /// One row tile's running per-lane best, runner-up and best index.
    struct Run<'a> {
        best: &'a mut [f32],
        second: &'a mut [f32],
        index: &'a mut [u32],
    }

    /// Sweeps every row tile over every panel, chunk by chunk.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn sweep(rows: &[f32], scale: Option<&[f32]>, c: &PackedCentroids, scr: &mut Scratch) {
        let d = c.d;
        let m = rows.len() / d;
        let chunk = c.chunk_panels();
        for p0 in (0..c.panels).step_by(chunk) {
            let p1 = (p0 + chunk).min(c.panels);
            for r0 in (0..m).step_by(TILE_ROWS) {
                let t = (m - r0).min(TILE_ROWS);
                let x = &rows[r0 * d..(r0 + t) * d];
                let lanes = r0 * LANES..(r0 + t) * LANES;
                let run = Run {
                    best: &mut scr.best[lanes.clone()],
                    second: &mut scr.second[lanes.clone()],
                    index: &mut scr.index[lanes],
                };
                // SAFETY (all arms): same features as this function; slices sized for `t` rows.
                unsafe {
                    match t {
                        6 => tile::<6>(x, scale, r0, c, p0..p1, run),
                        5 => tile::<5>(x, scale, r0, c, p0..p1, run),
                        4 => tile::<4>(x, scale, r0, c, p0..p1, run),
                        3 => tile::<3>(x, scale, r0, c, p0..p1, run),
                        2 => tile::<2>(x, scale, r0, c, p0..p1, run),
                        _ => tile::<1>(x, scale, r0, c, p0..p1, run),
                    }
                }
            }
        }
    }

    /// `R` rows (`x`, row-major, first row `r0` of the block) against panels `p0..p1`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const R: usize>(
        x: &[f32],
        scale: Option<&[f32]>,
        r0: usize,
        c: &PackedCentroids,
        panels: std::ops::Range<usize>,
        run: Run<'_>,
    ) {
        let d = c.d;
        let n = R * LANES;
        assert!(x.len() == R * d && run.best.len() == n && run.second.len() == n && run.index.len() == n);
        let xp = x.as_ptr();
        let f: [__m256; R] = std::array::from_fn(|r| _mm256_set1_ps(minus_two_scale(scale, r0 + r)));
        let lane_ids = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        for p in panels {
            let panel = c.panel(p);
            let pp = panel.as_ptr();
            let mut acc = [[_mm256_setzero_ps(); 2]; R];
            for q in 0..d {
                // SAFETY: q < d, so 16 q + 16 <= panel.len() and r d + q < x.len().
                unsafe {
                    let c0 = _mm256_loadu_ps(pp.add(q * LANES));
                    let c1 = _mm256_loadu_ps(pp.add(q * LANES + 8));
                    for (r, a) in acc.iter_mut().enumerate() {
                        let xb = _mm256_broadcast_ss(&*xp.add(r * d + q));
                        a[0] = _mm256_fmadd_ps(xb, c0, a[0]);
                        a[1] = _mm256_fmadd_ps(xb, c1, a[1]);
                    }
                }
            }
            let cn = &c.cn[p * LANES..][..LANES];
            // SAFETY: cn holds 16 floats; best/index hold 16 per row.
            unsafe {
                let cn0 = _mm256_loadu_ps(cn.as_ptr());
                let cn1 = _mm256_loadu_ps(cn.as_ptr().add(8));
                let base = _mm256_set1_epi32((p * LANES) as i32);
                let id0 = _mm256_castsi256_ps(_mm256_add_epi32(base, lane_ids));
                let id1 = _mm256_castsi256_ps(_mm256_add_epi32(base, _mm256_add_epi32(lane_ids, _mm256_set1_epi32(8))));
                for (r, a) in acc.iter().enumerate() {
                    let bp = run.best.as_mut_ptr().add(r * LANES);
                    let sp = run.second.as_mut_ptr().add(r * LANES);
                    let ip = run.index.as_mut_ptr().add(r * LANES).cast::<f32>();
                    for (h, (cnh, idh)) in [(cn0, id0), (cn1, id1)].into_iter().enumerate() {
                        let v = _mm256_fmadd_ps(a[h], f[r], cnh);
                        let b = _mm256_loadu_ps(bp.add(8 * h));
                        // Ordered less-than: false for NaN, and strict, so the first minimum stays.
                        let lt = _mm256_cmp_ps::<_CMP_LT_OQ>(v, b);
                        // min(v, b) is `v < b ? v : b` with that same comparison, so it equals the
                        // blend without one.
                        _mm256_storeu_ps(bp.add(8 * h), _mm256_min_ps(v, b));
                        // A new best demotes the old one; otherwise the runner-up is min(v, second)
                        // (min_ps returns its second operand, the old runner-up, when v is NaN).
                        let s = _mm256_min_ps(v, _mm256_loadu_ps(sp.add(8 * h)));
                        _mm256_storeu_ps(sp.add(8 * h), _mm256_blendv_ps(s, b, lt));
                        let i = opaque(_mm256_loadu_ps(ip.add(8 * h)));
                        _mm256_storeu_ps(ip.add(8 * h), _mm256_blendv_ps(i, idh, lt));
                    }
                }
            }
        }
    }
}
