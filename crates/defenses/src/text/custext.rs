//! CusText (Chen et al. 2023), as the reference applies it to a data party's input
//! (party/passive_party.py l.424–442 builds it, l.851–866 applies it; utils/custext_utils.py).
//!
//! Each word of the training texts gets a list of `topk` candidate words and a probability
//! for each, `exp(ε·s/2)` normalised, `s` its similarity to the candidate min–max scaled to
//! [0, 1]; the lists are formed greedily, most frequent word first, each word taking the
//! candidate list of the first word that listed it (`get_customized_mapping`). A word of the
//! input with a list is replaced by a draw from it; a word without one is kept, a number
//! shifted by a random amount below 1000 (unless `math_numbers`).
//!
//! The reference embeds words with a word2vec model (300 dimensions) trained on the training
//! texts; here, as the documented substitute, a word's embedding is the mean of the head's
//! pretrained input embeddings of its tokens. Its vocabulary is the reference's: gensim's
//! `simple_preprocess` words of the training texts.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use splitlm_nn::TokenBatch;
use splitlm_nn::seeded::SplitMix64;

use super::geometry::{Candidates, HostEmbeddings};
use super::python::{is_number, most_common, sample_weighted, shift_number, simple_preprocess};
use super::rewrite::Rewriter;
use crate::{Defense, DefenseEnv, DefenseError, HookContext, Needs};

const NAME: &str = "custext";

/// Number words the reference keeps on math data sets (custext_utils.py l.106–107; "six" is
/// missing there too).
const MATH_NUMBER_WORDS: [&str; 9] = [
    "one", "two", "three", "four", "five", "seven", "eight", "nine", "ten",
];

/// CusText's settings; each left out takes the value of the reference's configuration
/// (configs/llm_configs/with_mia_and_defense/2-slice/gsm8k_mistral_custext.json l.70–71, read
/// by load/LoadConfigs.py l.827–831).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CusTextSettings {
    /// Privacy budget ε (10).
    #[serde(default = "default_epsilon")]
    pub epsilon: f64,
    /// Candidates per word (100).
    #[serde(default = "default_topk")]
    pub topk: usize,
    /// The reference's handling of math data sets (its dataset names `GMS8K`, `GMS8K-test`,
    /// `MATH`: custext_utils.py l.106–119): number words are kept and numbers are not
    /// shifted. Off by default, as for every other data set (the reference's GSM8K
    /// configuration spells its name `GSM8K`, so it runs without it).
    #[serde(default)]
    pub math_numbers: bool,
}

fn default_epsilon() -> f64 {
    10.0
}

fn default_topk() -> usize {
    100
}

impl Default for CusTextSettings {
    fn default() -> Self {
        Self {
            epsilon: default_epsilon(),
            topk: default_topk(),
            math_numbers: false,
        }
    }
}

impl CusTextSettings {
    /// Refuses settings that cannot work, naming the field.
    pub fn validate(&self) -> Result<(), DefenseError> {
        let bad = |reason: String| {
            Err(DefenseError {
                defense: NAME,
                reason,
            })
        };
        if !(self.epsilon >= 0.0 && self.epsilon.is_finite()) {
            return bad(format!(
                "epsilon must be finite and ≥ 0, not {}",
                self.epsilon
            ));
        }
        if self.topk == 0 {
            return bad("topk must be at least 1".into());
        }
        Ok(())
    }

    /// What it needs from the data party: the tokenizer and embeddings, and the training
    /// inputs for its word lists.
    pub fn needs(&self) -> Needs {
        Needs {
            text: true,
            training_inputs: true,
            ..Needs::default()
        }
    }

    /// The defense, its random draws seeded by `seed`.
    pub fn build(&self, seed: u64, env: &DefenseEnv) -> Result<Box<dyn Defense>, DefenseError> {
        self.validate()?;
        Ok(Box::new(CusText::new(self.clone(), seed, env)?))
    }
}

/// Each listed word's candidates and their probabilities.
#[derive(Debug, Default)]
pub(crate) struct Mapping {
    /// The candidate lists, shared by the words that took them.
    pub lists: Vec<Arc<[String]>>,
    /// By word: its list's index and its probabilities over the list.
    pub words: HashMap<String, (usize, Vec<f64>)>,
}

/// custext_utils.py `get_customized_mapping` after its word2vec training: `vocabulary` (the
/// word2vec index order) with unit-norm `embeddings` (`|vocabulary| × dim`), `word_freq` the
/// training texts' whitespace-split words in `most_common` order. Ties in similarity rank the
/// later word first, as `argsort()[::-1]` does.
pub(crate) fn customized_mapping(
    vocabulary: &[String],
    embeddings: &[f32],
    dim: usize,
    word_freq: &[String],
    epsilon: f64,
    top_k: usize,
    points: &Candidates,
) -> Mapping {
    let index: HashMap<&str, usize> = vocabulary
        .iter()
        .enumerate()
        .map(|(i, w)| (w.as_str(), i))
        .collect();
    let n = vocabulary.len();
    let row = |i: usize| &embeddings[i * dim..(i + 1) * dim];
    let dot = |a: usize, b: usize| -> f64 {
        row(a).iter().zip(row(b)).map(|(x, y)| (x * y) as f64).sum()
    };
    // The reference zeroes the embeddings of every listed word once its list is made.
    let mut zeroed = vec![false; n];
    let mut mapping = Mapping::default();
    let heads: Vec<usize> = word_freq
        .iter()
        .filter_map(|w| index.get(w.as_str()).copied())
        .collect();
    let mut position = 0;
    while position < heads.len() {
        // Similarities of the next few possible heads to every word, in one product; a
        // word listed meanwhile is skipped when its turn comes.
        let chunk: Vec<usize> = heads[position..].iter().take(64).copied().collect();
        position += chunk.len();
        let queries: Vec<f32> = chunk.iter().flat_map(|&h| row(h).to_vec()).collect();
        let scores = points.dots(&queries);
        for (k, &head) in chunk.iter().enumerate() {
            if mapping.words.contains_key(&vocabulary[head]) {
                continue;
            }
            let mut order: Vec<(f32, usize)> = (0..n)
                .map(|j| {
                    let s = if zeroed[j] { 0.0 } else { scores[k * n + j] };
                    (s, j)
                })
                .collect();
            let k_top = top_k.min(n);
            let by_rank =
                |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1));
            if k_top < n {
                order.select_nth_unstable_by(k_top - 1, by_rank);
                order.truncate(k_top);
            }
            order.sort_by(by_rank);
            let listed: Vec<usize> = order.iter().map(|&(_, j)| j).collect();
            let list: Arc<[String]> = listed.iter().map(|&j| vocabulary[j].clone()).collect();
            let list_index = mapping.lists.len();
            for &x in &listed {
                if mapping.words.contains_key(&vocabulary[x]) {
                    continue;
                }
                let sims: Vec<f64> = listed
                    .iter()
                    .map(|&j| if zeroed[j] { 0.0 } else { dot(x, j) })
                    .collect();
                mapping.words.insert(
                    vocabulary[x].clone(),
                    (list_index, probabilities(&sims, epsilon)),
                );
            }
            mapping.lists.push(list);
            for &j in &listed {
                zeroed[j] = true;
            }
        }
    }
    mapping
}

/// `exp(ε·s/2)` normalised, `s` the similarities min–max scaled (uniform when they are all
/// equal, where the reference divides by zero).
fn probabilities(sims: &[f64], epsilon: f64) -> Vec<f64> {
    let min = sims.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = sims.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let span = max - min;
    let weights: Vec<f64> = sims
        .iter()
        .map(|s| {
            let scaled = if span > 0.0 { (s - min) / span } else { 0.0 };
            (epsilon * scaled / 2.0).exp()
        })
        .collect();
    let total: f64 = weights.iter().sum();
    weights.iter().map(|w| w / total).collect()
}

/// The whitespace-split words of `texts` in `most_common` order (the reference's `word_freq`).
pub(crate) fn word_frequencies(texts: &[String]) -> Vec<String> {
    most_common(texts.iter().flat_map(|t| t.split_whitespace()))
        .into_iter()
        .map(|(w, _)| w)
        .collect()
}

/// The word2vec vocabulary's substitute: `simple_preprocess` words, most frequent first.
pub(crate) fn vocabulary_of(texts: &[String]) -> Vec<String> {
    most_common(texts.iter().flat_map(|t| simple_preprocess(t)))
        .into_iter()
        .map(|(w, _)| w)
        .collect()
}

struct CusText {
    settings: CusTextSettings,
    rewriter: Rewriter,
    mapping: Mapping,
    rng: SplitMix64,
}

impl CusText {
    fn new(settings: CusTextSettings, seed: u64, env: &DefenseEnv) -> Result<Self, DefenseError> {
        let error = |reason: String| DefenseError {
            defense: NAME,
            reason,
        };
        let codec = env.text(NAME)?.clone();
        let table = HostEmbeddings::of(env.token_embeddings(NAME)?).map_err(error)?;
        let texts: Vec<String> = env
            .training_inputs(NAME)?
            .iter()
            .map(|ids| codec.decode(ids, true))
            .collect();
        let mut vocabulary = Vec::new();
        let mut embeddings = Vec::new();
        for word in vocabulary_of(&texts) {
            if let Some(e) = word_embedding(codec.as_ref(), &table, &word) {
                vocabulary.push(word);
                embeddings.extend(e);
            }
        }
        if vocabulary.is_empty() {
            return Err(error("the training inputs hold no word to list".into()));
        }
        let points = Candidates::new(&embeddings, table.dim, &env.device.clone().inner());
        let mapping = customized_mapping(
            &vocabulary,
            &embeddings,
            table.dim,
            &word_frequencies(&texts),
            settings.epsilon,
            settings.topk,
            &points,
        );
        Ok(Self {
            settings,
            rewriter: Rewriter::new(codec),
            mapping,
            rng: SplitMix64::new(seed),
        })
    }
}

/// A word's unit embedding: the mean of its tokens' input embeddings, normalised.
fn word_embedding(
    codec: &dyn crate::TextCodec,
    table: &HostEmbeddings,
    word: &str,
) -> Option<Vec<f32>> {
    let rows: Vec<&[f32]> = codec
        .tokenize(word)
        .iter()
        .filter_map(|t| table.row(codec.token_to_id(t)?))
        .collect();
    if rows.is_empty() {
        return None;
    }
    let mut mean = vec![0f32; table.dim];
    for r in &rows {
        mean.iter_mut().zip(*r).for_each(|(m, v)| *m += v);
    }
    let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt();
    (norm > 0.0).then(|| mean.iter().map(|v| v / norm).collect())
}

/// custext_utils.py `generate_new_sents_s1` on one text (`save_stop_words` off, as the
/// reference calls it).
fn sanitize(mapping: &Mapping, math_numbers: bool, text: &str, rng: &mut SplitMix64) -> String {
    let words: Vec<String> = text
        .split_whitespace()
        .map(|word| {
            if math_numbers && MATH_NUMBER_WORDS.contains(&word) {
                return word.to_string();
            }
            match mapping.words.get(word) {
                Some((list, p)) => match sample_weighted(p, rng) {
                    Some(i) => mapping.lists[*list][i].clone(),
                    None => word.to_string(),
                },
                None if !math_numbers && is_number(word) => shift_number(word, rng),
                None => word.to_string(),
            }
        })
        .collect();
    words.join(" ")
}

impl Defense for CusText {
    fn name(&self) -> &'static str {
        NAME
    }

    fn params(&self) -> serde_json::Value {
        let listed: HashSet<usize> = self.mapping.words.values().map(|(l, _)| *l).collect();
        serde_json::json!({
            "epsilon": self.settings.epsilon,
            "topk": self.settings.topk,
            "math_numbers": self.settings.math_numbers,
            "embeddings": "input_embeddings",
            "words": self.mapping.words.len(),
            "lists": listed.len(),
        })
    }

    fn on_input(&mut self, batch: TokenBatch, _ctx: &HookContext) -> TokenBatch {
        let (mapping, rng) = (&self.mapping, &mut self.rng);
        let math = self.settings.math_numbers;
        let rewriter = &self.rewriter;
        rewriter.rewrite(batch, |ids| {
            sanitize(mapping, math, &rewriter.codec().decode(ids, true), rng)
        })
    }
}
