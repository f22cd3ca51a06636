//! Values that differ bit for bit: the count behind every device check whose tolerance is 0
//! (device-built batches, tag spreads, Jigsaw puzzles, the flat SGD update).

/// How many of `want`'s values `got` does not hold bit for bit, plus the values one has beyond
/// the other: 0 only for the very same bits (so `-0.0` against `0.0` counts, and a NaN against
/// the same NaN does not).
pub(crate) fn differing_bits(got: &[f32], want: &[f32]) -> usize {
    got.iter().zip(want).filter(|(a, b)| a.to_bits() != b.to_bits()).count() + got.len().abs_diff(want.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_ulp_a_sign_of_zero_and_a_missing_value_each_count() {
        let want = [1.0f32, 0.0, f32::NAN, -2.5];
        assert_eq!(differing_bits(&want, &want), 0);
        let ulp = [f32::from_bits(1.0f32.to_bits() + 1), 0.0, f32::NAN, -2.5];
        assert_eq!(differing_bits(&ulp, &want), 1);
        assert_eq!(differing_bits(&[1.0, -0.0, f32::NAN, -2.5], &want), 1);
        assert_eq!(differing_bits(&want[..3], &want), 1);
        assert_eq!(differing_bits(&[9.0; 6], &want), 6);
    }
}
