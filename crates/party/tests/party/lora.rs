//! LoRA adapters merge into their weights for export, with the fine-tuned behaviour kept.

use splitlm_nn::testing::values;
use splitlm_nn::{SliceSpec, TransformerSlice, loss};
use splitlm_partition::{LoraSettings, Trainability, merge_lora, named_parameters};
use splitlm_party::{OptimizerConfig, PartySlice};

use crate::common::{SEED, TOTAL_STEPS, Workload, cpu, relative_error};

#[test]
fn merged_adapters_give_the_same_outputs_without_adapters() {
    for fixture in ["bert", "gpt2", "llama"] {
        let work = Workload::classify(fixture);
        let ckpt = work.checkpoint();
        let spec = SliceSpec::full(ckpt.num_layers());
        let model = ckpt.load(&spec, work.task, &cpu()).unwrap();
        let base = named_parameters(&model, &spec);
        let lora = Trainability::lora(LoraSettings::default());
        let mut slice =
            PartySlice::new(model, &lora, &OptimizerConfig::default(), TOTAL_STEPS, SEED).unwrap();
        let batch = work.batch(&cpu());
        let labels = work.labels(&batch);
        for _ in 0..3 {
            let l = loss(&slice.model().forward(&batch, None).unwrap(), &labels).unwrap();
            slice.apply_gradients(l.backward());
        }
        let adapted = slice.into_model();
        let before = values(
            adapted
                .forward(&batch, None)
                .unwrap()
                .class_logits()
                .unwrap(),
        );
        let merged = merge_lora(adapted);
        let after = values(
            merged
                .forward(&batch, None)
                .unwrap()
                .class_logits()
                .unwrap(),
        );
        assert!(relative_error(&after, &before) < 1e-5, "{fixture}");
        let params = named_parameters(&merged, &spec);
        assert!(
            params.iter().all(|p| !p.path.contains(".lora.")),
            "{fixture}: adapters left"
        );
        assert_eq!(
            params.len(),
            base.len(),
            "{fixture}: the original parameters, no more"
        );
        // The adapted projections moved; the others did not.
        for (p, b) in params.iter().zip(&base) {
            assert_eq!(p.path, b.path);
            let changed = values(p.value.clone()) != values(b.value.clone());
            let adapted = p.path.starts_with("blocks.")
                && p.path.ends_with(".weight")
                && ["query", "value", "c_attn", "q_proj", "v_proj"]
                    .iter()
                    .any(|t| p.path.contains(&format!(".{t}.")));
            let trained_head = p.path.starts_with("top.");
            assert!(
                changed == adapted || trained_head,
                "{fixture}: {} changed = {changed}",
                p.path
            );
        }
    }
}

#[test]
fn unsupported_or_mistyped_lora_settings_are_refused() {
    let work = Workload::classify("gpt2");
    let ckpt = work.checkpoint();
    let spec = SliceSpec::full(ckpt.num_layers());
    let attempt = |settings: LoraSettings| {
        let model = ckpt.load(&spec, work.task, &cpu()).unwrap();
        PartySlice::new(
            model,
            &Trainability::lora(settings),
            &OptimizerConfig::default(),
            1,
            0,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
    };
    let typo = attempt(LoraSettings {
        targets: Some(vec!["q_proj".into()]),
        ..LoraSettings::default()
    });
    assert!(typo.contains("match no 2-D weight"), "{typo}");
    let dropout = attempt(LoraSettings {
        dropout: 0.1,
        ..LoraSettings::default()
    });
    assert!(dropout.contains("lora.dropout"), "{dropout}");
    let rank = attempt(LoraSettings {
        rank: 0,
        ..LoraSettings::default()
    });
    assert!(rank.contains("rank"), "{rank}");
}
