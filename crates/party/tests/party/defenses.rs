//! Defenses act on what actually crosses: the frames the model party receives carry the noise
//! and sparsity the defense claims, and training still runs through them.

use std::sync::{Arc, Mutex};

use splitlm_defenses::{Defenses, DpNoise, DpTarget, Sparsification};
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
    let dp = DpNoise::laplace(4.0, 2.0, None, DpTarget::Activations, 9).unwrap();
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
    let sparse = Sparsification::new(0.9, DpTarget::Both, true).unwrap();
    let (mut data, sent, clean) = defended(Defenses::new(vec![Box::new(sparse)]));
    let work = Workload::classify("bert");
    let batch = work.batch(&data.device());
    let labels = work.labels(&batch);
    for _ in 0..2 {
        assert!(data.train_step(&batch, &labels).unwrap().loss.is_finite());
    }
    let frame = sent.lock().unwrap()[0].to_f32().unwrap();
    let kept = frame.iter().filter(|v| **v != 0.0).count();
    assert_eq!(
        kept,
        frame.len() - (frame.len() as f64 * 0.9).round() as usize
    );
    for (s, c) in frame.iter().zip(&clean) {
        assert!(*s == 0.0 || s == c, "kept values cross unchanged");
    }
}
