//! The data party: holds the text, the labels and the loss; runs the head (and, in
//! Head–Body–Tail, the tail); never sends labels.

mod generate;

pub use generate::{ByteCount, SplitGeneration};

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use splitlm_defenses::{Defenses, HookContext};
use splitlm_nn::{HeadOutput, Hidden, Labels, TokenBatch, TransformerSlice, loss};
use splitlm_protocol::{
    Message, Mode, OutputKind, PROTOCOL_VERSION, Role, Traffic, Transport, WireDType,
};

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

/// The data party of a split model.
pub struct DataParty {
    head: PartySlice,
    tail: Option<PartySlice>,
    transport: Box<dyn Transport>,
    device: Device,
    wire_dtype: WireDType,
    session: u64,
    next_step: u64,
    defenses: Defenses,
}

impl DataParty {
    /// Opens a session with the model party over `transport`. `tail` is the data party's
    /// tail in Head–Body–Tail, `None` in Head–Tail. Both slices live on one device.
    pub fn connect(
        head: PartySlice,
        tail: Option<PartySlice>,
        mut transport: Box<dyn Transport>,
        options: &PartyOptions,
    ) -> Result<Self, PartyError> {
        transport.send(&Message::Hello {
            version: PROTOCOL_VERSION,
            role: Role::DataParty,
            party_id: options.party_id.clone(),
        })?;
        let session = match recv_expected(transport.as_mut())? {
            Message::HelloAck { session, .. } => session,
            other => return Err(unexpected("HelloAck", &other)),
        };
        let device = head
            .model()
            .devices()
            .into_iter()
            .next()
            .expect("a head holds the embeddings, so it has parameters");
        Ok(Self {
            head,
            tail,
            transport,
            device,
            wire_dtype: options.wire_dtype,
            session,
            next_step: 0,
            defenses: Defenses::none(),
        })
    }

    /// Applies `defenses` at every crossing from now on (see [`splitlm_defenses`]).
    pub fn set_defenses(&mut self, defenses: Defenses) {
        self.defenses = defenses;
    }

    /// The defenses in force.
    pub fn defenses(&self) -> &Defenses {
        &self.defenses
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

    /// Bytes and messages moved so far.
    pub fn traffic(&self) -> Traffic {
        self.transport.traffic()
    }

    /// One training step on `batch` (on this party's device) against `labels`: forward
    /// through both parties, loss here, backward through both, every slice updated.
    pub fn train_step(
        &mut self,
        batch: &TokenBatch,
        labels: &Labels,
    ) -> Result<TrainStep, PartyError> {
        let before = self.traffic();
        let step = self.take_step();
        let ctx = HookContext {
            step,
            training: true,
        };
        let batch = self.defenses.on_input(batch.clone(), &ctx);
        let model = self.head.model();
        let h1 = model.forward_blocks(model.embed(&batch)?, None)?;
        let (mask, positions) = (h1.attention_mask.clone(), h1.positions.clone());
        // What crosses is the defended activation; the head's gradient flows back through it.
        let sent = self.defenses.on_activation(h1.states.clone(), &ctx);
        let extra_loss = self.defenses.extra_loss(&ctx);
        self.send_forward(step, Mode::Train, &sent, mask.clone(), &positions)?;

        let (kind, frame) = self.recv_output(step)?;
        let device = self.device();
        let received = wire::output_tensor(kind, &frame, &device)?.require_grad();
        let output = match &self.tail {
            Some(tail) => {
                expect_kind(kind, OutputKind::Hidden)?;
                expect_shape(&received.dims(), &h1.states.dims(), "the body's output")?;
                let hidden = Hidden {
                    states: self.defenses.on_received(received.clone(), &ctx),
                    attention_mask: mask,
                    positions,
                };
                tail.model()
                    .forward_top(tail.model().forward_blocks(hidden, None)?)?
            }
            None => wire::unpack_output(kind, received.clone()),
        };
        let loss = loss(&output, labels)?;
        let loss_value: f32 = loss.clone().into_scalar();
        if !loss_value.is_finite() {
            return Err(PartyError::BadTensor(format!(
                "the loss of step {step} is {loss_value}"
            )));
        }
        let grads = loss.backward();
        let grad = received
            .grad(&grads)
            .expect("the received output is a leaf of the loss");
        let grad = self.defenses.on_gradient(grad, &ctx);
        if let Some(tail) = &mut self.tail {
            tail.apply_gradients(grads);
        }
        self.transport.send(&Message::Gradient {
            step,
            grad: wire::wire_view(grad, kind).into_frame(self.wire_dtype)?,
        })?;

        let input_grad = match recv_expected(self.transport.as_mut())? {
            Message::InputGradient { step: s, grad } => {
                check_step(step, s)?;
                grad
            }
            other => return Err(unexpected("InputGradient", &other)),
        };
        let input_grad = wire::float_tensor::<3>(&input_grad, &device, "the input gradient")?;
        expect_shape(&input_grad.dims(), &h1.states.dims(), "the input gradient")?;
        if self.head.is_trainable() || self.defenses.is_trainable() {
            // The head's objective: the model party's gradient on what was sent, plus the
            // defenses' own terms.
            let mut objective = (sent * input_grad).sum();
            if let Some(extra) = extra_loss {
                objective = objective + extra;
            }
            let grads = objective.backward();
            self.defenses.update(&grads, &ctx);
            if self.head.is_trainable() {
                self.head.apply_gradients(grads);
            }
        }
        let after = self.traffic();
        Ok(TrainStep {
            step,
            loss: loss_value,
            bytes_sent: after.bytes_sent - before.bytes_sent,
            bytes_received: after.bytes_received - before.bytes_received,
        })
    }

    /// Runs `batch` through the split model without training (nothing is sent back). The
    /// output lives on this party's device without autodiff.
    pub fn eval_step(&mut self, batch: &TokenBatch) -> Result<HeadOutput, PartyError> {
        let step = self.take_step();
        let ctx = HookContext {
            step,
            training: false,
        };
        let head = self.head.model().valid();
        let device = self.device().inner();
        let batch = self.defenses.on_input(batch.to_device(&device), &ctx);
        let h1 = head.forward_blocks(head.embed(&batch)?, None)?;
        let sent = self.defenses.on_activation(h1.states.clone(), &ctx);
        self.send_forward(
            step,
            Mode::Eval,
            &sent,
            h1.attention_mask.clone(),
            &h1.positions,
        )?;
        let (kind, frame) = self.recv_output(step)?;
        let received = wire::output_tensor(kind, &frame, &device)?;
        match &self.tail {
            Some(tail) => {
                expect_kind(kind, OutputKind::Hidden)?;
                expect_shape(&received.dims(), &h1.states.dims(), "the body's output")?;
                let tail = tail.model().valid();
                let hidden = h1.with_states(self.defenses.on_received(received, &ctx));
                Ok(tail.forward_top(tail.forward_blocks(hidden, None)?)?)
            }
            None => Ok(wire::unpack_output(kind, received)),
        }
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
        self.transport.send(&Message::End {
            reason: "data party finished".into(),
        })?;
        Ok((self.head, self.tail))
    }

    fn take_step(&mut self) -> u64 {
        let step = self.next_step;
        self.next_step += 1;
        step
    }

    fn send_forward(
        &mut self,
        step: u64,
        mode: Mode,
        states: &Tensor<3>,
        attention_mask: Tensor<2, Int>,
        positions: &Tensor<2, Int>,
    ) -> Result<(), PartyError> {
        self.transport.send(&Message::Forward {
            step,
            mode,
            hidden: wire::float_frame(states.clone(), self.wire_dtype)?,
            attention_mask: wire::int_frame(attention_mask)?,
            positions: wire::int_frame(positions.clone())?,
        })?;
        Ok(())
    }

    fn recv_output(
        &mut self,
        step: u64,
    ) -> Result<(OutputKind, splitlm_protocol::TensorFrame), PartyError> {
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
