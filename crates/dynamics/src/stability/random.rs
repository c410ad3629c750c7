//! Random vectors of the analysis (Lanczos starts, random directions).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A standard Gaussian vector of dimension `n` (Box-Muller). Gaussian rather than Rademacher
/// starts: a Rademacher vector can have no component in a small subspace (e.g. `(1, 1)` has
/// none in E-perp of the swap group), a Gaussian one almost surely has.
pub(super) fn gaussian(n: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let u1: f64 = 1.0 - rng.gen::<f64>();
            let u2: f64 = rng.gen();
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        })
        .collect()
}
