//! The benchmark's ground truth. While a split run trains, the model party records the
//! training steps its attacker observes; [`TruthRecorder`] keeps what the data party really
//! sent on those same steps (token ids and labels), which only the benchmark holds and no
//! attack ever sees.

use std::path::Path;

use burn::tensor::Device;
use splitlm_attacks::score::Truth;
use splitlm_nn::generate::{Generation, Sampling};
use splitlm_nn::{HeadOutput, Labels, TokenBatch};
use splitlm_party::{ObservationLimits, SplitGeneration};
use splitlm_protocol::Traffic;
use splitlm_tasks::{Predictor, TaskError};
use splitlm_train::{Learner, TrainError};

/// A learner that passes everything through and keeps the inputs and labels of the first
/// training steps, truncated like the model party's observations.
pub struct TruthRecorder<'a> {
    inner: &'a mut dyn Learner,
    skip: u64,
    steps_left: u64,
    max_samples: usize,
    truth: Truth,
    tail: Option<splitlm_zoo::AnyModel>,
}

impl<'a> TruthRecorder<'a> {
    /// Records the steps `limits` lets the model party observe.
    pub fn new(inner: &'a mut dyn Learner, limits: ObservationLimits) -> Self {
        Self {
            inner,
            skip: limits.from_step,
            steps_left: limits.steps,
            max_samples: limits.max_samples,
            truth: Truth::default(),
            tail: None,
        }
    }

    /// What was recorded: the truth, and the data party's tail as it was at the first
    /// recorded step (before that step's update).
    pub fn into_recorded(self) -> crate::attack_stage::Recorded {
        crate::attack_stage::Recorded {
            truth: self.truth,
            tail: self.tail,
        }
    }

    /// What was recorded.
    pub fn into_truth(self) -> Truth {
        self.truth
    }

    fn record(&mut self, batch: &TokenBatch, labels: &Labels) -> Result<(), TrainError> {
        let rows = batch.dims()[0].min(self.max_samples);
        if self.tail.is_none() {
            self.tail = self.inner.data_tail();
        }
        self.truth.tokens.extend(real_tokens(batch, rows)?);
        if let Labels::Classes(classes) = labels {
            let classes = classes
                .clone()
                .into_data()
                .try_into_vec_as::<i64>()
                .map_err(|e| TrainError::Setting(format!("reading labels: {e:?}")))?;
            self.truth
                .labels
                .extend(classes.iter().take(rows).map(|&c| c as usize));
        }
        Ok(())
    }
}

/// The tokens at the real positions of the first `rows` rows of `batch`.
pub fn real_tokens(batch: &TokenBatch, rows: usize) -> Result<Vec<Vec<u32>>, TrainError> {
    let [b, s] = batch.dims();
    let ints = |t: burn::tensor::Tensor<2, burn::tensor::Int>| {
        t.into_data()
            .try_into_vec_as::<i64>()
            .map_err(|e| TrainError::Setting(format!("reading token ids: {e:?}")))
    };
    let ids = ints(batch.input_ids.clone())?;
    let mask = ints(batch.attention_mask.clone())?;
    Ok((0..b.min(rows))
        .map(|row| {
            (0..s)
                .filter(|&t| mask[row * s + t] != 0)
                .map(|t| ids[row * s + t] as u32)
                .collect()
        })
        .collect())
}

impl Predictor for TruthRecorder<'_> {
    fn device(&self) -> Device {
        self.inner.device()
    }

    fn predict(&mut self, batch: &TokenBatch) -> Result<HeadOutput, TaskError> {
        self.inner.predict(batch)
    }

    fn generate(&mut self, prompt: &[u32], sampling: &Sampling) -> Result<Generation, TaskError> {
        Predictor::generate(self.inner, prompt, sampling)
    }
}

impl Learner for TruthRecorder<'_> {
    fn train_step(&mut self, batch: &TokenBatch, labels: &Labels) -> Result<f32, TrainError> {
        if self.skip > 0 {
            self.skip -= 1;
        } else if self.steps_left > 0 {
            self.steps_left -= 1;
            self.record(batch, labels)?;
        }
        self.inner.train_step(batch, labels)
    }

    fn generate_traced(
        &mut self,
        prompt: &[u32],
        sampling: &Sampling,
    ) -> Result<SplitGeneration, TrainError> {
        self.inner.generate_traced(prompt, sampling)
    }

    fn save_state(&mut self, dir: &Path) -> Result<(), TrainError> {
        self.inner.save_state(dir)
    }

    fn restore_state(&mut self, dir: &Path) -> Result<(), TrainError> {
        self.inner.restore_state(dir)
    }

    fn reconnect(&mut self) -> Result<bool, TrainError> {
        self.inner.reconnect()
    }

    fn traffic(&self) -> Option<Traffic> {
        self.inner.traffic()
    }

    fn data_tail(&self) -> Option<splitlm_zoo::AnyModel> {
        self.inner.data_tail()
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Int, Tensor, TensorData};
    use splitlm_device::DeviceSpec;
    use splitlm_nn::batch::PaddingSide;

    use super::*;

    /// A learner that only counts its training steps.
    struct Counting(usize);

    impl Predictor for Counting {
        fn device(&self) -> Device {
            DeviceSpec::Cpu.device().unwrap()
        }
        fn predict(&mut self, _: &TokenBatch) -> Result<HeadOutput, TaskError> {
            unreachable!()
        }
        fn generate(&mut self, _: &[u32], _: &Sampling) -> Result<Generation, TaskError> {
            unreachable!()
        }
    }

    impl Learner for Counting {
        fn train_step(&mut self, _: &TokenBatch, _: &Labels) -> Result<f32, TrainError> {
            self.0 += 1;
            Ok(0.0)
        }
        fn generate_traced(
            &mut self,
            _: &[u32],
            _: &Sampling,
        ) -> Result<SplitGeneration, TrainError> {
            unreachable!()
        }
        fn save_state(&mut self, _: &Path) -> Result<(), TrainError> {
            Ok(())
        }
        fn restore_state(&mut self, _: &Path) -> Result<(), TrainError> {
            Ok(())
        }
    }

    #[test]
    fn the_truth_is_that_of_the_observed_window_truncated_like_the_observations() {
        let device = DeviceSpec::Cpu.device().unwrap();
        let mut inner = Counting(0);
        let limits = ObservationLimits {
            from_step: 1,
            steps: 1,
            max_samples: 2,
            ..ObservationLimits::default()
        };
        let mut recorder = TruthRecorder::new(&mut inner, limits);
        for step in 0..3u32 {
            // Three rows; the second is one token shorter (right padding).
            let rows = vec![
                vec![10 * step + 1, 2, 3],
                vec![10 * step + 4, 5],
                vec![9, 9, 9],
            ];
            let batch = TokenBatch::from_sequences(&rows, 0, PaddingSide::Right, &device).unwrap();
            let labels = Labels::Classes(Tensor::<1, Int>::from_data(
                TensorData::new(vec![1i64, 0, 1], [3]),
                &device,
            ));
            recorder.train_step(&batch, &labels).unwrap();
        }
        let truth = recorder.into_truth();
        assert_eq!(inner.0, 3, "every step reached the learner");
        assert_eq!(
            truth.tokens,
            vec![vec![11, 2, 3], vec![14, 5]],
            "step 1, two rows, no pads"
        );
        assert_eq!(truth.labels, vec![1, 0]);
    }
}
