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
use splitlm_protocol::{Traffic, Transport};
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
    /// Saves every party's trainable state into `dir` (a remote model party saves its own on
    /// its side; `dir` then names it).
    fn save_state(&mut self, dir: &Path) -> Result<(), TrainError>;
    /// Restores what [`Learner::save_state`] saved.
    fn restore_state(&mut self, dir: &Path) -> Result<(), TrainError>;
    /// Re-opens a broken link to a remote model party (with the connector's retries); `false`
    /// when the learner has no link that can be re-opened. The parties' states are then as
    /// they were: restore a checkpoint before going on.
    fn reconnect(&mut self) -> Result<bool, TrainError> {
        Ok(false)
    }
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

/// Opens a new transport to a remote model party (retrying as the connector sees fit).
pub type Connect = Box<dyn FnMut() -> Result<Box<dyn Transport>, String> + Send>;

/// A split model driven from its data party. The model party serves it on another thread of
/// this process (kept at hand to checkpoint and observe it) or in another process.
pub struct Split {
    data: DataParty,
    model: ModelSide,
}

enum ModelSide {
    InProcess {
        party: ModelParty,
        server: JoinHandle<Result<SessionReport, PartyError>>,
    },
    Remote {
        connect: Connect,
    },
}

/// Where a remote model party's state of a checkpoint is: the tag it was saved under and the
/// training steps it had taken (written beside the data party's own state).
#[derive(serde::Serialize, serde::Deserialize)]
struct RemoteState {
    tag: String,
    steps: u64,
}

const MODEL_PARTY_STATE: &str = "model-party";
const REMOTE_STATE: &str = "model-party.remote.json";

impl Split {
    /// Wraps a connected data party and the model party serving it on `server`.
    pub fn new(
        data: DataParty,
        model: ModelParty,
        server: JoinHandle<Result<SessionReport, PartyError>>,
    ) -> Self {
        Self {
            data,
            model: ModelSide::InProcess {
                party: model,
                server,
            },
        }
    }

    /// Wraps a data party connected to a model party in another process; `connect` opens a
    /// new link to it when the old one breaks.
    pub fn remote(data: DataParty, connect: Connect) -> Self {
        Self {
            data,
            model: ModelSide::Remote { connect },
        }
    }

    /// The data party.
    pub fn data(&mut self) -> &mut DataParty {
        &mut self.data
    }

    /// The model party, when it runs in this process.
    pub fn model(&self) -> Option<&ModelParty> {
        match &self.model {
            ModelSide::InProcess { party, .. } => Some(party),
            ModelSide::Remote { .. } => None,
        }
    }

    /// Ends the session; returns what the model party served (when it runs in this process).
    pub fn finish(self) -> Result<Option<SessionReport>, TrainError> {
        self.data.finish()?;
        match self.model {
            ModelSide::InProcess { server, .. } => Ok(Some(
                server
                    .join()
                    .map_err(|_| TrainError::ModelPartyPanicked)??,
            )),
            ModelSide::Remote { .. } => Ok(None),
        }
    }
}

/// A tag no earlier checkpoint of this process used.
fn new_state_tag() -> String {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("ckpt-{millis}-{}-{n}", std::process::id())
}

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

    fn save_state(&mut self, dir: &Path) -> Result<(), TrainError> {
        self.data.save_state(dir)?;
        match &self.model {
            ModelSide::InProcess { party, .. } => Ok(party.save_state(dir, MODEL_PARTY_STATE)?),
            ModelSide::Remote { .. } => {
                // The model party's state is on disk (its side) before this checkpoint names it.
                let tag = new_state_tag();
                let steps = self.data.save_peer_state(&tag)?;
                let json = serde_json::to_vec(&RemoteState { tag, steps }).expect("serialises");
                Ok(splitlm_party::state::write_atomic(
                    &dir.join(REMOTE_STATE),
                    &json,
                )?)
            }
        }
    }

    fn restore_state(&mut self, dir: &Path) -> Result<(), TrainError> {
        self.data.restore_state(dir)?;
        match &self.model {
            ModelSide::InProcess { party, .. } => Ok(party.restore_state(dir, MODEL_PARTY_STATE)?),
            ModelSide::Remote { .. } => {
                let path = dir.join(REMOTE_STATE);
                let saved: RemoteState = std::fs::read(&path)
                    .map_err(|e| TrainError::io(&path, e))
                    .and_then(|bytes| {
                        serde_json::from_slice(&bytes).map_err(|e| TrainError::Checkpoint {
                            path: path.clone(),
                            reason: e.to_string(),
                        })
                    })?;
                let steps = self.data.restore_peer_state(&saved.tag)?;
                if steps != saved.steps {
                    return Err(TrainError::Checkpoint {
                        path,
                        reason: format!(
                            "the model party's state \"{}\" has taken {steps} steps, this \
                             checkpoint expects {}",
                            saved.tag, saved.steps
                        ),
                    });
                }
                Ok(())
            }
        }
    }

    fn reconnect(&mut self) -> Result<bool, TrainError> {
        let ModelSide::Remote { connect } = &mut self.model else {
            return Ok(false);
        };
        // A model party that has not yet noticed the broken link still holds the session and
        // refuses its key for a while: ask again a few times.
        let mut refusals = 0;
        loop {
            let transport = connect().map_err(TrainError::Connect)?;
            match self.data.reconnect(transport) {
                Ok(()) => return Ok(true),
                Err(PartyError::Peer { message, .. }) if refusals < 5 => {
                    refusals += 1;
                    log::warn!("the model party refused the session again ({message}); retrying");
                    std::thread::sleep(std::time::Duration::from_secs(2));
                }
                Err(e) => return Err(e.into()),
            }
        }
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

    fn save_state(&mut self, dir: &Path) -> Result<(), TrainError> {
        Ok(self.slice.save_state(dir, "whole")?)
    }

    fn restore_state(&mut self, dir: &Path) -> Result<(), TrainError> {
        Ok(self.slice.restore_state(dir, "whole")?)
    }
}
