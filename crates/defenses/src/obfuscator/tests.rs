//! TextObfuscator's pieces on hand-made inputs, and its loss against the reference's own
//! `CenterLoss` (`fixtures/vflair/obfuscator.json`, written by `fixtures/vflair/obfuscator.py`).

use std::collections::HashMap;
use std::sync::Arc;

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde_json::Value;
use splitlm_nn::{Hidden, TokenBatch};

use super::loss::{away_term, away_term_host};
use super::*;
use crate::{DefenseConfig, HeadRunner, HookContext};

const TRAIN: HookContext = HookContext {
    step: 0,
    training: true,
};
const EVAL: HookContext = HookContext {
    step: 0,
    training: false,
};

fn device() -> Device {
    splitlm_device::DeviceSpec::Cpu.device().unwrap().autodiff()
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
        .map(|x| x.as_i64().unwrap())
        .collect()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap()
}

fn batch(ids: Vec<i64>, mask: Vec<i64>, dims: [usize; 2], device: &Device) -> TokenBatch {
    let int = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, dims), device);
    TokenBatch {
        input_ids: int(ids),
        attention_mask: int(mask),
        token_type_ids: None,
    }
}

#[test]
fn the_loss_and_its_gradient_match_the_reference_center_loss() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/vflair/obfuscator.json"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let device = device();
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let dims = ints(&case["dims"]);
        let [b, s, d] = [dims[0] as usize, dims[1] as usize, dims[2] as usize];
        let k = case["cluster_num"].as_u64().unwrap() as usize;
        let centres = floats(&case["centres"]);
        let cluster_of: HashMap<u32, usize> = case["token2cluster"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(id, c)| (id.parse().unwrap(), c.as_u64().unwrap() as usize))
            .collect();
        let settings = ObfuscatorSettings {
            cluster_num: k,
            w_cluster_close: case["w_cluster_close"].as_f64().unwrap(),
            w_cluster_away: case["w_cluster_away"].as_f64().unwrap(),
            ..ObfuscatorSettings::default()
        };
        let clusters = TokenClusters::given(centres.clone(), d, cluster_of);
        let mut defense = settings.with_clusters(clusters, 0).unwrap();

        // The positions and clusters the reference's party picks.
        let tokens = defense::StepTokens {
            batch: b,
            seq: s,
            ids: ints(&case["input_ids"]),
            mask: ints(&case["attention_mask"]),
        };
        let (positions, clusters) = defense.loss_positions(&tokens);
        let valid = ints(&case["valid"]);
        let expected: Vec<i64> = (0..valid.len() as i64)
            .filter(|&p| valid[p as usize] == 1)
            .collect();
        assert_eq!(positions, expected, "{name}: positions");
        assert_eq!(clusters, ints(&case["cluster_ids"]), "{name}: clusters");

        // The away term, on the host and on tensors.
        let away = case["cluster_away_loss"].as_f64().unwrap() / settings.w_cluster_away;
        let host = away_term_host(&centres, d);
        assert!((host - away).abs() < 1e-5, "{name}: away {host} vs {away}");
        let on_device = values(away_term(Tensor::<2>::from_data(
            TensorData::new(centres.clone(), [k, d]),
            &device,
        )))[0] as f64;
        assert!(
            (on_device - away).abs() < 1e-5,
            "{name}: away {on_device} vs {away}"
        );

        // The whole loss and its gradient through the hooks.
        let ids = batch(
            ints(&case["input_ids"]),
            ints(&case["attention_mask"]),
            [b, s],
            &device,
        );
        defense.on_input(ids, &TRAIN);
        let hidden =
            Tensor::<3>::from_data(TensorData::new(floats(&case["hidden"]), [b, s, d]), &device)
                .require_grad();
        let sent = defense.on_activation(hidden.clone(), &TRAIN);
        let loss = defense
            .extra_loss(&TRAIN)
            .expect("a training step has a loss");
        let total = case["total"].as_f64().unwrap() as f32;
        let got = values(loss.clone())[0];
        assert!(
            (got - total).abs() < 1e-5 * total.abs().max(1.0),
            "{name}: {got} vs {total}"
        );
        let grads = (loss + sent.sum() * 0.0).backward();
        let grad = values(hidden.grad(&grads).unwrap());
        for (i, (g, e)) in grad.iter().zip(floats(&case["grad_hidden"])).enumerate() {
            assert!((g - e).abs() < 1e-6, "{name}: grad[{i}] {g} vs {e}");
        }
    }
}

#[test]
fn the_sent_copy_carries_laplace_noise_of_scale_one_over_epsilon_in_every_mode() {
    let device = device();
    let settings = ObfuscatorSettings {
        cluster_num: 1,
        epsilon: 4.0,
        ..ObfuscatorSettings::default()
    };
    let clusters = TokenClusters::given(vec![0.0; 8], 8, HashMap::new());
    let mut defense = settings.with_clusters(clusters, 3).unwrap();
    assert_eq!(defense.scale(), 0.25);
    let clean = Tensor::<3>::zeros([4, 50, 8], &device);
    for ctx in [TRAIN, EVAL] {
        let noise = values(defense.on_activation(clean.clone(), &ctx));
        let n = noise.len() as f64;
        let mean = noise.iter().map(|&v| v as f64).sum::<f64>() / n;
        let mad = noise.iter().map(|&v| (v as f64).abs()).sum::<f64>() / n;
        let var = noise
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        // Laplace(0, b): E|x| = b, Var = 2b². 1,600 draws.
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((mad - 0.25).abs() < 0.025, "E|x| {mad}");
        assert!((var - 0.125).abs() < 0.025, "variance {var}");
    }
    assert!(
        defense.extra_loss(&EVAL).is_none(),
        "no loss outside training"
    );
    // Seeded: the same seed, the same draws.
    let again = |seed| {
        let clusters = TokenClusters::given(vec![0.0; 8], 8, HashMap::new());
        let mut d = settings.with_clusters(clusters, seed).unwrap();
        values(d.on_activation(clean.clone(), &EVAL))
    };
    assert_eq!(again(3), again(3));
    assert_ne!(again(3), again(4));
}

#[test]
fn unseen_tokens_pull_to_cluster_zero_and_a_step_without_positions_has_only_the_away_term() {
    let device = device();
    let settings = ObfuscatorSettings {
        cluster_num: 2,
        w_cluster_close: 1.0,
        w_cluster_away: 0.5,
        lambda: 2.0,
        excluded_ids: vec![7],
        ..ObfuscatorSettings::default()
    };
    // Centres (1, 0) and (−1, 0); token 5 in cluster 1, token 6 never seen.
    let centres = vec![1.0, 0.0, -1.0, 0.0];
    let clusters = TokenClusters::given(centres, 2, HashMap::from([(5, 1)]));
    let mut defense = settings.with_clusters(clusters, 0).unwrap();
    let loss_of = |defense: &mut TextObfuscator, ids: Vec<i64>, mask: Vec<i64>| {
        defense.on_input(batch(ids, mask, [1, 3], &device), &TRAIN);
        defense.on_activation(Tensor::<3>::zeros([1, 3, 2], &device), &TRAIN);
        values(defense.extra_loss(&TRAIN).unwrap())[0] as f64
    };
    // Away: −‖c0 − c1‖ / 3 = −2/3, weighted 0.5 → −1/3. Close at h = 0: MSE = 0.5 per
    // position whatever the cluster.
    let away = -1.0 / 3.0;
    let both = loss_of(&mut defense, vec![5, 6, 7], vec![1, 1, 1]);
    assert!((both - 2.0 * (0.5 + away)).abs() < 1e-6, "{both}");
    // Only the excluded token and padding: the close term is left out.
    let none = loss_of(&mut defense, vec![7, 5, 6], vec![1, 0, 0]);
    assert!((none - 2.0 * away).abs() < 1e-6, "{none}");
}

#[test]
fn trainable_centres_are_pushed_apart_by_the_away_term() {
    let device = device();
    let settings = ObfuscatorSettings {
        cluster_num: 3,
        w_cluster_close: 0.0,
        center_lr: Some(0.05),
        ..ObfuscatorSettings::default()
    };
    let centres = vec![0.0, 0.0, 0.1, 0.0, 0.0, 0.1];
    let clusters = TokenClusters::given(centres, 2, HashMap::from([(1, 0), (2, 1), (3, 2)]));
    let mut defense = settings.with_clusters(clusters, 0).unwrap();
    assert!(defense.is_trainable());
    let spread = |d: &TextObfuscator| -away_term_host(d.clusters().centres(), 2);
    let before = spread(&defense);
    for _ in 0..20 {
        defense.on_input(batch(vec![1, 2, 3], vec![1, 1, 1], [1, 3], &device), &TRAIN);
        let sent = defense.on_activation(Tensor::<3>::zeros([1, 3, 2], &device), &TRAIN);
        let loss = defense.extra_loss(&TRAIN).unwrap();
        let grads = (loss + sent.sum() * 0.0).backward();
        defense.update(&grads, &TRAIN);
    }
    let after = spread(&defense);
    assert!(after > before + 0.5, "mean distance {before} → {after}");
    let fixed = ObfuscatorSettings {
        cluster_num: 3,
        ..ObfuscatorSettings::default()
    };
    let clusters = TokenClusters::given(vec![0.0; 6], 2, HashMap::new());
    assert!(!fixed.with_clusters(clusters, 0).unwrap().is_trainable());
}

/// A head whose output at a token is a fixed point per id: ids below 10 near (0, 0, 0), the
/// others near (10, 10, 10), so two clusters split them by that rule.
fn separable_head() -> HeadRunner {
    Arc::new(|batch: &TokenBatch| {
        let [b, s] = batch.dims();
        let ids = batch
            .input_ids
            .clone()
            .into_data()
            .try_into_vec_as::<i64>()
            .unwrap();
        let values: Vec<f32> = ids
            .iter()
            .flat_map(|&id| {
                let base = if id < 10 { 0.0 } else { 10.0 };
                let wobble = (id as f32 * 0.7).sin() * 0.3;
                [base + wobble, base - wobble, base]
            })
            .collect();
        Ok(Hidden {
            states: Tensor::<3>::from_data(
                TensorData::new(values, [b, s, 3]),
                &batch.input_ids.device(),
            ),
            attention_mask: batch.attention_mask.clone(),
            positions: batch.positions(),
        })
    })
}

fn env_with(head: Option<HeadRunner>, inputs: Vec<Vec<u32>>) -> DefenseEnv {
    let mut env = DefenseEnv::bare(device(), 3, 30);
    env.head = head;
    env.training_inputs = Arc::new(inputs);
    env
}

#[test]
fn building_clusters_the_tokens_seeded_and_through_the_config() {
    let inputs = vec![vec![1, 2, 3, 11, 12], vec![4, 13, 14, 1], vec![5, 15]];
    let env = env_with(Some(separable_head()), inputs);
    let settings = ObfuscatorSettings {
        cluster_num: 2,
        ..ObfuscatorSettings::default()
    };
    let clusters = settings.clusters(5, &env).unwrap();
    assert_eq!(clusters.tokens(), &[1, 2, 3, 4, 5, 11, 12, 13, 14, 15]);
    assert_eq!(clusters.positions(), 11);
    let low = clusters.cluster_of(1).unwrap();
    for id in [2, 3, 4, 5] {
        assert_eq!(clusters.cluster_of(id), Some(low), "token {id}");
    }
    for id in [11, 12, 13, 14, 15] {
        assert_eq!(clusters.cluster_of(id), Some(1 - low), "token {id}");
    }
    assert_eq!(clusters.cluster_of(20), None);
    assert_eq!(clusters.token_mean(1).unwrap()[2], 0.0);
    assert!(clusters.centre(1 - low)[2] > 9.0);
    assert_eq!(
        settings.clusters(5, &env).unwrap().centres(),
        clusters.centres()
    );

    let config: DefenseConfig = serde_json::from_value(serde_json::json!({
        "kind": "text_obfuscator", "cluster_num": 2,
    }))
    .unwrap();
    assert_eq!(config.needs(), settings.needs());
    let defense = config.build(5, &env).unwrap();
    assert_eq!(defense.name(), "text_obfuscator");
    assert_eq!(defense.params()["clustered_tokens"], 10);
    assert_eq!(defense.params()["scale"], 0.1);

    // More clusters than distinct tokens, and missing pieces, are refused with the reason.
    let many = ObfuscatorSettings::default();
    let err = many.clusters(0, &env).unwrap_err().to_string();
    assert!(
        err.contains("cluster_num = 100") && err.contains("10 distinct tokens"),
        "{err}"
    );
    let err = settings
        .clusters(0, &env_with(None, vec![vec![1]]))
        .unwrap_err();
    assert!(err.to_string().contains("pretrained head"), "{err}");
    let err = settings
        .clusters(0, &env_with(Some(separable_head()), vec![]))
        .unwrap_err();
    assert!(err.to_string().contains("training inputs"), "{err}");
}

#[test]
fn defaults_are_the_reference_configuration_and_bad_settings_are_refused() {
    let config: DefenseConfig =
        serde_json::from_value(serde_json::json!({ "kind": "text_obfuscator" })).unwrap();
    let DefenseConfig::TextObfuscator(s) = &config else {
        panic!("{config:?}")
    };
    // alpaca_gpt2_to.json:77-82 and LoadConfigs.py:825.
    assert_eq!(
        (
            s.cluster_num,
            s.epsilon,
            s.w_cluster_close,
            s.w_cluster_away,
            s.lambda
        ),
        (100, 10.0, 0.1, 0.5, 1.0)
    );
    assert_eq!(s.excluded_ids, vec![0, 2]);
    assert_eq!(s.cluster_method, ClusterMethod::Kmeans);
    assert_eq!(s.center_lr, None);
    config.validate().unwrap();
    let unknown = serde_json::json!({ "kind": "text_obfuscator", "lamba": 0.5 });
    assert!(serde_json::from_value::<DefenseConfig>(unknown).is_err());

    let refused = |s: ObfuscatorSettings, field: &str| {
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains(field), "{field}: {err}");
    };
    let base = ObfuscatorSettings::default;
    refused(
        ObfuscatorSettings {
            cluster_num: 0,
            ..base()
        },
        "cluster_num",
    );
    refused(
        ObfuscatorSettings {
            epsilon: 0.0,
            ..base()
        },
        "epsilon",
    );
    refused(
        ObfuscatorSettings {
            epsilon: f64::NAN,
            ..base()
        },
        "epsilon",
    );
    refused(
        ObfuscatorSettings {
            w_cluster_close: -1.0,
            ..base()
        },
        "w_cluster_close",
    );
    refused(
        ObfuscatorSettings {
            w_cluster_away: f64::INFINITY,
            ..base()
        },
        "w_cluster_away",
    );
    refused(
        ObfuscatorSettings {
            lambda: -0.1,
            ..base()
        },
        "lambda",
    );
    refused(
        ObfuscatorSettings {
            kmeans_runs: 0,
            ..base()
        },
        "kmeans_runs",
    );
    refused(
        ObfuscatorSettings {
            cluster_batch_size: 0,
            ..base()
        },
        "cluster_batch_size",
    );
    refused(
        ObfuscatorSettings {
            center_lr: Some(0.0),
            ..base()
        },
        "center_lr",
    );
    refused(
        ObfuscatorSettings {
            cluster_method: ClusterMethod::Gmm,
            ..base()
        },
        "cluster_method",
    );
    let clusters = TokenClusters::given(vec![0.0; 6], 3, HashMap::new());
    let err = base().with_clusters(clusters, 0).err().unwrap().to_string();
    assert!(err.contains("cluster_num = 100"), "{err}");
}
