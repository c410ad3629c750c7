//! The regularised risk `R + gamma/2 ||A_Eperp||^2` (arXiv 2502.06547; docs/science.md §10) for
//! the stability tools: values, gradients that include the penalty, and Hessian-vector
//! products by central differences of those gradients.
//!
//! Its Hessian is `Hess R + gamma P_perp` (`P_perp` the orthogonal projection onto E-perp of
//! the group layers): on E-perp every eigenvalue moves by exactly `gamma`, on E nothing
//! changes. [`RegularisedRisk::hvp`] differences the regularised gradient (it does not add
//! `gamma v` by hand), so a Lanczos run on it measures that shift rather than assuming it.

use crate::stability::{Risk, StabilityError};
use crate::Regulariser;
use eqaug_nn::Params;

/// A [`Risk`] with the penalty `gamma/2 ||A_Eperp||^2` added.
#[derive(Debug)]
pub struct RegularisedRisk<'a, 'r> {
    risk: &'r mut Risk<'a>,
    regulariser: Regulariser,
    scratch: Params<f64>,
    hvp_step: f64,
}

impl<'a, 'r> RegularisedRisk<'a, 'r> {
    /// Wraps `risk` (nominal or augmented) with `regulariser`.
    pub fn new(risk: &'r mut Risk<'a>, regulariser: Regulariser) -> Result<Self, StabilityError> {
        regulariser
            .validate("regularised risk")
            .map_err(|e| StabilityError::Invalid(e.to_string()))?;
        let scratch = risk.network().zeros();
        Ok(RegularisedRisk {
            risk,
            regulariser,
            scratch,
            hvp_step: 1e-6,
        })
    }

    /// Sets the relative step of the central differences (default 1e-6, as [`Risk::hvp`]).
    pub fn set_hvp_step(&mut self, step: f64) {
        self.hvp_step = step;
    }

    /// `R(A) + gamma/2 ||A_Eperp||^2`.
    pub fn loss(&mut self, a: &Params<f64>) -> Result<f64, StabilityError> {
        Ok(self.risk.loss(a)? + self.regulariser.penalty(a))
    }

    /// The regularised risk at `a`, and its gradient `grad R(A) + gamma (A - Pi_E A)` written
    /// into `grad`.
    pub fn loss_and_gradient(
        &mut self,
        a: &Params<f64>,
        grad: &mut Params<f64>,
    ) -> Result<f64, StabilityError> {
        let l = self.risk.loss_and_gradient(a, grad)?;
        self.regulariser.add_gradient(a, grad, &mut self.scratch);
        Ok(l + self.regulariser.penalty(a))
    }

    /// `H v` of the regularised risk at `a` by central differences of
    /// [`RegularisedRisk::loss_and_gradient`], into `out` (step `hvp_step * max(|a|, 1) / |v|`).
    pub fn hvp(
        &mut self,
        a: &Params<f64>,
        v: &Params<f64>,
        out: &mut Params<f64>,
    ) -> Result<(), StabilityError> {
        let (mut p, mut gm) = (a.clone(), a.zeros_like());
        let step = self.hvp_step;
        crate::hessian::hvp(a, v, step, out, &mut p, &mut gm, |x, g| {
            self.loss_and_gradient(x, g)
        })
    }
}

/// The measured `+gamma` shift of the extreme eigenvalues of `H_perp` (see
/// [`eigenvalue_shift_check`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShiftCheck {
    /// The penalty strength.
    pub gamma: f64,
    /// Smallest and largest Ritz value of `H_perp` (exact `R_aug`, no penalty).
    pub perp: (f64, f64),
    /// The same with the penalty: `H_perp + gamma I`.
    pub perp_regularised: (f64, f64),
    /// Smallest and largest Ritz value on E, without and with the penalty.
    pub e: (f64, f64),
    /// The same with the penalty (unchanged in theory).
    pub e_regularised: (f64, f64),
}

impl ShiftCheck {
    /// `max` over the two extremes of `|measured - (plain + gamma)| / |plain + gamma|` on
    /// E-perp.
    pub fn perp_relative_error(&self) -> f64 {
        let rel =
            |got: f64, plain: f64| (got - (plain + self.gamma)).abs() / (plain + self.gamma).abs();
        rel(self.perp_regularised.0, self.perp.0).max(rel(self.perp_regularised.1, self.perp.1))
    }

    /// `max` over the two extremes of `|measured - plain|`, relative to the largest `|plain|`,
    /// on E.
    pub fn e_relative_change(&self) -> f64 {
        let scale = self.e.0.abs().max(self.e.1.abs());
        (self.e_regularised.0 - self.e.0)
            .abs()
            .max((self.e_regularised.1 - self.e.1).abs())
            / scale
    }
}

/// Checks docs/science.md §10's "the penalty adds exactly gamma on E-perp and nothing on E" on a
/// small fixed problem in f64: C_4 on a 4 x 4 grid, a smooth (tanh) invariant classifier with
/// layers 1 -> 2 channels -> 3 invariant -> dense 3 -> softmax, 8 random samples (seed 11),
/// `A*` its initialisation (in E, seed 12), exact `R_aug`; 15 Lanczos steps (full
/// reorthogonalisation) from one random start (seed 13) on E-perp and on E, with the HVPs of
/// [`Risk`] and of [`RegularisedRisk`].
pub fn eigenvalue_shift_check(gamma: f64) -> Result<ShiftCheck, StabilityError> {
    use crate::hessian::Subspace;
    use crate::lanczos::lanczos_on_block;
    use crate::TrainData;
    use eqaug_groups::{Group, Rep};
    use eqaug_nn::{LayerSpec, Loss, Network, NetworkSpec, Points};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    let invalid = |e: &dyn std::fmt::Display| StabilityError::Invalid(e.to_string());
    let group = Group::builtin("rot", 4).map_err(|e| invalid(&e))?;
    let spec = NetworkSpec {
        layers: vec![
            LayerSpec::group(2, Points::Base, 0.6),
            LayerSpec::Tanh,
            LayerSpec::group(3, Points::Trivial, 0.6),
            LayerSpec::Tanh,
            LayerSpec::dense(3, 0.8, true),
            LayerSpec::Softmax,
        ],
    };
    let net = Network::<f64>::new(
        &spec,
        group.clone(),
        Rep::base(1),
        Loss::CrossEntropyOnProbabilities,
    )
    .map_err(|e| invalid(&e))?;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let d = group.degree();
    let rows = 8;
    let x = ndarray::Array2::from_shape_fn((rows, d), |_| rng.gen_range(-1.0..1.0));
    let mut t = ndarray::Array2::zeros((rows, 3));
    for i in 0..rows {
        t[[i, rng.gen_range(0..3)]] = 1.0;
    }
    let data = TrainData {
        x,
        targets: t,
        input_rep: Rep::base(1),
        target_rep: None,
    };
    let a_star = net.init_params(&mut ChaCha8Rng::seed_from_u64(12));
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let start: Vec<f64> = (0..a_star.len())
        .map(|_| rng.gen_range(-1.0..1.0))
        .collect();
    let elements = group.elements(16).map_err(|e| invalid(&e))?;
    let mut risk = Risk::new(&net, &data, 4, Some(elements))?;
    let layout = a_star.layout().clone();
    let steps = 15;
    let mut extremes = |sub: Subspace, regularised: bool| -> Result<(f64, f64), StabilityError> {
        let run = if regularised {
            let mut reg = RegularisedRisk::new(&mut risk, Regulariser { gamma })?;
            lanczos_on_block(&layout, sub, &start, steps, |v, o| reg.hvp(&a_star, v, o))?
        } else {
            lanczos_on_block(&layout, sub, &start, steps, |v, o| risk.hvp(&a_star, v, o))?
        };
        Ok((run.min(), run.max()))
    };
    Ok(ShiftCheck {
        gamma,
        perp: extremes(Subspace::Orthogonal, false)?,
        perp_regularised: extremes(Subspace::Orthogonal, true)?,
        e: extremes(Subspace::Equivariant, false)?,
        e_regularised: extremes(Subspace::Equivariant, true)?,
    })
}
