//! The model party: owns the body (or the Head–Tail top), serves data parties.

use std::sync::{Arc, Mutex, MutexGuard};

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use splitlm_nn::{HeadOutput, Hidden, KvCache, ModelError, TransformerSlice};
use splitlm_protocol::{
    Message, Mode, OutputKind, PROTOCOL_VERSION, Role, TensorFrame, Traffic, Transport, WireDType,
};

use crate::data::{check_step, unexpected};
use crate::observe::{Observation, ObservationLimits, SliceSnapshot, first_rows};
use crate::slice::PartySlice;
use crate::wire::{self, expect_shape};
use crate::{PartyError, recv_expected};

/// What a finished session did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionReport {
    /// The session's id.
    pub session: u64,
    /// The data party's identifier.
    pub party_id: String,
    /// Training steps served.
    pub train_steps: u64,
    /// Evaluation steps served.
    pub eval_steps: u64,
    /// Generation steps served (prompts and single positions).
    pub decode_steps: u64,
    /// Bytes and messages moved, seen from the model party.
    pub traffic: Traffic,
}

struct Shared {
    slice: PartySlice,
    next_session: u64,
    observer: Option<Observer>,
}

/// What [`ModelParty::observe`] asked for and what was recorded.
struct Observer {
    limits: ObservationLimits,
    seen: Vec<Observation>,
    slices: Vec<SliceSnapshot>,
}

/// The model party. Clones share one slice: several data parties can be served at once, one
/// thread per session ([`ModelParty::spawn`]). A training step holds the slice from the
/// forward pass to the returned gradient, so no session's gradient ever mixes with another's;
/// the slice's weights are shared and each session's update lands in turn.
#[derive(Clone)]
pub struct ModelParty {
    shared: Arc<Mutex<Shared>>,
    device: Device,
    wire_dtype: WireDType,
}

impl ModelParty {
    /// A model party serving `slice` (on its own device), sending tensors as `wire_dtype`.
    pub fn new(slice: PartySlice, wire_dtype: WireDType) -> Self {
        let device = slice
            .model()
            .devices()
            .into_iter()
            .next()
            .expect("a model party's slice holds at least one block or the top");
        Self {
            shared: Arc::new(Mutex::new(Shared {
                slice,
                next_session: 0,
                observer: None,
            })),
            device,
            wire_dtype,
        }
    }

    /// Runs `f` on the slice as it stands (between steps).
    pub fn with_slice<R>(&self, f: impl FnOnce(&PartySlice) -> R) -> R {
        f(&self.lock().slice)
    }

    /// Records what this party receives during training from now on, within `limits` (the
    /// attacker's view of an honest-but-curious server).
    pub fn observe(&self, limits: ObservationLimits) {
        self.lock().observer = Some(Observer {
            limits,
            seen: Vec::new(),
            slices: Vec::new(),
        });
    }

    /// What was recorded so far.
    pub fn observations(&self) -> Vec<Observation> {
        self.lock()
            .observer
            .as_ref()
            .map(|o| o.seen.clone())
            .unwrap_or_default()
    }

    /// The slice before and after each recorded step (with [`ObservationLimits::slices`]).
    pub fn observed_slices(&self) -> Vec<SliceSnapshot> {
        self.lock()
            .observer
            .as_ref()
            .map(|o| o.slices.clone())
            .unwrap_or_default()
    }

    /// Saves the slice's trainable state into `dir` (see [`PartySlice::save_state`]); taken
    /// between steps.
    pub fn save_state(&self, dir: &std::path::Path, name: &str) -> Result<(), PartyError> {
        self.lock().slice.save_state(dir, name)
    }

    /// Restores a state saved by [`ModelParty::save_state`].
    pub fn restore_state(&self, dir: &std::path::Path, name: &str) -> Result<(), PartyError> {
        self.lock().slice.restore_state(dir, name)
    }

    /// Serves one session on another thread.
    pub fn spawn(
        &self,
        transport: impl Transport + 'static,
    ) -> std::thread::JoinHandle<Result<SessionReport, PartyError>> {
        let party = self.clone();
        std::thread::spawn(move || party.serve(transport))
    }

    /// Serves one data party until it ends the session. On a failure the peer is told why
    /// (a protocol `Error` message) before the error is returned.
    pub fn serve(&self, mut transport: impl Transport) -> Result<SessionReport, PartyError> {
        let result = self.serve_inner(&mut transport);
        if let Err(err) = &result
            && !matches!(err, PartyError::Peer { .. } | PartyError::Protocol(_))
        {
            let _ = transport.send(&Message::Error {
                code: err.code(),
                message: err.to_string(),
            });
        }
        result
    }

    fn serve_inner(&self, transport: &mut dyn Transport) -> Result<SessionReport, PartyError> {
        let party_id = match recv_expected(transport)? {
            Message::Hello {
                party_id,
                role: Role::DataParty,
                ..
            } => party_id,
            other => return Err(unexpected("Hello from a data party", &other)),
        };
        let session = {
            let mut shared = self.lock();
            shared.next_session += 1;
            shared.next_session
        };
        transport.send(&Message::HelloAck {
            version: PROTOCOL_VERSION,
            session,
        })?;
        let mut report = SessionReport {
            session,
            party_id,
            train_steps: 0,
            eval_steps: 0,
            decode_steps: 0,
            traffic: Traffic::default(),
        };
        let mut decoding = None;
        loop {
            match recv_expected(transport)? {
                Message::Forward {
                    step,
                    mode,
                    hidden,
                    attention_mask,
                    positions,
                } => {
                    let watched = (mode == Mode::Train)
                        .then(|| self.watching(report.train_steps))
                        .flatten()
                        .map(|limits| {
                            (
                                first_rows(&hidden, limits.max_samples),
                                first_rows(&attention_mask, limits.max_samples),
                                limits,
                                session,
                            )
                        });
                    // Only training builds an autodiff graph.
                    let device = match mode {
                        Mode::Train => self.device.clone(),
                        _ => self.device.clone().inner(),
                    };
                    let hidden = Hidden {
                        states: wire::float_tensor::<3>(&hidden, &device, "hidden states")?,
                        attention_mask: wire::int_tensor::<2>(
                            &attention_mask,
                            &device,
                            "the attention mask",
                        )?,
                        positions: wire::int_tensor::<2>(&positions, &device, "positions")?,
                    };
                    match mode {
                        Mode::Train => {
                            self.train_step(transport, step, hidden, watched)?;
                            report.train_steps += 1;
                        }
                        Mode::Eval => {
                            self.eval_step(transport, step, hidden)?;
                            report.eval_steps += 1;
                        }
                        Mode::Prefill | Mode::Infer => {
                            self.decode_step(transport, step, mode, hidden, &mut decoding)?;
                            report.decode_steps += 1;
                        }
                    }
                }
                Message::End { .. } => break,
                other => return Err(unexpected("Forward or End", &other)),
            }
        }
        report.traffic = transport.traffic();
        Ok(report)
    }

    /// The sample limit when the `train_steps`-th training step of a session is recorded.
    fn watching(&self, train_steps: u64) -> Option<ObservationLimits> {
        match &self.lock().observer {
            Some(o)
                if (o.limits.from_step..o.limits.from_step.saturating_add(o.limits.steps))
                    .contains(&train_steps) =>
            {
                Some(o.limits)
            }
            _ => None,
        }
    }

    fn train_step(
        &self,
        transport: &mut dyn Transport,
        step: u64,
        hidden: Hidden,
        watched: Option<(TensorFrame, TensorFrame, ObservationLimits, u64)>,
    ) -> Result<(), PartyError> {
        let mut shared = self.lock();
        let h1 = hidden.states.clone().require_grad();
        let output = forward(shared.slice.model(), hidden.with_states(h1.clone()))?;
        let (kind, packed) = wire::pack_output(output);
        let sent = wire::wire_view(packed.clone(), kind).into_frame(self.wire_dtype)?;
        transport.send(&Message::Output {
            step,
            kind,
            tensors: vec![sent.clone()],
        })?;
        let grad = match recv_expected(transport)? {
            Message::Gradient { step: s, grad } => {
                check_step(step, s)?;
                grad
            }
            other => return Err(unexpected("Gradient", &other)),
        };
        let grad_frame = grad;
        let grad = wire::output_tensor(kind, &grad_frame, &self.device)?;
        expect_shape(&grad.dims(), &packed.dims(), "the output gradient")?;
        let grads = (packed * grad).sum().backward();
        let input_grad = h1
            .grad(&grads)
            .expect("the received activations are a leaf of the output");
        let weight_gradients = watched.as_ref().is_some_and(|w| w.2.weight_gradients);
        let recording_already = shared.slice.recorded_gradients().is_some();
        if weight_gradients && !recording_already {
            shared.slice.record_gradients(true);
        }
        let before = watched
            .as_ref()
            .filter(|w| w.2.slices)
            .map(|_| shared.slice.model().clone());
        shared.slice.apply_gradients(grads);
        if let Some((hidden, attention_mask, limits, session)) = watched {
            let weights = if weight_gradients {
                let recorded = shared
                    .slice
                    .recorded_gradients()
                    .unwrap_or_default()
                    .to_vec();
                if !recording_already {
                    shared.slice.record_gradients(false);
                }
                recorded
            } else {
                Vec::new()
            };
            let after = before.is_some().then(|| shared.slice.model().clone());
            if let Some(observer) = shared.observer.as_mut() {
                if let (Some(before), Some(after)) = (before, after) {
                    observer.slices.push(SliceSnapshot {
                        session,
                        step,
                        before,
                        after,
                    });
                }
                observer.seen.push(Observation {
                    session,
                    step,
                    batch_rows: grad_frame.shape.first().copied().unwrap_or(0),
                    hidden,
                    attention_mask,
                    output_kind: kind,
                    output: first_rows(&sent, limits.max_samples),
                    output_grad: first_rows(&grad_frame, limits.max_samples),
                    weight_gradients: weights,
                });
            }
        }
        drop(shared);
        transport.send(&Message::InputGradient {
            step,
            grad: wire::float_frame(input_grad, self.wire_dtype)?,
        })?;
        Ok(())
    }

    fn eval_step(
        &self,
        transport: &mut dyn Transport,
        step: u64,
        hidden: Hidden,
    ) -> Result<(), PartyError> {
        let model = self.lock().slice.model().valid();
        self.send_output(transport, step, wire::pack_output(forward(&model, hidden)?))
    }

    /// One generation step: a prompt ([`Mode::Prefill`], which starts a new cache) or the
    /// positions after it ([`Mode::Infer`]), whose mask covers only the new positions.
    fn decode_step(
        &self,
        transport: &mut dyn Transport,
        step: u64,
        mode: Mode,
        hidden: Hidden,
        decoding: &mut Option<Decoding>,
    ) -> Result<(), PartyError> {
        let [b, s, _] = hidden.states.dims();
        expect_shape(
            &hidden.attention_mask.dims(),
            &[b, s],
            "the attention mask of a generation step",
        )?;
        // Taken out, so a failed step leaves no half-updated cache behind. A prompt snapshots
        // the slice (without autodiff) once; the steps after it reuse that snapshot.
        let mut state = match (mode, decoding.take()) {
            (Mode::Prefill, _) => {
                let model = self.lock().slice.model().valid();
                if !model.is_causal() {
                    return Err(ModelError::Input("generation needs a causal model".into()).into());
                }
                Decoding {
                    cache: model.new_cache(),
                    mask: hidden.attention_mask.clone(),
                    model,
                }
            }
            (_, Some(state)) if state.mask.dims()[0] == b => Decoding {
                mask: Tensor::cat(vec![state.mask, hidden.attention_mask.clone()], 1),
                ..state
            },
            (_, Some(state)) => {
                return Err(PartyError::BadTensor(format!(
                    "a generation step of batch {b} continues a sequence of batch {}",
                    state.mask.dims()[0]
                )));
            }
            (_, None) => {
                return Err(PartyError::Unexpected {
                    expected: "a Prefill step before Infer steps",
                    found: "Infer",
                });
            }
        };
        let hidden = Hidden {
            attention_mask: state.mask.clone(),
            ..hidden
        };
        let model = &state.model;
        let hidden = model.forward_blocks(hidden, Some(&mut state.cache))?;
        let output = if model.spec().top {
            model.forward_top(hidden.last_position())?
        } else {
            HeadOutput::Hidden(hidden.states)
        };
        *decoding = Some(state);
        self.send_output(transport, step, wire::pack_output(output))?;
        Ok(())
    }

    /// Sends the model party's output of `step`, packed as [`wire::pack_output`] does.
    fn send_output(
        &self,
        transport: &mut dyn Transport,
        step: u64,
        (kind, packed): (OutputKind, Tensor<3>),
    ) -> Result<(), PartyError> {
        transport.send(&Message::Output {
            step,
            kind,
            tensors: vec![wire::wire_view(packed, kind).into_frame(self.wire_dtype)?],
        })?;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic in another session cannot leave the slice half-updated: updates replace
        // the model in one assignment.
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A session's generation state: the slice as of the prompt, its KV cache and the attention
/// mask so far.
struct Decoding {
    model: splitlm_zoo::AnyModel,
    cache: KvCache,
    mask: Tensor<2, Int>,
}

/// The model party's slice on `hidden`: blocks, then the top if it holds it.
fn forward<M: TransformerSlice>(
    model: &M,
    hidden: Hidden,
) -> Result<splitlm_nn::HeadOutput, PartyError> {
    let hidden = model.forward_blocks(hidden, None)?;
    Ok(if model.spec().top {
        model.forward_top(hidden)?
    } else {
        splitlm_nn::HeadOutput::Hidden(hidden.states)
    })
}
