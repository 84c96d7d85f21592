//! What trains: a split model (both parties in this process) or the whole model in one place,
//! behind one [`Learner`] trait so that the two can be compared run for run.

use std::path::Path;
use std::thread::JoinHandle;

use burn::module::Module;
use burn::tensor::Device;
use splitlm_nn::generate::{Generation, Sampling, generate};
use splitlm_nn::{HeadOutput, Labels, TokenBatch, TransformerSlice, loss};
use splitlm_party::{
    DataParty, ModelParty, PartyError, PartySlice, SessionReport, SplitGeneration,
};
use splitlm_protocol::Traffic;
use splitlm_tasks::{Predictor, TaskError};

use crate::error::TrainError;

/// Something that trains on batches, predicts and generates: a split model driven from its
/// data party, or the whole model. As a [`Predictor`] it can be scored on any task.
pub trait Learner: Predictor {
    /// One optimizer step; returns the batch's mean loss.
    fn train_step(&mut self, batch: &TokenBatch, labels: &Labels) -> Result<f32, TrainError>;
    /// Extends `prompt` (a causal LM), with the bytes each step moved (split learners).
    fn generate_traced(
        &mut self,
        prompt: &[u32],
        sampling: &Sampling,
    ) -> Result<SplitGeneration, TrainError>;
    /// Saves every party's trainable state into `dir`.
    fn save_state(&self, dir: &Path) -> Result<(), TrainError>;
    /// Restores what [`Learner::save_state`] saved.
    fn restore_state(&mut self, dir: &Path) -> Result<(), TrainError>;
    /// Bytes the data party moved so far (split learners).
    fn traffic(&self) -> Option<Traffic> {
        None
    }
    /// The data party's tail as it stands (Head–Body–Tail split learners): the benchmark hands
    /// a copy to attackers whose prior declares one.
    fn data_tail(&self) -> Option<splitlm_zoo::AnyModel> {
        None
    }
}

/// A party's failure as a task sees it.
fn predictor_error(e: PartyError) -> TaskError {
    match e {
        PartyError::Model(e) => TaskError::Model(e),
        other => TaskError::Predictor(Box::new(other)),
    }
}

/// A split model in this process: the data party, and the model party serving it on another
/// thread (kept at hand to checkpoint it).
pub struct Split {
    data: DataParty,
    model: ModelParty,
    server: JoinHandle<Result<SessionReport, PartyError>>,
}

impl Split {
    /// Wraps a connected data party and the model party serving it on `server`.
    pub fn new(
        data: DataParty,
        model: ModelParty,
        server: JoinHandle<Result<SessionReport, PartyError>>,
    ) -> Self {
        Self {
            data,
            model,
            server,
        }
    }

    /// The data party.
    pub fn data(&mut self) -> &mut DataParty {
        &mut self.data
    }

    /// The model party.
    pub fn model(&self) -> &ModelParty {
        &self.model
    }

    /// Ends the session; returns what the model party served.
    pub fn finish(self) -> Result<SessionReport, TrainError> {
        self.data.finish()?;
        Ok(self
            .server
            .join()
            .map_err(|_| TrainError::ModelPartyPanicked)??)
    }
}

const MODEL_PARTY_STATE: &str = "model-party";

impl Predictor for Split {
    fn device(&self) -> Device {
        self.data.device()
    }

    fn predict(&mut self, batch: &TokenBatch) -> Result<HeadOutput, TaskError> {
        self.data.eval_step(batch).map_err(predictor_error)
    }

    fn generate(&mut self, prompt: &[u32], sampling: &Sampling) -> Result<Generation, TaskError> {
        self.data
            .generate(prompt, sampling)
            .map(|g| g.generation)
            .map_err(predictor_error)
    }
}

impl Learner for Split {
    fn train_step(&mut self, batch: &TokenBatch, labels: &Labels) -> Result<f32, TrainError> {
        Ok(self.data.train_step(batch, labels)?.loss)
    }

    fn generate_traced(
        &mut self,
        prompt: &[u32],
        sampling: &Sampling,
    ) -> Result<SplitGeneration, TrainError> {
        Ok(self.data.generate(prompt, sampling)?)
    }

    fn save_state(&self, dir: &Path) -> Result<(), TrainError> {
        self.data.save_state(dir)?;
        Ok(self.model.save_state(dir, MODEL_PARTY_STATE)?)
    }

    fn restore_state(&mut self, dir: &Path) -> Result<(), TrainError> {
        self.data.restore_state(dir)?;
        Ok(self.model.restore_state(dir, MODEL_PARTY_STATE)?)
    }

    fn traffic(&self) -> Option<Traffic> {
        Some(self.data.traffic())
    }

    fn data_tail(&self) -> Option<splitlm_zoo::AnyModel> {
        self.data.tail().map(|t| t.model().clone())
    }
}

/// The whole model trained in one place (the unsplit baseline).
pub struct Whole {
    slice: PartySlice,
    device: Device,
}

impl Whole {
    /// Wraps a slice holding the whole model, on the autodiff `device`.
    pub fn new(slice: PartySlice, device: Device) -> Self {
        Self { slice, device }
    }
}

impl Predictor for Whole {
    fn device(&self) -> Device {
        self.device.clone()
    }

    fn predict(&mut self, batch: &TokenBatch) -> Result<HeadOutput, TaskError> {
        let inner = self.device.clone().inner();
        let model = self.slice.model().valid();
        Ok(model.forward(&batch.to_device(&inner), None)?)
    }

    fn generate(&mut self, prompt: &[u32], sampling: &Sampling) -> Result<Generation, TaskError> {
        let model = self.slice.model().valid();
        Ok(generate(
            &model,
            prompt,
            sampling,
            &self.device.clone().inner(),
        )?)
    }
}

impl Learner for Whole {
    fn train_step(&mut self, batch: &TokenBatch, labels: &Labels) -> Result<f32, TrainError> {
        let loss = loss(&self.slice.model().forward(batch, None)?, labels)?;
        let value: f32 = loss.clone().into_scalar();
        if !value.is_finite() {
            return Err(TrainError::NonFiniteLoss(value));
        }
        self.slice.apply_gradients(loss.backward());
        Ok(value)
    }

    fn generate_traced(
        &mut self,
        prompt: &[u32],
        sampling: &Sampling,
    ) -> Result<SplitGeneration, TrainError> {
        Ok(SplitGeneration {
            generation: Predictor::generate(self, prompt, sampling)?,
            prompt_bytes: Default::default(),
            step_bytes: Vec::new(),
        })
    }

    fn save_state(&self, dir: &Path) -> Result<(), TrainError> {
        Ok(self.slice.save_state(dir, "whole")?)
    }

    fn restore_state(&mut self, dir: &Path) -> Result<(), TrainError> {
        Ok(self.slice.restore_state(dir, "whole")?)
    }
}
