//! The reference's round trip for text-level defenses (passive_party.py l.849–958): each row's
//! tokens are turned back into text, sanitized, and tokenized again to the batch's length,
//! truncated and padded as the task does.

use std::collections::HashSet;
use std::sync::Arc;

use burn::tensor::{Int, Tensor, TensorData};
use splitlm_nn::TokenBatch;
use splitlm_nn::batch::PaddingSide;

use crate::TextCodec;

/// Rewrites batches row by row through a tokenizer.
pub(crate) struct Rewriter {
    codec: Arc<dyn TextCodec>,
    specials: HashSet<u32>,
}

impl Rewriter {
    /// Through `codec`.
    pub(crate) fn new(codec: Arc<dyn TextCodec>) -> Self {
        let mut specials: HashSet<u32> = codec.special_ids().into_iter().collect();
        specials.insert(codec.pad_id());
        Self { codec, specials }
    }

    /// The tokenizer.
    pub(crate) fn codec(&self) -> &dyn TextCodec {
        self.codec.as_ref()
    }

    /// Whether `id` is a special token (padding included).
    pub(crate) fn is_special(&self, id: u32) -> bool {
        self.specials.contains(&id)
    }

    /// `batch` with each row's attended, non-special tokens given to `sanitize` and replaced by
    /// the tokens of the text it returns (the task's special tokens added again), cut or padded
    /// to the batch's length. Where special tokens sit between text (a chat template's
    /// markers), each run of text between them is sanitized on its own and the markers stay in
    /// place. A row with no such token, the token types and the batch's shape stay as they
    /// are.
    pub(crate) fn rewrite(
        &self,
        batch: TokenBatch,
        mut sanitize: impl FnMut(&[u32]) -> String,
    ) -> TokenBatch {
        let [rows, seq] = batch.input_ids.dims();
        let [mask_rows, mask_cols] = batch.attention_mask.dims();
        if rows == 0 || seq == 0 || mask_rows != rows || mask_cols < seq {
            return batch;
        }
        // A cache's positions come first in the mask. Tokens that extend a cached prefix are
        // generated ones: the reference sanitizes only the first forward pass of a generation
        // (passive_party.py l.848, `is_first_forward_iter`), so they pass unchanged.
        let past = mask_cols - seq;
        if past > 0 {
            return batch;
        }
        let device = batch.input_ids.device();
        let mut ids = ints(&batch.input_ids);
        let mut mask = ints(&batch.attention_mask);
        if ids.len() != rows * seq || mask.len() != rows * mask_cols {
            return batch;
        }
        for row in 0..rows {
            let row_ids = &ids[row * seq..(row + 1) * seq];
            let row_mask = &mask[row * mask_cols + past..(row + 1) * mask_cols];
            let attended: Vec<u32> = row_ids
                .iter()
                .zip(row_mask)
                .filter(|&(&id, &m)| m != 0 && id >= 0)
                .map(|(&id, _)| id as u32)
                .collect();
            if attended.iter().all(|&id| self.is_special(id)) {
                continue;
            }
            let new_ids = if self.has_inner_specials(&attended) {
                self.rewrite_runs(&attended, &mut sanitize)
            } else {
                let content: Vec<u32> = attended
                    .into_iter()
                    .filter(|&id| !self.is_special(id))
                    .collect();
                self.codec.encode(&sanitize(&content))
            };
            let new_ids = self.fit(new_ids, seq);
            let (new_row, new_mask) = self.pad(&new_ids, seq);
            ids[row * seq..(row + 1) * seq].copy_from_slice(&new_row);
            mask[row * mask_cols + past..(row + 1) * mask_cols].copy_from_slice(&new_mask);
        }
        TokenBatch {
            input_ids: Tensor::<2, Int>::from_data(TensorData::new(ids, [rows, seq]), &device),
            attention_mask: Tensor::<2, Int>::from_data(
                TensorData::new(mask, [rows, mask_cols]),
                &device,
            ),
            token_type_ids: batch.token_type_ids,
        }
    }

    /// Whether a special token sits between text in `ids` (a chat template's markers), not
    /// only around it.
    fn has_inner_specials(&self, ids: &[u32]) -> bool {
        let first = ids.iter().position(|&id| !self.is_special(id));
        let last = ids.iter().rposition(|&id| !self.is_special(id));
        match (first, last) {
            (Some(first), Some(last)) => ids[first..last].iter().any(|&id| self.is_special(id)),
            _ => false,
        }
    }

    /// `ids` with each run of text between special tokens sanitized and tokenized on its own,
    /// the special tokens kept where they were: a chat template's structure survives, where
    /// rewriting the row as one text would drop its markers.
    fn rewrite_runs(&self, ids: &[u32], sanitize: &mut impl FnMut(&[u32]) -> String) -> Vec<u32> {
        let mut out = Vec::with_capacity(ids.len());
        for run in ids.chunk_by(|&a, &b| self.is_special(a) == self.is_special(b)) {
            if self.is_special(run[0]) {
                out.extend_from_slice(run);
            } else {
                let text = sanitize(run);
                out.extend(
                    self.codec
                        .tokenize(&text)
                        .iter()
                        .filter_map(|piece| self.codec.token_to_id(piece)),
                );
            }
        }
        out
    }

    /// `ids` cut to `len` as the tokenizer's truncation does: the content loses its end, the
    /// special tokens around it stay.
    fn fit(&self, ids: Vec<u32>, len: usize) -> Vec<u32> {
        if ids.len() <= len {
            return ids;
        }
        let lead = ids.iter().take_while(|&&id| self.is_special(id)).count();
        let trail = ids[lead..]
            .iter()
            .rev()
            .take_while(|&&id| self.is_special(id))
            .count();
        let keep = len.saturating_sub(lead + trail);
        let mut out: Vec<u32> = ids[..lead + keep].to_vec();
        out.extend_from_slice(&ids[ids.len() - trail..]);
        out.truncate(len);
        out
    }

    /// `ids` padded to `len` on the task's side, with its attention mask.
    fn pad(&self, ids: &[u32], len: usize) -> (Vec<i64>, Vec<i64>) {
        let pads = len - ids.len();
        let real = ids.iter().map(|&id| (id as i64, 1i64));
        let padding = std::iter::repeat_n((self.codec.pad_id() as i64, 0i64), pads);
        let pairs: Vec<(i64, i64)> = match self.codec.padding_side() {
            PaddingSide::Right => real.chain(padding).collect(),
            PaddingSide::Left => padding.chain(real).collect(),
        };
        pairs.into_iter().unzip()
    }
}

fn ints(t: &Tensor<2, Int>) -> Vec<i64> {
    t.clone()
        .into_data()
        .try_into_vec_as::<i64>()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words as tokens: ids 0 `<pad>`, 1 `<s>`, 2 `<m>` (specials), then the words; `encode`
    /// adds `<s>` in front, as a task's tokenizer adds its special tokens.
    struct Words(Vec<&'static str>);

    impl TextCodec for Words {
        fn decode(&self, ids: &[u32], _skip: bool) -> String {
            let words: Vec<&str> = ids.iter().map(|&i| self.0[i as usize]).collect();
            words.join(" ")
        }
        fn tokenize(&self, text: &str) -> Vec<String> {
            text.split_whitespace().map(str::to_string).collect()
        }
        fn encode(&self, text: &str) -> Vec<u32> {
            let words = self.tokenize(text);
            std::iter::once(1)
                .chain(words.iter().filter_map(|w| self.token_to_id(w)))
                .collect()
        }
        fn token_to_id(&self, token: &str) -> Option<u32> {
            self.0.iter().position(|w| *w == token).map(|i| i as u32)
        }
        fn id_to_token(&self, id: u32) -> Option<String> {
            self.0.get(id as usize).map(|w| w.to_string())
        }
        fn vocab_size(&self) -> usize {
            self.0.len()
        }
        fn special_ids(&self) -> Vec<u32> {
            vec![1, 2]
        }
        fn pad_id(&self) -> u32 {
            0
        }
        fn padding_side(&self) -> PaddingSide {
            PaddingSide::Left
        }
    }

    fn rewritten(rows: &[Vec<u32>], seq: usize) -> Vec<Vec<i64>> {
        let codec = Words(vec![
            "<pad>", "<s>", "<m>", "user", "hello", "world", "bot", "HELLO", "WORLD", "USER", "BOT",
        ]);
        let codec: Arc<dyn TextCodec> = Arc::new(codec);
        let device = crate::fixtures::device();
        let batch = TokenBatch::from_sequences(rows, 0, PaddingSide::Left, &device).unwrap();
        let upper = codec.clone();
        let out = Rewriter::new(codec).rewrite(batch, |ids| upper.decode(ids, true).to_uppercase());
        let ids = ints(&out.input_ids);
        ids.chunks(seq).map(<[i64]>::to_vec).collect()
    }

    #[test]
    fn chat_markers_stay_in_place_and_plain_rows_are_rewritten_whole() {
        // `<s> <m> user hello world <m> bot`: the markers between text stay where they were.
        let chat = vec![1, 2, 3, 4, 5, 2, 6];
        // `<s> hello world`: one text, `<s>` added again by the encoding.
        let plain = vec![1, 4, 5];
        let out = rewritten(&[chat, plain], 7);
        assert_eq!(out[0], vec![1, 2, 9, 7, 8, 2, 10]);
        assert_eq!(out[1], vec![0, 0, 0, 0, 1, 7, 8]);
    }
}
