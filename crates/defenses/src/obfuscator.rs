//! TextObfuscator (Zhou et al., "TextObfuscator: Making Pre-trained Language Model a Privacy
//! Protector via Obfuscating Word Representations", ACL'23 Findings), as VFLAIR-LLM
//! (FLAIR-THU/VFLAIR-LLM at ff18565) runs it at its passive (data) party.
//!
//! At build time, the pretrained head runs over the training inputs; each token id's output,
//! averaged over its occurrences, is one point, and k-means groups those points into
//! `cluster_num` clusters (`utils/cluster_utils.py:15-111`, called from
//! `party/passive_party.py:314`). Every token id seen gets the cluster of its mean (the nearest
//! final centre); an id never seen counts as cluster 0 (`party/passive_party.py:774`).
//!
//! In each training step the data party adds to the head's objective the reference's
//! `CenterLoss` (`utils/cluster_utils.py:180-209`) on the head's clean output:
//! `λ · (w_cluster_close · MSE(h_t, c[cluster(t)]) + w_cluster_away · (−Σ_{i<j} ‖c_i − c_j‖ /
//! ((1 + K)·K/2)))`, over the positions whose mask is 1 and whose id is not 0 or 2
//! (`party/passive_party.py:772`). What is sent is the output plus Laplace noise of scale 1/ε
//! (`party/passive_party.py:324, 991`), drawn at every forward pass, training or not; the head
//! learns from the model party's gradient as if the noise were not there (it is additive).
//!
//! Reference facts kept, and where splitlm deviates (each deviation a named option or noted):
//! - The centres are fixed: the reference gives its `CenterLoss` embedding to no optimizer, so
//!   the away term is a constant and only the close term moves the head. `center_lr` trains
//!   the centres with Adam (splitlm's option), which makes the away term push them apart.
//! - λ: the reference reads `lambda` only when the misspelt key `lamba` is present
//!   (`load/LoadConfigs.py:825`), so its loss multiplier is always 1. `lambda` here is the
//!   intended multiplier and defaults to 1, the reference's effective value.
//! - The ids 0 and 2 left out of the loss are RoBERTa's `<s>` and `</s>`, hard-coded in the
//!   reference whatever the tokenizer; `excluded_ids` makes the list a setting with that
//!   default.
//! - k-means is splitlm's own (greedy k-means++ and Lloyd, as scikit-learn's `KMeans`, which
//!   the reference calls with `random_state=0`): the same algorithm, not the same draws.
//!   `hierarchy` and `gmm`, the reference's other methods, are refused.
//! - A step with no position to pull gets no close term (the reference's MSE of nothing is NaN).
//! - The reference noises only the first forward of a generation (`is_first_forward_iter`);
//!   here every forward is noised, as the other defenses do.
//! - The reference clusters each example alone; here `cluster_batch_size` examples run at
//!   once, right-padded (the padding is masked, so the means are the same).

mod clusters;
mod contextual;
mod defense;
mod kmeans;
mod loss;

#[cfg(test)]
mod tests;

use splitlm_nn::seeded::SplitMix64;

pub use clusters::TokenClusters;
pub use defense::TextObfuscator;

use crate::{Defense, DefenseEnv, DefenseError, Needs};
use kmeans::KMeansSettings;

const NAME: &str = "text_obfuscator";

/// A clustering method of the reference's `run_cluster`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterMethod {
    /// k-means (the reference's configuration).
    #[default]
    Kmeans,
    /// Agglomerative clustering: not built, refused.
    Hierarchy,
    /// A Gaussian mixture: not built, refused.
    Gmm,
}

/// Its settings; each left out takes the reference's value. The defaults are those of the
/// reference's only TextObfuscator configuration,
/// `configs/llm_configs/with_mia_and_defense/2-slice/alpaca_gpt2_to.json:77-82` (its loader
/// has no defaults of its own: `load/LoadConfigs.py:820-825`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObfuscatorSettings {
    /// Number of clusters K (the configuration: 100; `run_cluster`'s default too,
    /// `utils/cluster_utils.py:85`).
    pub cluster_num: usize,
    /// Clustering method (the configuration: `kmeans`).
    pub cluster_method: ClusterMethod,
    /// Privacy budget ε of the Laplace noise, of scale 1/ε (the configuration: 10).
    pub epsilon: f64,
    /// Weight of the close term (the configuration: 0.1).
    pub w_cluster_close: f64,
    /// Weight of the away term (the configuration: 0.5).
    pub w_cluster_away: f64,
    /// The loss multiplier λ (the reference's is always 1, see the module's doc).
    pub lambda: f64,
    /// Token ids left out of the loss (the reference: 0 and 2, `party/passive_party.py:772`).
    pub excluded_ids: Vec<u32>,
    /// k-means seedings, the best kept (scikit-learn's `n_init="auto"`: 1 with k-means++).
    pub kmeans_runs: usize,
    /// Most Lloyd iterations (scikit-learn's `max_iter`, 300).
    pub kmeans_max_iter: usize,
    /// Convergence tolerance, relative to the data's mean variance (scikit-learn's 1e-4).
    pub kmeans_tol: f64,
    /// Training examples run through the head at once while clustering (splitlm's; the
    /// reference runs them one by one).
    pub cluster_batch_size: usize,
    /// Adam learning rate of the centres; none keeps them fixed (the reference).
    pub center_lr: Option<f64>,
}

impl Default for ObfuscatorSettings {
    fn default() -> Self {
        Self {
            cluster_num: 100,
            cluster_method: ClusterMethod::Kmeans,
            epsilon: 10.0,
            w_cluster_close: 0.1,
            w_cluster_away: 0.5,
            lambda: 1.0,
            excluded_ids: vec![0, 2],
            kmeans_runs: 1,
            kmeans_max_iter: 300,
            kmeans_tol: 1e-4,
            cluster_batch_size: 16,
            center_lr: None,
        }
    }
}

fn refuse(reason: String) -> DefenseError {
    DefenseError {
        defense: NAME,
        reason,
    }
}

impl ObfuscatorSettings {
    /// Refuses settings that cannot work, naming the field.
    pub fn validate(&self) -> Result<(), DefenseError> {
        let finite_non_negative = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(refuse(format!("{name} = {v} must be finite and ≥ 0")))
            }
        };
        if self.cluster_method != ClusterMethod::Kmeans {
            return Err(refuse(format!(
                "cluster_method = {:?} is not built; only \"kmeans\" is",
                self.cluster_method
            )));
        }
        if self.cluster_num == 0 {
            return Err(refuse(
                "cluster_num = 0: at least one cluster is needed".into(),
            ));
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(refuse(format!(
                "epsilon = {} must be > 0 and finite",
                self.epsilon
            )));
        }
        finite_non_negative("w_cluster_close", self.w_cluster_close)?;
        finite_non_negative("w_cluster_away", self.w_cluster_away)?;
        finite_non_negative("lambda", self.lambda)?;
        finite_non_negative("kmeans_tol", self.kmeans_tol)?;
        for (name, v) in [
            ("kmeans_runs", self.kmeans_runs),
            ("kmeans_max_iter", self.kmeans_max_iter),
            ("cluster_batch_size", self.cluster_batch_size),
        ] {
            if v == 0 {
                return Err(refuse(format!("{name} = 0 must be ≥ 1")));
            }
        }
        if let Some(lr) = self.center_lr
            && !(lr.is_finite() && lr > 0.0)
        {
            return Err(refuse(format!("center_lr = {lr} must be > 0 and finite")));
        }
        Ok(())
    }

    /// What it needs from the data party: the pretrained head and the training inputs.
    pub fn needs(&self) -> Needs {
        Needs {
            training_inputs: true,
            head: true,
            ..Needs::default()
        }
    }

    /// The token clusters that [`ObfuscatorSettings::build`] with the same `seed` and `env`
    /// builds: the pretrained head run over the training inputs, then k-means.
    pub fn clusters(&self, seed: u64, env: &DefenseEnv) -> Result<TokenClusters, DefenseError> {
        self.validate()?;
        let head = env.head(NAME)?;
        let inputs = env.training_inputs(NAME)?;
        let kmeans = KMeansSettings {
            k: self.cluster_num,
            runs: self.kmeans_runs,
            max_iter: self.kmeans_max_iter,
            tol: self.kmeans_tol,
        };
        let (kmeans_seed, _) = seeds(seed);
        TokenClusters::build(
            head,
            inputs,
            env.hidden_size,
            self.cluster_batch_size,
            &kmeans,
            kmeans_seed,
            &env.device,
        )
        .map_err(refuse)
    }

    /// The defense over clusters already built (by [`ObfuscatorSettings::clusters`] with the
    /// same `seed`), its noise seeded by `seed`.
    pub fn with_clusters(
        &self,
        clusters: TokenClusters,
        seed: u64,
    ) -> Result<TextObfuscator, DefenseError> {
        self.validate()?;
        if clusters.cluster_num() != self.cluster_num {
            return Err(refuse(format!(
                "the clusters number {} but cluster_num = {}",
                clusters.cluster_num(),
                self.cluster_num
            )));
        }
        let (_, noise_seed) = seeds(seed);
        Ok(TextObfuscator::new(self.clone(), clusters, noise_seed))
    }

    /// The defense, its random draws seeded by `seed`.
    pub fn build(&self, seed: u64, env: &DefenseEnv) -> Result<Box<dyn Defense>, DefenseError> {
        let clusters = self.clusters(seed, env)?;
        Ok(Box::new(self.with_clusters(clusters, seed)?))
    }
}

/// The k-means seed and the noise seed derived from the run's `seed`.
fn seeds(seed: u64) -> (u64, u64) {
    let mut rng = SplitMix64::new(seed);
    (rng.next_u64(), rng.next_u64())
}
