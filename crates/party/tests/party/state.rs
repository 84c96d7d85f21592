//! A party's trainable state saved mid-run and restored into freshly built parties continues
//! the run exactly as if it had never stopped.

use splitlm_partition::{LoraSettings, Partition, Trainability};
use splitlm_party::{OptimizerConfig, OptimizerKind};

use crate::common::{Workload, cpu, relative_error, split};

fn adamw() -> OptimizerConfig {
    OptimizerConfig {
        kind: OptimizerKind::AdamW,
        lr: 1e-3,
        weight_decay: 0.01,
        ..OptimizerConfig::default()
    }
}

#[test]
fn a_restored_run_continues_exactly() {
    let work = Workload::classify("llama");
    let partition = Partition::head_body_tail(1, 1);
    for trainability in [
        Trainability::default(),
        Trainability::lora(LoraSettings {
            rank: 2,
            ..LoraSettings::default()
        }),
    ] {
        let device = cpu();
        let straight = split(&work, partition, &trainability, &adamw(), &device, &device)
            .train(&work, 4)
            .0;

        let dir = tempfile::tempdir().unwrap();
        let mut first = split(&work, partition, &trainability, &adamw(), &device, &device);
        let batch = work.batch(&device);
        let labels = work.labels(&batch);
        for _ in 0..2 {
            first.data.train_step(&batch, &labels).unwrap();
        }
        first.data.save_state(dir.path()).unwrap();
        first.model.save_state(dir.path(), "model").unwrap();
        first.data.finish().unwrap();
        first.server.join().unwrap().unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".partial"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        let mut resumed = split(&work, partition, &trainability, &adamw(), &device, &device);
        resumed.data.restore_state(dir.path()).unwrap();
        resumed.model.restore_state(dir.path(), "model").unwrap();
        let continued = resumed.train(&work, 2).0;

        assert_eq!(continued.losses, straight.losses[2..], "{trainability:?}");
        for (path, expected) in &straight.parameters {
            let err = relative_error(&continued.parameters[path], expected);
            assert!(err <= 1e-6, "{path}: {err:e} ({trainability:?})");
        }
    }
}

#[test]
fn a_state_that_does_not_fit_is_refused_by_name() {
    let work = Workload::classify("llama");
    let partition = Partition::head_body_tail(1, 1);
    let device = cpu();
    let dir = tempfile::tempdir().unwrap();
    let lora = Trainability::lora(LoraSettings::default());
    let saved = split(&work, partition, &lora, &adamw(), &device, &device);
    saved.data.save_state(dir.path()).unwrap();

    let mut other = split(
        &work,
        partition,
        &Trainability::default(),
        &adamw(),
        &device,
        &device,
    );
    let err = other
        .data
        .restore_state(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("data-head.safetensors") && err.contains("trainable"),
        "{err}"
    );

    let head = dir.path().join("data-head.safetensors");
    let bytes = std::fs::read(&head).unwrap();
    std::fs::write(&head, &bytes[..bytes.len() / 2]).unwrap();
    let mut fresh = split(&work, partition, &lora, &adamw(), &device, &device);
    let err = fresh
        .data
        .restore_state(dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("data-head.safetensors"), "{err}");

    let err = fresh
        .model
        .restore_state(&dir.path().join("absent"), "model")
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.safetensors"), "{err}");
}
