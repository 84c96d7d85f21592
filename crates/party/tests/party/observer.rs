//! Observers on the model party: told of every training step it asks for, never of an
//! evaluation step.

use std::sync::{Arc, Mutex};

use splitlm_partition::{Partition, Trainability};
use splitlm_party::{ObserveRequest, ObservedStep, OptimizerConfig, StepObserver};
use splitlm_protocol::OutputKind;

use crate::common::{Workload, cpu, split};

/// What the test's observer kept of one step.
#[derive(Debug, PartialEq)]
struct Seen {
    session: u64,
    step: u64,
    hidden: Vec<usize>,
    output_kind: OutputKind,
    weight_gradients: bool,
    slices: bool,
}

/// Keeps every training step; the weight gradients and slices of the second one only.
struct Log(Arc<Mutex<Vec<Seen>>>);

impl StepObserver for Log {
    fn wants(&self, _session: u64, train_step: u64) -> Option<ObserveRequest> {
        Some(ObserveRequest {
            weight_gradients: train_step == 1,
            slices: train_step == 1,
        })
    }

    fn on_train_step(&mut self, step: ObservedStep<'_>) {
        assert_eq!(step.slice_before.is_some(), step.slice_after.is_some());
        self.0.lock().unwrap().push(Seen {
            session: step.session,
            step: step.step,
            hidden: step.hidden.shape.clone(),
            output_kind: step.output_kind,
            weight_gradients: !step.weight_gradients.is_empty(),
            slices: step.slice_before.is_some(),
        });
    }
}

#[test]
fn an_observer_sees_each_training_step_and_no_evaluation_step() {
    let work = Workload::classify("llama");
    let mut s = split(
        &work,
        Partition::head_body_tail(1, 1),
        &Trainability::default(),
        &OptimizerConfig::sgd(0.1),
        &cpu(),
        &cpu(),
    );
    let log = Arc::new(Mutex::new(Vec::new()));
    s.model.set_observer(Box::new(Log(log.clone())));
    let batch = work.batch(&s.data.device());
    let labels = work.labels(&batch);
    for _ in 0..3 {
        s.data.train_step(&batch, &labels).unwrap();
        s.data.eval_step(&batch).unwrap();
    }
    let session = s.data.session();
    s.data.finish().unwrap();
    let report = s.server.join().unwrap().unwrap();
    assert_eq!((report.train_steps, report.eval_steps), (3, 3));

    let [b, t] = batch.dims();
    let seen = |step, extras| Seen {
        session,
        step,
        hidden: vec![b, t, 32],
        output_kind: OutputKind::Hidden,
        weight_gradients: extras,
        slices: extras,
    };
    // Steps 0, 2 and 4 train; 1, 3 and 5 evaluate.
    assert_eq!(
        *log.lock().unwrap(),
        [seen(0, false), seen(2, true), seen(4, false)]
    );
    assert!(s.model.observations().is_empty(), "no recorder installed");
}

#[test]
fn the_recorder_keeps_evaluation_steps_when_asked_and_replays_its_training_steps_exactly() {
    use splitlm_party::replay::{input_gradient, weight_gradients};
    use splitlm_party::{ObservationLimits, wire};

    let work = Workload::classify("llama");
    let mut s = split(
        &work,
        Partition::head_body_tail(1, 1),
        &Trainability::default(),
        &OptimizerConfig::sgd(0.1),
        &cpu(),
        &cpu(),
    );
    s.model.observe(ObservationLimits {
        steps: 1,
        weight_gradients: true,
        slices: true,
        inference: true,
        ..ObservationLimits::default()
    });
    let batch = work.batch(&s.data.device());
    let labels = work.labels(&batch);
    s.data.train_step(&batch, &labels).unwrap();
    s.data.eval_step(&batch).unwrap();
    s.data.finish().unwrap();
    s.server.join().unwrap().unwrap();

    let seen = s.model.observations();
    assert_eq!(seen.len(), 2, "the training step and the evaluation step");
    let (train, eval) = (&seen[0], &seen[1]);
    assert!(
        eval.output_grad.shape.iter().product::<usize>() == 0,
        "no gradient in evaluation"
    );
    assert_eq!(eval.hidden.shape, train.hidden.shape);
    assert_eq!(eval.positions, train.positions);

    // Replaying the recorded step through the slice as it was gives back the weight gradients
    // the model party used (positions matter: a decoder with left and right padding).
    let device = cpu();
    let before = &s.model.observed_slices()[0].before;
    let received = train.received(&device).unwrap();
    let grad = wire::output_tensor(train.output_kind, &train.output_grad, &device).unwrap();
    let replayed = weight_gradients(before, received.clone(), grad.clone()).unwrap();
    assert_eq!(replayed.len(), train.weight_gradients.len());
    for (r, w) in replayed.iter().zip(&train.weight_gradients) {
        assert_eq!(r.path, w.path);
        let err = r
            .values
            .iter()
            .zip(&w.values)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 1e-5, "{}: replayed gradient differs by {err}", r.path);
    }
    let input = input_gradient(before, received, grad).unwrap();
    assert_eq!(
        input.dims(),
        [train.hidden.shape[0], train.hidden.shape[1], 32]
    );
}

/// An evaluation step is on record by the time its output reaches the data party: a recorder
/// installed right after an evaluation sees only the steps that follow (the benchmark installs
/// one between the held-out evaluation and the samples it re-sends).
#[test]
fn an_evaluation_step_is_recorded_before_its_output_returns() {
    use splitlm_party::ObservationLimits;

    let work = Workload::classify("llama");
    let mut s = split(
        &work,
        Partition::head_tail(1),
        &Trainability::default(),
        &OptimizerConfig::sgd(0.1),
        &cpu(),
        &cpu(),
    );
    let batch = work.batch(&s.data.device());
    let inference = ObservationLimits {
        steps: 0,
        inference: true,
        ..ObservationLimits::default()
    };
    for round in 0..20 {
        s.model.observe(ObservationLimits::default());
        s.data.eval_step(&batch).unwrap();
        s.model.observe(inference);
        s.data.eval_step(&batch).unwrap();
        assert_eq!(s.model.observations().len(), 1, "round {round}");
    }
    s.data.finish().unwrap();
    s.server.join().unwrap().unwrap();
}
