//! The model party: owns the body (or the Head–Tail top), serves data parties.

use std::sync::{Arc, Mutex, MutexGuard};

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use splitlm_nn::{HeadOutput, Hidden, KvCache, ModelError, TransformerSlice};
use splitlm_protocol::{
    Message, Mode, OutputKind, PROTOCOL_VERSION, ProtocolError, Role, TensorFrame, Traffic,
    Transport, WireDType,
};

use crate::data::{check_step, unexpected};
use crate::observe::{
    Observation, ObservationLimits, ObservedStep, Recorder, SliceSnapshot, StepObserver,
    as_recorder,
};
use crate::slice::PartySlice;
use crate::state::SessionStore;
use crate::wire::{self, expect_shape};
use crate::{PartyError, recv_expected};

/// What a finished session did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionReport {
    /// The session's id.
    pub session: u64,
    /// The data party's identifier (what it calls itself).
    pub party_id: String,
    /// Who the data party is as the transport authenticated it (a client certificate's
    /// subject; `in-process` without a network).
    pub identity: String,
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
    observer: Option<Box<dyn StepObserver>>,
}

/// What a model party knows of a data party whose `Hello` was accepted (by
/// [`ModelParty::serve`] itself, or by a server that checks it first).
#[derive(Debug, Clone)]
pub struct Opening {
    /// What the data party calls itself.
    pub party_id: String,
    /// Who it is as the transport authenticated it.
    pub identity: String,
    /// Where this session's state is saved and restored on the data party's request (none:
    /// such requests are refused).
    pub store: Option<SessionStore>,
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
    /// attacker's view of an honest-but-curious server): installs a [`Recorder`].
    pub fn observe(&self, limits: ObservationLimits) {
        self.set_observer(Box::new(Recorder::new(limits)));
    }

    /// Tells `observer` of the training steps served from now on, in place of any observer
    /// installed before (by [`ModelParty::observe`] too).
    pub fn set_observer(&self, observer: Box<dyn StepObserver>) {
        self.lock().observer = Some(observer);
    }

    /// What was recorded so far (by the [`Recorder`] of [`ModelParty::observe`]).
    pub fn observations(&self) -> Vec<Observation> {
        self.recorded(|r| r.observations().to_vec())
    }

    /// The slice before and after each recorded step (with [`ObservationLimits::slices`]).
    pub fn observed_slices(&self) -> Vec<SliceSnapshot> {
        self.recorded(|r| r.slices().to_vec())
    }

    fn recorded<T: Default>(&self, f: impl FnOnce(&Recorder) -> T) -> T {
        let shared = self.lock();
        shared
            .observer
            .as_deref()
            .and_then(as_recorder)
            .map(f)
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
        let result = match recv_expected(&mut transport) {
            Ok(Message::Hello {
                party_id,
                role: Role::DataParty,
                ..
            }) => {
                let opening = Opening {
                    party_id,
                    identity: "in-process".into(),
                    store: None,
                };
                self.serve_inner(&mut transport, opening)
            }
            Ok(other) => Err(unexpected("Hello from a data party", &other)),
            Err(e) => Err(e),
        };
        tell_peer(&mut transport, result)
    }

    /// Serves a data party whose `Hello` the caller has read and accepted: answers it with a
    /// `HelloAck` and serves until the session ends, telling the peer why on a failure.
    pub fn serve_opened(
        &self,
        mut transport: impl Transport,
        opening: Opening,
    ) -> Result<SessionReport, PartyError> {
        let result = self.serve_inner(&mut transport, opening);
        tell_peer(&mut transport, result)
    }

    fn serve_inner(
        &self,
        transport: &mut dyn Transport,
        opening: Opening,
    ) -> Result<SessionReport, PartyError> {
        let Opening {
            party_id,
            identity,
            store,
        } = opening;
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
            identity,
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
                    let forward = Forwarded {
                        step,
                        hidden,
                        attention_mask,
                        positions,
                    };
                    match mode {
                        Mode::Train => {
                            self.train_step(transport, session, report.train_steps, &forward)?;
                            report.train_steps += 1;
                        }
                        Mode::Eval => {
                            self.eval_step(transport, session, &forward)?;
                            report.eval_steps += 1;
                        }
                        Mode::Prefill | Mode::Infer => {
                            self.decode_step(transport, mode, &forward, &mut decoding)?;
                            report.decode_steps += 1;
                        }
                    }
                }
                Message::SaveState { tag } => {
                    let steps = self.with_store(&store, |store, slice| store.save(slice, &tag))?;
                    transport.send(&Message::StateDone { tag, steps })?;
                }
                Message::RestoreState { tag } => {
                    let steps =
                        self.with_store(&store, |store, slice| store.restore(slice, &tag))?;
                    decoding = None;
                    transport.send(&Message::StateDone { tag, steps })?;
                }
                Message::End { .. } => break,
                other => {
                    return Err(unexpected(
                        "Forward, SaveState, RestoreState or End",
                        &other,
                    ));
                }
            }
        }
        report.traffic = transport.traffic();
        Ok(report)
    }

    /// Runs `f` on this session's store and the slice, between steps.
    fn with_store<R>(
        &self,
        store: &Option<SessionStore>,
        f: impl FnOnce(&SessionStore, &mut PartySlice) -> Result<R, PartyError>,
    ) -> Result<R, PartyError> {
        let Some(store) = store else {
            return Err(PartyError::state(
                std::path::Path::new("."),
                "this model party keeps no session state (serve it with a state directory)",
            ));
        };
        f(store, &mut self.lock().slice)
    }

    /// A training step, the `train_step`-th (0: the first) of `session`: forward, send the
    /// output, receive its gradient, backward, update, tell the observer, send the input
    /// gradient. Only training builds an autodiff graph.
    fn train_step(
        &self,
        transport: &mut dyn Transport,
        session: u64,
        train_step: u64,
        forward: &Forwarded,
    ) -> Result<(), PartyError> {
        let step = forward.step;
        let hidden = forward.hidden(&self.device)?;
        let mut shared = self.lock();
        let Shared {
            slice, observer, ..
        } = &mut *shared;
        let wanted = observer.as_ref().and_then(|o| o.wants(session, train_step));

        let h1 = hidden.states.clone().require_grad();
        let output = run_slice(slice.model(), hidden.with_states(h1.clone()))?;
        let (kind, packed) = wire::pack_output(output);
        let output = self.send_output(transport, step, (kind, packed.clone()))?;
        let output_grad = match recv_expected(transport)? {
            Message::Gradient { step: s, grad } => {
                check_step(step, s)?;
                grad
            }
            other => return Err(unexpected("Gradient", &other)),
        };
        let grad = wire::output_tensor(kind, &output_grad, &self.device)?;
        expect_shape(&grad.dims(), &packed.dims(), "the output gradient")?;

        let grads = (packed * grad).sum().backward();
        let input_grad = h1
            .grad(&grads)
            .expect("the received activations are a leaf of the output");
        let keep = wanted.unwrap_or_default();
        let before = keep.slices.then(|| slice.model().clone());
        let weight_gradients = if keep.weight_gradients {
            slice.apply_gradients_kept(grads)
        } else {
            slice.apply_gradients(grads);
            Vec::new()
        };
        if let (Some(observer), Some(_)) = (observer, wanted) {
            observer.on_train_step(ObservedStep {
                session,
                step,
                hidden: &forward.hidden,
                attention_mask: &forward.attention_mask,
                positions: &forward.positions,
                output_kind: kind,
                output: &output,
                output_grad: &output_grad,
                weight_gradients: &weight_gradients,
                slice_before: before.as_ref(),
                slice_after: before.is_some().then(|| slice.model()),
            });
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
        session: u64,
        forward: &Forwarded,
    ) -> Result<(), PartyError> {
        let hidden = forward.hidden(&self.device.clone().inner())?;
        let model = self.lock().slice.model().valid();
        let (kind, packed) = wire::pack_output(run_slice(&model, hidden)?);
        let output = wire::wire_view(packed, kind).into_frame(self.wire_dtype)?;
        // Observed before the output goes back: once the data party has it, the step is on
        // record (an observer installed after that sees only later steps).
        let mut shared = self.lock();
        if let Some(observer) = shared.observer.as_mut()
            && observer.wants_inference(session)
        {
            let no_gradient = TensorFrame::from_f32(vec![0], &[], self.wire_dtype)?;
            observer.on_inference_step(ObservedStep {
                session,
                step: forward.step,
                hidden: &forward.hidden,
                attention_mask: &forward.attention_mask,
                positions: &forward.positions,
                output_kind: kind,
                output: &output,
                output_grad: &no_gradient,
                weight_gradients: &[],
                slice_before: None,
                slice_after: None,
            });
        }
        drop(shared);
        transport.send(&Message::Output {
            step: forward.step,
            kind,
            tensors: vec![output],
        })?;
        Ok(())
    }

    /// One generation step: a prompt ([`Mode::Prefill`], which starts a new cache) or the
    /// positions after it ([`Mode::Infer`]), whose mask covers only the new positions.
    fn decode_step(
        &self,
        transport: &mut dyn Transport,
        mode: Mode,
        forward: &Forwarded,
        decoding: &mut Option<Decoding>,
    ) -> Result<(), PartyError> {
        let hidden = forward.hidden(&self.device.clone().inner())?;
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
        self.send_output(transport, forward.step, wire::pack_output(output))?;
        Ok(())
    }

    /// Sends the model party's output of `step`, packed as [`wire::pack_output`] does;
    /// returns the frame sent.
    fn send_output(
        &self,
        transport: &mut dyn Transport,
        step: u64,
        (kind, packed): (OutputKind, Tensor<3>),
    ) -> Result<TensorFrame, PartyError> {
        let message = Message::Output {
            step,
            kind,
            tensors: vec![wire::wire_view(packed, kind).into_frame(self.wire_dtype)?],
        };
        transport.send(&message)?;
        let Message::Output { mut tensors, .. } = message else {
            unreachable!("built as an Output just above")
        };
        Ok(tensors.remove(0))
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic in another session cannot leave the slice half-updated: updates replace
        // the model in one assignment.
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Returns `result`, first telling the peer of a failure it does not know of yet.
fn tell_peer(
    transport: &mut impl Transport,
    result: Result<SessionReport, PartyError>,
) -> Result<SessionReport, PartyError> {
    // A peer that failed knows why, and one that went away cannot be told.
    let told_already = |err: &PartyError| {
        matches!(
            err,
            PartyError::Peer { .. }
                | PartyError::Protocol(ProtocolError::Disconnected | ProtocolError::Io(_))
        )
    };
    if let Err(err) = &result
        && !told_already(err)
    {
        let _ = transport.send(&Message::Error {
            code: err.code(),
            message: err.to_string(),
        });
    }
    result
}

/// A `Forward` as it arrived: the step id and the frames of the head's activations.
struct Forwarded {
    step: u64,
    hidden: TensorFrame,
    attention_mask: TensorFrame,
    positions: TensorFrame,
}

impl Forwarded {
    /// The activations on `device` (an autodiff one only for training).
    fn hidden(&self, device: &Device) -> Result<Hidden, PartyError> {
        wire::hidden(&self.hidden, &self.attention_mask, &self.positions, device)
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
pub(crate) fn run_slice<M: TransformerSlice>(
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
