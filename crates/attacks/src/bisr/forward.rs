//! BiSR's forward phase: VMI (crate::vmi, the same objective, mask and decoding) started from
//! the word vectors the earlier phases chose instead of zeros (BiSR.py l.477–485: the
//! embeddings of the inverter's tokens, Adam at `lr` for `epochs` steps, then the nearest
//! embedding by cosine similarity at each position, l.521–535).

use burn::tensor::{Device, Int, Tensor, TensorData};
use splitlm_nn::{TokenBatch, TransformerSlice};
use splitlm_party::Observation;
use splitlm_zoo::AnyModel;

use super::{BisrSettings, fail};
use crate::inversion::{InversionMask, Recovered, nearest_tokens, objective};
use crate::optimise::adam;

/// One observed batch as host values.
pub(super) struct Observed {
    values: Vec<f32>,
    mask: Vec<i64>,
    /// `[b, s, d]`.
    pub shape: [usize; 3],
}

impl Observed {
    /// The activations and mask the model party received at step `o`.
    pub fn of(o: &Observation) -> Result<Self, crate::AttackError> {
        let shape: [usize; 3] = o.hidden.shape.clone().try_into().map_err(|_| {
            fail(format!(
                "step {}: activations of shape {:?} are not [b, s, d]",
                o.step, o.hidden.shape
            ))
        })?;
        let values = o.hidden.to_f32().map_err(|e| fail(e.to_string()))?;
        let mask = o.attention_mask.to_i64().map_err(|e| fail(e.to_string()))?;
        let [b, s, d] = shape;
        if values.len() != b * s * d || mask.len() != b * s {
            return Err(fail(format!(
                "step {}: activations and mask disagree in shape",
                o.step
            )));
        }
        if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
            return Err(fail(format!(
                "step {}: the observed activations hold {bad}",
                o.step
            )));
        }
        Ok(Self {
            values,
            mask,
            shape,
        })
    }

    /// The activations as a tensor on `device`.
    pub fn activations(&self, device: &Device) -> Tensor<3> {
        Tensor::from_data(TensorData::new(self.values.clone(), self.shape), device)
    }

    /// `[b, s]` flattened, 1 at the real positions.
    pub fn mask(&self) -> &[i64] {
        &self.mask
    }

    /// Each row's tokens among `ids` (`b·s`), at every position ([`InversionMask::None`]) or
    /// at its real ones ([`InversionMask::Real`]).
    pub fn decoded_rows(&self, ids: &[u32], mask: InversionMask) -> Vec<Recovered> {
        let [b, s, _] = self.shape;
        (0..b)
            .map(|row| {
                (0..s)
                    .filter(|&t| mask == InversionMask::None || self.mask[row * s + t] != 0)
                    .map(|t| ids[row * s + t])
                    .collect()
            })
            .collect()
    }
}

/// The forward phase from `start` (`[b, s, width]` word vectors, inner device), with `head`
/// on the autodiff `device` and `vocabulary` its embedding rows (inner device).
pub(super) fn invert(
    head: &AnyModel,
    vocabulary: &Tensor<2>,
    observed: &Observed,
    start: Tensor<3>,
    settings: &BisrSettings,
    device: &Device,
) -> Result<Vec<Recovered>, crate::AttackError> {
    let [b, s, _] = observed.shape;
    let inner = device.clone().inner();
    let target = observed.activations(&inner);
    let ints = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [b, s]), device);
    let (head_mask, real) = match settings.mask {
        InversionMask::None => (vec![1i64; b * s], None),
        InversionMask::Real => {
            let real = Tensor::<2, Int>::from_data(
                TensorData::new(observed.mask().to_vec(), [b, s]),
                &inner,
            )
            .float()
            .unsqueeze_dim::<3>(2);
            (observed.mask().to_vec(), Some(real))
        }
    };
    let tokens = TokenBatch {
        input_ids: Tensor::<2, Int>::zeros([b, s], device),
        attention_mask: ints(head_mask),
        token_type_ids: None,
    };
    let loss = |words: Tensor<3>| -> Result<Tensor<1>, crate::AttackError> {
        let embedded = head
            .embed_vectors(words, &tokens)
            .map_err(|e| fail(e.to_string()))?;
        let hidden = head
            .forward_blocks(embedded, None)
            .map_err(|e| fail(e.to_string()))?
            .states;
        let target = Tensor::from_inner(target.clone());
        Ok(objective(hidden, target, real.clone(), settings.objective))
    };
    let words = adam(start, settings.steps, settings.lr, "bisr", loss)?;
    let ids = nearest_tokens(words, vocabulary.clone());
    Ok(observed.decoded_rows(&ids, settings.mask))
}
