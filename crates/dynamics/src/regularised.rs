//! The regularised risk `R + gamma/2 ||A_Eperp||^2` (arXiv 2502.06547; SPEC section 10) for
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
        let nv = v.norm();
        if nv == 0.0 {
            out.fill_zero();
            return Ok(());
        }
        let h = self.hvp_step * a.norm().max(1.0) / nv;
        let mut p = a.clone();
        p.axpy(h, v);
        self.loss_and_gradient(&p, out)?;
        p.axpy(-2.0 * h, v);
        let mut gm = a.zeros_like();
        self.loss_and_gradient(&p, &mut gm)?;
        out.axpy(-1.0, &gm);
        out.scale(0.5 / h);
        Ok(())
    }
}
