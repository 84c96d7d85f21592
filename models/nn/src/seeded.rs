//! Reproducible random draws keyed by a seed and a name (a parameter's path), so that a weight
//! gets the same initial values whichever party loads it, in whatever order, on any backend.

/// `n` values from N(0, `std`²), determined by `seed` and `key` alone.
pub fn normal(seed: u64, key: &str, n: usize, std: f64) -> Vec<f32> {
    let mut rng = SplitMix64(seed ^ fnv1a(key.as_bytes()));
    (0..n).map(|_| (rng.normal() * std) as f32).collect()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A small, portable generator: the same numbers on every platform.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Gamma(`shape`, `rate`) (mean shape/rate), by Marsaglia and Tsang's method; a shape
    /// below 1 is boosted by `U^(1/shape)`. Both must be positive and finite.
    pub fn gamma(&mut self, shape: f64, rate: f64) -> f64 {
        debug_assert!(shape > 0.0 && rate > 0.0, "gamma({shape}, {rate})");
        if shape < 1.0 {
            let boost = self.uniform().powf(1.0 / shape);
            return self.gamma(shape + 1.0, rate) * boost;
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.uniform();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v / rate;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_depend_on_seed_and_key_only() {
        let a = normal(1, "classifier.weight", 10_000, 0.02);
        assert_eq!(a, normal(1, "classifier.weight", 10_000, 0.02));
        assert_ne!(a, normal(2, "classifier.weight", 10_000, 0.02));
        assert_ne!(a, normal(1, "score.weight", 10_000, 0.02));
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(
            mean.abs() < 0.001 && (var.sqrt() - 0.02).abs() < 0.001,
            "{mean} {var}"
        );
    }

    #[test]
    fn gamma_draws_have_the_distributions_moments() {
        let mut rng = SplitMix64::new(7);
        for (shape, rate) in [(0.5, 2.0), (3.0, 1.0), (384.0, 3840.0)] {
            let n = 20_000;
            let draws: Vec<f64> = (0..n).map(|_| rng.gamma(shape, rate)).collect();
            let mean = draws.iter().sum::<f64>() / n as f64;
            let var = draws.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
            let (want_mean, want_var) = (shape / rate, shape / (rate * rate));
            assert!(
                ((mean - want_mean) / want_mean).abs() < 0.03
                    && ((var - want_var) / want_var).abs() < 0.08,
                "Gamma({shape}, {rate}): mean {mean} vs {want_mean}, var {var} vs {want_var}"
            );
        }
    }
}
