//! TEMPORARY shim.
#[derive(Debug, thiserror::Error)]
#[error("eval")]
pub struct EvalError;
pub struct ProbeConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f32,
    pub weight_decay: f32,
    pub momentum: f32,
    pub seed: u64,
}
impl Default for ProbeConfig {
    fn default() -> Self {
        todo!()
    }
}
pub struct ProbeResult {
    pub train_top1: f64,
    pub test_top1: f64,
    pub test_top5: Option<f64>,
    pub per_class_test_acc: Vec<f64>,
    pub loss_per_epoch: Vec<f64>,
}
#[allow(clippy::too_many_arguments)]
pub fn linear_probe(
    _: &[f32],
    _: &[u32],
    _: &[f32],
    _: &[u32],
    _: usize,
    _: usize,
    _: &ProbeConfig,
    _: &mut dyn FnMut(usize, f64),
) -> Result<ProbeResult, EvalError> {
    todo!()
}
pub fn purity(_: &[u32], _: &[u32]) -> f64 {
    todo!()
}
pub fn nmi(_: &[u32], _: &[u32]) -> f64 {
    todo!()
}
