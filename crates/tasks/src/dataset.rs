//! Labelled examples and the operations every dataset shares: seeded shuffling and splits.

/// What an example is labelled with.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A class id.
    Class(usize),
    /// A real-valued score (regression).
    Score(f32),
}

/// One labelled text (or text pair).
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The text, or the first text of a pair.
    pub text: String,
    /// The second text of a pair (entailment, paraphrase…).
    pub text_pair: Option<String>,
    /// The label.
    pub target: Target,
}

/// A permutation of `0..n` determined by `seed` (Fisher–Yates over SplitMix64), the same on
/// every platform.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// `items` in the order of [`permutation`]`(len, seed)`.
pub fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
    permutation(items.len(), seed)
        .into_iter()
        .map(|i| items[i].clone())
        .collect()
}

/// Splits `items` into (train, test) after a seeded shuffle, `test_fraction` of them tested.
pub fn train_test_split<T: Clone>(items: &[T], test_fraction: f64, seed: u64) -> (Vec<T>, Vec<T>) {
    let mut all = shuffled(items, seed);
    let test_len = ((items.len() as f64) * test_fraction).round() as usize;
    let train = all.split_off(test_len.min(all.len()));
    (train, all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_seeded_and_complete() {
        let a = permutation(100, 3);
        assert_eq!(a, permutation(100, 3));
        assert_ne!(a, permutation(100, 4));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(a, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn splits_partition_the_items() {
        let items: Vec<u32> = (0..1000).collect();
        let (train, test) = train_test_split(&items, 0.2, 9);
        assert_eq!((train.len(), test.len()), (800, 200));
        let mut all: Vec<u32> = train.iter().chain(&test).copied().collect();
        all.sort();
        assert_eq!(all, items);
    }
}
