//! The group action on chunks of samples (for augmentation and equivariance checks).

use eqaug_groups::{act_on_sample, Group, Perm, Points, Rep};
use ndarray::{ArrayView2, ArrayViewMut2};

/// Applies `rho(g)` to every row of `x` (samples laid out as `rep`: channels x positions,
/// channel-major) into `out`. Rows of a trivial representation are copied unchanged.
///
/// # Panics
/// If the shapes of `x` and `out` differ or the width is not `rep.dim(group)`.
pub fn act_on_rows<T: Copy>(
    group: &Group,
    rep: Rep,
    g: &Perm,
    x: ArrayView2<'_, T>,
    mut out: ArrayViewMut2<'_, T>,
) {
    assert_eq!(x.dim(), out.dim(), "act_on_rows: shapes differ");
    assert_eq!(
        x.ncols(),
        rep.dim(group),
        "act_on_rows: width is not the representation's dimension"
    );
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
}
