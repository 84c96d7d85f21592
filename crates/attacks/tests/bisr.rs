//! BiSR against real split runs of the Llama fixture (causal LM): the model party records the
//! first training step; the attacker trains its NaMoE on random auxiliary sequences from the
//! fixture's vocabulary sent through its pretrained copy of the head, then refines forward
//! (activations), backward (the gradient it received) or both.

use std::time::Instant;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};
use splitlm_attacks::{
    ArtifactCache, AttackConfig, AttackerView, Auxiliary, BisrSettings, HeadVersion, InversionMask,
    InversionObjective, Prior, VmiSettings, WhiteBoxHead, bisr, token_precision_recall, vmi,
};
use splitlm_device::DeviceSpec;
use splitlm_nn::seeded::SplitMix64;
use splitlm_nn::testing::{Fixture, fixtures_dir};
use splitlm_nn::{Labels, TaskHead, TokenBatch};
use splitlm_partition::Partition;
use splitlm_party::{DataParty, ModelParty, ObservationLimits, PartyOptions, PartySlice};
use splitlm_protocol::{Limits, WireDType, in_process_pair};
use splitlm_zoo::Pretrained;

fn cpu() -> Device {
    DeviceSpec::Cpu.device().unwrap().autodiff()
}

/// One observed training step of the Llama fixture's batch, cut `partition`.
struct Run {
    view: AttackerView,
    prior: Prior,
    truth: Vec<Vec<u32>>,
}

fn split_run(partition: Partition) -> Run {
    let device = cpu();
    let task = TaskHead::CausalLm;
    let ckpt = Pretrained::open(&fixtures_dir().join("models").join("llama")).unwrap();
    let slices = partition.slices(ckpt.num_layers()).unwrap();
    let frozen = |spec| PartySlice::frozen(ckpt.load(spec, task, &device).unwrap()).unwrap();
    let model = ModelParty::new(frozen(&slices.model), WireDType::F32);
    model.observe(ObservationLimits::default());
    let (a, b) = in_process_pair(Limits::default());
    let server = model.spawn(b);
    let tail = slices.data_tail.as_ref().map(frozen);
    let mut data = DataParty::connect(
        frozen(&slices.data_head),
        tail,
        Box::new(a),
        &PartyOptions::default(),
    )
    .unwrap();
    let f = Fixture::open("llama").unwrap();
    let batch = TokenBatch {
        input_ids: f.ints("input_ids", &device),
        attention_mask: f.ints("attention_mask", &device),
        token_type_ids: None,
    };
    let labels = Labels::next_tokens(&batch.input_ids, &batch.attention_mask);
    data.train_step(&batch, &labels).unwrap();
    data.finish().unwrap();
    server.join().unwrap().unwrap();

    let mut prior = Prior::white_box(
        ckpt.load(&slices.data_head, task, &device).unwrap(),
        HeadVersion::Pretrained,
    );
    prior.tail = slices
        .data_tail
        .as_ref()
        .map(|spec| ckpt.load(spec, task, &device).unwrap());
    prior.auxiliary = Some(auxiliary(ckpt.vocab_size(), &device));
    let s = batch.dims()[1];
    let ids = f.int_rows("input_ids");
    let mask = f.int_rows("attention_mask");
    let truth = ids
        .iter()
        .zip(&mask)
        .map(|(row, m)| {
            (0..s)
                .filter(|&t| m[t] != 0)
                .map(|t| row[t] as u32)
                .collect()
        })
        .collect();
    Run {
        view: AttackerView::of(&model),
        prior,
        truth,
    }
}

/// Random sequences over the fixture's vocabulary (ids 3.., pad 0), 8 rows of 7 positions a
/// batch, 3 to 7 of them real, padded on the left or the right like the fixture's batch.
fn auxiliary(vocab: usize, device: &Device) -> Auxiliary {
    let mut rng = SplitMix64::new(11);
    let (rows, s) = (8, 7);
    let batches = (0..12)
        .map(|_| {
            let mut ids = Vec::new();
            let mut mask = Vec::new();
            for _ in 0..rows {
                let real = 3 + (rng.next_u64() % 5) as usize;
                let left = rng.next_u64().is_multiple_of(2);
                for t in 0..s {
                    let is_real = if left { t >= s - real } else { t < real };
                    mask.push(i64::from(is_real));
                    ids.push(if is_real {
                        3 + (rng.next_u64() % (vocab as u64 - 3)) as i64
                    } else {
                        0
                    });
                }
            }
            let ints =
                |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [rows, s]), device);
            let ids = ints(ids);
            let mask = ints(mask);
            let labels = Labels::next_tokens(&ids, &mask);
            (
                TokenBatch {
                    input_ids: ids,
                    attention_mask: mask,
                    token_type_ids: None,
                },
                labels,
            )
        })
        .collect();
    Auxiliary {
        source: "random sequences over the fixture's vocabulary".into(),
        batches,
    }
}

fn mean_recall(truth: &[Vec<u32>], recovered: &[Vec<u32>]) -> f64 {
    assert_eq!(truth.len(), recovered.len());
    truth
        .iter()
        .zip(recovered)
        .map(|(t, r)| token_precision_recall(t, r).1)
        .sum::<f64>()
        / truth.len() as f64
}

/// Quick settings in `mode` ("forward", "backward", "both"; the mode's type is not re-exported,
/// so through serde as a run's TOML gives it): a narrower NaMoE, fewer epochs, and splitlm's
/// VMI variant (MSE over the real positions), the stronger baseline.
fn quick(mode: &str, epoch_scale: f64) -> BisrSettings {
    let mut settings: BisrSettings = serde_json::from_value(serde_json::json!({
        "mode": mode,
        "epoch_scale": epoch_scale,
        "hidden_size": 64,
    }))
    .unwrap();
    settings.objective = InversionObjective::Mse;
    settings.mask = InversionMask::Real;
    settings
}

/// `settings` in another mode.
fn with_mode(settings: &BisrSettings, mode: &str) -> BisrSettings {
    let mut value = serde_json::to_value(settings).unwrap();
    value["mode"] = mode.into();
    serde_json::from_value(value).unwrap()
}

#[test]
fn the_forward_phase_beats_vmi_from_zeros_through_two_blocks() {
    let run = split_run(Partition::head_tail(2));
    let device = cpu();
    let vmi_settings = VmiSettings {
        objective: InversionObjective::Mse,
        mask: InversionMask::Real,
        ..VmiSettings::default()
    };
    let head = &run.prior.head.as_ref().unwrap().model;
    let from_zeros = mean_recall(
        &run.truth,
        &vmi(&run.view, head, &vmi_settings, &device).unwrap(),
    );
    let settings = quick("forward", 1.0);
    let started = Instant::now();
    let recovered = bisr(&run.view, &run.prior, &settings, None, &device)
        .unwrap()
        .recovered;
    let seconds = started.elapsed().as_secs_f64();
    let ours = mean_recall(&run.truth, &recovered);
    eprintln!(
        "n_head 2, {} steps: VMI from zeros recall {from_zeros:.3}, BiSR forward {ours:.3} \
         ({seconds:.1} s for {} samples, training included)",
        settings.steps,
        recovered.len()
    );
    // Measured (epoch_scale 1, hidden 64): VMI 0.18, BiSR 0.70, the inverter alone 0.70.
    assert!(ours > from_zeros + 0.2, "{ours} vs {from_zeros}");
}

#[test]
fn backward_matching_alone_recovers_tokens_in_head_tail() {
    let run = split_run(Partition::head_tail(2));
    // No training: the inverter's start carries nothing, the recall is the gradient's.
    let settings = BisrSettings {
        expert_epochs: 0,
        gate_epochs: 0,
        full_epochs: 0,
        ..quick("backward", 1.0)
    };
    let started = Instant::now();
    let recovered = bisr(&run.view, &run.prior, &settings, None, &cpu())
        .unwrap()
        .recovered;
    let seconds = started.elapsed().as_secs_f64();
    let recall = mean_recall(&run.truth, &recovered);
    let untrained = mean_recall(
        &run.truth,
        &bisr(
            &run.view,
            &run.prior,
            &BisrSettings {
                steps: 1,
                lr: 1e-9,
                ..with_mode(&settings, "forward")
            },
            None,
            &cpu(),
        )
        .unwrap()
        .recovered,
    );
    eprintln!(
        "Head–Tail n_head 2, backward only: recall {recall:.3} (untrained inverter alone \
         {untrained:.3}; {seconds:.1} s for {} samples)",
        recovered.len()
    );
    // Every token but the first of each row is some position's label.
    assert!(recall >= 0.7, "{recall}");
    assert!(recall > untrained + 0.4, "{recall} vs {untrained}");
}

#[test]
fn backward_matching_through_the_tail_in_head_body_tail() {
    let run = split_run(Partition::head_body_tail(1, 1));
    let settings = BisrSettings {
        expert_epochs: 0,
        gate_epochs: 0,
        full_epochs: 0,
        backward_steps: 60,
        ..quick("backward", 1.0)
    };
    let started = Instant::now();
    let recovered = bisr(&run.view, &run.prior, &settings, None, &cpu())
        .unwrap()
        .recovered;
    let recall = mean_recall(&run.truth, &recovered);
    eprintln!(
        "Head–Body–Tail 1/1, backward only: recall {recall:.3} ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    assert!(recall >= 0.5, "{recall}");
}

#[test]
fn both_directions_run_and_a_missing_prior_is_named() {
    let run = split_run(Partition::head_tail(1));
    let device = cpu();
    let settings = BisrSettings {
        steps: 20,
        backward_steps: 20,
        ..quick("both", 0.1)
    };
    let both = bisr(&run.view, &run.prior, &settings, None, &device)
        .unwrap()
        .recovered;
    let recall = mean_recall(&run.truth, &both);
    eprintln!("Head–Tail n_head 1, both: recall {recall:.3}");
    assert!(recall >= 0.7, "{recall}");
    // Seeded: the same settings, the same tokens; another seed, another inverter.
    assert_eq!(
        bisr(&run.view, &run.prior, &settings, None, &device)
            .unwrap()
            .recovered,
        both
    );

    let attack = AttackConfig::Bisr(settings.clone()).build();
    let no_aux = Prior {
        auxiliary: None,
        ..run.prior.clone()
    };
    let err = attack
        .run(&run.view, &no_aux, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("auxiliary"), "{err}");
    let no_head = Prior {
        head: None,
        ..run.prior.clone()
    };
    let err = attack
        .run(&run.view, &no_head, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("head"), "{err}");
    let bad = BisrSettings {
        expert_scales: vec![],
        ..settings
    };
    let err = bisr(&run.view, &run.prior, &bad, None, &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("expert_scales"), "{err}");
    // TOML/JSON with the reference's defaults, unknown fields refused.
    let parsed: AttackConfig = serde_json::from_str(r#"{"kind": "bisr"}"#).unwrap();
    assert_eq!(parsed, AttackConfig::Bisr(BisrSettings::default()));
    assert!(serde_json::from_str::<AttackConfig>(r#"{"kind": "bisr", "epochz": 1}"#).is_err());
}

/// Adds a small constant to every weight, as a step of fine-tuning would change them.
struct Nudge;

impl ModuleMapper for Nudge {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| t.add_scalar(1e-3))
    }
}

#[test]
fn the_inverter_is_cached_under_everything_it_depends_on() {
    let run = split_run(Partition::head_tail(1));
    let device = cpu();
    let dir = std::env::temp_dir().join(format!("splitlm-bisr-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cache = ArtifactCache::new(&dir);
    let settings = BisrSettings {
        steps: 5,
        ..quick("forward", 0.1)
    };
    let attack = |prior: &Prior, settings: &BisrSettings| {
        bisr(&run.view, prior, settings, Some(&cache), &device).unwrap()
    };
    let trained = attack(&run.prior, &settings);
    assert!(!trained.inverter.cached);
    let path = cache.path("bisr-inverter", &trained.inverter.key);
    assert!(path.is_file(), "{}", path.display());
    let uncached = bisr(&run.view, &run.prior, &settings, None, &device).unwrap();
    assert_eq!(uncached.recovered, trained.recovered);

    // The same head, auxiliary data and settings: loaded, and the same tokens recovered.
    let again = attack(&run.prior, &settings);
    assert!(again.inverter.cached);
    assert_eq!(again.inverter.key, trained.inverter.key);
    assert_eq!(again.recovered, trained.recovered);
    // Phase 2 alone changes nothing phase 1 learned.
    let longer = attack(
        &run.prior,
        &BisrSettings {
            steps: 6,
            ..settings.clone()
        },
    );
    assert!(longer.inverter.cached);

    // Any input of phase 1 changed names another inverter: the head's weights (fine-tuning),
    // its cut, the auxiliary data, the training settings.
    let head = &run.prior.head.as_ref().unwrap().model;
    let tuned = Prior {
        head: Some(WhiteBoxHead {
            model: head.clone().map(&mut Nudge),
            version: HeadVersion::FineTuned,
        }),
        ..run.prior.clone()
    };
    let deeper = split_run(Partition::head_tail(2));
    let mut fewer = run.prior.clone();
    fewer.auxiliary.as_mut().unwrap().batches.pop();
    let other_seed = BisrSettings {
        seed: 1,
        ..settings.clone()
    };
    for (what, other) in [
        ("fine-tuned head", attack(&tuned, &settings)),
        ("deeper cut", {
            bisr(
                &deeper.view,
                &deeper.prior,
                &settings,
                Some(&cache),
                &device,
            )
            .unwrap()
        }),
        ("auxiliary data", attack(&fewer, &settings)),
        ("seed", attack(&run.prior, &other_seed)),
    ] {
        assert!(!other.inverter.cached, "{what}");
        assert_ne!(other.inverter.key, trained.inverter.key, "{what}");
    }

    // A damaged entry is ignored, retrained and replaced, never trusted.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let repaired = attack(&run.prior, &settings);
    assert!(!repaired.inverter.cached);
    assert_eq!(repaired.recovered, trained.recovered);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert!(attack(&run.prior, &settings).inverter.cached);

    // Through the attack interface, the record's details say where the inverter came from.
    let attacked = AttackConfig::Bisr(settings)
        .build_cached(cache.clone())
        .run(&run.view, &run.prior, &device)
        .unwrap();
    let details = attacked.details.unwrap();
    assert_eq!(details["inverter"]["cached"], true, "{details}");
    assert_eq!(details["inverter"]["key"], trained.inverter.key.as_str());
    std::fs::remove_dir_all(&dir).unwrap();
}
