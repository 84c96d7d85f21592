//! SanText+ (Yue et al. 2021), as the reference applies it to a data party's input
//! (party/passive_party.py l.443–515 builds it, l.868–887 applies it; utils/santext_utils.py).
//!
//! The vocabulary is the training inputs' tokens, counted; the rarest
//! `sensitive_word_percentage` of them (plus one, as the reference slices) are the sensitive
//! words. A token is replaced by a sensitive word drawn by the exponential mechanism
//! `softmax(−ε·‖e(w) − e(s)‖ / 2)` over the sensitive words `s`, with the head's input
//! embeddings `e`: always when it is sensitive, with probability `p` otherwise; a token outside
//! the vocabulary by a uniform draw from the training vocabulary.
//!
//! Cost: the reference's probability matrix is `|tokenizer vocabulary| × |sensitive|`. Here
//! the rows of the training vocabulary's tokens are computed at build time (`|training
//! tokens| × |sensitive|` floats, 4 bytes each: reported as `table_bytes` in the parameters)
//! and the rows of other tokens when they first occur, then kept.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use splitlm_nn::TokenBatch;
use splitlm_nn::seeded::SplitMix64;

use super::geometry::{Candidates, HostEmbeddings};
use super::python::{most_common, sample_cumulative};
use super::rewrite::Rewriter;
use super::{TokenJoin, join_tokens};
use crate::{Defense, DefenseEnv, DefenseError, HookContext, Needs};

const NAME: &str = "santext";

/// SanText+'s settings; each left out takes the value of the reference's configuration
/// (configs/llm_configs/with_mia_and_defense/2-slice/alpaca_gpt2_santext.json l.78–80, read by
/// load/LoadConfigs.py l.833–838).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SanTextSettings {
    /// Privacy budget ε of the exponential mechanism (0.1).
    #[serde(default = "default_epsilon")]
    pub epsilon: f64,
    /// Fraction of the training vocabulary, the rarest, treated as sensitive (0.5).
    #[serde(default = "default_sensitive_fraction")]
    pub sensitive_word_percentage: f64,
    /// Probability of replacing a non-sensitive token (0.2).
    #[serde(default = "default_p")]
    pub p: f64,
    /// How the sanitized tokens become text again: `"spaces"` (the reference: the token
    /// strings joined by spaces, word-piece markers and all) or `"detokenize"` (splitlm's
    /// option: the tokenizer's own decoding of them).
    #[serde(default)]
    pub join: TokenJoin,
}

fn default_epsilon() -> f64 {
    0.1
}

fn default_sensitive_fraction() -> f64 {
    0.5
}

fn default_p() -> f64 {
    0.2
}

impl Default for SanTextSettings {
    fn default() -> Self {
        Self {
            epsilon: default_epsilon(),
            sensitive_word_percentage: default_sensitive_fraction(),
            p: default_p(),
            join: TokenJoin::default(),
        }
    }
}

impl SanTextSettings {
    /// Refuses settings that cannot work, naming the field.
    pub fn validate(&self) -> Result<(), DefenseError> {
        let bad = |reason: String| {
            Err(DefenseError {
                defense: NAME,
                reason,
            })
        };
        if !(self.epsilon > 0.0 && self.epsilon.is_finite()) {
            return bad(format!(
                "epsilon must be positive and finite, not {}",
                self.epsilon
            ));
        }
        if !(0.0..=1.0).contains(&self.sensitive_word_percentage) {
            return bad(format!(
                "sensitive_word_percentage must be in [0, 1], not {}",
                self.sensitive_word_percentage
            ));
        }
        if !(0.0..=1.0).contains(&self.p) {
            return bad(format!("p must be in [0, 1], not {}", self.p));
        }
        Ok(())
    }

    /// What it needs from the data party: the tokenizer and embeddings, and the training
    /// inputs for its vocabulary.
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
        Ok(Box::new(SanText::new(self.clone(), seed, env)?))
    }
}

/// The training vocabulary in `Counter.most_common()` order and its sensitive words:
/// passive_party.py l.470–472, `all_words[-sensitive_word_count - 1:]` with
/// `sensitive_word_count = int(fraction · |vocab|)`.
pub(crate) fn sensitive_words(all_words: &[String], fraction: f64) -> &[String] {
    let count = (fraction * all_words.len() as f64) as usize;
    &all_words[all_words.len() - (count + 1).min(all_words.len())..]
}

/// santext_utils.py `cal_probability`: `softmax(ε · (−‖a − s‖) / 2)` over the sensitive
/// words, one row per query, from the distances `[m, n]`, as cumulative rows.
pub(crate) fn cumulative_rows(distances: &[f32], n: usize, epsilon: f64) -> Vec<Arc<[f32]>> {
    distances
        .chunks(n.max(1))
        .map(|row| {
            let logits: Vec<f64> = row.iter().map(|&d| -epsilon * d as f64 / 2.0).collect();
            let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            let mut acc = 0.0;
            weights
                .iter()
                .map(|w| {
                    acc += w / total;
                    acc as f32
                })
                .collect()
        })
        .collect()
}

struct SanText {
    settings: SanTextSettings,
    rewriter: Rewriter,
    state: State,
}

struct State {
    embeddings: HostEmbeddings,
    sensitive: Vec<String>,
    sensitive_set: HashSet<String>,
    sensitive_points: Candidates,
    /// The training vocabulary, most common first (the reference's `all_words`).
    all_words: Vec<String>,
    /// Cumulative sampling rows by token string.
    rows: HashMap<String, Arc<[f32]>>,
    precomputed: usize,
    epsilon: f64,
    p: f64,
    rng: SplitMix64,
}

impl SanText {
    fn new(settings: SanTextSettings, seed: u64, env: &DefenseEnv) -> Result<Self, DefenseError> {
        let error = |reason: String| DefenseError {
            defense: NAME,
            reason,
        };
        let codec = env.text(NAME)?.clone();
        let embeddings = HostEmbeddings::of(env.token_embeddings(NAME)?).map_err(error)?;
        let inputs = env.training_inputs(NAME)?;
        // utils/santext_utils.py `get_vocab`: the tokens of each decoded training input.
        let tokens = inputs
            .iter()
            .flat_map(|ids| codec.tokenize(&codec.decode(ids, true)));
        let all_words: Vec<String> = most_common(tokens)
            .into_iter()
            .map(|(w, _)| w)
            .filter(|w| row_of(codec.as_ref(), &embeddings, w).is_some())
            .collect();
        if all_words.is_empty() {
            return Err(error(
                "the training inputs hold no token with an embedding".into(),
            ));
        }
        let mut sensitive: Vec<String> =
            sensitive_words(&all_words, settings.sensitive_word_percentage).to_vec();
        sensitive.sort_by_key(|w| codec.token_to_id(w));
        let sensitive_rows: Vec<f32> = sensitive
            .iter()
            .flat_map(|w| {
                row_of(codec.as_ref(), &embeddings, w)
                    .unwrap_or(&[])
                    .to_vec()
            })
            .collect();
        let device = env.device.clone().inner();
        let sensitive_points = Candidates::new(&sensitive_rows, embeddings.dim, &device);
        let queries: Vec<f32> = all_words
            .iter()
            .flat_map(|w| {
                row_of(codec.as_ref(), &embeddings, w)
                    .unwrap_or(&[])
                    .to_vec()
            })
            .collect();
        let distances = sensitive_points.distances(&queries);
        let cdfs = cumulative_rows(&distances, sensitive.len(), settings.epsilon);
        let rows: HashMap<String, Arc<[f32]>> = all_words.iter().cloned().zip(cdfs).collect();
        let state = State {
            embeddings,
            sensitive_set: sensitive.iter().cloned().collect(),
            sensitive,
            sensitive_points,
            precomputed: rows.len(),
            rows,
            all_words,
            epsilon: settings.epsilon,
            p: settings.p,
            rng: SplitMix64::new(seed),
        };
        Ok(Self {
            settings,
            rewriter: Rewriter::new(codec),
            state,
        })
    }
}

fn row_of<'a>(
    codec: &dyn crate::TextCodec,
    embeddings: &'a HostEmbeddings,
    token: &str,
) -> Option<&'a [f32]> {
    embeddings.row(codec.token_to_id(token)?)
}

impl State {
    /// santext_utils.py `SanText_plus` on one document's tokens.
    fn sanitize(&mut self, codec: &dyn crate::TextCodec, doc: Vec<String>) -> Vec<String> {
        doc.into_iter()
            .map(|word| {
                let Some(row) = self.row(codec, &word) else {
                    // Out of vocabulary: uniform over the training vocabulary.
                    let i = (self.rng.next_u64() % self.all_words.len() as u64) as usize;
                    return self.all_words[i].clone();
                };
                // `random.random() <= p` flips a non-sensitive word.
                let replace = self.sensitive_set.contains(&word) || self.rng.uniform() <= self.p;
                match replace
                    .then(|| sample_cumulative(&row, &mut self.rng))
                    .flatten()
                {
                    Some(i) => self.sensitive[i].clone(),
                    None => word,
                }
            })
            .collect()
    }

    fn row(&mut self, codec: &dyn crate::TextCodec, word: &str) -> Option<Arc<[f32]>> {
        if let Some(row) = self.rows.get(word) {
            return Some(row.clone());
        }
        let query = row_of(codec, &self.embeddings, word)?.to_vec();
        let distances = self.sensitive_points.distances(&query);
        let row = cumulative_rows(&distances, self.sensitive.len(), self.epsilon)
            .pop()
            .filter(|r| !r.is_empty())?;
        self.rows.insert(word.to_string(), row.clone());
        Some(row)
    }
}

impl Defense for SanText {
    fn name(&self) -> &'static str {
        NAME
    }

    fn params(&self) -> serde_json::Value {
        let s = &self.state;
        serde_json::json!({
            "epsilon": self.settings.epsilon,
            "sensitive_word_percentage": self.settings.sensitive_word_percentage,
            "p": self.settings.p,
            "join": self.settings.join,
            "vocabulary": s.all_words.len(),
            "sensitive_words": s.sensitive.len(),
            "table_bytes": s.precomputed * s.sensitive.len() * 4,
        })
    }

    fn on_input(&mut self, batch: TokenBatch, _ctx: &HookContext) -> TokenBatch {
        let join = self.settings.join;
        let state = &mut self.state;
        let rewriter = &self.rewriter;
        rewriter.rewrite(batch, |ids| {
            let codec = rewriter.codec();
            let doc = codec.tokenize(&codec.decode(ids, true));
            let new_doc = state.sanitize(codec, doc);
            join_tokens(codec, &new_doc, join)
        })
    }
}
