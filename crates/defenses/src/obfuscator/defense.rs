//! The TextObfuscator defense at the data party: it remembers the step's token ids
//! ([`Defense::on_input`]), builds the clustering loss on the head's clean output and sends a
//! Laplace-noised copy ([`Defense::on_activation`]), and hands the loss to the head's backward
//! pass ([`Defense::extra_loss`]).

use burn::tensor::{Gradients, Tensor, TensorData};
use splitlm_nn::TokenBatch;
use splitlm_nn::seeded::SplitMix64;

use super::ObfuscatorSettings;
use super::clusters::TokenClusters;
use super::loss::{away_term, away_term_host, close_term};
use crate::{Defense, HookContext, noise_like};

/// Adam's constants for trainable centres (PyTorch's defaults).
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;

/// The step's token ids and mask, read in [`Defense::on_input`].
pub(super) struct StepTokens {
    pub(super) batch: usize,
    pub(super) seq: usize,
    pub(super) ids: Vec<i64>,
    pub(super) mask: Vec<i64>,
}

/// The centres' Adam state, when they train (`center_lr`).
struct CentreOptimizer {
    lr: f64,
    m: Vec<f64>,
    v: Vec<f64>,
    steps: i32,
}

impl CentreOptimizer {
    fn step(&mut self, centres: &mut [f32], grad: &[f32]) {
        self.steps += 1;
        let (c1, c2) = (1.0 - BETA1.powi(self.steps), 1.0 - BETA2.powi(self.steps));
        for (i, (&g, c)) in grad.iter().zip(centres.iter_mut()).enumerate() {
            let g = g as f64;
            self.m[i] = BETA1 * self.m[i] + (1.0 - BETA1) * g;
            self.v[i] = BETA2 * self.v[i] + (1.0 - BETA2) * g * g;
            *c -= (self.lr * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + ADAM_EPS)) as f32;
        }
    }
}

/// TextObfuscator: token clusters, the close/away loss on the head's output, Laplace noise
/// of scale 1/ε on what is sent.
pub struct TextObfuscator {
    settings: ObfuscatorSettings,
    clusters: TokenClusters,
    /// The unweighted away term of the fixed centres (a constant when they do not train).
    fixed_away: f64,
    noise_rng: SplitMix64,
    tokens: Option<StepTokens>,
    loss: Option<Tensor<1>>,
    centre_leaf: Option<Tensor<2>>,
    optimizer: Option<CentreOptimizer>,
}

impl TextObfuscator {
    /// The defense over `clusters`, its noise seeded by `noise_seed`; `settings` must be valid.
    pub(crate) fn new(
        settings: ObfuscatorSettings,
        clusters: TokenClusters,
        noise_seed: u64,
    ) -> Self {
        let fixed_away = away_term_host(clusters.centres(), clusters.dim());
        let optimizer = settings.center_lr.map(|lr| CentreOptimizer {
            lr,
            m: vec![0.0; clusters.centres().len()],
            v: vec![0.0; clusters.centres().len()],
            steps: 0,
        });
        Self {
            settings,
            clusters,
            fixed_away,
            noise_rng: SplitMix64::new(noise_seed),
            tokens: None,
            loss: None,
            centre_leaf: None,
            optimizer,
        }
    }

    /// The clusters (their centres move when `center_lr` is set).
    pub fn clusters(&self) -> &TokenClusters {
        &self.clusters
    }

    /// The noise's scale, 1/ε.
    pub fn scale(&self) -> f64 {
        1.0 / self.settings.epsilon
    }

    /// The flat positions the loss covers (real, not excluded) and each one's cluster
    /// (0 for a token never seen in the training inputs, as the reference).
    pub(super) fn loss_positions(&self, tokens: &StepTokens) -> (Vec<i64>, Vec<i64>) {
        let mut positions = Vec::new();
        let mut clusters = Vec::new();
        for (p, (&id, &m)) in tokens.ids.iter().zip(&tokens.mask).enumerate() {
            if m != 1 || self.settings.excluded_ids.iter().any(|&x| x as i64 == id) {
                continue;
            }
            positions.push(p as i64);
            let cluster = u32::try_from(id)
                .ok()
                .and_then(|id| self.clusters.cluster_of(id))
                .unwrap_or(0);
            clusters.push(cluster as i64);
        }
        (positions, clusters)
    }

    /// The step's loss on the clean `hidden`, kept for [`Defense::extra_loss`].
    fn build_loss(&mut self, hidden: &Tensor<3>, tokens: &StepTokens) {
        let [b, s, _] = hidden.dims();
        if [b, s] != [tokens.batch, tokens.seq] {
            return;
        }
        let (positions, clusters) = self.loss_positions(tokens);
        let device = hidden.device();
        let (k, d) = (self.clusters.cluster_num(), self.clusters.dim());
        let mut centres = Tensor::<2>::from_data(
            TensorData::new(self.clusters.centres().to_vec(), [k, d]),
            &device,
        );
        if self.optimizer.is_some() {
            centres = centres.require_grad();
            self.centre_leaf = Some(centres.clone());
        }
        let s = &self.settings;
        let away = if self.optimizer.is_some() {
            away_term(centres.clone()) * s.w_cluster_away
        } else {
            Tensor::<1>::from_data(
                TensorData::new(vec![(s.w_cluster_away * self.fixed_away) as f32], [1]),
                &device,
            )
        };
        // No position to pull (every token padding or excluded): the reference's MSE of an
        // empty selection is NaN; the close term is left out instead.
        let loss = if positions.is_empty() {
            away
        } else {
            close_term(hidden.clone(), &positions, &clusters, centres) * s.w_cluster_close + away
        };
        self.loss = Some(loss * s.lambda);
    }
}

/// The last `seq` columns of a `[b, past + seq]` tensor's values.
fn last_columns(values: Vec<i64>, batch: usize, total: usize, seq: usize) -> Vec<i64> {
    (0..batch)
        .flat_map(|r| values[r * total + total - seq..(r + 1) * total].to_vec())
        .collect()
}

fn int_values(t: Tensor<2, burn::tensor::Int>) -> Option<Vec<i64>> {
    t.into_data().try_into_vec_as::<i64>().ok()
}

impl Defense for TextObfuscator {
    fn name(&self) -> &'static str {
        "text_obfuscator"
    }

    fn params(&self) -> serde_json::Value {
        let s = &self.settings;
        serde_json::json!({
            "cluster_num": s.cluster_num, "cluster_method": s.cluster_method,
            "epsilon": s.epsilon, "scale": self.scale(),
            "w_cluster_close": s.w_cluster_close, "w_cluster_away": s.w_cluster_away,
            "lambda": s.lambda, "excluded_ids": s.excluded_ids, "center_lr": s.center_lr,
            "clustered_tokens": self.clusters.tokens().len(),
            "kmeans_iterations": self.clusters.iterations(),
        })
    }

    fn on_input(&mut self, batch: TokenBatch, ctx: &HookContext) -> TokenBatch {
        self.tokens = None;
        if ctx.training {
            let [b, s] = batch.dims();
            let [_, total] = batch.attention_mask.dims();
            let ids = int_values(batch.input_ids.clone());
            let mask = int_values(batch.attention_mask.clone());
            if let (Some(ids), Some(mask)) = (ids, mask)
                && total >= s
            {
                self.tokens = Some(StepTokens {
                    batch: b,
                    seq: s,
                    ids,
                    mask: last_columns(mask, b, total, s),
                });
            }
        }
        batch
    }

    fn on_activation(&mut self, hidden: Tensor<3>, ctx: &HookContext) -> Tensor<3> {
        self.loss = None;
        self.centre_leaf = None;
        if ctx.training
            && let Some(tokens) = self.tokens.take()
        {
            self.build_loss(&hidden, &tokens);
        }
        let scale = self.scale();
        let rng = &mut self.noise_rng;
        let noise = noise_like(&hidden, || laplace(rng, scale));
        hidden + noise
    }

    fn extra_loss(&mut self, _ctx: &HookContext) -> Option<Tensor<1>> {
        let loss = self.loss.take()?;
        Some(loss)
    }

    fn is_trainable(&self) -> bool {
        self.optimizer.is_some()
    }

    fn update(&mut self, grads: &Gradients, _ctx: &HookContext) {
        let (Some(leaf), Some(optimizer)) = (self.centre_leaf.take(), self.optimizer.as_mut())
        else {
            return;
        };
        let Some(grad) = leaf.grad(grads) else {
            return;
        };
        if let Ok(grad) = grad.into_data().try_into_vec_as::<f32>()
            && grad.iter().all(|g| g.is_finite())
        {
            optimizer.step(self.clusters.centres_mut(), &grad);
        }
    }
}

/// Laplace noise of scale `b` as `torch.distributions.Laplace` draws it: `u` uniform in
/// `[ε₃₂ − 1, 1)`, then `−b·sign(u)·log1p(−|u|)`.
pub(crate) fn laplace(rng: &mut SplitMix64, b: f64) -> f64 {
    let low = f32::EPSILON as f64 - 1.0;
    let u = low + (1.0 - low) * (1.0 - rng.uniform());
    if u == 0.0 {
        return 0.0;
    }
    -b * u.signum() * (-u.abs()).ln_1p()
}
