//! AT, adversarial training (Pan et al., S&P'20, as VFLAIR-LLM implements it): a learned
//! privacy-preserving mapping of what crosses, trained against an imagined inversion adversary.
//!
//! At the head (`head = true`, the reference's usual position) the data party passes the head's
//! output `h` through a mapping MLP `M` and sends `M(h)` (party/passive_party.py:980–987, on
//! every forward, training or not). An imagined adversary `A`, another MLP, tries to recover
//! the input embeddings `E` of the tokens from `M(h)`. Each training step:
//!
//! * `distance = ‖h − M(h)‖₂ / (b·s)` (l.985–986);
//! * `attack = CrossEntropy(A(M(h)), E) / b` (l.753–754; see `loss::attack_loss` for what
//!   PyTorch's cross entropy makes of two `[b, s, d]` tensors);
//! * `M` learns from the model party's gradient on `M(h)` plus `λ·distance − attack` (l.756,
//!   1064–1103): it stays close to `h` while it maximises the adversary's loss; `A` learns to
//!   minimise `attack` (l.1062–1063, 1106). `A` has its own Adam (l.180–181); so has `M` here,
//!   where the reference gives `M` its own Adam only when the head does not train and otherwise
//!   adds it to the head's optimizer as a parameter group at `M`'s learning rate (l.163–167).
//! * The head's own weights learn from the model party's gradient only: the reference takes the
//!   head's gradient from `M(h)` and the received gradient alone (l.1075–1081), so here the loss
//!   terms are computed on a second pass of `M` over `h` detached, with the same parameters.
//!
//! One backward pass serves both modules: the objective's gradient on `A`'s parameters is
//! `−∂attack/∂A`, so `A` steps on its negation.
//!
//! At the tail (`tail = true`, Head–Body–Tail) a second mapping sits on the body's output as it
//! arrives, before the tail (l.1044–1051), and learns from the task loss plus
//! `ε·λ·distance` (l.808–810, 1260–1285). The gradient sent back to the model party is that of
//! the task loss alone, as in the reference (l.464, 474: the term joins after the gradient is
//! taken): the distance is computed on the arrival detached.
//!
//! The tail also trains an imagined *label* adversary `L` on the gradient sent back `g`
//! (l.789–812; the module and its loss in `label`): `L(g)` predicts the step's labels (one
//! class per example, or one token per position), the labels reaching the defense through
//! [`crate::Defense::on_labels`]. The reference adds `−ε·η·attack` to the tail's loss
//! (`imagined_adversary_attack_eta`, l.810), but that term reaches no weight: `g` comes from
//! `torch.autograd.grad` without `create_graph` (l.586–592), so `g.requires_grad_(True)` makes
//! it a leaf with no history, and the tail's update takes the loss's gradient on the tail's
//! and the mapping's parameters only (l.1268–1286), to which `attack` has no path. `L` alone
//! learns, from `attack` alone, descending it with its own Adam at `imagined_adversary_lr`
//! (`adversary_lr`; l.220–221, 1263–1265; the configurations' `tail_imagined_adversary_lr` is
//! never read). So here `L` reads `g` detached, `g` is sent bit-identical, nothing else sees
//! `attack`, and η is not a setting. `L` runs in training steps only; the means of its loss
//! and accuracy before each update are logged every `LABEL_REPORT_EVERY` steps (`log::info!`),
//! and the last step's kept for the tests; a step it cannot run (labels missing, of a kind
//! it does not predict, or not matching `g`) is skipped, the first of a run of them logged as a
//! warning. Deviations: for causal LMs the reference's default class cannot be built (its call,
//! l.209–214, fits only `ImaginedAdversary_Tail_MLP3_for_generation`); that class's MLP is
//! built, without its transformer decoder layer (12 heads, dropout 0.1), and it predicts the
//! next token at each position, weighted as the task's loss weighs it (prompt and padding
//! out), where the reference reads the unshifted label ids, every position counted. Regression
//! and span labels are not predicted (their steps are skipped).
//!
//! The mappings and the inversion adversary are the reference's per-token MLPs
//! (`Mapping_MLP3_noflatten`, `ImaginedAdversary_MLP3_noflatten`, the configurations' choice
//! for causal LMs: configs/llm_configs/with_mia_and_defense/2-slice/codealpaca_at.json).
//! Deviations: the flattening variants (`Mapping_MLP3`, `ImaginedAdversary_MLP3`, whose widths
//! are `seq_length·d` for a fixed padded length, used by the BERT/SST-2 configurations) are not
//! built; the real embeddings are the word embeddings of the input tokens (the reference's
//! `embedding_output` is that for GPT-2 and Llama, and BERT's whole embedding output, with
//! positions, token types and LayerNorm, for BERT); the reference's keys without a default
//! (`lambda`, the two learning rates, `position`) take the defaults listed on
//! [`AdversarialSettings`].

mod label;
#[cfg(test)]
mod label_tests;
mod loss;
mod mlp;
mod params;
#[cfg(test)]
mod tests;

use burn::tensor::{Gradients, Int, Tensor};
use splitlm_nn::seeded::SplitMix64;
use splitlm_nn::{Labels, TokenBatch};

use crate::{Defense, DefenseEnv, DefenseError, HookContext, Needs};
use label::{LabelAdversary, LabelAdversaryStep, LabelSizes};
use mlp::Mlp3;
use params::Leaves;

const NAME: &str = "adversarial_training";

/// The label adversary's mean loss and accuracy are logged every this many of its steps.
const LABEL_REPORT_EVERY: usize = 50;

/// AT's settings; each left out takes the reference's value (party/passive_party.py, the
/// reference's configurations where its code has no default).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdversarialSettings {
    /// λ, the weight of the mapping's distance from what it maps (the reference's `lambda`,
    /// required there; its configurations use 0.001–5; 0.1 is
    /// configs/llm_configs/with_mia_and_lia_and_defense/sst2_ad.json's).
    pub lambda: f64,
    /// The mappings' hidden width (`adversarial_model_hidden_size`, default 80:
    /// party/passive_party.py:116–117), also the tail's class-label adversary's (l.217–218).
    pub mapping_hidden_size: usize,
    /// The mapping's Adam learning rate (`adversarial_model_lr`, required there, 1e-4 in four
    /// of its five AT configurations).
    pub mapping_lr: f64,
    /// The imagined adversary's hidden width (`imagined_adversary_hidden_size`, default 80:
    /// l.135–136), also the tail's token-label adversary's (l.209–214).
    pub adversary_hidden_size: usize,
    /// The imagined adversaries' Adam learning rate (`imagined_adversary_lr`, required there,
    /// 1e-4 in four of five configurations), the tail's label adversary's too (l.220–221).
    pub adversary_lr: f64,
    /// A mapping on the head's output, trained against the imagined inversion adversary
    /// (`"head"` in the reference's `position`, which its passive party requires, l.113;
    /// load/LoadConfigs.py:776 names a missing one `["head"]`).
    pub head: bool,
    /// A mapping on the body's output as it arrives, before the tail (`"tail"` in `position`;
    /// Head–Body–Tail only).
    pub tail: bool,
    /// ε, the tail term's overall weight (`at_epsilon`, default 1: l.143–144).
    pub at_epsilon: f64,
}

impl Default for AdversarialSettings {
    fn default() -> Self {
        Self {
            lambda: 0.1,
            mapping_hidden_size: 80,
            mapping_lr: 1e-4,
            adversary_hidden_size: 80,
            adversary_lr: 1e-4,
            head: true,
            tail: false,
            at_epsilon: 1.0,
        }
    }
}

impl AdversarialSettings {
    /// Refuses settings that cannot work, naming the field.
    pub fn validate(&self) -> Result<(), DefenseError> {
        let fail = |reason: String| {
            Err(DefenseError {
                defense: NAME,
                reason,
            })
        };
        let non_negative = [("lambda", self.lambda), ("at_epsilon", self.at_epsilon)];
        for (field, value) in non_negative {
            if !(value >= 0.0 && value.is_finite()) {
                return fail(format!("{field} = {value} must be finite and ≥ 0"));
            }
        }
        for (field, value) in [
            ("mapping_lr", self.mapping_lr),
            ("adversary_lr", self.adversary_lr),
        ] {
            if !(value > 0.0 && value.is_finite()) {
                return fail(format!("{field} = {value} must be finite and > 0"));
            }
        }
        for (field, value) in [
            ("mapping_hidden_size", self.mapping_hidden_size),
            ("adversary_hidden_size", self.adversary_hidden_size),
        ] {
            if value == 0 {
                return fail(format!("{field} = 0: the MLP would have no hidden unit"));
            }
        }
        if !self.head && !self.tail {
            return fail("neither head nor tail is set: the defense would do nothing".into());
        }
        Ok(())
    }

    /// What it needs from the data party: the input embeddings, the imagined adversary's
    /// targets (only with a head mapping).
    pub fn needs(&self) -> Needs {
        Needs {
            embeddings: self.head,
            ..Needs::default()
        }
    }

    /// The defense, its initial weights seeded by `seed`.
    pub fn build(&self, seed: u64, env: &DefenseEnv) -> Result<Box<dyn Defense>, DefenseError> {
        Ok(Box::new(AdversarialTraining::new(self.clone(), seed, env)?))
    }
}

/// What a head-side training step leaves for [`Defense::extra_loss`] and [`Defense::update`].
struct HeadStep {
    mapping: Leaves,
    adversary: Leaves,
    loss: Option<Tensor<1>>,
}

/// What a tail-side training step leaves for [`Defense::tail_loss`] and
/// [`Defense::update_tail`].
struct TailStep {
    mapping: Leaves,
    loss: Option<Tensor<1>>,
}

/// The label adversary's steps since its last report.
#[derive(Default)]
struct LabelLog {
    loss: f64,
    accuracy: f64,
    steps: usize,
}

/// The tail's imagined label adversary and what it did.
struct TailLabels {
    sizes: LabelSizes,
    rng: SplitMix64,
    adversary: Option<LabelAdversary>,
    /// The current training step's labels, from [`Defense::on_labels`].
    labels: Option<Labels>,
    /// The last training step's outcome.
    last: Option<Result<LabelAdversaryStep, String>>,
    log: LabelLog,
}

/// The defense: the modules (created on first use, when the hidden width is known) and what
/// the current training step left.
struct AdversarialTraining {
    settings: AdversarialSettings,
    /// `[vocab, e]`, detached: the imagined adversary's targets (with a head mapping).
    embeddings: Option<Tensor<2>>,
    head_rng: SplitMix64,
    adversary_rng: SplitMix64,
    tail_rng: SplitMix64,
    head_mapping: Option<Mlp3>,
    adversary: Option<Mlp3>,
    tail_mapping: Option<Mlp3>,
    /// The label adversary (with a tail mapping).
    tail_labels: TailLabels,
    /// The input ids of the current training step, `[b, s]`.
    input_ids: Option<Tensor<2, Int>>,
    head_step: Option<HeadStep>,
    tail_step: Option<TailStep>,
}

impl AdversarialTraining {
    fn new(
        settings: AdversarialSettings,
        seed: u64,
        env: &DefenseEnv,
    ) -> Result<Self, DefenseError> {
        settings.validate()?;
        if settings.tail && !env.has_tail {
            return Err(DefenseError {
                defense: NAME,
                reason: "tail = true needs a tail at the data party (a Head–Body–Tail cut)".into(),
            });
        }
        let embeddings = if settings.head {
            let e = env.token_embeddings(NAME)?;
            let [vocab, width] = e.dims();
            if vocab == 0 || width == 0 {
                return Err(DefenseError {
                    defense: NAME,
                    reason: format!("the input embeddings are empty ([{vocab}, {width}])"),
                });
            }
            Some(e.clone().detach())
        } else {
            None
        };
        let mut seeds = SplitMix64::new(seed);
        Ok(Self {
            settings,
            embeddings,
            head_rng: SplitMix64::new(seeds.next_u64()),
            adversary_rng: SplitMix64::new(seeds.next_u64()),
            tail_rng: SplitMix64::new(seeds.next_u64()),
            tail_labels: TailLabels {
                sizes: LabelSizes {
                    classes: env.num_classes,
                    vocab: env.vocab_size,
                },
                rng: SplitMix64::new(seeds.next_u64()),
                adversary: None,
                labels: None,
                last: None,
                log: LabelLog::default(),
            },
            head_mapping: None,
            adversary: None,
            tail_mapping: None,
            input_ids: None,
            head_step: None,
            tail_step: None,
        })
    }

    /// The defense with given modules, for the fixtures.
    #[cfg(test)]
    fn with_modules(
        settings: AdversarialSettings,
        embeddings: Tensor<2>,
        head_mapping: Mlp3,
        adversary: Mlp3,
    ) -> Self {
        let mut env = DefenseEnv::bare(embeddings.device(), head_mapping.input(), 1);
        env.token_embeddings = Some(embeddings);
        let mut at = Self::new(settings, 0, &env).expect("valid settings");
        at.head_mapping = Some(head_mapping);
        at.adversary = Some(adversary);
        at
    }

    /// The real embeddings of the step's input tokens `[b, s, e]`, when the ids match the
    /// head's output `[b, s, ·]`.
    fn real_embeddings(&self, b: usize, s: usize) -> Option<Tensor<3>> {
        let embeddings = self.embeddings.as_ref()?;
        let ids = self.input_ids.as_ref()?;
        if ids.dims() != [b, s] {
            return None;
        }
        let width = embeddings.dims()[1];
        let ids = ids.clone().to_device(&embeddings.device()).reshape([b * s]);
        Some(embeddings.clone().select(0, ids).reshape([b, s, width]))
    }

    fn map_head(&mut self, hidden: Tensor<3>, ctx: &HookContext) -> Tensor<3> {
        let [b, s, d] = hidden.dims();
        let settings = &self.settings;
        let rng = &mut self.head_rng;
        let mapping = self
            .head_mapping
            .get_or_insert_with(|| Mlp3::new(d, settings.mapping_hidden_size, d, rng));
        if mapping.input() != d {
            // A head whose width changed mid-run: nothing sensible to map.
            return hidden;
        }
        let device = hidden.device();
        let leaves = mapping.leaves(&device, ctx.training);
        let sent = mapping
            .forward(&leaves, hidden.clone().reshape([b * s, d]))
            .reshape([b, s, d]);
        if !ctx.training {
            return sent;
        }
        // The loss terms reach the mapping and the adversary only (see the module's doc).
        let origin = hidden.detach();
        let mapped = mapping
            .forward(&leaves, origin.clone().reshape([b * s, d]))
            .reshape([b, s, d]);
        let distance = loss::mapping_distance(origin, mapped.clone());
        let real = self.real_embeddings(b, s);
        let (adversary_leaves, attack) = match real {
            Some(real) => {
                let width = real.dims()[2];
                let rng = &mut self.adversary_rng;
                let adversary = self.adversary.get_or_insert_with(|| {
                    Mlp3::new(d, self.settings.adversary_hidden_size, width, rng)
                });
                let leaves = adversary.leaves(&device, true);
                let recovered = adversary
                    .forward(&leaves, mapped.reshape([b * s, d]))
                    .reshape([b, s, width]);
                (leaves, Some(loss::attack_loss(recovered, real)))
            }
            None => (Leaves::empty(), None),
        };
        let objective = match attack {
            Some(attack) => loss::mapping_objective(self.settings.lambda, distance, attack),
            None => distance * self.settings.lambda,
        };
        self.head_step = Some(HeadStep {
            mapping: leaves,
            adversary: adversary_leaves,
            loss: Some(objective),
        });
        sent
    }

    fn map_tail(&mut self, received: Tensor<3>, ctx: &HookContext) -> Tensor<3> {
        let [b, s, d] = received.dims();
        let settings = &self.settings;
        let rng = &mut self.tail_rng;
        let mapping = self
            .tail_mapping
            .get_or_insert_with(|| Mlp3::new(d, settings.mapping_hidden_size, d, rng));
        if mapping.input() != d {
            return received;
        }
        let leaves = mapping.leaves(&received.device(), ctx.training);
        let out = mapping
            .forward(&leaves, received.clone().reshape([b * s, d]))
            .reshape([b, s, d]);
        if ctx.training {
            let origin = received.detach();
            let mapped = mapping
                .forward(&leaves, origin.clone().reshape([b * s, d]))
                .reshape([b, s, d]);
            let weight = self.settings.at_epsilon * self.settings.lambda;
            self.tail_step = Some(TailStep {
                mapping: leaves,
                loss: Some(loss::mapping_distance(origin, mapped) * weight),
            });
        }
        out
    }

    /// What the tail's label adversary did in the last training step (its loss and accuracy
    /// on that step's gradient, before its update), or why it could not run; `None` before
    /// the first.
    #[cfg(test)]
    pub(crate) fn label_adversary_step(&self) -> Option<&Result<LabelAdversaryStep, String>> {
        self.tail_labels.last.as_ref()
    }

    /// One step of the label adversary on the gradient sent back `grad` against the step's
    /// labels: its loss on its own parameters, descended with its own Adam. Nothing else
    /// reads the loss, and `grad` is read detached.
    fn train_label_adversary(
        &mut self,
        grad: Tensor<3>,
        step: u64,
    ) -> Result<LabelAdversaryStep, String> {
        let tail = &mut self.tail_labels;
        let labels = tail.labels.take().ok_or(
            "no labels for this step (the data party gives them through Defense::on_labels \
             before on_gradient)",
        )?;
        let adversary = match &mut tail.adversary {
            Some(adversary) => adversary,
            built @ None => built.insert(LabelAdversary::for_labels(
                &labels,
                grad.dims()[2],
                tail.sizes,
                self.settings.mapping_hidden_size,
                self.settings.adversary_hidden_size,
                &mut tail.rng,
            )?),
        };
        let (fit, loss, leaves) = adversary.fit(grad, &labels)?;
        let grads = loss.backward();
        adversary.step(&leaves, &grads, self.settings.adversary_lr);
        Ok(LabelAdversaryStep {
            step,
            loss: fit.loss,
            accuracy: fit.accuracy,
            labels: fit.labels,
        })
    }

    /// Keeps `outcome` as the last step's and logs the mean loss and accuracy every
    /// [`LABEL_REPORT_EVERY`] steps, and a warning when the adversary starts skipping steps.
    fn record_label_step(&mut self, outcome: Result<LabelAdversaryStep, String>, step: u64) {
        let was_skipping = matches!(self.tail_labels.last, Some(Err(_)));
        let log = &mut self.tail_labels.log;
        match &outcome {
            Ok(fit) => {
                log.loss += fit.loss as f64;
                log.accuracy += fit.accuracy as f64;
                log.steps += 1;
                if log.steps == LABEL_REPORT_EVERY {
                    let n = log.steps as f64;
                    log::info!(
                        "{NAME}: the tail's label adversary, {} steps to step {step}: mean loss \
                         {:.4}, mean accuracy {:.3}",
                        log.steps,
                        log.loss / n,
                        log.accuracy / n
                    );
                    (log.loss, log.accuracy, log.steps) = (0.0, 0.0, 0);
                }
            }
            Err(reason) if !was_skipping => {
                log::warn!(
                    "{NAME}: the tail's label adversary skips step {step} (and any further until \
                     it can run): {reason}"
                );
            }
            Err(_) => {}
        }
        self.tail_labels.last = Some(outcome);
    }
}

impl Defense for AdversarialTraining {
    fn name(&self) -> &'static str {
        NAME
    }

    fn params(&self) -> serde_json::Value {
        serde_json::to_value(&self.settings).unwrap_or(serde_json::Value::Null)
    }

    fn on_input(&mut self, batch: TokenBatch, ctx: &HookContext) -> TokenBatch {
        self.input_ids = (ctx.training && self.settings.head).then(|| batch.input_ids.clone());
        batch
    }

    fn on_activation(&mut self, hidden: Tensor<3>, ctx: &HookContext) -> Tensor<3> {
        self.head_step = None;
        if self.settings.head {
            self.map_head(hidden, ctx)
        } else {
            hidden
        }
    }

    fn on_received(&mut self, hidden: Tensor<3>, ctx: &HookContext) -> Tensor<3> {
        self.tail_step = None;
        if self.settings.tail {
            self.map_tail(hidden, ctx)
        } else {
            hidden
        }
    }

    fn on_labels(&mut self, labels: &Labels, ctx: &HookContext) {
        self.tail_labels.labels = (ctx.training && self.settings.tail).then(|| labels.clone());
    }

    fn on_gradient(&mut self, grad: Tensor<3>, ctx: &HookContext) -> Tensor<3> {
        if ctx.training && self.settings.tail {
            let outcome = self.train_label_adversary(grad.clone(), ctx.step);
            self.record_label_step(outcome, ctx.step);
        }
        grad
    }

    fn extra_loss(&mut self, _ctx: &HookContext) -> Option<Tensor<1>> {
        self.head_step.as_mut()?.loss.take()
    }

    fn is_trainable(&self) -> bool {
        self.settings.head
    }

    fn update(&mut self, grads: &Gradients, _ctx: &HookContext) {
        let Some(step) = self.head_step.take() else {
            return;
        };
        if let Some(mapping) = self.head_mapping.as_mut() {
            mapping.step(&step.mapping, grads, 1.0, self.settings.mapping_lr);
        }
        if let Some(adversary) = self.adversary.as_mut()
            && !step.adversary.is_empty()
        {
            adversary.step(&step.adversary, grads, -1.0, self.settings.adversary_lr);
        }
    }

    fn tail_loss(&mut self, _ctx: &HookContext) -> Option<Tensor<1>> {
        self.tail_step.as_mut()?.loss.take()
    }

    fn update_tail(&mut self, grads: &Gradients, _ctx: &HookContext) {
        let Some(step) = self.tail_step.take() else {
            return;
        };
        if let Some(mapping) = self.tail_mapping.as_mut() {
            mapping.step(&step.mapping, grads, 1.0, self.settings.mapping_lr);
        }
    }
}
