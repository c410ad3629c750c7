//! Dense Hessians on the span of an orthonormal basis (one HVP per basis vector), the
//! asymmetry the central differences leave, and the memory check of a dense eigenproblem.

use super::basis::{BasisVector, SparseVector};
use super::risk::Risk;
use crate::error::StabilityError;
use crate::lanczos;
use eqaug_nn::Params;

/// The Hessian of `risk` at `a` on E in the orthonormal orbit `basis`: [`dense_hessian_in`].
pub(super) fn dense_hessian_on_e(
    risk: &mut Risk<'_>,
    a: &Params<f64>,
    basis: &[BasisVector],
) -> Result<(Vec<Vec<f64>>, f64), StabilityError> {
    let sparse: Vec<SparseVector> = basis
        .iter()
        .map(|(idx, val)| idx.iter().map(|&i| (i, *val)).collect())
        .collect();
    dense_hessian_in(risk, a, &sparse)
}

/// Refuses a dense `n x n` eigenproblem that would not fit in the available memory (the
/// matrix, its antisymmetric part, the solver's copy and workspace and the eigenvectors: five
/// `n x n` f64 matrices), naming the config `key` that allows it.
pub(super) fn check_dense_memory(n: usize, key: &str, what: &str) -> Result<(), StabilityError> {
    lanczos::check_memory(5 * 8 * n as u128 * n as u128, key, what, None)
}

/// The Hessian of `risk` at `a` on the span of the orthonormal `basis` (one HVP per basis
/// vector), symmetrised, and the spectral norm of the antisymmetric part the central
/// differences left (`||(H - H^T) / 2||_2`): the exact Hessian is symmetric, so this measures
/// their error, and by Weyl's inequality an error of that size moves each eigenvalue of the
/// symmetrised matrix by about as much.
pub(super) fn dense_hessian_in(
    risk: &mut Risk<'_>,
    a: &Params<f64>,
    basis: &[SparseVector],
) -> Result<(Vec<Vec<f64>>, f64), StabilityError> {
    let n = basis.len();
    let mut v = a.zeros_like();
    let mut hv = a.zeros_like();
    let mut h = vec![vec![0.0; n]; n];
    for (j, bj) in basis.iter().enumerate() {
        v.fill_zero();
        for &(i, x) in bj {
            v.as_mut_slice()[i] = x;
        }
        risk.hvp(a, &v, &mut hv)?;
        let hv = hv.as_slice();
        for (i, bi) in basis.iter().enumerate() {
            h[i][j] = bi.iter().map(|&(k, x)| x * hv[k]).sum();
        }
    }
    let mut k = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..i {
            let m = 0.5 * (h[i][j] + h[j][i]);
            k[i][j] = 0.5 * (h[i][j] - h[j][i]);
            k[j][i] = -k[i][j];
            h[i][j] = m;
            h[j][i] = m;
        }
    }
    Ok((h, antisymmetric_norm(&k)))
}

/// `||K||_2` of an antisymmetric matrix: power iteration on `K^T K = -K^2` (deterministic
/// start, 100 iterations or a relative change below 1e-6; an estimate from below that is
/// within a few per cent of the norm for these matrices).
pub(super) fn antisymmetric_norm(k: &[Vec<f64>]) -> f64 {
    let n = k.len();
    if n == 0 {
        return 0.0;
    }
    let mul = |x: &[f64]| -> Vec<f64> {
        k.iter()
            .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
            .collect()
    };
    let mut x: Vec<f64> = (0..n).map(|i| 1.0 + (i % 7) as f64 / 7.0).collect();
    let mut est = 0.0;
    for _ in 0..100 {
        let nx = x.iter().map(|v| v * v).sum::<f64>().sqrt();
        if nx == 0.0 {
            return 0.0;
        }
        x.iter_mut().for_each(|v| *v /= nx);
        let y = mul(&x);
        let next = y.iter().map(|v| v * v).sum::<f64>().sqrt();
        x = mul(&y);
        x.iter_mut().for_each(|v| *v = -*v);
        if (next - est).abs() <= 1e-6 * next {
            return next;
        }
        est = next;
    }
    est
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spectral norm of antisymmetric matrices: a direct sum of 2 x 2 rotation generators
    /// [[0, a], [-a, 0]] (norm max |a|), in a random orthogonal-ish basis change by a
    /// permutation, and the zero matrix.
    #[test]
    fn antisymmetric_norm_of_known_matrices() {
        let a = [0.3, -2.5, 1.7, 0.0];
        let n = 2 * a.len();
        let perm = [5, 2, 7, 0, 3, 6, 1, 4];
        let mut k = vec![vec![0.0; n]; n];
        for (b, &x) in a.iter().enumerate() {
            let (i, j) = (perm[2 * b], perm[2 * b + 1]);
            k[i][j] = x;
            k[j][i] = -x;
        }
        let got = antisymmetric_norm(&k);
        assert!((got - 2.5).abs() < 1e-5, "{got}");
        assert_eq!(antisymmetric_norm(&vec![vec![0.0; 3]; 3]), 0.0);
    }
}
