//! A party's slice with its trainability applied and its optimizer.

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Gradients;
use splitlm_nn::TransformerSlice;
use splitlm_partition::{NamedParameter, Trainability, named_parameters};
use splitlm_zoo::AnyModel;

use crate::PartyError;
use crate::optim::OptimizerConfig;

/// A slice a party trains (or only runs): the model, which of its parameters train, and the
/// optimizer state of those.
pub struct PartySlice {
    model: AnyModel,
    optimizer: Option<ModuleOptimizer>,
    config: OptimizerConfig,
    total_steps: usize,
    steps_taken: usize,
    recorded: Option<Vec<NamedGradient>>,
}

/// The gradient of one trainable parameter at the last step, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedGradient {
    /// The parameter's path in the model's numbering (see [`splitlm_partition::global_path`]).
    pub path: String,
    /// Its shape.
    pub dims: Vec<usize>,
    /// The gradient's values, row-major.
    pub values: Vec<f32>,
}

impl PartySlice {
    /// Applies `trainability` (LoRA factors seeded by `seed`) to `model`, which must live on an
    /// autodiff device to train, and prepares `optimizer` for a run of `total_steps` steps
    /// (the length the learning-rate schedule spans).
    pub fn new(
        model: AnyModel,
        trainability: &Trainability,
        optimizer: &OptimizerConfig,
        total_steps: usize,
        seed: u64,
    ) -> Result<Self, PartyError> {
        optimizer.validate()?;
        let model = trainability.apply(model, seed)?;
        let trains = named_parameters(&model, model.spec())
            .iter()
            .any(|p| p.trainable);
        Ok(Self {
            optimizer: trains.then(|| optimizer.build()),
            model,
            config: optimizer.clone(),
            total_steps,
            steps_taken: 0,
            recorded: None,
        })
    }

    /// A slice that only runs (nothing trains).
    pub fn frozen(model: AnyModel) -> Result<Self, PartyError> {
        Self::new(
            model,
            &Trainability::frozen(),
            &OptimizerConfig::default(),
            1,
            0,
        )
    }

    /// The model as it stands.
    pub fn model(&self) -> &AnyModel {
        &self.model
    }

    /// Gives the model back.
    pub fn into_model(self) -> AnyModel {
        self.model
    }

    /// Whether any parameter of the slice trains.
    pub fn is_trainable(&self) -> bool {
        self.optimizer.is_some()
    }

    /// Optimizer steps taken.
    pub fn steps_taken(&self) -> usize {
        self.steps_taken
    }

    /// The learning rate the next step will use.
    pub fn current_lr(&self) -> f64 {
        self.config.lr_at(self.steps_taken, self.total_steps)
    }

    /// Keeps a host copy of every parameter gradient from now on (for tests, audits and the
    /// attacker's view of its own slice); off by default since it copies each step.
    pub fn record_gradients(&mut self, on: bool) {
        self.recorded = on.then(Vec::new);
    }

    /// The gradients of the last step, if recording is on.
    pub fn recorded_gradients(&self) -> Option<&[NamedGradient]> {
        self.recorded.as_deref()
    }

    pub(crate) fn optimizer(&self) -> Option<&ModuleOptimizer> {
        self.optimizer.as_ref()
    }

    pub(crate) fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// Replaces model, optimizer and step count (a restored state).
    pub(crate) fn replace_state(
        &mut self,
        model: AnyModel,
        optimizer: Option<ModuleOptimizer>,
        steps_taken: usize,
    ) {
        self.model = model;
        self.optimizer = optimizer;
        self.steps_taken = steps_taken;
    }

    /// One optimizer step with the gradients of a backward pass through this slice.
    pub fn apply_gradients(&mut self, grads: Gradients) {
        let lr = self.current_lr();
        if let Some(optimizer) = &mut self.optimizer {
            let params = GradientsParams::from_grads(grads, &self.model);
            if self.recorded.is_some() {
                self.recorded = Some(host_gradients(&self.model, &params));
            }
            self.model = optimizer.step(lr, self.model.clone(), params);
        }
        self.steps_taken += 1;
    }

    /// [`PartySlice::apply_gradients`], returning a host copy of the gradients the optimizer
    /// used (recorded for this step only, unless recording is on anyway).
    pub(crate) fn apply_gradients_kept(&mut self, grads: Gradients) -> Vec<NamedGradient> {
        let recording = self.recorded.is_some();
        if !recording {
            self.record_gradients(true);
        }
        self.apply_gradients(grads);
        if recording {
            self.recorded.clone().unwrap_or_default()
        } else {
            self.recorded.take().unwrap_or_default()
        }
    }
}

pub(crate) fn host_gradients(model: &AnyModel, params: &GradientsParams) -> Vec<NamedGradient> {
    fn get<const D: usize>(params: &GradientsParams, p: &NamedParameter) -> Option<Vec<f32>> {
        let grad = params.get::<D>(p.id)?;
        Some(
            grad.into_data()
                .try_into_vec_as::<f32>()
                .expect("float gradient"),
        )
    }
    named_parameters(model, model.spec())
        .into_iter()
        .filter(|p| p.trainable)
        .filter_map(|p| {
            let values = match p.dims.len() {
                1 => get::<1>(params, &p),
                2 => get::<2>(params, &p),
                3 => get::<3>(params, &p),
                4 => get::<4>(params, &p),
                rank => panic!("parameter {} has rank {rank}", p.path),
            }?;
            Some(NamedGradient {
                path: p.path,
                dims: p.dims,
                values,
            })
        })
        .collect()
}
