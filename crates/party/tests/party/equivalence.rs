//! One split training step equals one step of the whole model: same loss, same gradient on
//! every parameter of every slice, same updated weights (two steps, so optimizer state too).

use splitlm_nn::TaskHead;
use splitlm_partition::{BlockSet, LoraSettings, Partition, Trainability};
use splitlm_party::{OptimizerConfig, OptimizerKind};

use crate::common::{Workload, assert_equivalent, cpu, split, unsplit};

const TOLERANCE: f32 = 1e-4;
const STEPS: usize = 2;

fn adamw() -> OptimizerConfig {
    OptimizerConfig {
        kind: OptimizerKind::AdamW,
        lr: 1e-3,
        weight_decay: 0.01,
        ..OptimizerConfig::default()
    }
}

/// Embeddings frozen, only block 1 and the task head train.
fn partial() -> Trainability {
    Trainability {
        embeddings: false,
        blocks: BlockSet::Ids(vec![1]),
        ..Trainability::default()
    }
}

fn lora() -> Trainability {
    Trainability::lora(LoraSettings {
        rank: 2,
        alpha: 8.0,
        ..LoraSettings::default()
    })
}

fn check(
    work: Workload,
    partitions: &[Partition],
    settings: &[(&str, Trainability)],
    optimizer: &OptimizerConfig,
) {
    for (name, trainability) in settings {
        let whole = unsplit(&work, trainability, optimizer, STEPS);
        assert!(
            whole.losses[1] < whole.losses[0],
            "{}: training lowers the loss ({:?})",
            work.fixture,
            whole.losses
        );
        let trained: Vec<&String> = whole.gradients[0].keys().collect();
        assert!(!trained.is_empty(), "{name}: something trains");
        if *name == "lora" {
            assert!(
                trained.iter().any(|p| p.ends_with(".lora.b")),
                "{name}: {trained:?}"
            );
            assert!(
                trained
                    .iter()
                    .all(|p| p.contains(".lora.") || p.starts_with("top.")),
                "{name}: only adapters and the task head train: {trained:?}"
            );
        }
        if *name == "partial" {
            assert!(
                trained
                    .iter()
                    .all(|p| p.starts_with("blocks.1.") || p.starts_with("top.")),
                "{name}: only block 1 and the task head train: {trained:?}"
            );
        }
        for &partition in partitions {
            let case = format!("{} {name} {partition}", work.fixture);
            let (observed, report) =
                split(&work, partition, trainability, optimizer, &cpu(), &cpu())
                    .train(&work, STEPS);
            assert_eq!(report.train_steps, STEPS as u64);
            let (loss, grads, params) = assert_equivalent(&case, &observed, &whole, TOLERANCE);
            println!("{case}: loss {loss:.1e}, gradients {grads:.1e}, weights {params:.1e}");
        }
    }
}

fn all_settings() -> Vec<(&'static str, Trainability)> {
    vec![
        ("full", Trainability::default()),
        ("partial", partial()),
        ("lora", lora()),
    ]
}

const CUTS: [Partition; 3] = [
    Partition::HeadTail {
        n_head: 1,
        task_head_with: splitlm_partition::TaskHeadPlacement::Model,
    },
    Partition::HeadBodyTail {
        n_head: 1,
        n_tail: 1,
    },
    Partition::HeadBodyTail {
        n_head: 0,
        n_tail: 0,
    },
];

#[test]
fn bert_split_training_equals_unsplit() {
    check(Workload::classify("bert"), &CUTS, &all_settings(), &adamw());
}

#[test]
fn gpt2_split_training_equals_unsplit() {
    check(Workload::classify("gpt2"), &CUTS, &all_settings(), &adamw());
}

#[test]
fn llama_split_training_equals_unsplit() {
    check(
        Workload::classify("llama"),
        &CUTS,
        &all_settings(),
        &adamw(),
    );
}

#[test]
fn lm_and_span_heads_cross_the_boundary_exactly() {
    // Untied LM head (Qwen2 fixture): in Head-Tail the logits and their gradient cross.
    let lm = Workload {
        fixture: "qwen2",
        task: TaskHead::CausalLm,
    };
    let two_blocks = [
        Partition::head_tail(1),
        Partition::head_body_tail(0, 1),
        Partition::head_body_tail(1, 0),
    ];
    check(
        lm,
        &two_blocks,
        &[("full", Trainability::default())],
        &adamw(),
    );
    let qa = Workload {
        fixture: "bert",
        task: TaskHead::SpanQa,
    };
    check(
        qa,
        &CUTS[..2],
        &[("full", Trainability::default())],
        &OptimizerConfig::sgd(0.1),
    );
}

#[test]
fn adam_and_momentum_sgd_states_match_too() {
    let adam = OptimizerConfig {
        kind: OptimizerKind::Adam,
        lr: 5e-3,
        weight_decay: 0.001,
        ..OptimizerConfig::default()
    };
    let sgd = OptimizerConfig {
        momentum: 0.9,
        ..OptimizerConfig::sgd(0.05)
    };
    for optimizer in [adam, sgd] {
        check(
            Workload::classify("llama"),
            &CUTS[1..2],
            &[("partial", partial())],
            &optimizer,
        );
    }
}
