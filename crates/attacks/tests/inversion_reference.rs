//! VMI and RWI against the reference's own computation (`fixtures/vflair/inversion.json`,
//! written by `fixtures/vflair/inversion.py`, which runs VFLAIR-LLM's
//! `VanillaModelInversion_WhiteBox` and `WhiteBoxInversion` for one epoch on the tiny BERT and
//! GPT-2 heads): the same objective value, gradient, Adam step and decoded tokens at the
//! defaults (cross-entropy over the sequence axis, no mask, every padded position), the MSE
//! option, and the reference's precision and recall from its own decoded tokens.

use burn::tensor::Device;
use serde_json::Value;
use splitlm_attacks::{
    AttackConfig, InversionObjective, ObjectiveProbe, ProbeBatch, RwiSettings, VmiSettings,
    probe_objective, token_precision_recall,
};
use splitlm_device::DeviceSpec;
use splitlm_nn::TaskHead;
use splitlm_nn::testing::fixtures_dir;
use splitlm_partition::Partition;
use splitlm_zoo::{AnyModel, Pretrained};

fn cpu() -> Device {
    DeviceSpec::Cpu.device().unwrap().autodiff()
}

fn fixture() -> Value {
    let path = fixtures_dir().join("vflair").join("inversion.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()))
        .collect()
}

fn ids(v: &Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

/// How close our gradients must come to the reference's, relative to their largest magnitude:
/// float rounding. (BERT's exact GELU is differentiated through `erf`: Burn 0.22's fused
/// `gelu` backward is the tanh approximation's derivative, which moved BERT's gradients by 2e-4
/// of their largest entry; see `splitlm_nn::Activation`.)
const GRADIENT_TOLERANCE: f32 = 1e-5;

/// `fixtures/models/<name>` cut after block 0: the data party's head the reference inverts.
fn head(name: &str, device: &Device) -> AnyModel {
    let ckpt = Pretrained::open(&fixtures_dir().join("models").join(name)).unwrap();
    let task = match name {
        "bert" => TaskHead::SequenceClassification { num_labels: 3 },
        _ => TaskHead::CausalLm,
    };
    let slices = Partition::head_tail(1).slices(ckpt.num_layers()).unwrap();
    ckpt.load(&slices.data_head, task, device).unwrap()
}

/// `ours` within `rel` of `theirs`, relative to the largest reference magnitude.
fn assert_close(what: &str, ours: &[f32], theirs: &[f32], rel: f32) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    let scale = theirs.iter().fold(0f32, |m, x| m.max(x.abs()));
    let worst = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("{what}: max |diff| {worst:.3e} (max |ref| {scale:.3e})");
    assert!(worst <= rel * scale, "{what}: {worst} > {rel} · {scale}");
}

fn assert_loss(what: &str, ours: &ObjectiveProbe, per_sample: &Value) {
    // The reference inverts one sample at a time; ours is the sum of the per-sample losses.
    let theirs: f64 = per_sample
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .sum();
    eprintln!("{what}: loss {} vs {theirs}", ours.loss);
    assert!(
        (ours.loss - theirs).abs() <= 1e-4 * theirs.abs(),
        "{what}: loss {} vs {theirs}",
        ours.loss
    );
}

struct Case {
    name: &'static str,
    fixture: Value,
    head: AnyModel,
    received: Vec<f32>,
    shape: [usize; 3],
    mask: Vec<i64>,
    token_types: Option<Vec<i64>>,
}

impl Case {
    fn open(name: &'static str, device: &Device) -> Self {
        let all = fixture();
        let case = all[name].clone();
        let shape: Vec<usize> = case["received"]["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        Self {
            name,
            head: head(name, device),
            received: floats(&case["received"]["data"]),
            shape: shape.try_into().unwrap(),
            mask: ints(&all["attention_mask"]),
            token_types: (!case["token_type_ids"].is_null()).then(|| ints(&case["token_type_ids"])),
            fixture: all,
        }
    }

    fn case(&self) -> &Value {
        &self.fixture[self.name]
    }

    fn probe(&self, attack: AttackConfig, device: &Device) -> ObjectiveProbe {
        let batch = ProbeBatch {
            hidden: &self.received,
            shape: self.shape,
            attention_mask: &self.mask,
            token_type_ids: self.token_types.as_deref(),
        };
        probe_objective(&self.head, &attack, batch, device).unwrap()
    }
}

fn vmi_matches_the_reference(name: &'static str) {
    let device = cpu();
    let case = Case::open(name, &device);
    let reference = &case.case()["vmi"];
    let lr = reference["lr"].as_f64().unwrap();
    let settings = VmiSettings {
        steps: 1,
        lr,
        ..VmiSettings::default()
    };
    let ours = case.probe(AttackConfig::Vmi(settings), &device);
    assert_loss(&format!("{name} VMI"), &ours, &reference["loss"]);
    assert_close(
        &format!("{name} VMI gradient"),
        &ours.gradient,
        &floats(&reference["grad"]["data"]),
        GRADIENT_TOLERANCE,
    );
    // One Adam step from zero moves each coordinate by almost exactly lr.
    assert_close(
        &format!("{name} VMI after one Adam step"),
        &ours.optimised,
        &floats(&reference["after_step"]["data"]),
        1e-4,
    );
    // Cosine decoding at every padded position, as the reference decodes.
    assert_eq!(ours.recovered, ids(&reference["predicted"]), "{name} VMI");

    let mse = case.probe(
        AttackConfig::Vmi(VmiSettings {
            objective: InversionObjective::Mse,
            ..settings
        }),
        &device,
    );
    assert_loss(
        &format!("{name} VMI (mse)"),
        &mse,
        &reference["mse"]["loss"],
    );
    assert_close(
        &format!("{name} VMI (mse) gradient"),
        &mse.gradient,
        &floats(&reference["mse"]["grad"]["data"]),
        GRADIENT_TOLERANCE,
    );
}

fn rwi_matches_the_reference(name: &'static str) {
    let device = cpu();
    let case = Case::open(name, &device);
    let reference = &case.case()["rwi"];
    let settings = RwiSettings {
        steps: 1,
        lr: reference["lr"].as_f64().unwrap(),
        temperature: reference["T"].as_f64().unwrap(),
        ..RwiSettings::default()
    };
    let ours = case.probe(AttackConfig::Rwi(settings), &device);
    assert_loss(&format!("{name} RWI"), &ours, &reference["loss"]);
    assert_close(
        &format!("{name} RWI gradient w.r.t. Z"),
        &ours.gradient,
        &floats(&reference["grad"]["data"]),
        GRADIENT_TOLERANCE,
    );
    // Every padded position decoded (the arg-max after one step is a near-tie of ±lr entries,
    // so only the length is compared).
    assert!(ours.recovered.iter().all(|r| r.len() == case.shape[1]));
    let mse = case.probe(
        AttackConfig::Rwi(RwiSettings {
            objective: InversionObjective::Mse,
            ..settings
        }),
        &device,
    );
    assert_loss(
        &format!("{name} RWI (mse)"),
        &mse,
        &reference["mse"]["loss"],
    );
}

#[test]
fn vmi_objective_gradient_step_and_decoding_match_the_reference_on_bert() {
    vmi_matches_the_reference("bert");
}

#[test]
fn vmi_objective_gradient_step_and_decoding_match_the_reference_on_gpt2() {
    vmi_matches_the_reference("gpt2");
}

#[test]
fn rwi_objective_and_gradient_match_the_reference_on_bert() {
    rwi_matches_the_reference("bert");
}

#[test]
fn rwi_objective_and_gradient_match_the_reference_on_gpt2() {
    rwi_matches_the_reference("gpt2");
}

/// The reference's metric on its own decoded tokens: recall over the truth without its pad
/// ids, precision over every decoded (padded) position.
#[test]
fn token_precision_and_recall_match_the_reference_on_padded_recoveries() {
    let all = fixture();
    let pad = all["pad_token_id"].as_u64().unwrap() as u32;
    let truth: Vec<Vec<u32>> = ids(&all["input_ids"])
        .into_iter()
        .map(|row| row.into_iter().filter(|&t| t != pad).collect())
        .collect();
    let mut checked = 0;
    for name in ["bert", "gpt2"] {
        for attack in ["vmi", "rwi"] {
            let reference = &all[name][attack];
            let predicted = ids(&reference["predicted"]);
            for (row, got) in predicted.iter().enumerate() {
                assert_eq!(got.len(), all["input_ids"][row].as_array().unwrap().len());
                let (precision, recall) = token_precision_recall(&truth[row], got);
                let theirs = (
                    reference["precision"][row].as_f64().unwrap(),
                    reference["recall"][row].as_f64().unwrap(),
                );
                assert!(
                    (precision - theirs.0).abs() < 1e-12 && (recall - theirs.1).abs() < 1e-12,
                    "{name} {attack} row {row}: ours {:?}, the reference's {theirs:?}",
                    (precision, recall)
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 8);
}
