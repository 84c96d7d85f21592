//! A weight source with no file behind it: every tensor a loader asks for is drawn at random,
//! seeded by its name, so a model of any family and size can be built from its configuration
//! alone (benchmarks of shapes no checkpoint is at hand for, tests).

use splitlm_weights::{CheckpointError, HostTensor, TensorInfo, TensorSource};

use crate::seeded;

/// A [`TensorSource`] that has every tensor, of whatever shape the loader asks for, with values
/// as Hugging Face initialises a fresh model: one-dimensional `*.weight` tensors (the norms'
/// scales) are ones, one-dimensional `*.bias` tensors zeros, and everything else is drawn from
/// N(0, `std`²) seeded by `seed` and the tensor's name ([`seeded::normal`]).
///
/// Values depend on the seed and the name only, so two parties that each load their own slice
/// of the same model from sources with the same seed hold slices of one model (a tied LM head
/// held apart from the embeddings gets the embeddings' values), and nothing is drawn for the
/// parts a slice does not hold.
///
/// Since the shapes come from the loader, [`TensorSource::load_shaped`] is the way to read it
/// (as [`crate::Weights`] does); [`TensorSource::load`] and [`TensorSource::info`] cannot know
/// a shape and answer "not found" and `None`. [`TensorSource::contains`] is `true` for every
/// name, so a family loader that probes for an optional tensor (an untied LM head, a pooler)
/// finds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomWeights {
    seed: u64,
    std: f64,
}

impl RandomWeights {
    /// Values seeded by `seed`, weights from N(0, 0.02²) (Hugging Face's
    /// `initializer_range` default).
    pub fn new(seed: u64) -> Self {
        Self::with_std(seed, 0.02)
    }

    /// Values seeded by `seed`, weights from N(0, `std`²).
    pub fn with_std(seed: u64, std: f64) -> Self {
        Self { seed, std }
    }

    /// The values of tensor `name` of `shape`.
    pub fn values(&self, name: &str, shape: &[usize]) -> Vec<f32> {
        let n = shape.iter().product();
        match (shape.len(), name.rsplit('.').next()) {
            (1, Some("weight")) => vec![1.0; n],
            (1, Some("bias")) => vec![0.0; n],
            _ => seeded::normal(self.seed, name, n, self.std),
        }
    }
}

impl TensorSource for RandomWeights {
    fn describe(&self) -> String {
        format!("random weights (seed {}, N(0, {}²))", self.seed, self.std)
    }

    /// Empty: the source has every name, and lists none.
    fn names(&self) -> Vec<String> {
        Vec::new()
    }

    fn info(&self, _: &str) -> Option<TensorInfo> {
        None
    }

    fn load(&self, name: &str) -> Result<HostTensor, CheckpointError> {
        // Without a shape there is nothing to draw.
        Err(CheckpointError::MissingTensor {
            source_desc: format!("{} (read with a shape)", self.describe()),
            name: name.to_string(),
        })
    }

    fn load_shaped(&self, name: &str, expected: &[usize]) -> Result<HostTensor, CheckpointError> {
        Ok(HostTensor::new(
            expected.to_vec(),
            self.values(name, expected),
        ))
    }

    fn contains(&self, _: &str) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Weights;

    #[test]
    fn serves_any_name_in_the_asked_shape_reproducibly() {
        let source = RandomWeights::new(7);
        let a = source.load_shaped("model.layers.3.mlp.up_proj.weight", &[64, 32]);
        let a = a.unwrap();
        assert_eq!(a.shape, vec![64, 32]);
        assert_eq!(
            a,
            RandomWeights::new(7)
                .load_shaped("model.layers.3.mlp.up_proj.weight", &[64, 32])
                .unwrap()
        );
        let other_seed = RandomWeights::new(8)
            .load_shaped("model.layers.3.mlp.up_proj.weight", &[64, 32])
            .unwrap();
        assert_ne!(a, other_seed);
        let other_name = source
            .load_shaped("model.layers.4.mlp.up_proj.weight", &[64, 32])
            .unwrap();
        assert_ne!(a, other_name);
        let std = (a.data.iter().map(|v| v * v).sum::<f32>() / a.numel() as f32).sqrt();
        assert!((std - 0.02).abs() < 0.002, "{std}");
        assert!(source.contains("lm_head.weight"));
        assert!(source.load("lm_head.weight").is_err());
    }

    #[test]
    fn norms_start_at_one_and_biases_at_zero() {
        let source = RandomWeights::new(0);
        let norm = source.load_shaped("model.norm.weight", &[16]).unwrap();
        assert!(norm.data.iter().all(|&v| v == 1.0));
        let bias = source.load_shaped("ln_f.bias", &[16]).unwrap();
        assert!(bias.data.iter().all(|&v| v == 0.0));
        let device = splitlm_device::DeviceSpec::Cpu.device().unwrap();
        let weights = Weights::new(&source, &device);
        let linear = weights.linear("q_proj", 8, 4, true).unwrap();
        assert_eq!(linear.weight.val().dims(), [8, 4]);
        let bias = linear
            .bias
            .unwrap()
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(bias, vec![0.0; 4]);
    }
}
