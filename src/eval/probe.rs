//! The linear probe: validation, momentum-SGD training loop, and scoring.

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::cluster::data::first_non_finite;

use super::probe_lbfgs::lbfgs_probe;
use super::softmax::{backward_update, Linear, Step};
use super::standardize::Standardizer;
use super::{EvalError, ProbeConfig, ProbeData, ProbeResult, ProbeSolver};

/// Small train splits get smaller batches so that an epoch still has close to
/// this many steps (the batch is ceil(n / 32), so from 32 rows on an epoch takes
/// between 16 and 32 steps: 30 at 300 rows): with 1k rows and 1024-row batches,
/// 10 epochs would be only 10 steps and land ~10 points below scikit-learn; at 32
/// steps per epoch it matches.
pub(super) const MIN_STEPS_PER_EPOCH: usize = 32;

/// Rows per scoring task; scoring is per row, so any size gives the same numbers.
const EVAL_ROWS: usize = 512;

/// Checks one split and returns its row count.
pub(super) fn check_split(
    x: &[f32],
    y: &[u32],
    d: usize,
    num_classes: usize,
    what: &'static str,
) -> Result<usize, EvalError> {
    if !x.len().is_multiple_of(d) {
        return Err(EvalError::RaggedFeatures { what, len: x.len(), d });
    }
    let n = x.len() / d;
    if y.len() != n {
        return Err(EvalError::LengthMismatch { what, left: y.len(), right: n });
    }
    if n == 0 {
        return Err(EvalError::Empty { what });
    }
    if let Some(row) = y.iter().position(|&l| l as usize >= num_classes) {
        return Err(EvalError::LabelOutOfRange { what, row, label: y[row], num_classes });
    }
    if let Some(pos) = first_non_finite(x) {
        return Err(EvalError::NonFinite { what, row: pos / d, col: pos % d });
    }
    Ok(n)
}

/// Checks both splits and the settings; returns the train and test row counts.
pub(super) fn check_inputs(data: ProbeData, cfg: &ProbeConfig) -> Result<(usize, usize), EvalError> {
    let ProbeData { train_x, train_y, test_x, test_y, d, num_classes } = data;
    if d == 0 {
        return Err(EvalError::ZeroDimension);
    }
    if num_classes < 2 {
        return Err(EvalError::TooFewClasses { num_classes });
    }
    check_config(cfg)?;
    check_model_size(d, num_classes, train_x.len() / d, cfg)?;
    let n = check_split(train_x, train_y, d, num_classes, "train split")?;
    let m = check_split(test_x, test_y, d, num_classes, "test split")?;
    Ok((n, m))
}

/// Refuses a classifier whose weights, times the copies the solver keeps (SGD: weights, their
/// velocity and gradient, the best; L-BFGS: its correction pairs and per-group gradients too),
/// and the logits of the rows it holds at once would not fit in memory: a `command` stage's
/// labels may declare a million classes beside wide features, and the allocation aborted.
fn check_model_size(d: usize, num_classes: usize, rows: usize, cfg: &ProbeConfig) -> Result<(), EvalError> {
    let (copies, rows_at_once) = match cfg.solver {
        super::ProbeSolver::Sgd => (4, rows.min(cfg.batch_size)),
        super::ProbeSolver::Lbfgs => super::probe_lbfgs::held_at_once(rows),
    };
    let weights = (d as u64).saturating_mul(num_classes as u64);
    let logits = (rows_at_once as u64).saturating_mul(num_classes as u64);
    let need = weights.saturating_mul(copies).saturating_add(logits).saturating_mul(4);
    let have = crate::config::limits::machine_memory();
    if need <= have {
        return Ok(());
    }
    let (need, have) = (crate::human::bytes(need), crate::human::bytes(have));
    Err(EvalError::TooLarge { d, num_classes, copies, need, have })
}

/// Rejects hyper-parameters that cannot train.
fn check_config(cfg: &ProbeConfig) -> Result<(), EvalError> {
    let bad = |m: &str| Err(EvalError::BadConfig(m.to_string()));
    if cfg.epochs == 0 {
        return bad("epochs must be at least 1");
    }
    if cfg.batch_size == 0 {
        return bad("batch_size must be at least 1 (256 is a good default)");
    }
    if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        return bad("lr must be a positive finite number");
    }
    if !(cfg.weight_decay.is_finite() && cfg.weight_decay >= 0.0) {
        return bad("weight_decay must be finite and >= 0");
    }
    if !(0.0..1.0).contains(&cfg.momentum) {
        return bad("momentum must be in [0, 1)");
    }
    if !(cfg.tol.is_finite() && cfg.tol >= 0.0) {
        return bad("tol must be finite and >= 0 (1e-4, scikit-learn's default, is a good choice)");
    }
    Ok(())
}

/// What the CPU and device probes share, so both see the same batches and rates: the checked
/// inputs, the standardiser fitted on the train split, the batch size, each epoch's shuffle and
/// the cosine schedule.
pub(super) struct ProbeCore {
    /// Training rows.
    pub n: usize,
    /// Test rows.
    pub m: usize,
    /// Fitted on the training rows.
    pub st: Standardizer,
    /// Rows per step (capped so an epoch has close to [`MIN_STEPS_PER_EPOCH`] steps).
    pub bs: usize,
    /// This epoch's row order (see [`ProbeCore::shuffle`]).
    pub order: Vec<usize>,
    total_steps: f64,
    rng: ChaCha8Rng,
}

/// The rows per step an SGD probe uses on `n` training rows when asked for `batch_size`: at
/// most `n / MIN_STEPS_PER_EPOCH` (rounded up), so every epoch takes close to that many steps.
pub fn rows_per_step(n: usize, batch_size: usize) -> usize {
    batch_size.min(n.div_ceil(MIN_STEPS_PER_EPOCH))
}

impl ProbeCore {
    /// Checks the inputs and settings, and fits the standardiser.
    pub(super) fn new(data: ProbeData, cfg: &ProbeConfig) -> Result<ProbeCore, EvalError> {
        let (n, m) = check_inputs(data, cfg)?;
        let (train_x, d) = (data.train_x, data.d);
        let bs = rows_per_step(n, cfg.batch_size);
        Ok(ProbeCore {
            n,
            m,
            st: Standardizer::fit(train_x, d),
            bs,
            order: (0..n).collect(),
            total_steps: (cfg.epochs * n.div_ceil(bs)) as f64,
            rng: crate::rng::seeded(cfg.seed),
        })
    }

    /// Shuffles [`ProbeCore::order`] for the next epoch.
    pub(super) fn shuffle(&mut self) {
        self.order.shuffle(&mut self.rng);
    }

    /// Twice the factor of the base rate at step `t`: cosine decay to zero over all steps (no
    /// schedule knobs to tune, and the small final steps settle the weights). Each path halves
    /// it in the order it always has, so its rates keep their last bits.
    pub(super) fn cosine2(&self, t: usize) -> f64 {
        1.0 + (std::f64::consts::PI * t as f64 / self.total_steps).cos()
    }
}

/// Trains softmax regression on standardised `train_x` (row-major, `d` columns) and scores `test_x`.
///
/// `on_epoch(epoch, mean_loss)` is called after every epoch (every iteration with L-BFGS).
pub fn linear_probe(
    data: ProbeData,
    cfg: &ProbeConfig,
    on_epoch: &mut dyn FnMut(usize, f64),
) -> Result<ProbeResult, EvalError> {
    if cfg.solver == ProbeSolver::Lbfgs {
        let mut each = |it: usize, loss: f64, _: &Linear, _: &Standardizer| on_epoch(it, loss);
        return lbfgs_probe(data, cfg, &mut each).map(|(r, _)| r);
    }
    let mut core = ProbeCore::new(data, cfg)?;
    let ProbeData { train_x, train_y, test_x, test_y, d, num_classes } = data;
    let (n, bs, c) = (core.n, core.bs, num_classes);
    let mut model = Linear::zeros(d, c);
    let (mut vel_w, mut vel_b) = (vec![0f32; d * c], vec![0f32; c]);
    let (mut xb, mut g, mut yb) = (Vec::with_capacity(bs * d), vec![0f32; bs * c], Vec::with_capacity(bs));
    let mut loss_per_epoch = Vec::with_capacity(cfg.epochs);
    let mut t = 0usize;
    for epoch in 0..cfg.epochs {
        core.shuffle();
        let mut loss = 0f64;
        for batch in core.order.chunks(bs) {
            core.st.gather(train_x, batch, &mut xb);
            yb.clear();
            yb.extend(batch.iter().map(|&i| train_y[i]));
            loss += model.forward_xent(&xb, &yb, &mut g, 1.0 / batch.len() as f32);
            let lr = cfg.lr * (0.5 * core.cosine2(t)) as f32;
            let step = Step { lr, momentum: cfg.momentum, weight_decay: cfg.weight_decay };
            backward_update(&mut model, &mut vel_w, &mut vel_b, &xb, &g[..batch.len() * c], &step);
            t += 1;
        }
        let mean = loss / n as f64;
        tracing::debug!(epoch, loss = mean, "linear probe epoch");
        check_loss(epoch, mean, cfg)?;
        loss_per_epoch.push(mean);
        on_epoch(epoch, mean);
    }
    let train = score(&model, &core.st, train_x, train_y);
    let test = score(&model, &core.st, test_x, test_y);
    Ok(result(&train, &test, n, test_y.len(), c, loss_per_epoch))
}

/// Refuses an epoch whose mean loss is not finite: its weights are NaN or infinite, and every
/// score they give is meaningless (a NaN logit compares neither above nor equal, so each row
/// would count as a hit: 100 % top-1).
pub(super) fn check_loss(epoch: usize, loss: f64, cfg: &ProbeConfig) -> Result<(), EvalError> {
    if loss.is_finite() {
        return Ok(());
    }
    Err(EvalError::Diverged { epoch: epoch + 1, epochs: cfg.epochs, loss, lr: cfg.lr, weight_decay: cfg.weight_decay })
}

/// The probe's numbers from the hit counts of both splits.
pub(super) fn result(
    train: &Score,
    test: &Score,
    n: usize,
    m: usize,
    c: usize,
    loss_per_epoch: Vec<f64>,
) -> ProbeResult {
    let per_class_test_acc = test
        .per_class_hits
        .iter()
        .zip(&test.per_class_count)
        .map(|(&h, &cnt)| if cnt == 0 { f64::NAN } else { h as f64 / cnt as f64 })
        .collect();
    let m = m as f64;
    ProbeResult {
        train_top1: train.top1 as f64 / n as f64,
        test_top1: test.top1 as f64 / m,
        test_top5: (c > 5).then(|| test.top5 as f64 / m),
        per_class_test_acc,
        loss_per_epoch,
        capped: false,
    }
}

/// Hit counts of one split.
pub(super) struct Score {
    top1: usize,
    top5: usize,
    per_class_hits: Vec<usize>,
    per_class_count: Vec<usize>,
}

/// Counts top-1 / top-5 hits, per class too. Top-1 is the arg-max with ties to
/// the lowest class; top-5 counts a hit when fewer than five classes rank above
/// the true one, ranked as top-1 ranks them (higher score, or the same score and a lower class).
pub(super) fn score(model: &Linear, st: &Standardizer, x: &[f32], y: &[u32]) -> Score {
    let c = model.c;
    let n = y.len();
    let blocks: Vec<Score> = (0..n.div_ceil(EVAL_ROWS))
        .into_par_iter()
        .map_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |(idx, xb, logits): &mut (Vec<usize>, Vec<f32>, Vec<f32>), b| {
                let r0 = b * EVAL_ROWS;
                let r1 = (r0 + EVAL_ROWS).min(n);
                idx.clear();
                idx.extend(r0..r1);
                st.gather(x, idx, xb);
                logits.resize((r1 - r0) * c, 0.0);
                model.logits(xb, logits);
                score_logits(logits, &y[r0..r1], c)
            },
        )
        .collect();
    blocks.into_iter().fold(Score::empty(c), Score::add)
}

impl Score {
    fn empty(c: usize) -> Score {
        Score { top1: 0, top5: 0, per_class_hits: vec![0; c], per_class_count: vec![0; c] }
    }

    fn add(mut self, s: Score) -> Score {
        self.top1 += s.top1;
        self.top5 += s.top5;
        for (a, b) in self.per_class_hits.iter_mut().zip(s.per_class_hits) {
            *a += b;
        }
        for (a, b) in self.per_class_count.iter_mut().zip(s.per_class_count) {
            *a += b;
        }
        self
    }
}

/// Hit counts of row-major `logits` (`c` per row) against `y`.
pub(super) fn score_logits(logits: &[f32], y: &[u32], c: usize) -> Score {
    let mut s = Score::empty(c);
    for (row, &label) in logits.chunks_exact(c).zip(y) {
        let label = label as usize;
        s.per_class_count[label] += 1;
        // A NaN compares neither above nor equal: such a row would score as a hit.
        if row.iter().any(|v| v.is_nan()) {
            continue;
        }
        let true_score = row[label];
        let above = row.iter().filter(|&&v| v > true_score).count();
        let ties_before = row[..label].iter().filter(|&&v| v == true_score).count();
        if above == 0 && ties_before == 0 {
            s.top1 += 1;
            s.per_class_hits[label] += 1;
        }
        // Ties broken as for top-1 (the lower class first): tied classes are not hits for free.
        if above + ties_before < 5 {
            s.top5 += 1;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ties are broken for top-5 as for top-1, the lower class first: with every logit equal,
    /// a row's true class is in the top 5 only when it is one of the first five classes.
    #[test]
    fn top5_breaks_ties_as_top1_does() {
        let c = 10;
        let y: Vec<u32> = (0..c as u32).collect();
        let s = score_logits(&vec![0.0; c * c], &y, c);
        assert_eq!((s.top1, s.top5), (1, 5));
        // Two classes above the true one and three tied before it: out; two tied before: in.
        let row = [3.0, 3.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(score_logits(&row, &[5], c).top5, 0);
        assert_eq!(score_logits(&row, &[4], c).top5, 1);
    }

    /// A row with a NaN logit is a miss for top-1 and top-5, and still counts in its class.
    #[test]
    fn nan_logits_are_misses() {
        let s = score_logits(&[f32::NAN, f32::NAN, 1.0, f32::NAN], &[0, 1], 2);
        assert_eq!((s.top1, s.top5, s.per_class_count), (0, 0, vec![1, 1]));
    }
}
