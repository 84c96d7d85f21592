//! What enters a model slice and what flows between slices.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::ModelError;

/// Which side of a sequence receives the padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaddingSide {
    /// Pads after the tokens (encoders, training).
    Right,
    /// Pads before the tokens (batched generation with decoders).
    Left,
}

/// Token ids entering the slice that holds the embeddings.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// `[batch, seq]` token ids.
    pub input_ids: Tensor<2, Int>,
    /// `[batch, past + seq]`: 1 where a token may be attended to, 0 at padding.
    pub attention_mask: Tensor<2, Int>,
    /// `[batch, seq]` segment ids (BERT-style encoders); `None` means all zeros.
    pub token_type_ids: Option<Tensor<2, Int>>,
}

impl TokenBatch {
    /// Pads `sequences` to a common length with `pad_id` on `side`.
    pub fn from_sequences(
        sequences: &[Vec<u32>],
        pad_id: u32,
        side: PaddingSide,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let batch = sequences.len();
        let seq = sequences.iter().map(Vec::len).max().unwrap_or(0);
        if batch == 0 || seq == 0 {
            return Err(ModelError::Input(
                "a batch needs at least one non-empty sequence".into(),
            ));
        }
        let mut ids = Vec::with_capacity(batch * seq);
        let mut mask = Vec::with_capacity(batch * seq);
        for tokens in sequences {
            let pads = seq - tokens.len();
            let padded = tokens.iter().map(|&t| (t as i64, 1i64));
            let padding = std::iter::repeat_n((pad_id as i64, 0i64), pads);
            let row: Vec<(i64, i64)> = match side {
                PaddingSide::Right => padded.chain(padding).collect(),
                PaddingSide::Left => padding.chain(padded).collect(),
            };
            for (id, m) in row {
                ids.push(id);
                mask.push(m);
            }
        }
        Ok(Self {
            input_ids: int_tensor(ids, [batch, seq], device),
            attention_mask: int_tensor(mask, [batch, seq], device),
            token_type_ids: None,
        })
    }

    /// The same batch on `device`.
    pub fn to_device(&self, device: &Device) -> Self {
        Self {
            input_ids: self.input_ids.clone().to_device(device),
            attention_mask: self.attention_mask.clone().to_device(device),
            token_type_ids: self.token_type_ids.clone().map(|t| t.to_device(device)),
        }
    }

    /// `[batch, seq]` of the ids.
    pub fn dims(&self) -> [usize; 2] {
        self.input_ids.dims()
    }

    /// Positions of the new tokens, counted over non-padding tokens only (so left padding does
    /// not shift them): `cumsum(mask) - 1`, clamped at 0, for the last `seq` columns.
    pub fn positions(&self) -> Tensor<2, Int> {
        positions_from_mask(&self.attention_mask, self.dims()[1])
    }
}

/// Hidden states crossing a slice boundary, with what every later block needs to use them.
#[derive(Debug, Clone)]
pub struct Hidden {
    /// `[batch, seq, hidden]` activations.
    pub states: Tensor<3>,
    /// `[batch, past + seq]`: 1 where a key may be attended to, 0 at padding.
    pub attention_mask: Tensor<2, Int>,
    /// `[batch, seq]` positions of the `seq` new tokens.
    pub positions: Tensor<2, Int>,
}

impl Hidden {
    /// Replaces the states, keeping mask and positions.
    pub fn with_states(self, states: Tensor<3>) -> Self {
        Self { states, ..self }
    }

    /// Only the last position (what an LM head needs to pick the next token).
    pub fn last_position(self) -> Self {
        let [_, seq, _] = self.states.dims();
        Self {
            states: self.states.narrow(1, seq - 1, 1),
            positions: self.positions.narrow(1, seq - 1, 1),
            attention_mask: self.attention_mask,
        }
    }

    /// Checks that mask and positions agree with the states' shape.
    pub fn validate(&self, hidden_size: usize) -> Result<(), ModelError> {
        let [b, s, d] = self.states.dims();
        let [mb, mt] = self.attention_mask.dims();
        let [pb, ps] = self.positions.dims();
        if d != hidden_size {
            return Err(ModelError::Input(format!(
                "hidden states have width {d}, this model expects {hidden_size}"
            )));
        }
        if mb != b || mt < s || pb != b || ps != s {
            return Err(ModelError::Input(format!(
                "hidden states [{b}, {s}, {d}] do not match attention mask [{mb}, {mt}] \
                 and positions [{pb}, {ps}]"
            )));
        }
        Ok(())
    }
}

/// Positions of the last `seq` tokens of a `[batch, total]` mask, counting only real tokens.
pub fn positions_from_mask(mask: &Tensor<2, Int>, seq: usize) -> Tensor<2, Int> {
    let [_, total] = mask.dims();
    let positions = (mask.clone().cumsum(1) - 1).clamp_min(0);
    positions.narrow(1, total - seq, seq)
}

/// A `[rows, cols]` int tensor from host values.
pub fn int_tensor(values: Vec<i64>, shape: [usize; 2], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(values, shape), device)
}
