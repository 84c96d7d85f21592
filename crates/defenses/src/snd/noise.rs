//! SnD's noise: per element, a Gamma(d, η) magnitude times a Uniform(−1, 1) sign and scale
//! (the reference's `sample_noise_Chi`, `utils/snd_utils.py:4–13`), and the per-token norm
//! clipping its denoiser pretraining applies to the noisy activations
//! (`evaluates/MainTaskVFL_LLM.py:228–232`).

use burn::tensor::Tensor;
use splitlm_nn::seeded::SplitMix64;

/// One draw of the noise: `l · v` with `l ~ Gamma(shape = width, rate = eta)` and
/// `v ~ U(−1, 1)`, where `width` is the hidden size (the reference's `n_dim = d_shape[-1]`).
pub(crate) fn draw(rng: &mut SplitMix64, width: usize, eta: f64) -> f64 {
    let magnitude = rng.gamma(width as f64, eta);
    // `-2·rand + 1` in the reference: U(−1, 1].
    let sign_and_scale = 1.0 - 2.0 * rng.uniform();
    magnitude * sign_and_scale
}

/// A noise tensor shaped like `like` `[b, s, d]`, on its device, at rate `eta`.
pub(crate) fn noise_like(like: &Tensor<3>, rng: &mut SplitMix64, eta: f64) -> Tensor<3> {
    let width = like.dims()[2];
    crate::noise_like(like, || draw(rng, width, eta))
}

/// `E[x²]` of one draw: `E[l²]·E[v²] = d(d + 1)/η² · 1/3` (the mean is 0).
#[cfg(test)]
pub(crate) fn variance(width: usize, eta: f64) -> f64 {
    let d = width as f64;
    d * (d + 1.0) / (eta * eta) / 3.0
}

/// Scales each token of `hidden` `[b, s, d]` whose L2 norm exceeds `max_norm` down to it
/// (`x · min(1, max_norm / ‖x‖)`), as the reference clips the noisy activations.
pub(crate) fn clip_norm(hidden: Tensor<3>, max_norm: f64) -> Tensor<3> {
    let norms = hidden.clone().powi_scalar(2).sum_dim(2).sqrt();
    // A zero norm gives an infinite ratio, clamped to 1: the token stays zero.
    let factor = (norms.recip() * max_norm).clamp_max(1.0);
    hidden * factor
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;
    use splitlm_device::DeviceSpec;

    use super::*;

    fn moments(values: &[f64]) -> (f64, f64) {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let second = values.iter().map(|v| v * v).sum::<f64>() / n;
        (mean, second)
    }

    #[test]
    fn the_noise_is_centred_with_the_gamma_times_uniform_variance() {
        for (width, eta) in [(32usize, 100.0), (768, 100.0), (8, 2.0)] {
            let mut rng = SplitMix64::new(7);
            let values: Vec<f64> = (0..200_000).map(|_| draw(&mut rng, width, eta)).collect();
            let (mean, second) = moments(&values);
            let want = variance(width, eta);
            // The standard error of the mean is √(var/n) ≈ 0.0022·√var.
            assert!(
                mean.abs() < 0.01 * want.sqrt(),
                "{width}/{eta}: mean {mean}"
            );
            assert!(
                (second / want - 1.0).abs() < 0.02,
                "{width}/{eta}: E[x²] {second} vs {want}"
            );
            // |x| ≤ l, and l concentrates near d/η for a large shape.
            let mean_abs = values.iter().map(|v| v.abs()).sum::<f64>() / values.len() as f64;
            let want_abs = width as f64 / eta / 2.0;
            assert!((mean_abs / want_abs - 1.0).abs() < 0.02, "E|x| {mean_abs}");
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_noise() {
        let device = DeviceSpec::Cpu.device().unwrap();
        let like = Tensor::<3>::zeros([2, 3, 4], &device);
        let a = noise_like(&like, &mut SplitMix64::new(1), 100.0);
        let b = noise_like(&like, &mut SplitMix64::new(1), 100.0);
        let c = noise_like(&like, &mut SplitMix64::new(2), 100.0);
        assert_eq!(a.dims(), [2, 3, 4]);
        let v = |t: Tensor<3>| t.into_data().try_into_vec_as::<f32>().unwrap();
        let a = v(a);
        assert_eq!(a, v(b));
        assert_ne!(a, v(c));
    }

    #[test]
    fn clipping_shortens_long_tokens_only() {
        let device = DeviceSpec::Cpu.device().unwrap();
        let values = vec![3.0f32, 4.0, 0.3, 0.4, 0.0, 0.0];
        let t = Tensor::<3>::from_data(TensorData::new(values, [1, 3, 2]), &device);
        let out: Vec<f32> = clip_norm(t, 2.5).into_data().try_into_vec_as().unwrap();
        let want = [1.5f32, 2.0, 0.3, 0.4, 0.0, 0.0];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() < 1e-6, "{out:?}");
        }
    }
}
