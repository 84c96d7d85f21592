//! Each token's mean contextual embedding over the training inputs: the pretrained head's
//! output at every occurrence of the token, averaged per vocabulary id, as the reference's
//! `generate_token_embeddings` (`utils/cluster_utils.py:15-68`) computes it with
//! `use_subword=True` (every non-padding position counts, special tokens included).

use std::collections::BTreeMap;

use burn::tensor::Device;
use splitlm_nn::TokenBatch;
use splitlm_nn::batch::PaddingSide;

use crate::HeadRunner;

/// Mean contextual embeddings of the tokens that occur in the inputs, in id order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TokenMeans {
    /// The ids, ascending.
    pub(crate) ids: Vec<u32>,
    /// `[ids.len(), dim]` means, row-major.
    pub(crate) means: Vec<f32>,
    /// Occurrences of each id.
    pub(crate) counts: Vec<usize>,
    /// Positions run through the head.
    pub(crate) positions: usize,
}

/// Runs `head` over `inputs`, `batch_size` sequences at a time (right-padded; padding is left
/// out by the mask), and averages its `dim`-wide output per token id.
pub(crate) fn token_means(
    head: &HeadRunner,
    inputs: &[Vec<u32>],
    dim: usize,
    batch_size: usize,
    device: &Device,
) -> Result<TokenMeans, String> {
    let mut sums: BTreeMap<u32, (Vec<f64>, usize)> = BTreeMap::new();
    let mut positions = 0;
    let sequences: Vec<&Vec<u32>> = inputs.iter().filter(|s| !s.is_empty()).collect();
    for chunk in sequences.chunks(batch_size.max(1)) {
        let owned: Vec<Vec<u32>> = chunk.iter().map(|s| (*s).clone()).collect();
        let batch = TokenBatch::from_sequences(&owned, 0, PaddingSide::Right, device)
            .map_err(|e| e.to_string())?;
        let [b, s] = batch.dims();
        let hidden = head(&batch)?;
        let got = hidden.states.dims();
        if got != [b, s, dim] {
            return Err(format!(
                "the head gave {got:?} for a [{b}, {s}] batch; expected width {dim}"
            ));
        }
        let states = hidden
            .states
            .into_data()
            .try_into_vec_as::<f32>()
            .map_err(|e| format!("the head's output: {e:?}"))?;
        for (row, tokens) in owned.iter().enumerate() {
            for (t, &id) in tokens.iter().enumerate() {
                let at = (row * s + t) * dim;
                let values = &states[at..at + dim];
                if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
                    return Err(format!("the head's output for token {id} holds {bad}"));
                }
                let (sum, count) = sums.entry(id).or_insert_with(|| (vec![0.0; dim], 0));
                for (acc, &v) in sum.iter_mut().zip(values) {
                    *acc += v as f64;
                }
                *count += 1;
                positions += 1;
            }
        }
    }
    if sums.is_empty() {
        return Err("the training inputs hold no token".into());
    }
    let mut out = TokenMeans {
        ids: Vec::with_capacity(sums.len()),
        means: Vec::with_capacity(sums.len() * dim),
        counts: Vec::with_capacity(sums.len()),
        positions,
    };
    for (id, (sum, count)) in sums {
        out.ids.push(id);
        out.counts.push(count);
        out.means
            .extend(sum.iter().map(|s| (s / count as f64) as f32));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use burn::tensor::{Tensor, TensorData};
    use splitlm_nn::Hidden;

    use super::*;

    /// A head whose output at a position is `[id, position, 1]`, so means are known by hand.
    fn fake_head() -> HeadRunner {
        Arc::new(|batch: &TokenBatch| {
            let [b, s] = batch.dims();
            let ids = batch
                .input_ids
                .clone()
                .into_data()
                .try_into_vec_as::<i64>()
                .unwrap();
            let values: Vec<f32> = (0..b * s)
                .flat_map(|i| [ids[i] as f32, (i % s) as f32, 1.0])
                .collect();
            let device = batch.input_ids.device();
            Ok(Hidden {
                states: Tensor::<3>::from_data(TensorData::new(values, [b, s, 3]), &device),
                attention_mask: batch.attention_mask.clone(),
                positions: batch.positions(),
            })
        })
    }

    #[test]
    fn each_token_gets_the_mean_of_its_occurrences_and_padding_is_left_out() {
        let device = splitlm_device::DeviceSpec::Cpu.device().unwrap();
        // Token 5 at positions 1 and 0, token 7 at 0 and 2, token 9 at 1: batches of two, so
        // the second batch is one short sequence and the first is padded.
        let inputs = vec![vec![7, 5], vec![5, 9, 7], vec![], vec![3]];
        let means = token_means(&fake_head(), &inputs, 3, 2, &device).unwrap();
        assert_eq!(means.ids, vec![3, 5, 7, 9]);
        assert_eq!(means.counts, vec![1, 2, 2, 1]);
        assert_eq!(means.positions, 6);
        let row = |i: usize| means.means[i * 3..i * 3 + 3].to_vec();
        assert_eq!(row(1), vec![5.0, 0.5, 1.0]);
        assert_eq!(row(2), vec![7.0, 1.0, 1.0]);
        assert!(token_means(&fake_head(), &inputs, 4, 2, &device).is_err());
        assert!(token_means(&fake_head(), &[vec![]], 3, 2, &device).is_err());
    }
}
