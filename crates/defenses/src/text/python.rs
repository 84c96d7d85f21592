//! The few Python string and number semantics the reference's text defenses rely on, so that
//! our words split, count and shift as theirs do.

use splitlm_nn::seeded::SplitMix64;

/// Python's `string.punctuation`.
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// Python's `token in string.punctuation`: a substring test, so the empty string and runs such
/// as `()` count (passive_party.py l.909).
pub(crate) fn in_punctuation(token: &str) -> bool {
    PUNCTUATION.contains(token)
}

/// Python's `str.isnumeric()`: non-empty and every character numeric.
pub(crate) fn is_numeric(token: &str) -> bool {
    !token.is_empty() && token.chars().all(char::is_numeric)
}

/// custext_utils.py `is_number`: `float(s)` parses, or `s` is one numeric character.
pub(crate) fn is_number(word: &str) -> bool {
    parse_float(word).is_some() || {
        let mut chars = word.chars();
        matches!((chars.next(), chars.next()), (Some(c), None) if c.is_numeric())
    }
}

/// Python's `float(word)` for the forms a whitespace-split word takes.
fn parse_float(word: &str) -> Option<f64> {
    let cleaned = word.replace('_', "");
    cleaned.trim().parse::<f64>().ok()
}

/// custext_utils.py l.116–121: `str(round(float(word)) + np.random.randint(1000))`, the word kept
/// when that fails (Python's `round` rounds half to even; infinities and NaN raise there).
pub(crate) fn shift_number(word: &str, rng: &mut SplitMix64) -> String {
    match parse_float(word) {
        // Python's int has no bound; past 2^62 we keep the word rather than overflow.
        Some(v) if v.is_finite() && v.abs() < 4.0e18 => {
            let shift = (rng.next_u64() % 1000) as i64;
            (v.round_ties_even() as i64 + shift).to_string()
        }
        _ => word.to_string(),
    }
}

/// gensim's `simple_preprocess(text)` (the reference's word2vec vocabulary, custext_utils.py
/// l.28): lowercase runs of word characters without digits, 2 to 15 characters long, not
/// starting with `_`.
pub(crate) fn simple_preprocess(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let mut words = Vec::new();
    let mut current = String::new();
    let mut flush = |current: &mut String| {
        let n = current.chars().count();
        if (2..=15).contains(&n) && !current.starts_with('_') {
            words.push(current.clone());
        }
        current.clear();
    };
    for c in lower.chars() {
        if (c.is_alphanumeric() || c == '_') && !c.is_numeric() {
            current.push(c);
        } else {
            flush(&mut current);
        }
    }
    flush(&mut current);
    words
}

/// Items ordered as `collections.Counter(items).most_common()`: by count, descending, ties in
/// order of first appearance.
pub(crate) fn most_common<I, S>(items: I) -> Vec<(String, usize)>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut index = std::collections::HashMap::<String, usize>::new();
    let mut counts: Vec<(String, usize)> = Vec::new();
    for item in items {
        let item = item.as_ref();
        match index.get(item) {
            Some(&i) => counts[i].1 += 1,
            None => {
                index.insert(item.to_string(), counts.len());
                counts.push((item.to_string(), 1));
            }
        }
    }
    // A stable sort keeps first appearances in order among equal counts.
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts
}

/// A draw from the distribution `weights` (non-negative, not all zero) by inverse CDF.
pub(crate) fn sample_weighted(weights: &[f64], rng: &mut SplitMix64) -> Option<usize> {
    let total: f64 = weights.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return None;
    }
    let target = (1.0 - rng.uniform()) * total; // in [0, total)
    let mut acc = 0.0;
    for (i, w) in weights.iter().enumerate() {
        acc += w;
        if target < acc {
            return Some(i);
        }
    }
    weights.iter().rposition(|&w| w > 0.0)
}

/// A draw from a cumulative distribution (non-decreasing, last entry the total).
pub(crate) fn sample_cumulative(cdf: &[f32], rng: &mut SplitMix64) -> Option<usize> {
    let total = *cdf.last()?;
    if total.is_nan() || total <= 0.0 {
        return None;
    }
    let target = ((1.0 - rng.uniform()) * total as f64) as f32;
    let i = cdf.partition_point(|&c| c <= target);
    Some(i.min(cdf.len() - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_string_semantics() {
        assert!(in_punctuation(",") && in_punctuation("()") && in_punctuation(""));
        assert!(!in_punctuation("a") && !in_punctuation(")("));
        assert!(is_numeric("42") && is_numeric("½") && !is_numeric("") && !is_numeric("4a"));
        assert!(is_number("3.5") && is_number("-1e3") && is_number("½"));
        assert!(!is_number("12,") && !is_number("ten"));
        assert_eq!(
            simple_preprocess("Hello, World_x 42nd a _under x2y Ünïcode"),
            ["hello", "world_x", "nd", "ünïcode"]
        );
        let order = most_common("b a c a b d".split_whitespace());
        let words: Vec<&str> = order.iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(words, ["b", "a", "c", "d"]);
    }

    #[test]
    fn numbers_shift_as_pythons_round_then_a_draw_below_1000() {
        let mut rng = SplitMix64::new(3);
        for (word, base) in [("2.5", 2), ("3.5", 4), ("-0.5", 0), ("7", 7)] {
            let shifted: i64 = shift_number(word, &mut rng).parse().unwrap();
            assert!(
                (base..base + 1000).contains(&shifted),
                "{word} -> {shifted}"
            );
        }
        assert_eq!(shift_number("inf", &mut rng), "inf");
        assert_eq!(shift_number("½", &mut rng), "½");
    }

    #[test]
    fn weighted_draws_follow_the_weights() {
        let mut rng = SplitMix64::new(1);
        let mut hits = [0usize; 3];
        for _ in 0..30_000 {
            hits[sample_weighted(&[1.0, 0.0, 3.0], &mut rng).unwrap()] += 1;
        }
        assert_eq!(hits[1], 0);
        assert!((hits[2] as f64 / 30_000.0 - 0.75).abs() < 0.01, "{hits:?}");
        let mut hits = [0usize; 3];
        for _ in 0..30_000 {
            hits[sample_cumulative(&[0.25, 0.25, 1.0], &mut rng).unwrap()] += 1;
        }
        assert_eq!(hits[1], 0);
        assert!((hits[0] as f64 / 30_000.0 - 0.25).abs() < 0.01, "{hits:?}");
        assert_eq!(sample_weighted(&[0.0, 0.0], &mut rng), None);
    }
}
