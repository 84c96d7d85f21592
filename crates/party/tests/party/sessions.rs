//! Sessions: several data parties on one model party, evaluation without gradients, traffic
//! accounting, and peers that break the protocol.

use burn::tensor::{Int, Tensor, TensorData};
use splitlm_nn::testing::values;
use splitlm_nn::{Labels, SliceSpec, TransformerSlice};
use splitlm_partition::{Partition, Trainability};
use splitlm_party::{DataParty, ModelParty, OptimizerConfig, PartyError, PartyOptions, PartySlice};
use splitlm_protocol::{
    Limits, Message, Mode, PROTOCOL_VERSION, Role, TensorFrame, Transport, WireDType,
    in_process_pair,
};

use crate::common::{SEED, TOTAL_STEPS, Workload, cpu, relative_error, split};

fn classes(values: Vec<i64>) -> Labels {
    let n = values.len();
    Labels::Classes(Tensor::<1, Int>::from_data(
        TensorData::new(values, [n]),
        &cpu(),
    ))
}

/// A data party of the llama fixture (HBT 1/1) on a shared model party.
fn data_party(
    model: &ModelParty,
    name: &str,
) -> (
    DataParty,
    std::thread::JoinHandle<Result<splitlm_party::SessionReport, PartyError>>,
) {
    let work = Workload::classify("llama");
    let ckpt = work.checkpoint();
    let slices = Partition::head_body_tail(1, 1)
        .slices(ckpt.num_layers())
        .unwrap();
    let load = |spec: &SliceSpec| {
        let m = ckpt.load(spec, work.task, &cpu()).unwrap();
        let mut s = PartySlice::new(
            m,
            &Trainability::default(),
            &OptimizerConfig::sgd(0.1),
            TOTAL_STEPS,
            SEED,
        )
        .unwrap();
        s.record_gradients(true);
        s
    };
    let (a, b) = in_process_pair(Limits::default());
    let server = model.spawn(b);
    let options = PartyOptions {
        party_id: name.into(),
        ..PartyOptions::default()
    };
    let data = DataParty::connect(
        load(&slices.data_head),
        slices.data_tail.as_ref().map(load),
        Box::new(a),
        &options,
    )
    .unwrap();
    (data, server)
}

fn frozen_body() -> ModelParty {
    let work = Workload::classify("llama");
    let ckpt = work.checkpoint();
    let slices = Partition::head_body_tail(1, 1)
        .slices(ckpt.num_layers())
        .unwrap();
    let body = ckpt.load(&slices.model, work.task, &cpu()).unwrap();
    ModelParty::new(PartySlice::frozen(body).unwrap(), WireDType::F32)
}

/// Losses and head gradients of `steps` training steps with `labels`.
fn run(mut party: DataParty, labels: Vec<i64>, steps: usize) -> Vec<(f32, Vec<f32>)> {
    let work = Workload::classify("llama");
    let batch = work.batch(&party.device());
    let labels = classes(labels);
    let mut seen = Vec::new();
    for _ in 0..steps {
        let loss = party.train_step(&batch, &labels).unwrap().loss;
        let grads = party.head().recorded_gradients().unwrap();
        seen.push((loss, grads.iter().flat_map(|g| g.values.clone()).collect()));
    }
    party.finish().unwrap();
    seen
}

#[test]
fn concurrent_data_parties_get_only_their_own_gradients() {
    // Alone: each party's run against its own model party.
    let solo_a = run(data_party(&frozen_body(), "a").0, vec![0, 1, 2, 0], 3);
    let solo_b = run(data_party(&frozen_body(), "b").0, vec![2, 2, 1, 1], 3);
    // Together on one model party, stepping concurrently from two threads.
    let shared = frozen_body();
    let (a, server_a) = data_party(&shared, "a");
    let (b, server_b) = data_party(&shared, "b");
    let thread_a = std::thread::spawn(move || run(a, vec![0, 1, 2, 0], 3));
    let thread_b = std::thread::spawn(move || run(b, vec![2, 2, 1, 1], 3));
    let (together_a, together_b) = (thread_a.join().unwrap(), thread_b.join().unwrap());
    for (solo, together) in [(solo_a, together_a), (solo_b, together_b)] {
        for ((l1, g1), (l2, g2)) in solo.iter().zip(&together) {
            assert_eq!(l1, l2);
            assert!(relative_error(g2, g1) < 1e-6);
        }
    }
    let (ra, rb) = (
        server_a.join().unwrap().unwrap(),
        server_b.join().unwrap().unwrap(),
    );
    assert_ne!(ra.session, rb.session);
    assert_eq!((ra.train_steps, rb.train_steps), (3, 3));
}

#[test]
fn evaluation_sends_no_gradient_and_changes_nothing() {
    let work = Workload::classify("gpt2");
    let mut s = split(
        &work,
        Partition::head_body_tail(1, 1),
        &Trainability::default(),
        &OptimizerConfig::sgd(0.1),
        &cpu(),
        &cpu(),
    );
    let before = s.model.with_slice(|m| values(named_first(m)));
    let batch = work.batch(&s.data.device());
    let output = s.data.eval_step(&batch).unwrap().class_logits().unwrap();
    let whole = work
        .checkpoint()
        .load(&SliceSpec::full(3), work.task, &cpu().inner())
        .unwrap()
        .forward(&batch.to_device(&cpu().inner()), None)
        .unwrap()
        .class_logits()
        .unwrap();
    assert!(relative_error(&values(output), &values(whole)) < 1e-6);
    let traffic = s.data.traffic();
    assert_eq!(traffic.messages_sent, 2, "Hello and one Forward");
    assert_eq!(traffic.messages_received, 2, "HelloAck and one Output");
    s.data.finish().unwrap();
    let report = s.server.join().unwrap().unwrap();
    assert_eq!((report.train_steps, report.eval_steps), (0, 1));
    assert_eq!(s.model.with_slice(|m| values(named_first(m))), before);
}

fn named_first(slice: &PartySlice) -> Tensor<1> {
    splitlm_partition::named_parameters(slice.model(), slice.model().spec())
        .remove(0)
        .value
}

#[test]
fn a_training_step_moves_the_activations_and_their_gradient_once_each_way() {
    let work = Workload::classify("llama");
    for (dtype, bytes) in [
        (WireDType::F32, 4),
        (WireDType::F16, 2),
        (WireDType::BF16, 2),
    ] {
        let mut s = split(
            &work,
            Partition::head_body_tail(1, 1),
            &Trainability::default(),
            &OptimizerConfig::sgd(0.1),
            &cpu(),
            &cpu(),
        );
        let batch = work.batch(&s.data.device());
        let [b, t] = batch.dims();
        let labels = work.labels(&batch);
        let hidden = (b * t * 32 * bytes) as u64;
        let mut data = s.data;
        if dtype != WireDType::F32 {
            // Rebuild with the wire dtype on both sides.
            data.finish().unwrap();
            s.server.join().unwrap().unwrap();
            let ckpt = work.checkpoint();
            let slices = Partition::head_body_tail(1, 1).slices(3).unwrap();
            let load = |spec: &SliceSpec| {
                PartySlice::new(
                    ckpt.load(spec, work.task, &cpu()).unwrap(),
                    &Trainability::default(),
                    &OptimizerConfig::sgd(0.1),
                    10,
                    0,
                )
                .unwrap()
            };
            let model = ModelParty::new(load(&slices.model), dtype);
            let (a, bb) = in_process_pair(Limits::default());
            s.server = model.spawn(bb);
            let options = PartyOptions {
                wire_dtype: dtype,
                ..PartyOptions::default()
            };
            data = DataParty::connect(
                load(&slices.data_head),
                slices.data_tail.as_ref().map(load),
                Box::new(a),
                &options,
            )
            .unwrap();
        }
        let step = data.train_step(&batch, &labels).unwrap();
        assert!(step.loss.is_finite());
        // Sent: H1 (+ mask and positions as i64) and ∂L/∂H2; received: H2 and ∂L/∂H1.
        let ints = (2 * b * t * 8) as u64;
        let overhead_sent = step.bytes_sent - 2 * hidden - ints;
        let overhead_received = step.bytes_received - 2 * hidden;
        assert!(
            overhead_sent < 256 && overhead_received < 256,
            "{dtype:?}: {step:?}"
        );
        println!(
            "{dtype:?}: {} bytes sent, {} received per step ({} of activations each way)",
            step.bytes_sent,
            step.bytes_received,
            2 * hidden
        );
        data.finish().unwrap();
        s.server.join().unwrap().unwrap();
    }
}

/// A model party and the raw other end of its transport, past the handshake.
fn raw_session() -> (
    ModelParty,
    Box<dyn Transport>,
    std::thread::JoinHandle<Result<splitlm_party::SessionReport, PartyError>>,
) {
    let model = frozen_body();
    let (mut peer, end) = in_process_pair(Limits::default());
    let server = model.spawn(end);
    peer.send(&Message::Hello {
        version: PROTOCOL_VERSION,
        role: Role::DataParty,
        party_id: "raw".into(),
        session_key: String::new(),
        terms: Vec::new(),
    })
    .unwrap();
    assert!(matches!(peer.recv().unwrap(), Message::HelloAck { .. }));
    (model, Box::new(peer), server)
}

fn forward(hidden: TensorFrame, seq: usize) -> Message {
    Message::Forward {
        step: 0,
        mode: Mode::Train,
        hidden,
        attention_mask: TensorFrame::from_i64(vec![1, seq], &vec![1; seq]).unwrap(),
        positions: TensorFrame::from_i64(vec![1, seq], &(0..seq as i64).collect::<Vec<_>>())
            .unwrap(),
    }
}

fn expect_refusal(message: Message, needle: &str) {
    let (_model, mut peer, server) = raw_session();
    peer.send(&message).unwrap();
    match peer.recv().unwrap() {
        Message::Error { message, .. } => assert!(message.contains(needle), "{message}"),
        other => panic!("expected an Error, got {}", other.name()),
    }
    let err = server.join().unwrap().unwrap_err().to_string();
    assert!(err.contains(needle), "{err}");
}

#[test]
fn malformed_activations_are_refused_with_a_reason() {
    let mut values = vec![0.5f32; 3 * 32];
    values[40] = f32::NAN;
    let nan = TensorFrame::from_f32(vec![1, 3, 32], &values, WireDType::F32).unwrap();
    expect_refusal(forward(nan, 3), "non-finite");
    let narrow = TensorFrame::from_f32(vec![1, 3, 16], &[0.1; 48], WireDType::F32).unwrap();
    expect_refusal(forward(narrow, 3), "hidden");
    let flat = TensorFrame::from_f32(vec![3, 32], &[0.1; 96], WireDType::F32).unwrap();
    expect_refusal(forward(flat, 3), "rank 3");
    let grad = TensorFrame::from_f32(vec![1], &[0.0], WireDType::F32).unwrap();
    expect_refusal(
        Message::Gradient { step: 0, grad },
        "expected Forward, SaveState, RestoreState or End",
    );
}

#[test]
fn a_wrong_gradient_is_refused_and_the_model_party_serves_on() {
    let (model, mut peer, server) = raw_session();
    let hidden = TensorFrame::from_f32(vec![1, 3, 32], &[0.1; 96], WireDType::F32).unwrap();
    peer.send(&forward(hidden, 3)).unwrap();
    assert!(matches!(peer.recv().unwrap(), Message::Output { .. }));
    let wrong = TensorFrame::from_f32(vec![1, 2, 32], &[0.1; 64], WireDType::F32).unwrap();
    peer.send(&Message::Gradient {
        step: 0,
        grad: wrong,
    })
    .unwrap();
    match peer.recv().unwrap() {
        Message::Error { message, .. } => assert!(message.contains("output gradient"), "{message}"),
        other => panic!("expected an Error, got {}", other.name()),
    }
    assert!(server.join().unwrap().is_err());
    // The slice is intact and a new session trains.
    let (party, server) = data_party(&model, "after");
    let seen = run(party, vec![0, 1, 2, 0], 1);
    assert!(seen[0].0.is_finite());
    server.join().unwrap().unwrap();
}

#[test]
fn parties_cut_differently_get_a_clear_error() {
    let model = frozen_body();
    // A Head-Tail data party against a Head-Body-Tail body: hidden states come back where
    // the task head's output was expected.
    let work = Workload::classify("llama");
    let ckpt = work.checkpoint();
    let head =
        PartySlice::frozen(ckpt.load(&SliceSpec::bottom(2), work.task, &cpu()).unwrap()).unwrap();
    let (a, b) = in_process_pair(Limits::default());
    let server = model.spawn(b);
    let mut data = DataParty::connect(head, None, Box::new(a), &PartyOptions::default()).unwrap();
    let batch = work.batch(&data.device());
    let labels = work.labels(&batch);
    let err = data.train_step(&batch, &labels).unwrap_err();
    assert!(
        err.to_string()
            .contains("do not fit a head producing hidden states"),
        "{err}"
    );
    drop(data);
    let _ = server.join().unwrap();
}
