//! Defenses the data party applies where its tensors cross to the model party.
//!
//! A [`Defense`] gets hooks at each crossing point (docs/ARCHITECTURE.md, "Defense hooks"):
//! the input tokens before the head embeds them, the head's output before it is sent, the
//! body's output when it arrives (Head–Body–Tail), and the gradient sent back; and it may add
//! a term to the data party's objective and train modules of its own with its own optimizer.
//! Defenses compose as a list ([`Defenses`]), applied in order. A hook on the head's output
//! must stay differentiable in its input: the data party backpropagates the model party's
//! gradient through it (noise passes gradients unchanged; sparsification passes them
//! straight through, as the reference does, or through the kept elements only).
//!
//! Each defense defaults to what the reference system, VFLAIR-LLM (FLAIR-THU/VFLAIR-LLM at
//! ff18565), does; where splitlm had its own behaviour before, that behaviour is a named option
//! (see [`DefenseConfig`]). `fixtures/vflair/defenses.json`, written by the reference's own
//! functions (`fixtures/vflair/defenses.py`), pins the defaults.

mod adversarial;
mod config;
mod dp;
mod env;
mod mid;
mod obfuscator;
mod snd;
mod sparsify;
mod text;

use burn::tensor::{Gradients, Tensor};
use splitlm_nn::{Labels, TokenBatch};

pub use adversarial::AdversarialSettings;
pub use config::DefenseConfig;
pub use dp::{Crossing, DpNoise, Laplace, gaussian_sigma};
pub use env::{BodyRunner, DefenseEnv, HeadRunner, Needs, TextCodec};
pub use mid::{KlScale, Mid, MidInit, MidPosition, MidSettings};
pub use obfuscator::{ClusterMethod, ObfuscatorSettings, TextObfuscator, TokenClusters};
pub use snd::SndSettings;
pub use sparsify::{Selection, Sparsification};
pub use text::{CusTextSettings, RanTextSettings, SanTextSettings, TokenJoin};

#[cfg(test)]
mod fixtures;

/// Where in a run a hook is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookContext {
    /// The data party's step counter.
    pub step: u64,
    /// Whether the step trains (a gradient will follow).
    pub training: bool,
}

/// A defense: hooks at the crossing points, each the identity unless overridden.
pub trait Defense: Send {
    /// The defense's name in records.
    fn name(&self) -> &'static str;

    /// Its parameters, for records.
    fn params(&self) -> serde_json::Value;

    /// The input tokens before the head embeds them (text-level defenses replace tokens).
    fn on_input(&mut self, batch: TokenBatch, _ctx: &HookContext) -> TokenBatch {
        batch
    }

    /// The head's output `[b, s, d]` before it is sent.
    fn on_activation(&mut self, hidden: Tensor<3>, _ctx: &HookContext) -> Tensor<3> {
        hidden
    }

    /// The body's output as it arrives (Head–Body–Tail).
    fn on_received(&mut self, hidden: Tensor<3>, _ctx: &HookContext) -> Tensor<3> {
        hidden
    }

    /// The labels of a training step, before [`Defense::on_gradient`] of the same step (a
    /// label adversary at the tail learns to predict them from the gradient sent back). The
    /// data party never sends them; a defense that keeps them keeps them for that step only.
    fn on_labels(&mut self, _labels: &Labels, _ctx: &HookContext) {}

    /// The gradient the data party sends to the model party.
    fn on_gradient(&mut self, grad: Tensor<3>, _ctx: &HookContext) -> Tensor<3> {
        grad
    }

    /// A term added to the data party's objective on its head side (a bottleneck's KL, an
    /// adversary's loss…), built from what [`Defense::on_activation`] computed in the same
    /// training step: it is backpropagated together with the model party's gradient.
    fn extra_loss(&mut self, _ctx: &HookContext) -> Option<Tensor<1>> {
        None
    }

    /// Whether the defense trains modules of its own on the head side (then the head-side
    /// backward pass runs, and [`Defense::update`] is called, even when the head itself is
    /// frozen). Tail-side modules train through [`Defense::update_tail`], whose backward pass
    /// runs in every training step anyway.
    fn is_trainable(&self) -> bool {
        false
    }

    /// Updates the defense's own modules with its own optimizer from the gradients of the
    /// head-side backward pass of a training step.
    fn update(&mut self, _grads: &Gradients, _ctx: &HookContext) {}

    /// A term added to the data party's loss at its tail (Head–Body–Tail), built from what
    /// [`Defense::on_received`] computed in the same training step (a bottleneck's KL at the
    /// tail): it joins the task loss before the tail's backward pass, so it also shapes the
    /// gradient sent back, as the reference adds its tail terms to the loss.
    fn tail_loss(&mut self, _ctx: &HookContext) -> Option<Tensor<1>> {
        None
    }

    /// Updates the defense's own tail-side modules from the gradients of the tail's backward
    /// pass of a training step (the task loss plus every [`Defense::tail_loss`]), before the
    /// tail's optimizer consumes them.
    fn update_tail(&mut self, _grads: &Gradients, _ctx: &HookContext) {}
}

/// Defenses applied in order.
#[derive(Default)]
pub struct Defenses(Vec<Box<dyn Defense>>);

impl Defenses {
    /// No defense.
    pub fn none() -> Self {
        Self(Vec::new())
    }

    /// `list`, applied in order.
    pub fn new(list: Vec<Box<dyn Defense>>) -> Self {
        Self(list)
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Names and parameters, for records.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.0
                .iter()
                .map(|d| serde_json::json!({ "name": d.name(), "params": d.params() }))
                .collect(),
        )
    }

    /// Every defense's [`Defense::on_input`], in order.
    pub fn on_input(&mut self, batch: TokenBatch, ctx: &HookContext) -> TokenBatch {
        self.0.iter_mut().fold(batch, |b, d| d.on_input(b, ctx))
    }

    /// The sum of every defense's [`Defense::extra_loss`], if any has one.
    pub fn extra_loss(&mut self, ctx: &HookContext) -> Option<Tensor<1>> {
        self.0
            .iter_mut()
            .filter_map(|d| d.extra_loss(ctx))
            .reduce(|a, b| a + b)
    }

    /// Whether any defense trains modules of its own on the head side.
    pub fn is_trainable(&self) -> bool {
        self.0.iter().any(|d| d.is_trainable())
    }

    /// Every defense's [`Defense::update`].
    pub fn update(&mut self, grads: &Gradients, ctx: &HookContext) {
        for d in &mut self.0 {
            d.update(grads, ctx);
        }
    }

    /// The sum of every defense's [`Defense::tail_loss`], if any has one.
    pub fn tail_loss(&mut self, ctx: &HookContext) -> Option<Tensor<1>> {
        self.0
            .iter_mut()
            .filter_map(|d| d.tail_loss(ctx))
            .reduce(|a, b| a + b)
    }

    /// Every defense's [`Defense::update_tail`].
    pub fn update_tail(&mut self, grads: &Gradients, ctx: &HookContext) {
        for d in &mut self.0 {
            d.update_tail(grads, ctx);
        }
    }

    /// Every defense's [`Defense::on_activation`], in order.
    pub fn on_activation(&mut self, hidden: Tensor<3>, ctx: &HookContext) -> Tensor<3> {
        self.0
            .iter_mut()
            .fold(hidden, |h, d| d.on_activation(h, ctx))
    }

    /// Every defense's [`Defense::on_received`], in order.
    pub fn on_received(&mut self, hidden: Tensor<3>, ctx: &HookContext) -> Tensor<3> {
        self.0.iter_mut().fold(hidden, |h, d| d.on_received(h, ctx))
    }

    /// Every defense's [`Defense::on_labels`].
    pub fn on_labels(&mut self, labels: &Labels, ctx: &HookContext) {
        for d in &mut self.0 {
            d.on_labels(labels, ctx);
        }
    }

    /// Every defense's [`Defense::on_gradient`], in order.
    pub fn on_gradient(&mut self, grad: Tensor<3>, ctx: &HookContext) -> Tensor<3> {
        self.0.iter_mut().fold(grad, |g, d| d.on_gradient(g, ctx))
    }
}

/// A defense setting that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("defense {defense}: {reason}")]
pub struct DefenseError {
    /// The defense.
    pub defense: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// Host noise, uploaded to the tensor's device: the same draws on every backend.
pub(crate) fn noise_like(like: &Tensor<3>, mut draw: impl FnMut() -> f64) -> Tensor<3> {
    let dims = like.dims();
    let n: usize = dims.iter().product();
    let values: Vec<f32> = (0..n).map(|_| draw() as f32).collect();
    Tensor::from_data(burn::tensor::TensorData::new(values, dims), &like.device())
}
