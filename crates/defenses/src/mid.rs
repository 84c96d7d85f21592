//! MID, the mutual-information defense (after VFLAIR-LLM's `MID_model`): a per-token
//! variational information bottleneck on the head's output. `[μ, s] = Linear(d → 2·d·B)`,
//! `σ = softplus(s − 5)`, `z = μ + σ·ε` (ε ~ N(0, 1) when training, `z = μ` otherwise), then
//! `Linear(d·B → d)` is what crosses; `λ·KL(N(μ, σ²) ‖ N(0, 1))` joins the data party's
//! objective, so training trades what the activations carry against the task.
//!
//! The bottleneck is the defense's own module, trained with its own Adam through the
//! [`Defense::update`] hook; its weights live on the host and are uploaded to the activations'
//! device each step (they are small next to a transformer block). Unlike the reference, whose
//! layers start random, it starts as the identity (μ = h, σ ≈ 0.007, decoder = mean of the B
//! copies): a split model keeps its pretrained behaviour at step 0 and λ decides how far
//! training moves away from it.

use burn::tensor::activation::softplus;
use burn::tensor::{Gradients, Tensor, TensorData};
use splitlm_nn::seeded::SplitMix64;

use crate::{Defense, DefenseError, HookContext};

/// Adam's constants for the bottleneck (PyTorch's defaults).
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

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

/// Encoder weight `[d, 2dB]`, its bias, decoder weight `[dB, d]`, its bias.
struct Bottleneck {
    params: [HostParam; 4],
    steps: i32,
}

impl Bottleneck {
    /// The identity start: μ copies h into each of the B slots, s = 0, the decoder averages.
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
            steps: 0,
        }
    }
}

/// The mutual-information defense on the head's output.
pub struct Mid {
    lambda: f64,
    expansion: usize,
    lr: f64,
    rng: SplitMix64,
    bottleneck: Option<Bottleneck>,
    /// The current training step's parameter leaves (for their gradients) and KL term.
    leaves: Vec<Tensor<1>>,
    kl: Option<Tensor<1>>,
}

impl Mid {
    /// A bottleneck `expansion` (B) times the hidden width, KL weight `lambda` (the reference
    /// uses 0.01–0.1), trained by Adam at `lr`; the sampling noise is seeded by `seed`.
    pub fn new(lambda: f64, expansion: usize, lr: f64, seed: u64) -> Result<Self, DefenseError> {
        let fail = |reason: String| {
            Err(DefenseError {
                defense: "mid",
                reason,
            })
        };
        if !(lambda >= 0.0 && lambda.is_finite()) {
            return fail(format!("lambda = {lambda} must be ≥ 0"));
        }
        if expansion == 0 {
            return fail("expansion = 0: the bottleneck would be empty".into());
        }
        if !(lr > 0.0 && lr.is_finite()) {
            return fail(format!("lr = {lr} must be > 0"));
        }
        Ok(Self {
            lambda,
            expansion,
            lr,
            rng: SplitMix64::new(seed),
            bottleneck: None,
            leaves: Vec::new(),
            kl: None,
        })
    }
}

impl Defense for Mid {
    fn name(&self) -> &'static str {
        "mid"
    }

    fn params(&self) -> serde_json::Value {
        serde_json::json!({ "lambda": self.lambda, "expansion": self.expansion, "lr": self.lr })
    }

    fn on_activation(&mut self, hidden: Tensor<3>, ctx: &HookContext) -> Tensor<3> {
        let [b, s, d] = hidden.dims();
        let expansion = self.expansion;
        let bottleneck = self
            .bottleneck
            .get_or_insert_with(|| Bottleneck::identity(d, expansion));
        let device = hidden.device();
        let upload = |p: &HostParam| {
            let t = Tensor::<1>::from_data(
                TensorData::new(p.values.clone(), [p.values.len()]),
                &device,
            );
            if ctx.training { t.require_grad() } else { t }
        };
        let leaves: Vec<Tensor<1>> = bottleneck.params.iter().map(upload).collect();
        let width = d * expansion;
        let rows = b * s;
        let encode = leaves[0].clone().reshape([d, 2 * width]);
        let decode = leaves[2].clone().reshape([width, d]);
        let stats = hidden.reshape([rows, d]).matmul(encode) + leaves[1].clone().unsqueeze::<2>();
        let mu = stats.clone().narrow(1, 0, width);
        let sigma = softplus(stats.narrow(1, width, width) - 5.0, 1.0);
        let z = if ctx.training {
            let rng = &mut self.rng;
            let noise: Vec<f32> = (0..rows * width).map(|_| rng.normal() as f32).collect();
            let noise = Tensor::<2>::from_data(TensorData::new(noise, [rows, width]), &device);
            mu.clone() + sigma.clone() * noise
        } else {
            mu.clone()
        };
        if ctx.training {
            // KL(N(μ, σ²) ‖ N(0, 1)) summed over the latent, averaged over tokens.
            let kl = (mu.powi_scalar(2) + sigma.clone().powi_scalar(2)
                - sigma.clamp_min(1e-12).log() * 2.0
                - 1.0)
                .sum_dim(1)
                .mean()
                * (0.5 * self.lambda);
            self.kl = Some(kl);
            self.leaves = leaves.clone();
        }
        let out = z.matmul(decode) + leaves[3].clone().unsqueeze::<2>();
        out.reshape([b, s, d])
    }

    fn extra_loss(&mut self, _ctx: &HookContext) -> Option<Tensor<1>> {
        self.kl.take()
    }

    fn is_trainable(&self) -> bool {
        true
    }

    fn update(&mut self, grads: &Gradients, _ctx: &HookContext) {
        let Some(bottleneck) = self.bottleneck.as_mut() else {
            return;
        };
        let leaves = std::mem::take(&mut self.leaves);
        if leaves.len() != bottleneck.params.len() {
            return;
        }
        bottleneck.steps += 1;
        for (param, leaf) in bottleneck.params.iter_mut().zip(leaves) {
            if let Some(grad) = leaf.grad(grads) {
                let grad = grad
                    .into_data()
                    .try_into_vec_as::<f32>()
                    .expect("a float gradient");
                debug_assert_eq!(grad.len(), param.dims.iter().product::<usize>());
                param.adam(&grad, self.lr, bottleneck.steps);
            }
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

    #[test]
    fn it_starts_as_the_identity_and_its_kl_pulls_the_code_towards_the_prior() {
        let device = DeviceSpec::Cpu.device().unwrap().autodiff();
        let values: Vec<f32> = (0..2 * 3 * 4).map(|i| (i as f32 * 0.37).sin()).collect();
        let hidden = Tensor::<3>::from_data(TensorData::new(values.clone(), [2, 3, 4]), &device);
        let mut mid = Mid::new(1.0, 2, 0.05, 0).unwrap();
        // Evaluation: z = μ = h, decoded by the mean of two identical copies: h itself.
        let out = mid.on_activation(hidden.clone(), &ctx(false));
        let out: Vec<f32> = out.into_data().try_into_vec_as().unwrap();
        for (o, v) in out.iter().zip(&values) {
            assert!((o - v).abs() < 1e-6, "{o} vs {v}");
        }
        assert!(
            mid.extra_loss(&ctx(false)).is_none(),
            "no KL outside training"
        );
        // Training on the KL alone shrinks the code: the sent activations lose their norm.
        let norm = |t: Tensor<3>| -> f32 { t.powi_scalar(2).sum().sqrt().into_scalar() };
        let first = norm(mid.on_activation(hidden.clone(), &ctx(true)));
        for _ in 0..60 {
            let sent = mid.on_activation(hidden.clone(), &ctx(true));
            let kl = mid.extra_loss(&ctx(true)).unwrap();
            let grads = (kl + sent.sum() * 0.0).backward();
            mid.update(&grads, &ctx(true));
        }
        let last = norm(mid.on_activation(hidden.clone(), &ctx(false)));
        assert!(last < 0.5 * first, "norm {first} → {last}");
        assert_eq!(mid.params()["expansion"], 2);
        assert!(Mid::new(-1.0, 1, 0.1, 0).is_err());
        assert!(Mid::new(0.1, 0, 0.1, 0).is_err());
    }
}
