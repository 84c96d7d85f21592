//! Extractive span QA (SQuAD): question + context windows with a doc stride for long contexts,
//! start/end labels per window, and n-best span decoding mapped back to the context's text.

use std::collections::HashMap;

use burn::tensor::{Device, Int, Tensor, TensorData};
use splitlm_nn::batch::{PaddingSide, int_tensor};
use splitlm_nn::{Labels, TokenBatch};
use tokenizers::{Encoding, Tokenizer, TruncationParams, TruncationStrategy};

use crate::error::TaskError;
use crate::formats::SquadQuestion;
use crate::predictor::{Predictor, TrainingSet};

/// One window of one question's context, tokenized with the question.
#[derive(Debug, Clone, PartialEq)]
pub struct QaFeature {
    /// Index of the question in the list the features were made from.
    pub question: usize,
    /// `[CLS] question [SEP] context window [SEP]` token ids.
    pub ids: Vec<u32>,
    /// Segment ids (0 question, 1 context).
    pub type_ids: Vec<u32>,
    /// Character span in the context of each context token; `None` for the others.
    pub spans: Vec<Option<(usize, usize)>>,
    /// Start and end token of the first answer in this window; `(0, 0)` (the `[CLS]` token)
    /// when the window does not hold it.
    pub label: (usize, usize),
}

/// Cuts questions into features: at most `max_len` tokens each, consecutive context windows
/// overlapping by `stride` tokens.
pub struct QaEncoder {
    tokenizer: Tokenizer,
    pad_id: u32,
}

impl QaEncoder {
    /// Wraps a tokenizer for windows of `max_len` tokens overlapping by `stride`.
    pub fn new(mut tokenizer: Tokenizer, max_len: usize, stride: usize) -> Result<Self, TaskError> {
        if stride >= max_len / 2 {
            return Err(TaskError::Config(format!(
                "doc stride {stride} must be below half of max_len {max_len}"
            )));
        }
        let pad_id = tokenizer
            .token_to_id("[PAD]")
            .or_else(|| tokenizer.token_to_id("<pad>"))
            .unwrap_or(0);
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                stride,
                strategy: TruncationStrategy::OnlySecond,
                ..TruncationParams::default()
            }))
            .map_err(|e| TaskError::Tokenizer(e.to_string()))?;
        Ok(Self { tokenizer, pad_id })
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The padding token id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Every window of every question.
    pub fn features(&self, questions: &[SquadQuestion]) -> Result<Vec<QaFeature>, TaskError> {
        let mut features = Vec::new();
        for (index, q) in questions.iter().enumerate() {
            let encoding = self
                .tokenizer
                .encode_char_offsets((q.question.as_str(), q.context.as_str()), true)
                .map_err(|e| TaskError::Tokenizer(format!("question {}: {e}", q.id)))?;
            let answer = q
                .answers
                .first()
                .map(|a| (a.start, a.start + a.text.chars().count()));
            let mut windows = vec![encoding.clone()];
            windows.extend(encoding.get_overflowing().iter().cloned());
            for window in &windows {
                features.push(feature(index, window, answer));
            }
        }
        Ok(features)
    }

    /// The batch of `features` with their span labels.
    pub fn batch(
        &self,
        features: &[&QaFeature],
        device: &Device,
    ) -> Result<(TokenBatch, Labels), TaskError> {
        let ids: Vec<Vec<u32>> = features.iter().map(|f| f.ids.clone()).collect();
        let mut batch = TokenBatch::from_sequences(&ids, self.pad_id, PaddingSide::Right, device)?;
        let [b, s] = batch.dims();
        let mut types = Vec::with_capacity(b * s);
        for f in features {
            types.extend(f.type_ids.iter().map(|&t| t as i64));
            types.extend(std::iter::repeat_n(0, s - f.type_ids.len()));
        }
        batch.token_type_ids = Some(int_tensor(types, [b, s], device));
        let positions = |pick: fn(&QaFeature) -> usize| {
            let v: Vec<i64> = features.iter().map(|f| pick(f) as i64).collect();
            Tensor::<1, Int>::from_data(TensorData::new(v, [b]), device)
        };
        let labels = Labels::Spans {
            start: positions(|f| f.label.0),
            end: positions(|f| f.label.1),
        };
        Ok((batch, labels))
    }
}

fn feature(question: usize, window: &Encoding, answer: Option<(usize, usize)>) -> QaFeature {
    let spans: Vec<Option<(usize, usize)>> = window
        .get_sequence_ids()
        .iter()
        .zip(window.get_offsets())
        .map(|(seq, &(a, b))| (*seq == Some(1)).then_some((a, b)))
        .collect();
    let label = answer
        .and_then(|(start, end)| answer_tokens(&spans, start, end))
        .unwrap_or((0, 0));
    QaFeature {
        question,
        ids: window.get_ids().to_vec(),
        type_ids: window.get_type_ids().to_vec(),
        spans,
        label,
    }
}

/// The tokens covering characters `[start, end)` when the window holds all of them.
fn answer_tokens(
    spans: &[Option<(usize, usize)>],
    start: usize,
    end: usize,
) -> Option<(usize, usize)> {
    let context: Vec<(usize, (usize, usize))> = spans
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| (i, s)))
        .collect();
    let (first, last) = (context.first()?, context.last()?);
    if start < first.1.0 || end > last.1.1 {
        return None;
    }
    let start_token = context.iter().find(|(_, (_, b))| *b > start)?.0;
    let end_token = context.iter().rev().find(|(_, (a, _))| *a < end)?.0;
    (end_token >= start_token).then_some((start_token, end_token))
}

/// One window's start and end logits, one value per token.
pub type WindowLogits = (Vec<f32>, Vec<f32>);

/// Span decoding settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpanDecoding {
    /// Starts and ends considered per window (the most likely ones).
    pub n_best: usize,
    /// Longest answer in tokens.
    pub max_answer_tokens: usize,
}

impl Default for SpanDecoding {
    fn default() -> Self {
        Self {
            n_best: 20,
            max_answer_tokens: 30,
        }
    }
}

fn top(values: &[f32], spans: &[Option<(usize, usize)>], n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len().min(spans.len()))
        .filter(|&i| spans[i].is_some())
        .collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.truncate(n);
    idx
}

/// The best answer of each question: over all its windows, the context span whose start and
/// end logits sum highest among the `n_best` starts × `n_best` ends of each window, with
/// `start ≤ end` and at most `max_answer_tokens` tokens; the text is the context's own
/// characters from the start token's first to the end token's last.
pub fn decode_answers(
    questions: &[SquadQuestion],
    features: &[QaFeature],
    logits: &[WindowLogits],
    settings: &SpanDecoding,
) -> HashMap<String, String> {
    let mut best: HashMap<usize, (f32, usize, usize)> = HashMap::new();
    for (f, (start, end)) in features.iter().zip(logits) {
        for &i in &top(start, &f.spans, settings.n_best) {
            for &j in &top(end, &f.spans, settings.n_best) {
                if j < i || j - i + 1 > settings.max_answer_tokens {
                    continue;
                }
                let (a, b) = (f.spans[i].expect("context"), f.spans[j].expect("context"));
                let score = start[i] + end[j];
                let entry = best.entry(f.question).or_insert((f32::NEG_INFINITY, 0, 0));
                if score > entry.0 {
                    *entry = (score, a.0, b.1);
                }
            }
        }
    }
    questions
        .iter()
        .enumerate()
        .map(|(index, q)| {
            let text = best
                .get(&index)
                .map(|&(_, a, b)| q.context.chars().skip(a).take(b - a).collect())
                .unwrap_or_default();
            (q.id.clone(), text)
        })
        .collect()
}

/// Runs `predictor` over the features in batches; returns each feature's start and end logits.
pub fn span_logits(
    predictor: &mut dyn Predictor,
    encoder: &QaEncoder,
    features: &[QaFeature],
    batch_size: usize,
) -> Result<Vec<WindowLogits>, TaskError> {
    let device = predictor.device();
    let mut out = Vec::with_capacity(features.len());
    for chunk in features.chunks(batch_size.max(1)) {
        let refs: Vec<&QaFeature> = chunk.iter().collect();
        let (batch, _) = encoder.batch(&refs, &device)?;
        let (start, end) = match predictor.predict(&batch)? {
            splitlm_nn::HeadOutput::SpanLogits { start, end } => (start, end),
            _ => {
                return Err(TaskError::Mismatch(
                    "the model's head is not a span head".into(),
                ));
            }
        };
        let [b, s] = start.dims();
        let read = |t: Tensor<2>| {
            t.into_data()
                .try_into_vec_as::<f32>()
                .map_err(|e| TaskError::Config(format!("reading span logits: {e:?}")))
        };
        let (start, end) = (read(start)?, read(end)?);
        for row in 0..b {
            out.push((
                start[row * s..(row + 1) * s].to_vec(),
                end[row * s..(row + 1) * s].to_vec(),
            ));
        }
    }
    Ok(out)
}

/// Question windows as a training set.
pub struct QaFeatures<'a> {
    /// Batches features.
    pub encoder: &'a QaEncoder,
    /// The windows.
    pub features: &'a [QaFeature],
}

impl TrainingSet for QaFeatures<'_> {
    fn len(&self) -> usize {
        self.features.len()
    }

    fn batch(&self, indices: &[usize], device: &Device) -> Result<(TokenBatch, Labels), TaskError> {
        let refs: Vec<&QaFeature> = indices.iter().map(|&i| &self.features[i]).collect();
        self.encoder.batch(&refs, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans() -> Vec<Option<(usize, usize)>> {
        // [CLS] q [SEP] "the"(0,3) "big"(4,7) "cat"(8,11) [SEP]
        vec![
            None,
            None,
            None,
            Some((0, 3)),
            Some((4, 7)),
            Some((8, 11)),
            None,
        ]
    }

    #[test]
    fn answers_map_to_the_tokens_that_cover_them() {
        assert_eq!(answer_tokens(&spans(), 4, 7), Some((4, 4)));
        assert_eq!(answer_tokens(&spans(), 4, 11), Some((4, 5)));
        assert_eq!(
            answer_tokens(&spans(), 5, 9),
            Some((4, 5)),
            "partial tokens count"
        );
        assert_eq!(answer_tokens(&spans(), 8, 15), None, "runs past the window");
    }

    #[test]
    fn decoding_picks_the_best_valid_span_across_windows() {
        let question = SquadQuestion {
            id: "q1".into(),
            title: String::new(),
            context: "the big cat".into(),
            question: "what?".into(),
            answers: Vec::new(),
        };
        let feature = |question| QaFeature {
            question,
            ids: vec![0; 7],
            type_ids: vec![0; 7],
            spans: spans(),
            label: (0, 0),
        };
        let features = vec![feature(0), feature(0)];
        // Window 1: the best start ("big", 5) comes after the best end ("the", 4), so
        // "big cat" wins (5 + 2); window 2 prefers "the" at 2 + 2, which loses. [CLS] logits
        // are never picked.
        let logits = vec![
            (
                vec![9., 0., 0., 0., 5., 1., 0.],
                vec![9., 0., 0., 4., 0., 2., 0.],
            ),
            (
                vec![9., 0., 0., 2., 0., 0., 0.],
                vec![9., 0., 0., 2., 0., 0., 0.],
            ),
        ];
        let answers = decode_answers(&[question], &features, &logits, &SpanDecoding::default());
        assert_eq!(answers["q1"], "big cat");
        let short = SpanDecoding {
            max_answer_tokens: 1,
            ..SpanDecoding::default()
        };
        let answers = decode_answers(
            &[SquadQuestion {
                id: "q1".into(),
                title: String::new(),
                context: "the big cat".into(),
                question: "what?".into(),
                answers: Vec::new(),
            }],
            &features,
            &logits,
            &short,
        );
        assert_eq!(
            answers["q1"], "big",
            "5 + 0 beats 0 + 4 once spans are one token"
        );
    }
}
