//! Text to token batches through a Hugging Face tokenizer, with the labels beside them.

use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use splitlm_nn::batch::{PaddingSide, int_tensor};
use splitlm_nn::{Labels, TokenBatch};
use tokenizers::{Tokenizer, TruncationParams};

use crate::dataset::{Example, Target};
use crate::error::TaskError;

/// Turns examples into padded batches: truncation to `max_len` tokens (pairs truncate the
/// longer text first), padding to the longest sequence of each batch on the model's side.
pub struct Encoder {
    tokenizer: Tokenizer,
    pad_id: u32,
    side: PaddingSide,
}

impl Encoder {
    /// Loads `tokenizer.json`. Padding and truncation configured inside the file (MiniLM's pads
    /// everything to 128) are replaced by this encoder's own.
    pub fn from_file(path: &Path, max_len: usize, side: PaddingSide) -> Result<Self, TaskError> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| TaskError::Tokenizer(format!("{}: {e}", path.display())))?;
        Self::new(tokenizer, max_len, side)
    }

    /// Wraps a tokenizer.
    pub fn new(
        mut tokenizer: Tokenizer,
        max_len: usize,
        side: PaddingSide,
    ) -> Result<Self, TaskError> {
        if max_len < 4 {
            return Err(TaskError::Config(format!(
                "max_len = {max_len} is too short"
            )));
        }
        let pad_id = tokenizer
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| tokenizer.token_to_id("[PAD]"))
            .or_else(|| tokenizer.token_to_id("<pad>"))
            .unwrap_or(0);
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..TruncationParams::default()
            }))
            .map_err(|e| TaskError::Tokenizer(e.to_string()))?;
        Ok(Self {
            tokenizer,
            pad_id,
            side,
        })
    }

    /// The padding token id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The token batch of `examples` on `device`.
    pub fn tokens(&self, examples: &[Example], device: &Device) -> Result<TokenBatch, TaskError> {
        let encodings = examples
            .iter()
            .map(|e| match &e.text_pair {
                Some(pair) => self
                    .tokenizer
                    .encode((e.text.as_str(), pair.as_str()), true),
                None => self.tokenizer.encode(e.text.as_str(), true),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TaskError::Tokenizer(e.to_string()))?;
        let ids: Vec<Vec<u32>> = encodings.iter().map(|e| e.get_ids().to_vec()).collect();
        let mut batch = TokenBatch::from_sequences(&ids, self.pad_id, self.side, device)?;
        if examples.iter().any(|e| e.text_pair.is_some()) {
            let [b, s] = batch.dims();
            let mut types = Vec::with_capacity(b * s);
            for e in &encodings {
                let t: Vec<i64> = e.get_type_ids().iter().map(|&t| t as i64).collect();
                let pads = std::iter::repeat_n(0i64, s - t.len());
                match self.side {
                    PaddingSide::Right => types.extend(t.iter().copied().chain(pads)),
                    PaddingSide::Left => types.extend(pads.chain(t.iter().copied())),
                }
            }
            batch.token_type_ids = Some(int_tensor(types, [b, s], device));
        }
        Ok(batch)
    }

    /// The token batch and the labels of `examples`.
    pub fn encode(
        &self,
        examples: &[Example],
        device: &Device,
    ) -> Result<(TokenBatch, Labels), TaskError> {
        Ok((self.tokens(examples, device)?, labels(examples, device)?))
    }
}

/// The labels of `examples` (all classes or all scores).
pub fn labels(examples: &[Example], device: &Device) -> Result<Labels, TaskError> {
    let n = examples.len();
    if let Some(classes) = examples
        .iter()
        .map(|e| match e.target {
            Target::Class(c) => Some(c as i64),
            Target::Score(_) => None,
        })
        .collect::<Option<Vec<i64>>>()
    {
        return Ok(Labels::Classes(Tensor::<1, Int>::from_data(
            TensorData::new(classes, [n]),
            device,
        )));
    }
    let scores = examples
        .iter()
        .map(|e| match e.target {
            Target::Score(s) => Some(s),
            Target::Class(_) => None,
        })
        .collect::<Option<Vec<f32>>>()
        .ok_or_else(|| TaskError::Config("a batch mixes class and score labels".into()))?;
    Ok(Labels::Scores(Tensor::<1>::from_data(
        TensorData::new(scores, [n]),
        device,
    )))
}
