//! TextObfuscator on a real split run of the tiny Llama fixture (Head–Tail, the data party's
//! head trained in full with AdamW, the model party frozen): after a few training steps, what
//! the head sends sits closer to each token's cluster centre than without the defense, so
//! matching a sent vector to the nearest pretrained token representation recovers fewer tokens.
//!
//! The reference's weights (w_close 0.1 on a mean over positions and features) move this tiny
//! random model too little in a few steps to measure (20 steps at λ = 1: mean squared distance
//! to the centre 26.57 → 25.86), so the test uses the intended multiplier `lambda` = 1000.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::tensor::Device;
use splitlm_defenses::{DefenseEnv, Defenses, HeadRunner, ObfuscatorSettings};
use splitlm_device::DeviceSpec;
use splitlm_nn::batch::PaddingSide;
use splitlm_nn::seeded::SplitMix64;
use splitlm_nn::testing::fixtures_dir;
use splitlm_nn::{Hidden, Labels, TaskHead, TokenBatch, TransformerSlice};
use splitlm_partition::{Partition, Trainability};
use splitlm_party::{DataParty, ModelParty, OptimizerConfig, PartyOptions, PartySlice};
use splitlm_protocol::{
    Limits, Message, ProtocolError, TensorFrame, Traffic, Transport, WireDType, in_process_pair,
};
use splitlm_zoo::Pretrained;

const TASK: TaskHead = TaskHead::CausalLm;
const STEPS: usize = 30;
const SEED: u64 = 11;
const LAMBDA: f64 = 1000.0;

fn cpu() -> Device {
    DeviceSpec::Cpu.device().unwrap().autodiff()
}

/// Keeps a copy of every activation frame the data party sends.
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

/// Eight seeded sequences of twelve ids in 3..99 (clear of the excluded ids 0 and 2).
fn training_inputs() -> Vec<Vec<u32>> {
    let mut rng = SplitMix64::new(5);
    (0..8)
        .map(|_| (0..12).map(|_| 3 + (rng.next_u64() % 96) as u32).collect())
        .collect()
}

fn checkpoint() -> Pretrained {
    Pretrained::open(&fixtures_dir().join("models").join("llama")).unwrap()
}

/// The data party's environment built by hand: the pretrained head and the training inputs.
fn env(n_head: usize, device: &Device) -> DefenseEnv {
    let ckpt = checkpoint();
    let slices = Partition::head_tail(n_head)
        .slices(ckpt.num_layers())
        .unwrap();
    let head = ckpt.load(&slices.data_head, TASK, device).unwrap();
    let runner: HeadRunner = Arc::new(move |batch: &TokenBatch| {
        let hidden = head.embed(batch).map_err(|e| e.to_string())?;
        let out = head
            .forward_blocks(hidden, None)
            .map_err(|e| e.to_string())?;
        Ok(Hidden {
            states: out.states.detach(),
            ..out
        })
    });
    let mut env = DefenseEnv::bare(device.clone(), ckpt.hidden_size(), ckpt.vocab_size());
    env.head = Some(runner);
    env.training_inputs = Arc::new(training_inputs());
    env
}

/// After `STEPS` training steps with `defenses`: the head's clean output for the training
/// batch and what the model party receives for it, each as `[position][hidden]`, and the
/// losses of the first and last steps.
struct Trained {
    clean: Vec<Vec<f32>>,
    sent: Vec<Vec<f32>>,
    first: f32,
    last: f32,
}

fn rows(values: Vec<f32>, d: usize) -> Vec<Vec<f32>> {
    values.chunks(d).map(<[f32]>::to_vec).collect()
}

fn train(n_head: usize, defenses: Defenses) -> Trained {
    let device = cpu();
    let ckpt = checkpoint();
    let slices = Partition::head_tail(n_head)
        .slices(ckpt.num_layers())
        .unwrap();
    let model_slice = PartySlice::frozen(ckpt.load(&slices.model, TASK, &device).unwrap()).unwrap();
    let model = ModelParty::new(model_slice, WireDType::F32);
    let (a, b) = in_process_pair(Limits::default());
    let server = model.spawn(b);
    let sent = Arc::new(Mutex::new(Vec::new()));
    let tap = Tap {
        inner: a,
        sent: sent.clone(),
    };
    let optimizer = OptimizerConfig {
        lr: 5e-2,
        ..OptimizerConfig::default()
    };
    let head = PartySlice::new(
        ckpt.load(&slices.data_head, TASK, &device).unwrap(),
        &Trainability::default(),
        &optimizer,
        STEPS,
        SEED,
    )
    .unwrap();
    let mut data = DataParty::connect(head, None, Box::new(tap), &PartyOptions::default()).unwrap();
    data.set_defenses(defenses);
    let batch =
        TokenBatch::from_sequences(&training_inputs(), 0, PaddingSide::Right, &device).unwrap();
    let labels = Labels::next_tokens(&batch.input_ids, &batch.attention_mask);
    let mut losses = Vec::new();
    let start = Instant::now();
    for _ in 0..STEPS {
        losses.push(data.train_step(&batch, &labels).unwrap().loss);
    }
    eprintln!(
        "n_head {n_head}: {STEPS} steps in {:.2} s ({:.0} ms/step), losses {losses:?}",
        start.elapsed().as_secs_f64(),
        start.elapsed().as_secs_f64() * 1000.0 / STEPS as f64
    );
    let head = data.head().model();
    let clean = head
        .forward_blocks(head.embed(&batch).unwrap(), None)
        .unwrap()
        .states
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap();
    data.eval_step(&batch).unwrap();
    data.finish().unwrap();
    server.join().unwrap().unwrap();
    let frame = sent.lock().unwrap().last().unwrap().to_f32().unwrap();
    let d = ckpt.hidden_size();
    Trained {
        clean: rows(clean, d),
        sent: rows(frame, d),
        first: losses[0],
        last: *losses.last().unwrap(),
    }
}

fn squared(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum()
}

#[test]
fn trained_with_the_defense_tokens_sit_near_their_cluster_centres_and_are_harder_to_recover() {
    let device = cpu();
    let ids: Vec<u32> = training_inputs().concat();
    for n_head in [0, 1] {
        let env = env(n_head, &device);
        let settings = ObfuscatorSettings {
            cluster_num: 8,
            lambda: LAMBDA,
            ..ObfuscatorSettings::default()
        };
        let start = Instant::now();
        let clusters = settings.clusters(SEED, &env).unwrap();
        let (embed_s, kmeans_s) = clusters.seconds();
        eprintln!(
            "n_head {n_head}: clustered {} tokens ({} positions) into {} clusters in {:.3} s \
             (head {embed_s:.3} s, k-means {kmeans_s:.3} s, {} iterations)",
            clusters.tokens().len(),
            clusters.positions(),
            clusters.cluster_num(),
            start.elapsed().as_secs_f64(),
            clusters.iterations()
        );
        let defense = settings.with_clusters(clusters.clone(), SEED).unwrap();
        let plain = train(n_head, Defenses::none());
        let defended = train(n_head, Defenses::new(vec![Box::new(defense)]));

        // Mean squared distance of each vector to its token's cluster centre.
        let to_centre = |rows: &[Vec<f32>]| -> f64 {
            rows.iter()
                .zip(&ids)
                .map(|(r, &id)| squared(r, clusters.centre(clusters.cluster_of(id).unwrap())))
                .sum::<f64>()
                / rows.len() as f64
        };
        // The attacker's guess: the token whose pretrained mean representation is nearest.
        let recovered = |rows: &[Vec<f32>]| -> f64 {
            let nearest = |r: &[f32]| {
                *clusters
                    .tokens()
                    .iter()
                    .min_by(|&&a, &&b| {
                        squared(r, clusters.token_mean(a).unwrap())
                            .total_cmp(&squared(r, clusters.token_mean(b).unwrap()))
                    })
                    .unwrap()
            };
            let hits = rows.iter().zip(&ids).filter(|&(r, &id)| nearest(r) == id);
            hits.count() as f64 / rows.len() as f64
        };
        eprintln!(
            "n_head {n_head}: to the cluster centre (clean output) {:.5} without, {:.5} with \
             the defense; nearest-token recovery, clean output {:.3} without, {:.3} with; \
             sent {:.3} without, {:.3} with; losses {:.4} → {:.4} without, {:.4} → {:.4} with",
            to_centre(&plain.clean),
            to_centre(&defended.clean),
            recovered(&plain.clean),
            recovered(&defended.clean),
            recovered(&plain.sent),
            recovered(&defended.sent),
            plain.first,
            plain.last,
            defended.first,
            defended.last,
        );
        assert!(
            defended.last.is_finite() && defended.last < defended.first,
            "training runs: {} → {}",
            defended.first,
            defended.last
        );
        assert!(
            to_centre(&defended.clean) < 0.8 * to_centre(&plain.clean),
            "n_head {n_head}: the clean output is no nearer its centres"
        );
        // Through one block at this learning rate the undefended head drifts far from its
        // pretrained self (measured: distance 5565, recovery 0.03), so the pretrained-nearest
        // attack only tells something against the embeddings-only head.
        if n_head == 0 {
            // Measured: 1.000 → 0.219 (clean), 1.000 → 0.229 (sent).
            assert!(
                recovered(&plain.sent) > 0.9,
                "the attack works without the defense"
            );
            assert!(
                recovered(&defended.clean) < 0.5 * recovered(&plain.clean),
                "the pull alone does not hide tokens"
            );
            assert!(
                recovered(&defended.sent) < 0.5 * recovered(&plain.sent),
                "what is sent is no harder to recover"
            );
        }
    }
}
