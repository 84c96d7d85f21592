//! The reference's clustering loss, `CenterLoss` (`utils/cluster_utils.py:180-209`):
//! `w_close · MSE(h, centre[cluster])` over the loss's positions, and
//! `w_away · (−Σ_{i<j} ‖c_i − c_j‖ / ((1 + K)·K/2))` over the centres. The away term's
//! normaliser counts the diagonal too (`(1 + K)·K/2`, not `(K − 1)·K/2`), as the reference's.

use burn::tensor::{Int, Tensor, TensorData};

/// The close term, unweighted: the mean over positions and features of
/// `(hidden[p] − centres[cluster[p]])²`, for the flat positions `positions` of `hidden`
/// (`[b, s, d]`) and their clusters. Both lists must be non-empty and of one length.
pub(crate) fn close_term(
    hidden: Tensor<3>,
    positions: &[i64],
    clusters: &[i64],
    centres: Tensor<2>,
) -> Tensor<1> {
    let [b, s, d] = hidden.dims();
    let device = hidden.device();
    let index =
        |v: &[i64]| Tensor::<1, Int>::from_data(TensorData::new(v.to_vec(), [v.len()]), &device);
    let rows = hidden.reshape([b * s, d]).select(0, index(positions));
    let targets = centres.select(0, index(clusters));
    (rows - targets).powi_scalar(2).mean()
}

/// The away term, unweighted, of `centres` (`[K, d]`) on their device: differentiable in
/// them (a zero distance gets a zero gradient, as `torch.cdist` gives).
pub(crate) fn away_term(centres: Tensor<2>) -> Tensor<1> {
    let [k, _] = centres.dims();
    let device = centres.device();
    let norms = centres.clone().powi_scalar(2).sum_dim(1);
    let gram = centres.clone().matmul(centres.transpose());
    let squared = norms.clone() + norms.reshape([1, k]) - gram * 2.0;
    let upper: Vec<f32> = (0..k * k)
        .map(|i| if i % k > i / k { 1.0 } else { 0.0 })
        .collect();
    let upper = Tensor::<2>::from_data(TensorData::new(upper, [k, k]), &device);
    let distances = squared.clamp_min(1e-24).sqrt() * upper;
    distances.sum() * (-1.0 / normaliser(k))
}

/// The away term, unweighted, of host centres (`[k, dim]` row-major), in f64.
pub(crate) fn away_term_host(centres: &[f32], dim: usize) -> f64 {
    let k = centres.len() / dim;
    let row = |i: usize| &centres[i * dim..(i + 1) * dim];
    let mut total = 0.0;
    for i in 0..k {
        for j in i + 1..k {
            let sq: f64 = row(i)
                .iter()
                .zip(row(j))
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum();
            total += sq.sqrt();
        }
    }
    -total / normaliser(k)
}

/// `(1 + K)·K/2`.
fn normaliser(k: usize) -> f64 {
    ((1 + k) * k) as f64 / 2.0
}
