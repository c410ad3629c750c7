//! Gradients and the Hessian-vector product of the training risks, and the subspaces E and
//! E-perp with their projections (docs/science.md §1.3 and §8, Proposition 2). Eigenvalues on a
//! subspace: [`crate::lanczos::lanczos_on_block`].

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

/// The Hessian-vector product of the crate (the one HVP: [`crate::stability::Risk::hvp`], the
/// regularised risk's and the worked example's go through it): central differences of the
/// exact gradient, `H v ~ (grad(a + h v) - grad(a - h v)) / (2 h)` with
/// `h = step * max(1, ||a||) / ||v||`, into `out`. `p` and `gm` are scratch parameters of
/// `a`'s layout; `gradient(x, g)` writes the gradient at `x` into `g` (its value is unused).
/// The error is `O(h^2 |D^3 R|) + O(u |grad R| / h)`: a relative `step` around 1e-6 in f64
/// (see [`crate::stability`]). `v = 0` gives 0.
pub fn hvp<E>(
    a: &Params<f64>,
    v: &Params<f64>,
    step: f64,
    out: &mut Params<f64>,
    p: &mut Params<f64>,
    gm: &mut Params<f64>,
    mut gradient: impl FnMut(&Params<f64>, &mut Params<f64>) -> Result<f64, E>,
) -> Result<(), E> {
    let nv = v.norm();
    if nv == 0.0 {
        out.fill_zero();
        return Ok(());
    }
    let h = step * a.norm().max(1.0) / nv;
    // Fused passes (this is all the HVP adds to its two gradients; on small data sets the
    // vector work is a visible part of a gradient's cost).
    let shifted = |p: &mut Params<f64>, h: f64| {
        for ((p, a), v) in p
            .as_mut_slice()
            .iter_mut()
            .zip(a.as_slice())
            .zip(v.as_slice())
        {
            *p = a + h * v;
        }
    };
    shifted(p, h);
    gradient(p, out)?;
    shifted(p, -h);
    gradient(p, gm)?;
    let c = 0.5 / h;
    for (o, g) in out.as_mut_slice().iter_mut().zip(gm.as_slice()) {
        *o = (*o - g) * c;
    }
    Ok(())
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
