//! Key/value caches for incremental decoding.

use burn::tensor::Tensor;

/// Keys and values of every block a slice holds, grown by one step per decoding call.
///
/// Indexed by the block's position inside the slice, not its model-wide id, so each party keeps
/// exactly the cache of its own blocks.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
}

impl KvCache {
    /// An empty cache for a slice of `num_blocks` blocks.
    pub fn new(num_blocks: usize) -> Self {
        Self {
            layers: vec![None; num_blocks],
        }
    }

    /// Number of positions already cached (0 before the first call).
    pub fn past_len(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .next()
            .map(|(k, _)| k.dims()[2])
            .unwrap_or(0)
    }

    /// Appends `[batch, kv_heads, seq, head_dim]` keys and values for block `local` and returns
    /// everything cached for it, new positions included.
    pub fn append(
        &mut self,
        local: usize,
        keys: Tensor<4>,
        values: Tensor<4>,
    ) -> (Tensor<4>, Tensor<4>) {
        if local >= self.layers.len() {
            self.layers.resize(local + 1, None);
        }
        let merged = match self.layers[local].take() {
            Some((k, v)) => (
                Tensor::cat(vec![k, keys], 2),
                Tensor::cat(vec![v, values], 2),
            ),
            None => (keys, values),
        };
        self.layers[local] = Some(merged.clone());
        merged
    }

    /// Forgets every cached position.
    pub fn clear(&mut self) {
        self.layers.iter_mut().for_each(|layer| *layer = None);
    }
}
