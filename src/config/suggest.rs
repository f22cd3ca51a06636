//! "Did you mean" suggestions for misspelt names.

/// The closest candidate within a small edit distance, if any. A word much longer than any
/// name (generated input) gets no suggestion: the distance costs its length times each name's.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    if word.len() > super::limits::MAX_NAME_CHARS {
        return None;
    }
    candidates
        .iter()
        .map(|c| (levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `help` (the valid names, in the caller's words) led by "did you mean `x`?" when a candidate
/// is close to `word`: the one shape of every such hint.
pub fn did_you_mean_help(word: &str, candidates: &[&str], help: String) -> String {
    match did_you_mean(word, candidates) {
        Some(best) => format!("did you mean `{best}`? {help}"),
        None => help,
    }
}

/// Edit distance between two strings (insertions, deletions, substitutions).
pub fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_field() {
        assert_eq!(did_you_mean("iteratons", &["iterations", "init", "k"]), Some("iterations"));
        assert_eq!(did_you_mean("zzzzzz", &["iterations", "init"]), None);
        let help = |w: &str| did_you_mean_help(w, &["iterations", "init"], "valid: iterations, init".into());
        assert_eq!(help("iteratons"), "did you mean `iterations`? valid: iterations, init");
        assert_eq!(help("zzzzzz"), "valid: iterations, init");
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }
}
