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
    /// to the batch's length. A row with no such token, the token types and the batch's shape
    /// stay as they are.
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
            let content: Vec<u32> = row_ids
                .iter()
                .zip(row_mask)
                .filter(|&(&id, &m)| m != 0 && id >= 0 && !self.is_special(id as u32))
                .map(|(&id, _)| id as u32)
                .collect();
            if content.is_empty() {
                continue;
            }
            let text = sanitize(&content);
            let new_ids = self.fit(self.codec.encode(&text), seq);
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
