//! Hessian-vector products of the training risks and Lanczos estimates of their extreme
//! eigenvalues on E and on its orthogonal complement (SPEC sections 1 and 8, Proposition 2).

use crate::{StrategySpec, TrainError, Trainer};
use eqaug_groups::Real;
use eqaug_nn::Params;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The gradient of a strategy's risk at `params` (a fresh copy of the trainer's store).
/// For a deterministic risk use [`crate::StrategyKind::Nominal`] or exact augmentation.
pub fn gradient<T: Real>(
    trainer: &mut Trainer<'_, T>,
    params: &Params<T>,
    strategy: &StrategySpec,
) -> Result<Params<T>, TrainError> {
    // Deterministic risks draw nothing; a fixed stream keeps sampled ones reproducible.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    trainer.gradient(params, strategy, &mut rng)?;
    Ok(trainer.grads().clone())
}

/// `H v` by central differences of gradients: `(grad(A + eps v) - grad(A - eps v)) / (2 eps)`.
/// Use f64; the error is `O(eps^2)` plus round-off `O(u / eps)`, so `eps` around 1e-5 relative
/// to the scale of `A` is a good choice.
pub fn hvp<T: Real>(
    trainer: &mut Trainer<'_, T>,
    params: &Params<T>,
    v: &Params<T>,
    strategy: &StrategySpec,
    eps: f64,
) -> Result<Params<T>, TrainError> {
    let e = T::from_f64_lossy(eps);
    let mut a = params.clone();
    a.axpy(e, v);
    let mut hv = gradient(trainer, &a, strategy)?;
    a.axpy(-(e + e), v);
    let gm = gradient(trainer, &a, strategy)?;
    hv.axpy(-T::one(), &gm);
    hv.scale(T::from_f64_lossy(0.5 / eps));
    Ok(hv)
}

/// The subspaces of the layer space that Proposition 2 separates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subspace {
    /// E: group layers projected onto E, every other parameter free.
    Equivariant,
    /// E-perp: the part of the group layers orthogonal to E; other parameters zero.
    Orthogonal,
}

/// Projects `v` onto the subspace in place.
pub fn project_onto<T: Real>(v: &mut Params<T>, subspace: Subspace) {
    match subspace {
        Subspace::Equivariant => v.project_group_layers(),
        Subspace::Orthogonal => {
            let mut e = v.clone();
            e.project_group_layers();
            v.axpy(-T::one(), &e);
            for i in 0..v.num_tensors() {
                let t = v.tensor_mut(i);
                if !t.is_group() {
                    t.data.fill(T::zero());
                }
            }
        }
    }
}

/// Smallest and largest eigenvalue of a symmetric operator restricted to a subspace, by
/// Lanczos with full reorthogonalisation (`steps` iterations, at most the subspace's
/// dimension). `op` is typically `|v| hvp(trainer, a_star, v, strategy, eps)`.
pub fn extreme_eigenvalues<T: Real>(
    mut op: impl FnMut(&Params<T>) -> Result<Params<T>, TrainError>,
    start: &Params<T>,
    subspace: Subspace,
    steps: usize,
) -> Result<(f64, f64), TrainError> {
    let mut q = start.clone();
    project_onto(&mut q, subspace);
    let nq = q.norm().to_f64_exact();
    if nq == 0.0 {
        return Err(TrainError::Invalid(
            "Lanczos start vector is zero in the subspace".into(),
        ));
    }
    q.scale(T::from_f64_lossy(1.0 / nq));
    let mut basis: Vec<Params<T>> = vec![q];
    let (mut alpha, mut beta) = (Vec::new(), Vec::new());
    for k in 0..steps {
        let mut w = op(&basis[k])?;
        project_onto(&mut w, subspace);
        let a = w.dot(&basis[k]).to_f64_exact();
        alpha.push(a);
        // Full reorthogonalisation (twice is enough).
        for _ in 0..2 {
            for b in &basis {
                let c = w.dot(b);
                w.axpy(-c, b);
            }
        }
        let bnorm = w.norm().to_f64_exact();
        if k + 1 == steps || bnorm < 1e-12 * (1.0 + a.abs()) {
            break;
        }
        beta.push(bnorm);
        w.scale(T::from_f64_lossy(1.0 / bnorm));
        basis.push(w);
    }
    let (ev, _) = crate::lanczos::tridiagonal_eigen(&alpha, &beta);
    let min = ev.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = ev.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    Ok((min, max))
}
