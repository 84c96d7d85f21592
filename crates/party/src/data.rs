//! The data party: holds the text, the labels and the loss; runs the head (and, in
//! Head–Body–Tail, the tail); never sends labels.
//!
//! Every step, whether it trains, evaluates or generates, is the same two halves: the head half
//! ([`Link::send_head`]: defenses on the input, embeddings and head blocks, defenses on the
//! activation, a `Forward`) and the tail half ([`Link::recv_tail`]: the model party's
//! `Output`, checked, then the tail, or the output itself in Head–Tail). Training adds the
//! gradients between and after them.

mod generate;

pub use generate::SplitGeneration;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use splitlm_defenses::{Defenses, HookContext};
use splitlm_nn::{HeadOutput, Hidden, KvCache, Labels, TokenBatch, TransformerSlice, loss};
use splitlm_protocol::{
    Message, Mode, OutputKind, PROTOCOL_VERSION, Role, TensorFrame, Traffic, Transport, WireDType,
};
use splitlm_zoo::AnyModel;

use crate::slice::PartySlice;
use crate::wire::{self, expect_shape};
use crate::{PartyError, PartyOptions, recv_expected};

/// What one training step produced, seen from the data party.
#[derive(Debug, Clone)]
pub struct TrainStep {
    /// The step's id.
    pub step: u64,
    /// The mean loss of the batch.
    pub loss: f32,
    /// Bytes this party sent during the step.
    pub bytes_sent: u64,
    /// Bytes this party received during the step.
    pub bytes_received: u64,
}

/// Bytes one party moved, each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteCount {
    /// Bytes sent.
    pub sent: u64,
    /// Bytes received.
    pub received: u64,
}

impl From<Traffic> for ByteCount {
    /// The bytes of some traffic (typically [`Traffic::since`] an earlier reading).
    fn from(traffic: Traffic) -> Self {
        Self {
            sent: traffic.bytes_sent,
            received: traffic.bytes_received,
        }
    }
}

/// What a data party tells the model party when it opens (or reopens) a session, besides its
/// protocol version, role and id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handshake {
    /// The session's name, stable across reconnections (empty: a one-off session).
    pub session_key: String,
    /// What both parties must agree on, and the session's settings (see
    /// [`splitlm_protocol::Message::Hello`]).
    pub terms: Vec<(String, String)>,
}

/// The data party of a split model.
pub struct DataParty {
    head: PartySlice,
    tail: Option<PartySlice>,
    link: Link,
    device: Device,
    session: u64,
    next_step: u64,
    party_id: String,
    handshake: Handshake,
}

/// The data party's end of the cut: the transport, the defenses applied where tensors cross
/// it, and the float format they cross in.
struct Link {
    transport: Box<dyn Transport>,
    /// Traffic of the transports this session used before a reconnection.
    earlier_traffic: Traffic,
    defenses: Defenses,
    wire_dtype: WireDType,
}

/// What the tail half of a step produced.
struct Returned {
    /// What the model party returned.
    kind: OutputKind,
    /// Its output as received, before any defense; in training a leaf whose gradient is
    /// what goes back.
    received: Tensor<3>,
    /// The split model's output: the tail's, or (Head–Tail) the model party's unpacked.
    output: HeadOutput,
}

impl DataParty {
    /// Opens a session with the model party over `transport`. `tail` is the data party's
    /// tail in Head–Body–Tail, `None` in Head–Tail. Both slices live on one device.
    pub fn connect(
        head: PartySlice,
        tail: Option<PartySlice>,
        transport: Box<dyn Transport>,
        options: &PartyOptions,
    ) -> Result<Self, PartyError> {
        Self::connect_with(head, tail, transport, options, Handshake::default())
    }

    /// [`DataParty::connect`], opening the session with `handshake`.
    pub fn connect_with(
        head: PartySlice,
        tail: Option<PartySlice>,
        mut transport: Box<dyn Transport>,
        options: &PartyOptions,
        handshake: Handshake,
    ) -> Result<Self, PartyError> {
        let session = open_session(transport.as_mut(), &options.party_id, &handshake)?;
        let device = head
            .model()
            .devices()
            .into_iter()
            .next()
            .expect("a head holds the embeddings, so it has parameters");
        Ok(Self {
            head,
            tail,
            link: Link {
                transport,
                earlier_traffic: Traffic::default(),
                defenses: Defenses::none(),
                wire_dtype: options.wire_dtype,
            },
            device,
            session,
            next_step: 0,
            party_id: options.party_id.clone(),
            handshake,
        })
    }

    /// Opens the session again over a new `transport` (after the old one broke), with the
    /// same handshake. The slices are as they were; the model party's state is its own
    /// (restore both with [`DataParty::restore_peer_state`] and [`DataParty::restore_state`]).
    pub fn reconnect(&mut self, mut transport: Box<dyn Transport>) -> Result<(), PartyError> {
        self.session = open_session(transport.as_mut(), &self.party_id, &self.handshake)?;
        let old = std::mem::replace(&mut self.link.transport, transport);
        self.link.earlier_traffic = self.link.earlier_traffic.plus(&old.traffic());
        Ok(())
    }

    /// Asks the model party to save its state of this session under `tag` (atomically, on its
    /// side); returns the training steps that state has taken.
    pub fn save_peer_state(&mut self, tag: &str) -> Result<u64, PartyError> {
        self.peer_state(Message::SaveState { tag: tag.into() }, tag)
    }

    /// Asks the model party to return its state of this session to what it saved under `tag`;
    /// returns the training steps that state had taken.
    pub fn restore_peer_state(&mut self, tag: &str) -> Result<u64, PartyError> {
        self.peer_state(Message::RestoreState { tag: tag.into() }, tag)
    }

    /// Sends a state `request` about `tag` and returns the steps of the state it answers.
    fn peer_state(&mut self, request: Message, tag: &str) -> Result<u64, PartyError> {
        self.link.transport.send(&request)?;
        match recv_expected(self.link.transport.as_mut())? {
            Message::StateDone { tag: done, steps } if done == tag => Ok(steps),
            Message::StateDone { tag: done, .. } => Err(PartyError::state(
                std::path::Path::new(tag),
                format!("the model party answered for state \"{done}\" instead"),
            )),
            other => Err(unexpected("StateDone", &other)),
        }
    }

    /// Applies `defenses` at every crossing from now on (see [`splitlm_defenses`]).
    pub fn set_defenses(&mut self, defenses: Defenses) {
        self.link.defenses = defenses;
    }

    /// The defenses in force.
    pub fn defenses(&self) -> &Defenses {
        &self.link.defenses
    }

    /// The session id the model party gave.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// The head slice.
    pub fn head(&self) -> &PartySlice {
        &self.head
    }

    /// The tail slice (Head–Body–Tail).
    pub fn tail(&self) -> Option<&PartySlice> {
        self.tail.as_ref()
    }

    /// The device the party computes on (that of its head).
    pub fn device(&self) -> Device {
        self.device.clone()
    }

    /// Bytes and messages moved so far (over every transport of the session).
    pub fn traffic(&self) -> Traffic {
        self.link
            .earlier_traffic
            .plus(&self.link.transport.traffic())
    }

    /// One training step on `batch` (on this party's device) against `labels`: forward
    /// through both parties, loss here, backward through both, every slice updated.
    pub fn train_step(
        &mut self,
        batch: &TokenBatch,
        labels: &Labels,
    ) -> Result<TrainStep, PartyError> {
        let before = self.traffic();
        let ctx = self.next_step(true);
        let (h1, sent) =
            self.link
                .send_head(&ctx, Mode::Train, self.head.model(), batch.clone(), None)?;
        let extra_loss = self.link.defenses.extra_loss(&ctx);
        let tail = self.tail.as_ref().map(PartySlice::model);
        let returned = self.link.recv_tail(&ctx, tail, &h1, &self.device, None)?;

        let loss = loss(&returned.output, labels)?;
        let loss_value: f32 = loss.clone().into_scalar();
        if !loss_value.is_finite() {
            return Err(PartyError::BadTensor(format!(
                "the loss of step {} is {loss_value}",
                ctx.step
            )));
        }
        // A defense at the tail (MID on the body's output) adds its term to the objective; the
        // step's reported loss stays the task's.
        let objective = match self.link.defenses.tail_loss(&ctx) {
            Some(extra) => loss + extra,
            None => loss,
        };
        let grads = objective.backward();
        let grad = returned
            .received
            .grad(&grads)
            .expect("the received output is a leaf of the loss");
        self.link.defenses.on_labels(labels, &ctx);
        let grad = self.link.defenses.on_gradient(grad, &ctx);
        if let Some(tail) = &mut self.tail {
            self.link.defenses.update_tail(&grads, &ctx);
            tail.apply_gradients(grads);
        }
        let input_grad =
            self.link
                .exchange_gradient(ctx.step, returned.kind, grad, &self.device)?;
        expect_shape(&input_grad.dims(), &h1.states.dims(), "the input gradient")?;

        if self.head.is_trainable() || self.link.defenses.is_trainable() {
            // The head's objective: the model party's gradient on what was sent, plus the
            // defenses' own terms.
            let mut objective = (sent * input_grad).sum();
            if let Some(extra) = extra_loss {
                objective = objective + extra;
            }
            let grads = objective.backward();
            self.link.defenses.update(&grads, &ctx);
            if self.head.is_trainable() {
                self.head.apply_gradients(grads);
            }
        }
        let bytes = self.bytes_since(&before);
        Ok(TrainStep {
            step: ctx.step,
            loss: loss_value,
            bytes_sent: bytes.sent,
            bytes_received: bytes.received,
        })
    }

    /// Runs `batch` through the split model without training (nothing is sent back). The
    /// output lives on this party's device without autodiff.
    pub fn eval_step(&mut self, batch: &TokenBatch) -> Result<HeadOutput, PartyError> {
        let ctx = self.next_step(false);
        let device = self.device.clone().inner();
        let head = self.head.model().valid();
        let tail = self.tail.as_ref().map(|t| t.model().valid());
        let batch = batch.to_device(&device);
        let (h1, _) = self.link.send_head(&ctx, Mode::Eval, &head, batch, None)?;
        Ok(self
            .link
            .recv_tail(&ctx, tail.as_ref(), &h1, &device, None)?
            .output)
    }

    /// Saves the trainable state of the head (`data-head.*`) and tail (`data-tail.*`) into
    /// `dir` (see [`PartySlice::save_state`]).
    pub fn save_state(&self, dir: &std::path::Path) -> Result<(), PartyError> {
        self.head.save_state(dir, "data-head")?;
        if let Some(tail) = &self.tail {
            tail.save_state(dir, "data-tail")?;
        }
        Ok(())
    }

    /// Restores what [`DataParty::save_state`] saved.
    pub fn restore_state(&mut self, dir: &std::path::Path) -> Result<(), PartyError> {
        self.head.restore_state(dir, "data-head")?;
        if let Some(tail) = &mut self.tail {
            tail.restore_state(dir, "data-tail")?;
        }
        Ok(())
    }

    /// Ends the session; returns the slices.
    pub fn finish(mut self) -> Result<(PartySlice, Option<PartySlice>), PartyError> {
        self.link.transport.send(&Message::End {
            reason: "data party finished".into(),
        })?;
        Ok((self.head, self.tail))
    }

    /// Takes the next step id; the context the defenses' hooks get in that step.
    fn next_step(&mut self, training: bool) -> HookContext {
        let step = self.next_step;
        self.next_step += 1;
        HookContext { step, training }
    }

    /// The bytes moved since the reading `before`.
    fn bytes_since(&self, before: &Traffic) -> ByteCount {
        self.traffic().since(before).into()
    }
}

/// Sends the `Hello` of a session and returns the session id the model party answered with.
fn open_session(
    transport: &mut dyn Transport,
    party_id: &str,
    handshake: &Handshake,
) -> Result<u64, PartyError> {
    transport.send(&Message::Hello {
        version: PROTOCOL_VERSION,
        role: Role::DataParty,
        party_id: party_id.into(),
        session_key: handshake.session_key.clone(),
        terms: handshake.terms.clone(),
    })?;
    match recv_expected(transport)? {
        Message::HelloAck { session, .. } => Ok(session),
        other => Err(unexpected("HelloAck", &other)),
    }
}

impl Link {
    /// The head half of a step: the defenses' input hook, embeddings and `head`'s blocks
    /// (with `cache` in generation), the defenses' activation hook, and the `Forward` of what
    /// they made. Returns the head's output and what was sent; in training both stay on the
    /// autodiff graph, so the head's gradient flows back through the defenses.
    fn send_head(
        &mut self,
        ctx: &HookContext,
        mode: Mode,
        head: &AnyModel,
        batch: TokenBatch,
        cache: Option<&mut KvCache>,
    ) -> Result<(Hidden, Tensor<3>), PartyError> {
        let batch = self.defenses.on_input(batch, ctx);
        let h1 = head.forward_blocks(head.embed(&batch)?, cache)?;
        let sent = self.defenses.on_activation(h1.states.clone(), ctx);
        // With a cache the mask also covers the cached positions; only this step's cross.
        let [_, new, _] = h1.states.dims();
        let [_, total] = h1.attention_mask.dims();
        let mask = h1.attention_mask.clone().narrow(1, total - new, new);
        self.transport.send(&Message::Forward {
            step: ctx.step,
            mode,
            hidden: wire::float_frame(sent.clone(), self.wire_dtype)?,
            attention_mask: wire::int_frame(mask)?,
            positions: wire::int_frame(h1.positions.clone())?,
        })?;
        Ok((h1, sent))
    }

    /// The tail half of a step: the model party's `Output` of the step, checked and read onto
    /// `device` (a leaf tracking its gradient in training); then, in Head–Body–Tail, the
    /// defenses' received hook and `tail`'s blocks and top (with `cache` in generation, where
    /// the top runs on the last position only); in Head–Tail the output itself.
    fn recv_tail(
        &mut self,
        ctx: &HookContext,
        tail: Option<&AnyModel>,
        h1: &Hidden,
        device: &Device,
        cache: Option<&mut KvCache>,
    ) -> Result<Returned, PartyError> {
        let (kind, frame) = self.recv_output(ctx.step)?;
        let mut received = wire::output_tensor(kind, &frame, device)?;
        if ctx.training {
            received = received.require_grad();
        }
        let output = match tail {
            Some(tail) => {
                expect_kind(kind, OutputKind::Hidden)?;
                expect_shape(&received.dims(), &h1.states.dims(), "the body's output")?;
                let states = self.defenses.on_received(received.clone(), ctx);
                let generating = cache.is_some();
                let hidden = tail.forward_blocks(h1.clone().with_states(states), cache)?;
                tail.forward_top(if generating {
                    hidden.last_position()
                } else {
                    hidden
                })?
            }
            None => wire::unpack_output(kind, received.clone()),
        };
        Ok(Returned {
            kind,
            received,
            output,
        })
    }

    fn recv_output(&mut self, step: u64) -> Result<(OutputKind, TensorFrame), PartyError> {
        match recv_expected(self.transport.as_mut())? {
            Message::Output {
                step: s,
                kind,
                mut tensors,
            } => {
                check_step(step, s)?;
                if tensors.len() != 1 {
                    return Err(PartyError::BadTensor(format!(
                        "an output carries {} tensors, expected 1",
                        tensors.len()
                    )));
                }
                Ok((kind, tensors.remove(0)))
            }
            other => Err(unexpected("Output", &other)),
        }
    }

    /// Sends the gradient of the model party's output (of `kind`) and receives that of the
    /// head's activations, onto `device`.
    fn exchange_gradient(
        &mut self,
        step: u64,
        kind: OutputKind,
        grad: Tensor<3>,
        device: &Device,
    ) -> Result<Tensor<3>, PartyError> {
        self.transport.send(&Message::Gradient {
            step,
            grad: wire::wire_view(grad, kind).into_frame(self.wire_dtype)?,
        })?;
        match recv_expected(self.transport.as_mut())? {
            Message::InputGradient { step: s, grad } => {
                check_step(step, s)?;
                wire::float_tensor::<3>(&grad, device, "the input gradient")
            }
            other => Err(unexpected("InputGradient", &other)),
        }
    }
}

fn expect_kind(found: OutputKind, expected: OutputKind) -> Result<(), PartyError> {
    if found != expected {
        return Err(PartyError::BadTensor(format!(
            "the model party returned {found:?}, expected {expected:?} (do both parties use the same partition?)"
        )));
    }
    Ok(())
}

pub(crate) fn check_step(expected: u64, found: u64) -> Result<(), PartyError> {
    if expected != found {
        return Err(PartyError::StepMismatch { expected, found });
    }
    Ok(())
}

pub(crate) fn unexpected(expected: &'static str, found: &Message) -> PartyError {
    PartyError::Unexpected {
        expected,
        found: found.name(),
    }
}
