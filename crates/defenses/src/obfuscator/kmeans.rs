//! A small seeded k-means: greedy k-means++ seeding and Lloyd iterations, as scikit-learn's
//! `KMeans` runs them (the reference calls `KMeans(n_clusters, random_state=0)`,
//! `utils/cluster_utils.py:93`). The bookkeeping stays on the host; the point-to-centre
//! distances, the costly part, are matrix products on the given device.

use burn::tensor::{Device, Tensor, TensorData};
use splitlm_nn::seeded::SplitMix64;

/// How a k-means fit runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct KMeansSettings {
    /// Number of clusters.
    pub(crate) k: usize,
    /// Independent seedings; the fit of least inertia is kept (scikit-learn's `n_init`).
    pub(crate) runs: usize,
    /// Most Lloyd iterations of a run (scikit-learn's `max_iter`, 300).
    pub(crate) max_iter: usize,
    /// Convergence when the centres move less than `tol` times the data's mean per-feature
    /// variance, in summed squared distance (scikit-learn's `tol`, 1e-4).
    pub(crate) tol: f64,
}

/// A fitted k-means.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KMeansFit {
    /// `[k, dim]` centres, row-major.
    pub(crate) centres: Vec<f32>,
    /// Each point's nearest centre after the fit (scikit-learn's `predict` on the training
    /// points, as the reference assigns them).
    pub(crate) labels: Vec<usize>,
    /// Sum of squared distances of the points to their centres.
    pub(crate) inertia: f64,
    /// Lloyd iterations of the kept run.
    pub(crate) iterations: usize,
}

/// The points on the device, with their squared norms, for distances to a few centres.
struct Points {
    rows: usize,
    dim: usize,
    host: Vec<f32>,
    on_device: Tensor<2>,
    norms: Tensor<2>,
    device: Device,
}

impl Points {
    fn new(host: &[f32], dim: usize, device: &Device) -> Self {
        let rows = host.len() / dim;
        let on_device = Tensor::<2>::from_data(TensorData::new(host.to_vec(), [rows, dim]), device);
        let norms = on_device.clone().powi_scalar(2).sum_dim(1);
        Self {
            rows,
            dim,
            host: host.to_vec(),
            on_device,
            norms,
            device: device.clone(),
        }
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.host[i * self.dim..(i + 1) * self.dim]
    }

    /// `[rows, m]` squared distances to the `m` rows of `centres`, on the device.
    fn distances(&self, centres: &[f32]) -> Tensor<2> {
        let m = centres.len() / self.dim;
        let c = Tensor::<2>::from_data(
            TensorData::new(centres.to_vec(), [m, self.dim]),
            &self.device,
        );
        let c_norms = c.clone().powi_scalar(2).sum_dim(1).reshape([1, m]);
        let cross = self.on_device.clone().matmul(c.transpose());
        (self.norms.clone() - cross * 2.0 + c_norms).clamp_min(0.0)
    }

    /// `[rows, m]` squared distances to the rows of `centres`, on the host.
    fn distances_host(&self, centres: &[f32]) -> Vec<f32> {
        to_f32(self.distances(centres))
    }

    /// Each point's nearest row of `centres` and the squared distance to it.
    fn nearest(&self, centres: &[f32]) -> (Vec<usize>, Vec<f32>) {
        let d = self.distances(centres);
        let labels = d
            .clone()
            .argmin(1)
            .into_data()
            .try_into_vec_as::<i64>()
            .expect("argmin gives integers");
        let mins = to_f32(d.min_dim(1));
        (labels.into_iter().map(|l| l as usize).collect(), mins)
    }
}

fn to_f32<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .expect("a float tensor")
}

/// Fits `settings.k` clusters to `points` (`[n, dim]`, row-major), seeded by `seed`.
pub(crate) fn fit(
    points: &[f32],
    dim: usize,
    settings: &KMeansSettings,
    seed: u64,
    device: &Device,
) -> Result<KMeansFit, String> {
    if dim == 0 || points.is_empty() || !points.len().is_multiple_of(dim) {
        return Err(format!(
            "{} values are not a whole number of {dim}-wide points",
            points.len()
        ));
    }
    if let Some(bad) = points.iter().find(|v| !v.is_finite()) {
        return Err(format!("a point has a non-finite coordinate ({bad})"));
    }
    let n = points.len() / dim;
    if settings.k == 0 || settings.k > n {
        return Err(format!(
            "{} clusters asked of {n} points: need 1 ≤ clusters ≤ points",
            settings.k
        ));
    }
    let points = Points::new(points, dim, device);
    let tol = settings.tol * mean_variance(&points);
    let mut rng = SplitMix64::new(seed);
    let mut best: Option<KMeansFit> = None;
    for _ in 0..settings.runs.max(1) {
        let centres = seed_centres(&points, settings.k, &mut rng);
        let run = lloyd(&points, centres, settings.max_iter, tol);
        if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
            best = Some(run);
        }
    }
    Ok(best.expect("at least one run"))
}

/// Mean over the features of their variance (scikit-learn scales `tol` by it).
fn mean_variance(points: &Points) -> f64 {
    let n = points.rows as f64;
    let mut total = 0.0;
    for j in 0..points.dim {
        let (mut s, mut s2) = (0.0f64, 0.0f64);
        for i in 0..points.rows {
            let v = points.host[i * points.dim + j] as f64;
            s += v;
            s2 += v * v;
        }
        total += (s2 / n - (s / n).powi(2)).max(0.0);
    }
    total / points.dim as f64
}

/// Greedy k-means++: each new centre is the best, by potential, of `2 + ⌊ln k⌋` candidates
/// drawn with probability proportional to the squared distance to the nearest chosen centre.
fn seed_centres(points: &Points, k: usize, rng: &mut SplitMix64) -> Vec<f32> {
    let n = points.rows;
    let trials = 2 + (k as f64).ln().floor() as usize;
    let first = ((rng.uniform() * n as f64).ceil() as usize).clamp(1, n) - 1;
    let mut centres = points.row(first).to_vec();
    let mut closest: Vec<f64> = points
        .distances_host(points.row(first))
        .into_iter()
        .map(f64::from)
        .collect();
    for _ in 1..k {
        let potential: f64 = closest.iter().sum();
        let candidates: Vec<usize> = (0..trials)
            .map(|_| draw_proportional(&closest, potential, rng))
            .collect();
        let rows: Vec<f32> = candidates
            .iter()
            .flat_map(|&c| points.row(c).iter().copied())
            .collect();
        let d = points.distances_host(&rows);
        let mut best = (f64::INFINITY, 0usize);
        for t in 0..candidates.len() {
            let p: f64 = (0..n)
                .map(|i| closest[i].min(d[i * candidates.len() + t] as f64))
                .sum();
            if p < best.0 {
                best = (p, t);
            }
        }
        let t = best.1;
        for (i, c) in closest.iter_mut().enumerate() {
            *c = c.min(d[i * candidates.len() + t] as f64);
        }
        centres.extend_from_slice(points.row(candidates[t]));
    }
    centres
}

/// An index drawn with probability `weights[i] / total`; uniform when every weight is 0
/// (all points sit on chosen centres).
fn draw_proportional(weights: &[f64], total: f64, rng: &mut SplitMix64) -> usize {
    let n = weights.len();
    if total <= 0.0 {
        return ((rng.uniform() * n as f64).ceil() as usize).clamp(1, n) - 1;
    }
    let target = (1.0 - rng.uniform()) * total;
    let mut acc = 0.0;
    for (i, w) in weights.iter().enumerate() {
        acc += w;
        if acc > target {
            return i;
        }
    }
    n - 1
}

/// Lloyd iterations from `centres` until the labels stop changing, the centres move less than
/// `tol`, or `max_iter`; then every point is assigned to its nearest final centre.
fn lloyd(points: &Points, mut centres: Vec<f32>, max_iter: usize, tol: f64) -> KMeansFit {
    let (dim, k) = (points.dim, centres.len() / points.dim);
    let mut previous: Option<Vec<usize>> = None;
    let mut iterations = 0;
    for _ in 0..max_iter {
        iterations += 1;
        let (labels, mins) = points.nearest(&centres);
        if previous.as_ref() == Some(&labels) {
            break;
        }
        let updated = recentre(points, &labels, &mins, k);
        let shift: f64 = updated
            .iter()
            .zip(&centres)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum();
        centres = updated;
        previous = Some(labels);
        if shift <= tol {
            break;
        }
    }
    let (labels, mins) = points.nearest(&centres);
    debug_assert_eq!(centres.len(), k * dim);
    KMeansFit {
        centres,
        labels,
        inertia: mins.iter().map(|&m| m as f64).sum(),
        iterations,
    }
}

/// The mean of each cluster's points; an empty cluster takes the point farthest from its own
/// centre (scikit-learn relocates empty clusters the same way).
fn recentre(points: &Points, labels: &[usize], mins: &[f32], k: usize) -> Vec<f32> {
    let dim = points.dim;
    let mut sums = vec![0.0f64; k * dim];
    let mut counts = vec![0usize; k];
    for (i, &l) in labels.iter().enumerate() {
        counts[l] += 1;
        for (s, &v) in sums[l * dim..(l + 1) * dim].iter_mut().zip(points.row(i)) {
            *s += v as f64;
        }
    }
    let mut far: Vec<usize> = (0..points.rows).collect();
    far.sort_by(|&a, &b| mins[b].total_cmp(&mins[a]).then(a.cmp(&b)));
    let mut far = far.into_iter();
    let mut centres = vec![0.0f32; k * dim];
    for c in 0..k {
        let out = &mut centres[c * dim..(c + 1) * dim];
        if counts[c] == 0 {
            let p = far.next().unwrap_or(0);
            out.copy_from_slice(points.row(p));
        } else {
            for (o, s) in out.iter_mut().zip(&sums[c * dim..(c + 1) * dim]) {
                *o = (s / counts[c] as f64) as f32;
            }
        }
    }
    centres
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        splitlm_device::DeviceSpec::Cpu.device().unwrap()
    }

    /// `per` points around each of `blobs` in 3-D, spread ±0.5 around centres 20 apart.
    fn blobs(blobs: &[[f32; 3]], per: usize, seed: u64) -> Vec<f32> {
        let mut rng = SplitMix64::new(seed);
        let mut out = Vec::new();
        for c in blobs {
            for _ in 0..per {
                out.extend(c.iter().map(|&x| x + (rng.uniform() as f32 - 0.5)));
            }
        }
        out
    }

    const CENTRES: [[f32; 3]; 4] = [
        [0.0, 0.0, 0.0],
        [20.0, 0.0, 0.0],
        [0.0, 20.0, 0.0],
        [0.0, 0.0, 20.0],
    ];

    fn settings(k: usize) -> KMeansSettings {
        KMeansSettings {
            k,
            runs: 1,
            max_iter: 300,
            tol: 1e-4,
        }
    }

    #[test]
    fn separable_blobs_come_out_as_the_clusters() {
        let per = 25;
        let points = blobs(&CENTRES, per, 1);
        for seed in 0..5 {
            let fit = fit(&points, 3, &settings(4), seed, &device()).unwrap();
            let mut seen = std::collections::BTreeSet::new();
            for (b, truth) in CENTRES.iter().enumerate() {
                let labels = &fit.labels[b * per..(b + 1) * per];
                assert!(
                    labels.iter().all(|&l| l == labels[0]),
                    "seed {seed}: blob {b} split"
                );
                seen.insert(labels[0]);
                let c = &fit.centres[labels[0] * 3..labels[0] * 3 + 3];
                for (x, t) in c.iter().zip(truth) {
                    assert!(
                        (x - t).abs() < 0.3,
                        "seed {seed}: centre {c:?} vs {truth:?}"
                    );
                }
            }
            assert_eq!(seen.len(), 4, "seed {seed}: blobs merged");
            // Each point sits within √3·0.5 of its blob's centre.
            assert!(fit.inertia < (4 * per) as f64 * 0.75, "{}", fit.inertia);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_fit_and_several_runs_never_do_worse() {
        let points = blobs(&CENTRES, 10, 2);
        // Six clusters for four blobs: the seeding decides how blobs are split.
        let a = fit(&points, 3, &settings(6), 7, &device()).unwrap();
        let b = fit(&points, 3, &settings(6), 7, &device()).unwrap();
        assert_eq!(a, b);
        let runs = KMeansSettings {
            runs: 5,
            ..settings(6)
        };
        let best = fit(&points, 3, &runs, 7, &device()).unwrap();
        assert!(
            best.inertia <= a.inertia + 1e-9,
            "{} vs {}",
            best.inertia,
            a.inertia
        );
    }

    #[test]
    fn bad_inputs_are_refused_with_the_reason() {
        let points = blobs(&CENTRES[..1], 3, 0);
        let err = fit(&points, 3, &settings(4), 0, &device()).unwrap_err();
        assert!(err.contains("4 clusters asked of 3 points"), "{err}");
        assert!(fit(&points[..4], 3, &settings(1), 0, &device()).is_err());
        let mut nan = points.clone();
        nan[2] = f32::NAN;
        assert!(
            fit(&nan, 3, &settings(1), 0, &device())
                .unwrap_err()
                .contains("non-finite")
        );
        // As many clusters as points: every point is its own centre.
        let exact = fit(&points, 3, &settings(3), 0, &device()).unwrap();
        assert!(exact.inertia < 1e-6, "{}", exact.inertia);
    }
}
