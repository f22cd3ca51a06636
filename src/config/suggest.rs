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

/// As [`did_you_mean_help`], for a closed choice (`expect`, `schedule`): there a name one word
/// longer than a choice, or cut short, means that choice too. Not for names a file defines,
/// where `probe_cf` is another stage than `probe`.
pub fn did_you_mean_choice_help(word: &str, choices: &[&str], help: String) -> String {
    match did_you_mean(word, choices).or_else(|| one_word_apart(word, choices)) {
        Some(best) => format!("did you mean `{best}`? {help}"),
        None => help,
    }
}

/// The one candidate that the word extends by a word (`greater_than` for `greater`) or that
/// extends the word (`incr` for `increasing`): too far apart for the edit distance, and a
/// common way to misremember a name.
fn one_word_apart<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let extends = |c: &str| {
        let longer = word.strip_prefix(c).is_some_and(|rest| rest.starts_with(['_', '-', ' ', '.']));
        let shorter = word.chars().count() >= 3 && c.starts_with(word);
        !c.is_empty() && (longer || shorter)
    };
    let mut found = candidates.iter().filter(|c| extends(c));
    match (found.next(), found.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
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

    #[test]
    fn a_name_one_word_longer_or_cut_short_is_suggested_when_only_one_fits() {
        let expect = ["greater", "less", "within", "increasing", "decreasing"];
        let best = |w: &str, choices: &[&str]| {
            let help = did_you_mean_choice_help(w, choices, String::new());
            help.strip_prefix("did you mean `").and_then(|h| h.split_once('`')).map(|(b, _)| b.to_string())
        };
        assert_eq!(best("greater_than", &expect).as_deref(), Some("greater"));
        assert_eq!(best("less-than", &expect).as_deref(), Some("less"));
        assert_eq!(best("incr", &expect).as_deref(), Some("increasing"));
        // A bare prefix that is not a word apart, too short a stem, or two that fit: nothing.
        assert_eq!(best("greaterthan", &expect), None);
        assert_eq!(best("de", &expect), None);
        assert_eq!(best("res_x", &["res4", "res5"]), None);
        assert_eq!(best("probe", &["probe_cf", "probe_pre"]), None);
        // Names a file defines keep to the edit distance: `probe_cf` is not `probe`.
        assert_eq!(did_you_mean("probe_cf", &["probe"]), None);
    }
}
