//! Causal-LM fine-tuning on prompt/response pairs: the loss covers the response tokens only
//! (the prompt and the padding are not trained — the reference trains them toward the pad id).

use burn::tensor::Device;
use splitlm_nn::batch::{PaddingSide, int_tensor};
use splitlm_nn::{Labels, TokenBatch};
use tokenizers::Tokenizer;

use crate::error::TaskError;
use crate::predictor::TrainingSet;
use crate::prompt::PromptPair;

/// Tokenizes prompt/response pairs into right-padded batches of at most `max_len` tokens.
pub struct LmEncoder {
    tokenizer: Tokenizer,
    max_len: usize,
    pad_id: u32,
}

/// One pair's tokens and which of them are trained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPair {
    /// Prompt tokens then response tokens.
    pub ids: Vec<u32>,
    /// How many leading ids are the prompt.
    pub prompt_len: usize,
}

impl LmEncoder {
    /// Wraps a tokenizer (padding and truncation are this encoder's own).
    pub fn new(mut tokenizer: Tokenizer, max_len: usize) -> Result<Self, TaskError> {
        if max_len < 4 {
            return Err(TaskError::Config(format!(
                "max_len = {max_len} is too short"
            )));
        }
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| TaskError::Tokenizer(e.to_string()))?;
        let pad_id = ["<|endoftext|>", "<pad>", "[PAD]"]
            .iter()
            .find_map(|t| tokenizer.token_to_id(t))
            .unwrap_or(0);
        Ok(Self {
            tokenizer,
            max_len,
            pad_id,
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

    /// Tokens of `text` as written (special tokens in the text are recognised, none added).
    pub fn ids(&self, text: &str) -> Result<Vec<u32>, TaskError> {
        Ok(self
            .tokenizer
            .encode(text, false)
            .map_err(|e| TaskError::Tokenizer(e.to_string()))?
            .get_ids()
            .to_vec())
    }

    /// Text of `ids`, special tokens dropped.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TaskError> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| TaskError::Tokenizer(e.to_string()))
    }

    /// The tokens of a pair, cut to `max_len`: the response keeps at least half of the budget
    /// (or all of itself), the prompt loses its beginning first, the response its end.
    pub fn encode_pair(&self, pair: &PromptPair) -> Result<EncodedPair, TaskError> {
        let mut prompt = self.ids(&pair.prompt)?;
        let mut response = self.ids(&pair.response)?;
        let room_for_prompt = self
            .max_len
            .saturating_sub(response.len().min(self.max_len / 2));
        if prompt.len() > room_for_prompt {
            prompt.drain(..prompt.len() - room_for_prompt);
        }
        response.truncate(self.max_len - prompt.len());
        let prompt_len = prompt.len();
        prompt.extend(response);
        Ok(EncodedPair {
            ids: prompt,
            prompt_len,
        })
    }

    /// The batch of `pairs` with next-token labels on the response positions only.
    pub fn encode(
        &self,
        pairs: &[PromptPair],
        device: &Device,
    ) -> Result<(TokenBatch, Labels), TaskError> {
        let encoded = pairs
            .iter()
            .map(|p| self.encode_pair(p))
            .collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<Vec<u32>> = encoded.iter().map(|e| e.ids.clone()).collect();
        let batch = TokenBatch::from_sequences(&ids, self.pad_id, PaddingSide::Right, device)?;
        let [b, s] = batch.dims();
        let mut trained = Vec::with_capacity(b * s);
        for e in &encoded {
            trained.extend((0..s).map(|t| (t >= e.prompt_len && t < e.ids.len()) as i64));
        }
        let trained = int_tensor(trained, [b, s], device);
        let labels = Labels::next_tokens(&batch.input_ids, &trained);
        Ok((batch, labels))
    }
}

/// Prompt/response pairs as a training set.
pub struct PromptPairs<'a> {
    /// Turns text into tokens.
    pub encoder: &'a LmEncoder,
    /// The pairs.
    pub pairs: &'a [PromptPair],
}

impl TrainingSet for PromptPairs<'_> {
    fn len(&self) -> usize {
        self.pairs.len()
    }

    fn batch(&self, indices: &[usize], device: &Device) -> Result<(TokenBatch, Labels), TaskError> {
        let pairs: Vec<PromptPair> = indices.iter().map(|&i| self.pairs[i].clone()).collect();
        self.encoder.encode(&pairs, device)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;

    use super::*;

    fn encoder(max_len: usize) -> LmEncoder {
        let vocab: HashMap<String, u32> = (0..50u32).map(|i| (format!("w{i}"), i)).collect();
        let model = WordLevel::builder()
            .vocab(vocab.into_iter().collect())
            .unk_token("w1".into())
            .build()
            .unwrap();
        let mut tokenizer = Tokenizer::new(model);
        tokenizer.with_pre_tokenizer(Some(Whitespace {}));
        LmEncoder::new(tokenizer, max_len).unwrap()
    }

    fn pair(prompt: &str, response: &str) -> PromptPair {
        PromptPair {
            prompt: prompt.into(),
            response: response.into(),
        }
    }

    fn values(t: burn::tensor::Tensor<2>) -> Vec<f32> {
        t.into_data().try_into_vec_as::<f32>().unwrap()
    }

    #[test]
    fn only_response_tokens_are_trained() {
        let device = burn::tensor::Device::default();
        let pairs = [pair("w5 w6 w7", "w8 w9"), pair("w10", "w11")];
        let (batch, labels) = encoder(16).encode(&pairs, &device).unwrap();
        assert_eq!(batch.dims(), [2, 5]);
        let Labels::Tokens { targets, weights } = labels else {
            panic!("token labels")
        };
        // Position t predicts token t + 1: the positions before w8, w9 (row 0) and w11 (row 1).
        assert_eq!(
            values(weights),
            vec![0., 0., 1., 1., 0., /**/ 1., 0., 0., 0., 0.]
        );
        let targets = targets.into_data().try_into_vec_as::<i64>().unwrap();
        assert_eq!(&targets[..4], &[6, 7, 8, 9]);
        assert_eq!(targets[5], 11);
    }

    #[test]
    fn long_pairs_keep_the_end_of_the_prompt_and_the_start_of_the_response() {
        let e = encoder(6);
        let long = e
            .encode_pair(&pair("w1 w2 w3 w4 w5 w6", "w7 w8 w9 w10 w11"))
            .unwrap();
        assert_eq!(long.ids, vec![4, 5, 6, 7, 8, 9]);
        assert_eq!(long.prompt_len, 3);
        let short_response = e.encode_pair(&pair("w1 w2 w3 w4 w5 w6", "w7")).unwrap();
        assert_eq!(short_response.ids, vec![2, 3, 4, 5, 6, 7]);
        assert_eq!(short_response.prompt_len, 5);
    }
}
