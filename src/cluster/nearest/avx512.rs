//! The sweep on AVX-512: 12 rows x 16 centroids (one zmm per row) per register tile.
//!
//! Each column costs one centroid load and 12 FMAs whose row broadcasts fold into the FMA
//! (`{1to16}`), half the instructions of the AVX2 kernel for the same work, whose front end
//! (not its FMA units) was the limit. Per (row, centroid) the arithmetic is the AVX2 kernel's and
//! the portable path's: `fma(dot, -2 s, ||c||^2)`, `dot` a fused chain in column order from zero.

use std::arch::x86_64::*;

use super::{minus_two_scale, Found, PackedCentroids, Scratch, LANES, ROW_PAD};

/// Rows per full register tile: 12 accumulators leave room for the centroid vector and the
/// epilogue's temporaries among the 32 zmm registers.
const TILE_ROWS: usize = 12;

/// Sweeps every row tile over every panel, chunk by chunk. A last tile of fewer than 12 rows is
/// copied into a tile padded with zero rows to a multiple of [`ROW_PAD`]; their lanes land in the
/// padding slots of the scratch.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn sweep(rows: &[f32], scale: Option<&[f32]>, c: &PackedCentroids, scr: &mut Scratch) {
    let d = c.d;
    let m = rows.len() / d;
    let chunk = c.chunk_panels();
    for p0 in (0..c.panels).step_by(chunk) {
        let p1 = (p0 + chunk).min(c.panels);
        for r0 in (0..m).step_by(TILE_ROWS) {
            let t = (m - r0).min(TILE_ROWS);
            let padded = t.next_multiple_of(ROW_PAD);
            let x = &rows[r0 * d..(r0 + t) * d];
            let x = if padded == t {
                x
            } else {
                scr.tile.clear();
                scr.tile.extend_from_slice(x);
                scr.tile.resize(padded * d, 0.0);
                &scr.tile[..]
            };
            let f: [f32; TILE_ROWS] =
                std::array::from_fn(|r| if r < t { minus_two_scale(scale, r0 + r) } else { -2.0 });
            let lanes = r0 * LANES..(r0 + padded) * LANES;
            let run = Run {
                best: &mut scr.best[lanes.clone()],
                second: &mut scr.second[lanes.clone()],
                index: &mut scr.index[lanes],
            };
            // SAFETY (all arms): same features as this function; the tile and slices hold `padded` rows.
            unsafe {
                match padded {
                    12 => tile::<12>(x, &f, c, p0..p1, run),
                    8 => tile::<8>(x, &f, c, p0..p1, run),
                    _ => tile::<4>(x, &f, c, p0..p1, run),
                }
            }
        }
    }
}

/// One row tile's running per-lane best, runner-up and best index.
struct Run<'a> {
    best: &'a mut [f32],
    second: &'a mut [f32],
    index: &'a mut [u32],
}

/// `R` rows (`x`, row-major, factors `f`) against panels `p0..p1`.
#[target_feature(enable = "avx512f")]
unsafe fn tile<const R: usize>(
    x: &[f32],
    f: &[f32; TILE_ROWS],
    c: &PackedCentroids,
    panels: std::ops::Range<usize>,
    run: Run<'_>,
) {
    let d = c.d;
    let n = R * LANES;
    assert!(x.len() == R * d && run.best.len() == n && run.second.len() == n && run.index.len() == n);
    let xp = x.as_ptr();
    let lane_ids = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for p in panels {
        let pp = c.panel(p).as_ptr();
        let mut acc = [_mm512_setzero_ps(); R];
        for q in 0..d {
            // SAFETY: q < d, so 16 q + 16 <= panel.len() and r d + q < x.len().
            unsafe {
                let cv = _mm512_loadu_ps(pp.add(q * LANES));
                for (r, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(_mm512_set1_ps(*xp.add(r * d + q)), cv, *a);
                }
            }
        }
        // SAFETY: cn holds 16 floats per panel; best, second and index hold 16 per row.
        unsafe {
            let cn = _mm512_loadu_ps(c.cn.as_ptr().add(p * LANES));
            let ids = _mm512_add_epi32(_mm512_set1_epi32((p * LANES) as i32), lane_ids);
            for (r, a) in acc.iter().enumerate() {
                let bp = run.best.as_mut_ptr().add(r * LANES);
                let sp = run.second.as_mut_ptr().add(r * LANES);
                let ip = run.index.as_mut_ptr().add(r * LANES);
                let v = _mm512_fmadd_ps(*a, _mm512_set1_ps(f[r]), cn);
                let b = _mm512_loadu_ps(bp);
                // Ordered less-than: false for NaN, and strict, so the first minimum stays;
                // min(v, b) is `v < b ? v : b` with that same comparison.
                let lt = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, b);
                _mm512_storeu_ps(bp, _mm512_min_ps(v, b));
                // A new best demotes the old one; otherwise the runner-up is min(v, second)
                // (min returns its second operand, the old runner-up, when v is NaN).
                let s = _mm512_min_ps(v, _mm512_loadu_ps(sp));
                _mm512_storeu_ps(sp, _mm512_mask_blend_ps(lt, s, b));
                _mm512_mask_storeu_epi32(ip.cast(), lt, ids);
            }
        }
    }
}

/// [`super::finish`] on whole rows of lanes: the same label, distance and runner-up, bit for bit.
///
/// Minima are exact whatever the order they are taken in, and no lane holds a NaN (the sweep
/// never keeps one) nor -0 (a value `fma(dot, f, ||c||^2)` with `||c||^2 >= +0` rounds an exact
/// zero to +0), so the reductions cannot differ from the lane-by-lane loop.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn finish(xn: &[f32], out: Found<'_>, scr: &Scratch) {
    let m = out.labels.len();
    assert!(xn.len() == m && out.dist.len() == m && out.second.len() == m);
    assert!(scr.best.len() >= m * LANES && scr.second.len() >= m * LANES && scr.index.len() >= m * LANES);
    for (r, &xn) in xn.iter().enumerate() {
        // SAFETY: row r's 16 lanes lie within the scratch (checked above).
        let (b, s, i) = unsafe {
            (
                _mm512_loadu_ps(scr.best.as_ptr().add(r * LANES)),
                _mm512_loadu_ps(scr.second.as_ptr().add(r * LANES)),
                _mm512_loadu_si512(scr.index.as_ptr().add(r * LANES).cast()),
            )
        };
        let low = _mm512_reduce_min_ps(b);
        // The lowest index among the lanes at the minimum; lanes hold distinct indices, so one wins.
        let at_min = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(b, _mm512_set1_ps(low));
        let label = _mm512_mask_reduce_min_epu32(at_min, i);
        let winner = at_min & _mm512_cmpeq_epi32_mask(i, _mm512_set1_epi32(label as i32));
        // The runner-up is the winning lane's second or another lane's best.
        out.second[r] = _mm512_reduce_min_ps(_mm512_mask_blend_ps(winner, b, s));
        out.labels[r] = label;
        // Rounding can push a tiny true distance below zero.
        out.dist[r] = (f64::from(xn) + f64::from(low)).max(0.0);
    }
}
