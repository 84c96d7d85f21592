//! MID, the mutual-information defense: a per-token variational information bottleneck on
//! what crosses, trained with the run.
//!
//! The default is VFLAIR-LLM's `MIDModel_Linear` (`models/mid_model_rapper.py`) as its passive
//! party builds it (`party/passive_party.py`): `[μ, s] = ReLU(Linear(d → 2·d·B)(h))`,
//! `σ = softplus(s − 5)`, `z = μ + σ·ε` with ε ~ N(0, 1) drawn on every forward (training,
//! evaluation, generation alike), and `ReLU(Linear(d·B → d)(z))` is what goes on; both layers
//! start as PyTorch initialises a `Linear` (uniform in ±1/√fan_in). The KL term joins the data
//! party's objective as `λ · mean over (batch, d·B) of Σ_seq KL / (seq·d)`. The bottleneck sits
//! on the head's output before it is sent (`position = "head"`, the reference's default), on
//! the body's output as it arrives, before the tail (`"tail"`), or both, each with its own
//! weights; each trains with its own Adam (PyTorch's defaults, learning rate `lr`).
//!
//! splitlm's earlier bottleneck stays as options: `init = "identity"` (linear layers without
//! the ReLUs, starting as the identity: μ = h, σ ≈ 0.007, decoder = mean of the B copies, so a
//! split model keeps its pretrained behaviour at step 0), `eval_noise = false` (z = μ outside
//! training) and `kl = "token_mean"` (`λ · mean over tokens of Σ_latent KL`).
//!
//! The weights live on the host and are uploaded to the tensor's device each step (they are
//! small next to a transformer block).

use burn::tensor::activation::{relu, softplus};
use burn::tensor::{Gradients, Tensor, TensorData};
use splitlm_nn::seeded::SplitMix64;

use crate::{Defense, DefenseError, HookContext};

/// Adam's constants for the bottleneck (PyTorch's defaults).
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// Where the bottleneck sits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MidPosition {
    /// On the head's output, before it is sent (the reference's default).
    #[default]
    Head,
    /// On the body's output as it arrives, before the tail (Head–Body–Tail).
    Tail,
    /// Both, with a bottleneck each.
    Both,
}

impl MidPosition {
    fn head(self) -> bool {
        matches!(self, MidPosition::Head | MidPosition::Both)
    }
    fn tail(self) -> bool {
        matches!(self, MidPosition::Tail | MidPosition::Both)
    }
}

/// How the bottleneck starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MidInit {
    /// The reference's: PyTorch's `Linear` initialisation, a ReLU after each layer.
    #[default]
    Random,
    /// splitlm's earlier: linear layers without ReLUs, starting as the identity.
    Identity,
}

/// How the KL term is normalised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlScale {
    /// The reference's: `λ · mean over (batch, d·B) of Σ_seq KL / (seq·d)`.
    #[default]
    Reference,
    /// splitlm's earlier: `λ · mean over tokens of Σ_latent KL`.
    TokenMean,
}

/// MID's settings; [`MidSettings::new`] gives the reference's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MidSettings {
    /// KL weight λ (the reference's configurations: 0.01–0.5).
    pub lambda: f64,
    /// Bottleneck width in multiples of the hidden size (the reference's
    /// `bottleneck_scale`, 1).
    pub expansion: usize,
    /// The bottleneck's Adam learning rate (the reference's configurations: 1e-3, 1e-4).
    pub lr: f64,
    /// Where the bottleneck sits.
    pub position: MidPosition,
    /// How it starts.
    pub init: MidInit,
    /// Whether ε is drawn outside training too (the reference: always).
    pub eval_noise: bool,
    /// The shift in `σ = softplus(s − shift)` (the reference's passive party: 5).
    pub std_shift: f64,
    /// How the KL term is normalised.
    pub kl: KlScale,
}

impl MidSettings {
    /// KL weight `lambda`, every other setting the reference's.
    pub fn new(lambda: f64) -> Self {
        Self {
            lambda,
            expansion: 1,
            lr: 1e-3,
            position: MidPosition::Head,
            init: MidInit::Random,
            eval_noise: true,
            std_shift: 5.0,
            kl: KlScale::Reference,
        }
    }
}

/// One host parameter with its Adam moments.
struct HostParam {
    dims: Vec<usize>,
    values: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl HostParam {
    fn new(dims: Vec<usize>, values: Vec<f32>) -> Self {
        let n = values.len();
        Self {
            dims,
            values,
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    fn adam(&mut self, grad: &[f32], lr: f64, t: i32) {
        let (c1, c2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
        for (i, &g) in grad.iter().enumerate() {
            let g = g as f64;
            let m = BETA1 * self.m[i] as f64 + (1.0 - BETA1) * g;
            let v = BETA2 * self.v[i] as f64 + (1.0 - BETA2) * g * g;
            self.m[i] = m as f32;
            self.v[i] = v as f32;
            self.values[i] -= (lr * (m / c1) / ((v / c2).sqrt() + EPS)) as f32;
        }
    }
}

/// One bottleneck's forward pass in a training step: what goes on, the KL term and the
/// parameter leaves to read the gradients of.
pub(crate) struct Pass {
    pub(crate) out: Tensor<3>,
    pub(crate) kl: Tensor<1>,
    pub(crate) leaves: Vec<Tensor<1>>,
}

/// Encoder weight `[d, 2dB]` (applied as `h·W`), its bias, decoder weight `[dB, d]`, its bias.
pub(crate) struct Bottleneck {
    params: [HostParam; 4],
    relu: bool,
    steps: i32,
}

impl Bottleneck {
    /// PyTorch's `nn.Linear` initialisation (weights and biases uniform in ±1/√fan_in), with
    /// the reference's ReLUs.
    fn random(d: usize, expansion: usize, rng: &mut SplitMix64) -> Self {
        let width = d * expansion;
        let mut uniform = |n: usize, fan_in: usize| -> Vec<f32> {
            let bound = 1.0 / (fan_in as f64).sqrt();
            (0..n)
                .map(|_| (bound * (2.0 * rng.uniform() - 1.0)) as f32)
                .collect()
        };
        Self {
            params: [
                HostParam::new(vec![d, 2 * width], uniform(d * 2 * width, d)),
                HostParam::new(vec![2 * width], uniform(2 * width, d)),
                HostParam::new(vec![width, d], uniform(width * d, width)),
                HostParam::new(vec![d], uniform(d, width)),
            ],
            relu: true,
            steps: 0,
        }
    }

    /// The identity start: μ copies h into each of the B slots, s = 0, the decoder averages;
    /// no ReLUs (they would zero the negative activations).
    fn identity(d: usize, expansion: usize) -> Self {
        let width = d * expansion;
        let mut encode = vec![0.0f32; d * 2 * width];
        for k in 0..expansion {
            for i in 0..d {
                encode[i * 2 * width + k * d + i] = 1.0;
            }
        }
        let mut decode = vec![0.0f32; width * d];
        for k in 0..expansion {
            for i in 0..d {
                decode[(k * d + i) * d + i] = 1.0 / expansion as f32;
            }
        }
        Self {
            params: [
                HostParam::new(vec![d, 2 * width], encode),
                HostParam::new(vec![2 * width], vec![0.0; 2 * width]),
                HostParam::new(vec![width, d], decode),
                HostParam::new(vec![d], vec![0.0; d]),
            ],
            relu: false,
            steps: 0,
        }
    }

    /// A bottleneck from PyTorch `Linear` weights (`[out, in]`), with the reference's ReLUs.
    #[cfg(test)]
    pub(crate) fn from_torch(
        d: usize,
        expansion: usize,
        [enc_w, enc_b, dec_w, dec_b]: [&[f32]; 4],
    ) -> Self {
        let width = d * expansion;
        let transpose = |w: &[f32], rows: usize, cols: usize| -> Vec<f32> {
            (0..cols)
                .flat_map(|c| (0..rows).map(move |r| w[r * cols + c]))
                .collect()
        };
        Self {
            params: [
                HostParam::new(vec![d, 2 * width], transpose(enc_w, 2 * width, d)),
                HostParam::new(vec![2 * width], enc_b.to_vec()),
                HostParam::new(vec![width, d], transpose(dec_w, d, width)),
                HostParam::new(vec![d], dec_b.to_vec()),
            ],
            relu: true,
            steps: 0,
        }
    }

    /// The parameters in PyTorch's layout (`[out, in]` weights), for the fixtures.
    #[cfg(test)]
    pub(crate) fn torch_params(&self) -> [Vec<f32>; 4] {
        let t = |p: &HostParam| -> Vec<f32> {
            let (rows, cols) = (p.dims[0], p.dims[1]);
            (0..cols)
                .flat_map(|c| (0..rows).map(move |r| p.values[r * cols + c]))
                .collect()
        };
        [
            t(&self.params[0]),
            self.params[1].values.clone(),
            t(&self.params[2]),
            self.params[3].values.clone(),
        ]
    }

    /// The bottleneck on `hidden` `[b, s, d]` with `noise` `[b·s, d·B]` (None: z = μ); the
    /// parameters track their gradients when `track` is set.
    pub(crate) fn forward(
        &self,
        hidden: Tensor<3>,
        noise: Option<Tensor<2>>,
        settings: &MidSettings,
        track: bool,
    ) -> Pass {
        let [b, s, d] = hidden.dims();
        let device = hidden.device();
        let leaves: Vec<Tensor<1>> = self
            .params
            .iter()
            .map(|p| {
                let t = Tensor::<1>::from_data(
                    TensorData::new(p.values.clone(), [p.values.len()]),
                    &device,
                );
                if track { t.require_grad() } else { t }
            })
            .collect();
        let width = self.params[2].dims[0];
        let rows = b * s;
        let encode = leaves[0].clone().reshape([d, 2 * width]);
        let decode = leaves[2].clone().reshape([width, d]);
        let mut stats =
            hidden.reshape([rows, d]).matmul(encode) + leaves[1].clone().unsqueeze::<2>();
        if self.relu {
            stats = relu(stats);
        }
        let mu = stats.clone().narrow(1, 0, width);
        let sigma = softplus(stats.narrow(1, width, width) - settings.std_shift, 1.0);
        let z = match noise {
            Some(noise) => mu.clone() + sigma.clone() * noise,
            None => mu.clone(),
        };
        let mut out = z.matmul(decode) + leaves[3].clone().unsqueeze::<2>();
        if self.relu {
            out = relu(out);
        }
        // KL(N(μ, σ²) ‖ N(0, 1)) per latent value: ½(μ² + σ² − 2 ln σ − 1).
        let kl = (mu.powi_scalar(2) + sigma.clone().powi_scalar(2)
            - sigma.clamp_min(1e-12).log() * 2.0
            - 1.0)
            * 0.5;
        let kl = match settings.kl {
            KlScale::Reference => {
                kl.reshape([b, s, width]).sum_dim(1).mean() * (settings.lambda / (s * d) as f64)
            }
            KlScale::TokenMean => kl.sum_dim(1).mean() * settings.lambda,
        };
        Pass {
            out: out.reshape([b, s, d]),
            kl,
            leaves,
        }
    }

    /// One Adam step at `lr` from the gradients of `leaves` (as [`Bottleneck::forward`]
    /// returned them) in `grads`.
    pub(crate) fn step(&mut self, leaves: Vec<Tensor<1>>, grads: &Gradients, lr: f64) {
        if leaves.len() != self.params.len() {
            return;
        }
        self.steps += 1;
        for (param, leaf) in self.params.iter_mut().zip(leaves) {
            if let Some(grad) = leaf.grad(grads) {
                let grad = grad
                    .into_data()
                    .try_into_vec_as::<f32>()
                    .expect("a float gradient");
                debug_assert_eq!(grad.len(), param.dims.iter().product::<usize>());
                param.adam(&grad, lr, self.steps);
            }
        }
    }
}

/// A bottleneck at one position, created on first use (when the width is known), with what
/// the current training step left for its loss and update.
#[derive(Default)]
struct Site {
    bottleneck: Option<Bottleneck>,
    leaves: Vec<Tensor<1>>,
    kl: Option<Tensor<1>>,
}

/// The mutual-information defense.
pub struct Mid {
    settings: MidSettings,
    init_rng: SplitMix64,
    noise_rng: SplitMix64,
    head: Site,
    tail: Site,
}

impl Mid {
    /// MID with `settings`; its initial weights and its noise are seeded by `seed`.
    pub fn new(settings: MidSettings, seed: u64) -> Result<Self, DefenseError> {
        let fail = |reason: String| {
            Err(DefenseError {
                defense: "mid",
                reason,
            })
        };
        let MidSettings {
            lambda,
            expansion,
            lr,
            std_shift,
            ..
        } = settings;
        if !(lambda >= 0.0 && lambda.is_finite()) {
            return fail(format!("lambda = {lambda} must be ≥ 0"));
        }
        if expansion == 0 {
            return fail("expansion = 0: the bottleneck would be empty".into());
        }
        if !(lr > 0.0 && lr.is_finite()) {
            return fail(format!("lr = {lr} must be > 0"));
        }
        if !std_shift.is_finite() {
            return fail(format!("std_shift = {std_shift} must be finite"));
        }
        let mut seeds = SplitMix64::new(seed);
        Ok(Self {
            settings,
            init_rng: SplitMix64::new(seeds.next_u64()),
            noise_rng: SplitMix64::new(seeds.next_u64()),
            head: Site::default(),
            tail: Site::default(),
        })
    }

    /// The bottleneck at the tail (`tail`) or the head on `hidden`, keeping the step's KL and
    /// leaves when training.
    fn pass(&mut self, tail: bool, hidden: Tensor<3>, ctx: &HookContext) -> Tensor<3> {
        let [b, s, d] = hidden.dims();
        let settings = self.settings;
        let init_rng = &mut self.init_rng;
        let site = if tail { &mut self.tail } else { &mut self.head };
        let bottleneck = site.bottleneck.get_or_insert_with(|| match settings.init {
            MidInit::Random => Bottleneck::random(d, settings.expansion, init_rng),
            MidInit::Identity => Bottleneck::identity(d, settings.expansion),
        });
        let noise = (ctx.training || settings.eval_noise).then(|| {
            let (rows, width) = (b * s, d * settings.expansion);
            let rng = &mut self.noise_rng;
            let values: Vec<f32> = (0..rows * width).map(|_| rng.normal() as f32).collect();
            Tensor::<2>::from_data(TensorData::new(values, [rows, width]), &hidden.device())
        });
        let pass = bottleneck.forward(hidden, noise, &settings, ctx.training);
        if ctx.training {
            site.kl = Some(pass.kl);
            site.leaves = pass.leaves;
        }
        pass.out
    }
}

impl Defense for Mid {
    fn name(&self) -> &'static str {
        "mid"
    }

    fn params(&self) -> serde_json::Value {
        let s = &self.settings;
        serde_json::json!({
            "lambda": s.lambda, "expansion": s.expansion, "lr": s.lr, "position": s.position,
            "init": s.init, "eval_noise": s.eval_noise, "std_shift": s.std_shift, "kl": s.kl,
        })
    }

    fn on_activation(&mut self, hidden: Tensor<3>, ctx: &HookContext) -> Tensor<3> {
        if self.settings.position.head() {
            self.pass(false, hidden, ctx)
        } else {
            hidden
        }
    }

    fn on_received(&mut self, hidden: Tensor<3>, ctx: &HookContext) -> Tensor<3> {
        if self.settings.position.tail() {
            self.pass(true, hidden, ctx)
        } else {
            hidden
        }
    }

    fn extra_loss(&mut self, _ctx: &HookContext) -> Option<Tensor<1>> {
        self.head.kl.take()
    }

    fn tail_loss(&mut self, _ctx: &HookContext) -> Option<Tensor<1>> {
        self.tail.kl.take()
    }

    fn is_trainable(&self) -> bool {
        self.settings.position.head()
    }

    fn update(&mut self, grads: &Gradients, _ctx: &HookContext) {
        let leaves = std::mem::take(&mut self.head.leaves);
        if let Some(b) = self.head.bottleneck.as_mut() {
            b.step(leaves, grads, self.settings.lr);
        }
    }

    fn update_tail(&mut self, grads: &Gradients, _ctx: &HookContext) {
        let leaves = std::mem::take(&mut self.tail.leaves);
        if let Some(b) = self.tail.bottleneck.as_mut() {
            b.step(leaves, grads, self.settings.lr);
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Tensor;
    use splitlm_device::DeviceSpec;

    use super::*;

    fn ctx(training: bool) -> HookContext {
        HookContext { step: 0, training }
    }

    fn hidden() -> Tensor<3> {
        let device = DeviceSpec::Cpu.device().unwrap().autodiff();
        let values: Vec<f32> = (0..2 * 3 * 4).map(|i| (i as f32 * 0.37).sin()).collect();
        Tensor::<3>::from_data(TensorData::new(values, [2, 3, 4]), &device)
    }

    fn values(t: Tensor<3>) -> Vec<f32> {
        t.into_data().try_into_vec_as().unwrap()
    }

    #[test]
    fn the_identity_option_starts_as_the_identity_and_its_kl_pulls_the_code_towards_the_prior() {
        let settings = MidSettings {
            expansion: 2,
            lr: 0.05,
            init: MidInit::Identity,
            eval_noise: false,
            kl: KlScale::TokenMean,
            ..MidSettings::new(1.0)
        };
        let mut mid = Mid::new(settings, 0).unwrap();
        // Evaluation: z = μ = h, decoded by the mean of two identical copies: h itself.
        let out = values(mid.on_activation(hidden(), &ctx(false)));
        for (o, v) in out.iter().zip(values(hidden())) {
            assert!((o - v).abs() < 1e-6, "{o} vs {v}");
        }
        assert!(
            mid.extra_loss(&ctx(false)).is_none(),
            "no KL outside training"
        );
        // Training on the KL alone shrinks the code: the sent activations lose their norm.
        let norm = |t: Tensor<3>| -> f32 { t.powi_scalar(2).sum().sqrt().into_scalar() };
        let first = norm(mid.on_activation(hidden(), &ctx(true)));
        for _ in 0..60 {
            let sent = mid.on_activation(hidden(), &ctx(true));
            let kl = mid.extra_loss(&ctx(true)).unwrap();
            let grads = (kl + sent.sum() * 0.0).backward();
            mid.update(&grads, &ctx(true));
        }
        let last = norm(mid.on_activation(hidden(), &ctx(false)));
        assert!(last < 0.5 * first, "norm {first} → {last}");
        assert_eq!(mid.params()["init"], "identity");
        assert!(Mid::new(MidSettings::new(-1.0), 0).is_err());
        let empty = MidSettings {
            expansion: 0,
            ..MidSettings::new(0.1)
        };
        assert!(Mid::new(empty, 0).is_err());
    }

    #[test]
    fn the_reference_bottleneck_draws_noise_in_evaluation_too_and_sends_no_negative_value() {
        let mut mid = Mid::new(MidSettings::new(0.1), 3).unwrap();
        let a = values(mid.on_activation(hidden(), &ctx(false)));
        let b = values(mid.on_activation(hidden(), &ctx(false)));
        assert_ne!(a, b, "ε is drawn on every forward");
        assert!(a.iter().all(|&v| v >= 0.0), "the decoder ends in a ReLU");
        assert!(mid.extra_loss(&ctx(false)).is_none());
        mid.on_activation(hidden(), &ctx(true));
        assert!(mid.extra_loss(&ctx(true)).is_some());
        // The same seed, the same weights and draws.
        let mut again = Mid::new(MidSettings::new(0.1), 3).unwrap();
        assert_eq!(values(again.on_activation(hidden(), &ctx(false))), a);
        let no_noise = MidSettings {
            eval_noise: false,
            ..MidSettings::new(0.1)
        };
        let mut quiet = Mid::new(no_noise, 3).unwrap();
        let c = values(quiet.on_activation(hidden(), &ctx(false)));
        assert_eq!(c, values(quiet.on_activation(hidden(), &ctx(false))));
    }

    #[test]
    fn at_the_tail_it_acts_on_what_arrives_and_trains_from_the_tail_side() {
        let settings = MidSettings {
            position: MidPosition::Tail,
            lr: 0.05,
            ..MidSettings::new(1.0)
        };
        let mut mid = Mid::new(settings, 1).unwrap();
        assert!(!mid.is_trainable(), "nothing to train on the head side");
        let sent = mid.on_activation(hidden(), &ctx(true));
        assert_eq!(
            values(sent),
            values(hidden()),
            "the head's output crosses as it is"
        );
        assert!(mid.extra_loss(&ctx(true)).is_none());
        let kl_at = |mid: &mut Mid| -> f32 {
            mid.on_received(hidden(), &ctx(true));
            mid.tail_loss(&ctx(true)).unwrap().into_scalar()
        };
        let first = kl_at(&mut mid);
        for _ in 0..30 {
            let out = mid.on_received(hidden(), &ctx(true));
            let kl = mid.tail_loss(&ctx(true)).unwrap();
            let grads = (kl + out.sum() * 0.0).backward();
            mid.update_tail(&grads, &ctx(true));
        }
        let last = kl_at(&mut mid);
        assert!(last < first, "KL {first} → {last}");
        let both = MidSettings {
            position: MidPosition::Both,
            ..MidSettings::new(1.0)
        };
        assert!(Mid::new(both, 0).unwrap().is_trainable());
    }
}
