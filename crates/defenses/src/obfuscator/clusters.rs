//! Token clusters: k-means over the tokens' mean contextual embeddings, one cluster per
//! vocabulary id (the reference's `run_cluster`, `utils/cluster_utils.py:85-111`: its
//! `token2cluster` maps each id seen in the training data to the k-means label of the id's
//! mean embedding, i.e. the nearest final centre).

use std::collections::HashMap;
use std::time::Instant;

use burn::tensor::Device;

use super::contextual::{TokenMeans, token_means};
use super::kmeans::{KMeansSettings, fit};
use crate::HeadRunner;

/// The clusters a TextObfuscator pulls tokens towards, with what was measured building them.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenClusters {
    dim: usize,
    centres: Vec<f32>,
    cluster_of: HashMap<u32, usize>,
    means: TokenMeans,
    iterations: usize,
    inertia: f64,
    embed_seconds: f64,
    kmeans_seconds: f64,
}

impl TokenClusters {
    /// Runs `head` over `inputs` and clusters the tokens' mean outputs (`dim` wide).
    pub(crate) fn build(
        head: &HeadRunner,
        inputs: &[Vec<u32>],
        dim: usize,
        batch_size: usize,
        kmeans: &KMeansSettings,
        seed: u64,
        device: &Device,
    ) -> Result<Self, String> {
        let start = Instant::now();
        let means = token_means(head, inputs, dim, batch_size, device)?;
        let embed_seconds = start.elapsed().as_secs_f64();
        if means.ids.len() < kmeans.k {
            return Err(format!(
                "cluster_num = {} is more than the {} distinct tokens of the training inputs",
                kmeans.k,
                means.ids.len()
            ));
        }
        let start = Instant::now();
        let fitted = fit(&means.means, dim, kmeans, seed, &device.clone().inner())?;
        let kmeans_seconds = start.elapsed().as_secs_f64();
        let cluster_of = means.ids.iter().copied().zip(fitted.labels).collect();
        Ok(Self {
            dim,
            centres: fitted.centres,
            cluster_of,
            means,
            iterations: fitted.iterations,
            inertia: fitted.inertia,
            embed_seconds,
            kmeans_seconds,
        })
    }

    /// Clusters given by hand: `centres` (`[k, dim]` row-major) and each listed token's cluster.
    #[cfg(test)]
    pub(crate) fn given(centres: Vec<f32>, dim: usize, cluster_of: HashMap<u32, usize>) -> Self {
        Self {
            dim,
            centres,
            cluster_of,
            means: TokenMeans {
                ids: Vec::new(),
                means: Vec::new(),
                counts: Vec::new(),
                positions: 0,
            },
            iterations: 0,
            inertia: 0.0,
            embed_seconds: 0.0,
            kmeans_seconds: 0.0,
        }
    }

    /// The width of a centre (the head's hidden size).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The number of clusters.
    pub fn cluster_num(&self) -> usize {
        self.centres.len() / self.dim
    }

    /// The `[cluster_num, dim]` centres, row-major.
    pub fn centres(&self) -> &[f32] {
        &self.centres
    }

    /// The centres, to move them (trainable centres).
    pub(crate) fn centres_mut(&mut self) -> &mut [f32] {
        &mut self.centres
    }

    /// Centre `c`.
    pub fn centre(&self, c: usize) -> &[f32] {
        &self.centres[c * self.dim..(c + 1) * self.dim]
    }

    /// The cluster of token `id`, if it occurred in the training inputs (the reference sends
    /// every other token to cluster 0).
    pub fn cluster_of(&self, id: u32) -> Option<usize> {
        self.cluster_of.get(&id).copied()
    }

    /// The clustered token ids, ascending.
    pub fn tokens(&self) -> &[u32] {
        &self.means.ids
    }

    /// Token `id`'s mean contextual embedding under the pretrained head, if it occurred.
    pub fn token_mean(&self, id: u32) -> Option<&[f32]> {
        let i = self.means.ids.binary_search(&id).ok()?;
        Some(&self.means.means[i * self.dim..(i + 1) * self.dim])
    }

    /// Positions the head ran over to build the clusters.
    pub fn positions(&self) -> usize {
        self.means.positions
    }

    /// Lloyd iterations of the kept k-means run.
    pub fn iterations(&self) -> usize {
        self.iterations
    }

    /// Sum of squared distances of the tokens' means to their centres.
    pub fn inertia(&self) -> f64 {
        self.inertia
    }

    /// Seconds spent running the head over the inputs, and in k-means.
    pub fn seconds(&self) -> (f64, f64) {
        (self.embed_seconds, self.kmeans_seconds)
    }
}
