//! Defenses act on what actually crosses: the frames the model party receives carry the noise
//! and sparsity the defense claims, and training still runs through them.

use std::sync::{Arc, Mutex};

use splitlm_defenses::{Crossing, Defenses, DpNoise, Sparsification};
use splitlm_nn::TransformerSlice;
use splitlm_partition::{Partition, Trainability};
use splitlm_party::{DataParty, ModelParty, OptimizerConfig, PartyOptions, PartySlice};
use splitlm_protocol::{
    Limits, Message, ProtocolError, TensorFrame, Traffic, Transport, WireDType, in_process_pair,
};

use crate::common::{Workload, cpu};

/// Passes messages through, keeping a copy of every activation frame sent.
struct Tap<T> {
    inner: T,
    sent: Arc<Mutex<Vec<TensorFrame>>>,
}

impl<T: Transport> Transport for Tap<T> {
    fn send(&mut self, msg: &Message) -> Result<(), ProtocolError> {
        if let Message::Forward { hidden, .. } = msg {
            self.sent.lock().unwrap().push(hidden.clone());
        }
        self.inner.send(msg)
    }
    fn recv(&mut self) -> Result<Message, ProtocolError> {
        self.inner.recv()
    }
    fn traffic(&self) -> Traffic {
        self.inner.traffic()
    }
}

/// A split BERT fixture whose data party applies `defenses`; returns the data party, the tap
/// and the head's clean activations for the workload's batch.
fn defended(defenses: Defenses) -> (DataParty, Arc<Mutex<Vec<TensorFrame>>>, Vec<f32>) {
    let work = Workload::classify("bert");
    let ckpt = work.checkpoint();
    let device = cpu();
    let slices = Partition::head_body_tail(1, 1)
        .slices(ckpt.num_layers())
        .unwrap();
    let slice = |spec| {
        PartySlice::new(
            ckpt.load(spec, work.task, &device).unwrap(),
            &Trainability::default(),
            &OptimizerConfig::default(),
            10,
            0,
        )
        .unwrap()
    };
    let model = ModelParty::new(slice(&slices.model), WireDType::F32);
    let (data_end, model_end) = in_process_pair(Limits::default());
    model.spawn(model_end);
    let sent = Arc::new(Mutex::new(Vec::new()));
    let tap = Tap {
        inner: data_end,
        sent: sent.clone(),
    };
    let head = slice(&slices.data_head);
    let batch = work.batch(&device);
    let clean = head
        .model()
        .forward_blocks(head.model().embed(&batch).unwrap(), None)
        .unwrap()
        .states
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap();
    let mut data = DataParty::connect(
        head,
        slices.data_tail.as_ref().map(slice),
        Box::new(tap),
        &PartyOptions::default(),
    )
    .unwrap();
    data.set_defenses(defenses);
    (data, sent, clean)
}

#[test]
fn laplace_noise_on_the_wire_has_the_configured_scale() {
    let dp = DpNoise::laplace(4.0, 2.0, None, Crossing::Activations, 9).unwrap();
    let (mut data, sent, clean) = defended(Defenses::new(vec![Box::new(dp)]));
    let work = Workload::classify("bert");
    let batch = work.batch(&data.device());
    let labels = work.labels(&batch);
    let step = data.train_step(&batch, &labels).unwrap();
    assert!(step.loss.is_finite());
    let frame = sent.lock().unwrap()[0].to_f32().unwrap();
    let noise: Vec<f64> = frame
        .iter()
        .zip(&clean)
        .map(|(s, c)| (s - c) as f64)
        .collect();
    let mad = noise.iter().map(|n| n.abs()).sum::<f64>() / noise.len() as f64;
    // b = Δf / ε = 0.5; E|noise| = b. The fixture's batch has a few thousand values.
    assert!((mad - 0.5).abs() < 0.05, "mean |noise| {mad}");
    assert!(data.defenses().describe()[0]["params"]["scale"] == 0.5);
}

#[test]
fn sparsified_activations_cross_with_the_configured_rate() {
    let sparse = Sparsification::new(0.9, Crossing::Both, true).unwrap();
    let (mut data, sent, clean) = defended(Defenses::new(vec![Box::new(sparse)]));
    let work = Workload::classify("bert");
    let batch = work.batch(&data.device());
    let labels = work.labels(&batch);
    for _ in 0..2 {
        assert!(data.train_step(&batch, &labels).unwrap().loss.is_finite());
    }
    let frame = sent.lock().unwrap()[0].to_f32().unwrap();
    let kept = frame.iter().filter(|v| **v != 0.0).count();
    // The reference's selection: |x| below torch.quantile(|x|, 0.9) is dropped. That
    // quantile interpolates between order statistics at 0.9·(n − 1), so every value from
    // rank ⌈0.9·(n − 1)⌉ up is kept (the activations have no ties).
    assert_eq!(
        kept,
        frame.len() - (0.9 * (frame.len() - 1) as f64).ceil() as usize
    );
    for (s, c) in frame.iter().zip(&clean) {
        assert!(*s == 0.0 || s == c, "kept values cross unchanged");
    }
}

/// A test defense with every remaining hook: it replaces token ids above `max_id` by `max_id`
/// in the input, scales the sent activations by a learned gate `g` (its own module), adds
/// `λ·(g − target)²` to the objective and steps `g` by plain gradient descent.
struct GateAndClip {
    max_id: i64,
    gate: burn::tensor::Tensor<1>,
    leaf: Option<burn::tensor::Tensor<1>>,
    target: f64,
    weight: f64,
    lr: f64,
}

impl splitlm_defenses::Defense for GateAndClip {
    fn name(&self) -> &'static str {
        "gate_and_clip"
    }
    fn params(&self) -> serde_json::Value {
        serde_json::json!({})
    }
    fn on_input(
        &mut self,
        batch: splitlm_nn::TokenBatch,
        _ctx: &splitlm_defenses::HookContext,
    ) -> splitlm_nn::TokenBatch {
        splitlm_nn::TokenBatch {
            input_ids: batch.input_ids.clamp_max(self.max_id),
            ..batch
        }
    }
    fn on_activation(
        &mut self,
        hidden: burn::tensor::Tensor<3>,
        ctx: &splitlm_defenses::HookContext,
    ) -> burn::tensor::Tensor<3> {
        let gate = burn::tensor::Tensor::from_inner(self.gate.clone());
        let gate = if ctx.training {
            gate.require_grad()
        } else {
            gate
        };
        self.leaf = Some(gate.clone());
        hidden * gate.unsqueeze::<3>()
    }
    fn extra_loss(
        &mut self,
        _ctx: &splitlm_defenses::HookContext,
    ) -> Option<burn::tensor::Tensor<1>> {
        let gate = self.leaf.clone()?;
        Some((gate - self.target).powi_scalar(2).sum() * self.weight)
    }
    fn is_trainable(&self) -> bool {
        true
    }
    fn update(&mut self, grads: &burn::tensor::Gradients, _ctx: &splitlm_defenses::HookContext) {
        let grad = self.leaf.take().and_then(|leaf| leaf.grad(grads));
        if let Some(grad) = grad {
            self.gate = self.gate.clone() - grad * self.lr;
        }
    }
}

#[test]
fn input_extra_loss_and_own_module_hooks_take_part_in_training() {
    let device = cpu();
    let gate = GateAndClip {
        max_id: 40,
        gate: burn::tensor::Tensor::ones([1], &device.clone().inner()),
        leaf: None,
        target: 0.5,
        weight: 10.0,
        lr: 0.02,
    };
    let (mut data, sent, _) = defended(Defenses::new(vec![Box::new(gate)]));
    let work = Workload::classify("bert");
    let batch = work.batch(&device);
    let labels = work.labels(&batch);
    // What the head makes of the clipped ids: the first frame must be exactly that (g = 1).
    let clipped = splitlm_nn::TokenBatch {
        input_ids: batch.input_ids.clone().clamp_max(40),
        ..batch.clone()
    };
    assert_ne!(
        clipped.input_ids.clone().into_data(),
        batch.input_ids.clone().into_data(),
        "the fixture has ids above 40"
    );
    let ckpt = work.checkpoint();
    let slices = Partition::head_body_tail(1, 1)
        .slices(ckpt.num_layers())
        .unwrap();
    let head = ckpt.load(&slices.data_head, work.task, &device).unwrap();
    let expected = head
        .forward_blocks(head.embed(&clipped).unwrap(), None)
        .unwrap()
        .states
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap();
    for _ in 0..20 {
        assert!(data.train_step(&batch, &labels).unwrap().loss.is_finite());
    }
    let frames = sent.lock().unwrap();
    let first = frames[0].to_f32().unwrap();
    assert!(crate::common::relative_error(&first, &expected) < 1e-6);
    // The gate learned: the extra loss pulls it from 1 towards 0.5 (20 steps of lr 0.02 on
    // 10·(g − 0.5)²: about 1 − 0.5·(1 − 0.8^20)), so the last frame is the head's output
    // scaled down.
    let last = frames[19].to_f32().unwrap();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let ratio = norm(&last) / norm(&first);
    assert!(ratio < 0.7 && ratio > 0.4, "sent norm ratio {ratio}");
}

/// Records the order in which the label and gradient hooks arrive, and the labels seen.
struct HookOrder(Arc<Mutex<Vec<String>>>);

impl splitlm_defenses::Defense for HookOrder {
    fn name(&self) -> &'static str {
        "hook_order"
    }
    fn params(&self) -> serde_json::Value {
        serde_json::json!({})
    }
    fn on_labels(&mut self, labels: &splitlm_nn::Labels, ctx: &splitlm_defenses::HookContext) {
        let splitlm_nn::Labels::Classes(ids) = labels else {
            panic!("a classification step's labels are classes");
        };
        let ids: Vec<i64> = ids.clone().into_data().try_into_vec_as().unwrap();
        self.0
            .lock()
            .unwrap()
            .push(format!("labels {} {ids:?}", ctx.step));
    }
    fn on_gradient(
        &mut self,
        grad: burn::tensor::Tensor<3>,
        ctx: &splitlm_defenses::HookContext,
    ) -> burn::tensor::Tensor<3> {
        self.0
            .lock()
            .unwrap()
            .push(format!("gradient {}", ctx.step));
        grad
    }
}

#[test]
fn the_step_labels_reach_defenses_before_the_gradient_and_only_in_training() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let (mut data, _, _) = defended(Defenses::new(vec![Box::new(HookOrder(calls.clone()))]));
    let work = Workload::classify("bert");
    let device = cpu();
    let batch = work.batch(&device);
    let labels = work.labels(&batch);
    let splitlm_nn::Labels::Classes(ids) = &labels else {
        panic!("classification labels")
    };
    let ids: Vec<i64> = ids.clone().into_data().try_into_vec_as().unwrap();
    data.train_step(&batch, &labels).unwrap();
    data.eval_step(&batch).unwrap();
    data.train_step(&batch, &labels).unwrap();
    let calls = calls.lock().unwrap();
    // Two training steps, each labels then gradient with the same step counter; the evaluation
    // in between calls neither hook.
    assert_eq!(calls.len(), 4, "{calls:?}");
    for pair in calls.chunks(2) {
        let step = pair[1].strip_prefix("gradient ").expect("gradient second");
        assert_eq!(pair[0], format!("labels {step} {ids:?}"));
    }
    assert_ne!(calls[1], calls[3], "two different steps");
}
