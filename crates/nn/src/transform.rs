//! The group action on chunks of samples (for augmentation and equivariance checks).

use eqaug_groups::{act_on_sample, Group, Perm, Points, Real, Rep};
use ndarray::{ArrayView2, ArrayViewMut2};

use crate::NnError;

/// Applies `rho(g)` to every row of `x` (samples laid out as `rep`: channels x positions,
/// channel-major) into `out`. Rows of a trivial representation are copied unchanged.
///
/// # Errors
/// [`NnError::Input`] if the width of `x` is not `rep.dim(group)`, `out` has another shape
/// than `x`, or `g` permutes another number of points than the group's.
pub fn act_on_rows<T: Copy>(
    group: &Group,
    rep: Rep,
    g: &Perm,
    x: ArrayView2<'_, T>,
    mut out: ArrayViewMut2<'_, T>,
) -> Result<(), NnError> {
    if x.ncols() != rep.dim(group) {
        return Err(NnError::input(
            "x",
            format_args!("rows of {} features ({rep})", rep.dim(group)),
            format_args!("{} x {}", x.nrows(), x.ncols()),
        ));
    }
    if out.dim() != x.dim() {
        return Err(NnError::input(
            "out",
            format_args!("the shape of x, {} x {}", x.nrows(), x.ncols()),
            format_args!("{} x {}", out.nrows(), out.ncols()),
        ));
    }
    if g.len() != group.degree() {
        return Err(NnError::input(
            "g",
            format_args!("a permutation of the group's {} points", group.degree()),
            format_args!("one of {} points", g.len()),
        ));
    }
    for (xr, mut or) in x.rows().into_iter().zip(out.rows_mut()) {
        match rep.points {
            Points::Trivial => or.assign(&xr),
            Points::Base => match (xr.as_slice(), or.as_slice_mut()) {
                (Some(xs), Some(os)) => act_on_sample(g, xs, os),
                (_, os) => {
                    let xs = xr.to_vec();
                    let mut tmp = xs.clone();
                    act_on_sample(g, &xs, &mut tmp);
                    match os {
                        Some(os) => os.copy_from_slice(&tmp),
                        None => or.iter_mut().zip(tmp).for_each(|(o, v)| *o = v),
                    }
                }
            },
        }
    }
    Ok(())
}

/// The relative deviation of a check: the largest `|a - b|` over all pairs of outputs added,
/// divided by the largest `|f(x)|` of the reference outputs (or not divided if those are all
/// zero). Used by the equivariance and invariance checks of the networks.
pub(crate) struct Deviation {
    scale: f64,
    worst: f64,
}

impl Deviation {
    /// Starts a check whose scale is `max |reference|`.
    pub(crate) fn new<T: Real>(reference: ArrayView2<'_, T>) -> Self {
        let scale = reference
            .iter()
            .fold(0.0f64, |a, v| a.max(v.to_f64_exact().abs()));
        Self { scale, worst: 0.0 }
    }

    /// Adds the entry-wise deviation `max |a - b|` of two outputs of the same shape.
    pub(crate) fn add<T: Real>(&mut self, a: ArrayView2<'_, T>, b: ArrayView2<'_, T>) {
        let e = a.iter().zip(b.iter()).fold(0.0f64, |m, (u, v)| {
            m.max((u.to_f64_exact() - v.to_f64_exact()).abs())
        });
        self.worst = self.worst.max(e);
    }

    /// The worst deviation added, relative to the scale.
    pub(crate) fn relative(&self) -> f64 {
        if self.scale > 0.0 {
            self.worst / self.scale
        } else {
            self.worst
        }
    }
}
