//! dχ-privacy noise for the inverter's training data (`utils/bisr_utils.py`, `DxPrivacy` and
//! `random_choose_noise`).

use burn::tensor::{Int, Tensor, TensorData};
use splitlm_nn::seeded::SplitMix64;

/// dχ-privacy at scale `epsilon` (bisr_utils.py l.27–61): every position moves along its own
/// uniformly random unit direction by one magnitude drawn for the whole batch from
/// Gamma(shape d, rate ε·d) (mean 1/ε), then snaps to the token embedding of largest inner
/// product (not cosine: l.57). ε = 0 returns `x` untouched, unsnapped (l.28). `x` is
/// `[b, s, d]`, `vocabulary` `[vocab, d]`, both on one device.
pub(super) fn dx_privacy(
    x: Tensor<3>,
    vocabulary: &Tensor<2>,
    epsilon: f64,
    rng: &mut SplitMix64,
) -> Tensor<3> {
    if epsilon == 0.0 {
        return x;
    }
    let [b, s, d] = x.dims();
    let magnitude = rng.gamma(d as f64, epsilon * d as f64);
    let mut noise = Vec::with_capacity(b * s * d);
    for _ in 0..b * s {
        let direction: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
        let norm = direction.iter().map(|v| v * v).sum::<f64>().sqrt();
        let norm = if norm > 0.0 { norm } else { 1.0 };
        noise.extend(direction.iter().map(|v| (v / norm * magnitude) as f32));
    }
    let noisy = x.clone() + Tensor::<3>::from_data(TensorData::new(noise, [b, s, d]), &x.device());
    let ids = noisy
        .reshape([b * s, d])
        .matmul(vocabulary.clone().transpose())
        .argmax(1)
        .reshape([b * s]);
    snap(vocabulary, ids, [b, s, d])
}

fn snap(vocabulary: &Tensor<2>, ids: Tensor<1, Int>, [b, s, d]: [usize; 3]) -> Tensor<3> {
    vocabulary.clone().select(0, ids).reshape([b, s, d])
}

/// The scale of a batch of the gate and full stages (bisr_utils.py l.65–89, mode "dxp"): one of
/// `n` uniform draws between the smallest and largest positive scale (`n` the number of
/// positive scales), four zeros and twice the largest scale, chosen uniformly; 0 when no scale
/// is positive.
pub(super) fn random_scale(scales: &[f64], rng: &mut SplitMix64) -> f64 {
    let positive: Vec<f64> = {
        let mut p: Vec<f64> = scales.iter().copied().filter(|&s| s > 0.0).collect();
        p.sort_by(f64::total_cmp);
        p.dedup();
        p
    };
    let (Some(&low), Some(&high)) = (positive.first(), positive.last()) else {
        return 0.0;
    };
    let mut choices: Vec<f64> = (0..positive.len())
        .map(|_| low + (high - low) * rng.uniform())
        .collect();
    choices.extend([0.0; 4]);
    choices.push(2.0 * high);
    let pick = (rng.next_u64() % choices.len() as u64) as usize;
    choices[pick]
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;

    fn device() -> Device {
        splitlm_device::DeviceSpec::Cpu.device().unwrap()
    }

    fn vocabulary(device: &Device) -> (Vec<f32>, Tensor<2>) {
        let mut rng = SplitMix64::new(3);
        let values: Vec<f32> = (0..50 * 8).map(|_| rng.normal() as f32).collect();
        let t = Tensor::from_data(TensorData::new(values.clone(), [50, 8]), device);
        (values, t)
    }

    #[test]
    fn noisy_activations_snap_to_real_token_embeddings_and_scale_zero_is_clean() {
        let device = device();
        let (rows, vocab) = vocabulary(&device);
        let mut rng = SplitMix64::new(1);
        let x: Vec<f32> = (0..2 * 3 * 8).map(|_| rng.normal() as f32).collect();
        let x = Tensor::<3>::from_data(TensorData::new(x, [2, 3, 8]), &device);
        let clean = dx_privacy(x.clone(), &vocab, 0.0, &mut rng);
        assert_eq!(super::super::host(clean), super::super::host(x.clone()));
        for epsilon in [10.0, 0.5] {
            let noisy = super::super::host(dx_privacy(x.clone(), &vocab, epsilon, &mut rng));
            for position in noisy.chunks(8) {
                assert!(
                    rows.chunks(8).any(|row| row == position),
                    "ε = {epsilon}: {position:?} is no token embedding"
                );
            }
        }
    }

    #[test]
    fn the_noise_magnitude_has_the_reference_gamma_moments() {
        // Gamma(d, ε·d): mean 1/ε, variance 1/(ε²·d) (bisr_utils.py l.40–44).
        let (d, epsilon) = (32.0, 5.0);
        let mut rng = SplitMix64::new(9);
        let draws: Vec<f64> = (0..20_000).map(|_| rng.gamma(d, epsilon * d)).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!((mean - 1.0 / epsilon).abs() < 0.005, "{mean}");
        let want = 1.0 / (epsilon * epsilon * d);
        assert!((var / want - 1.0).abs() < 0.1, "{var} vs {want}");
    }

    #[test]
    fn scale_draws_follow_the_reference_choices() {
        let mut rng = SplitMix64::new(4);
        let scales = [0.0, 10.0, 7.5, 5.0];
        let draws: Vec<f64> = (0..8000).map(|_| random_scale(&scales, &mut rng)).collect();
        let share = |f: &dyn Fn(f64) -> bool| {
            draws.iter().filter(|&&v| f(v)).count() as f64 / draws.len() as f64
        };
        // 8 choices: 4 zeros, 3 uniform in [5, 10], one 20.
        assert!((share(&|v| v == 0.0) - 0.5).abs() < 0.03);
        assert!((share(&|v| v == 20.0) - 0.125).abs() < 0.02);
        assert!((share(&|v| (5.0..=10.0).contains(&v)) - 0.375).abs() < 0.03);
        assert_eq!(random_scale(&[0.0], &mut rng), 0.0);
    }
}
