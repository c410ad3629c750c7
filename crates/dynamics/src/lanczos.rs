//! Lanczos with full reorthogonalisation for symmetric operators restricted to a subspace, Ritz
//! pairs with their residuals, and stochastic Lanczos quadrature (SLQ) spectral densities
//! (docs/science.md §10).
//!
//! Everything works on flat `f64` vectors of a fixed dimension, so the same code runs on a
//! dense test matrix and on Hessian-vector products of a network. The operator is restricted to
//! a subspace by a projection applied to the start vector and to every product (before the
//! product by construction, since every Lanczos vector lies in the subspace, and after it
//! explicitly): `P H P` on `range(P)`.

use std::sync::Arc;

use eqaug_nn::{Layout, Params};

use crate::error::StabilityError;
use crate::hessian::{project_onto, Subspace};

/// The outcome of one Lanczos run: the tridiagonal matrix, its eigen-decomposition (Ritz
/// values and vectors in the Krylov basis) and the basis itself.
#[derive(Clone, Debug)]
pub struct LanczosRun {
    /// Diagonal of the tridiagonal matrix `T` (length `m`, the steps taken).
    pub alpha: Vec<f64>,
    /// Off-diagonal of `T` (length `m - 1`).
    pub beta: Vec<f64>,
    /// The norm of the residual after the last step (`beta_m`; 0 after an exact breakdown).
    pub last_beta: f64,
    /// Ritz values, ascending (the eigenvalues of `T`).
    pub ritz_values: Vec<f64>,
    /// Residual estimates `|beta_m y_i[m-1]|` of the Ritz pairs: `||H x_i - theta_i x_i||`
    /// for unit Ritz vectors `x_i`, exact in exact arithmetic with full reorthogonalisation.
    pub ritz_residuals: Vec<f64>,
    /// Squared first components `y_i[0]^2` of the eigenvectors of `T` (the SLQ weights; they
    /// sum to 1).
    pub weights: Vec<f64>,
    /// Eigenvectors of `T`, `eigvecs[i]` for `ritz_values[i]` (length `m` each).
    pub eigvecs: Vec<Vec<f64>>,
    /// The orthonormal Lanczos basis (`m` vectors of the operator's dimension).
    pub basis: Vec<Vec<f64>>,
}

impl LanczosRun {
    /// Number of Lanczos steps taken.
    pub fn steps(&self) -> usize {
        self.alpha.len()
    }

    /// The unit Ritz vector of Ritz value `i` (index into [`LanczosRun::ritz_values`]), in the
    /// operator's space.
    pub fn ritz_vector(&self, i: usize) -> Vec<f64> {
        let dim = self.basis[0].len();
        let mut x = vec![0.0; dim];
        for (q, &c) in self.basis.iter().zip(&self.eigvecs[i]) {
            for (xi, qi) in x.iter_mut().zip(q) {
                *xi += c * qi;
            }
        }
        let n = norm(&x);
        if n > 0.0 {
            x.iter_mut().for_each(|v| *v /= n);
        }
        x
    }

    /// The smallest Ritz value.
    pub fn min(&self) -> f64 {
        self.ritz_values[0]
    }

    /// The largest Ritz value.
    pub fn max(&self) -> f64 {
        *self.ritz_values.last().expect("at least one step")
    }
}

/// Dot product of two equally long vectors.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Euclidean norm.
pub fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// `y += a x`.
pub fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// Runs `steps` Lanczos iterations (fewer on breakdown, i.e. when the Krylov space is
/// exhausted) of the operator `op(v, out)` (`out = H v`) restricted to the range of
/// `project` (an orthogonal projection applied in place), from `start`.
///
/// Full reorthogonalisation: every new vector is orthogonalised twice against the whole basis,
/// so the Ritz values do not show the spurious copies of plain Lanczos. The basis is kept
/// (`steps x dim x 8` bytes; see [`basis_bytes`]).
pub fn lanczos(
    start: &[f64],
    steps: usize,
    mut op: impl FnMut(&[f64], &mut [f64]) -> Result<(), StabilityError>,
    project: &dyn Fn(&mut [f64]),
) -> Result<LanczosRun, StabilityError> {
    if steps == 0 {
        return Err(StabilityError::Invalid(
            "Lanczos needs at least one step".into(),
        ));
    }
    let dim = start.len();
    let mut q = start.to_vec();
    project(&mut q);
    let nq = norm(&q);
    if !(nq > 0.0 && nq.is_finite()) {
        return Err(StabilityError::Invalid(
            "the Lanczos start vector has no component in the subspace".into(),
        ));
    }
    q.iter_mut().for_each(|v| *v /= nq);
    let mut basis = vec![q];
    let (mut alpha, mut beta) = (Vec::new(), Vec::new());
    let mut w = vec![0.0; dim];
    let mut scale = 0.0f64;
    let last_beta;
    loop {
        let k = basis.len() - 1;
        op(&basis[k], &mut w)?;
        if w.iter().any(|v| !v.is_finite()) {
            return Err(StabilityError::Invalid(format!(
                "the operator returned a non-finite vector at Lanczos step {k}"
            )));
        }
        project(&mut w);
        let a = dot(&w, &basis[k]);
        alpha.push(a);
        scale = scale.max(a.abs()).max(beta.last().copied().unwrap_or(0.0));
        // Full reorthogonalisation, twice ("twice is enough"), then the projection once more:
        // the subtractions leave round-off outside the subspace, and where `beta` is small
        // the division by it amplifies that part step after step until a basis vector lies
        // largely outside the subspace, where `project(op(.))` has a zero Rayleigh quotient:
        // spurious zero Ritz values with tiny residuals (seen on E-perp at a point with many
        // eigenvalues equal to the ridge).
        for _ in 0..2 {
            for b in &basis {
                let c = dot(&w, b);
                axpy(-c, b, &mut w);
            }
        }
        project(&mut w);
        let bn = norm(&w);
        let breakdown = bn <= 1e-12 * scale.max(f64::MIN_POSITIVE) || basis.len() >= dim;
        if alpha.len() == steps || breakdown {
            last_beta = if breakdown { 0.0 } else { bn };
            break;
        }
        beta.push(bn);
        let mut next = w.clone();
        next.iter_mut().for_each(|v| *v /= bn);
        basis.push(next);
    }
    let (values, vectors) = tridiagonal_eigen(&alpha, &beta);
    let m = alpha.len();
    let ritz_residuals = vectors
        .iter()
        .map(|y| (last_beta * y[m - 1]).abs())
        .collect();
    let weights = vectors.iter().map(|y| y[0] * y[0]).collect();
    Ok(LanczosRun {
        alpha,
        beta,
        last_beta,
        ritz_values: values,
        ritz_residuals,
        weights,
        eigvecs: vectors,
        basis,
    })
}

/// [`lanczos`] of an operator on parameter vectors (e.g. a Hessian-vector product
/// `hvp(v, out)`, `out = H v`) with the parameter layout `layout`, restricted to the block
/// `sub` (E or E-perp) by [`project_onto`]; `start` is a flat vector of `layout.len()` values.
pub fn lanczos_on_block(
    layout: &Arc<Layout>,
    sub: Subspace,
    start: &[f64],
    steps: usize,
    mut hvp: impl FnMut(&Params<f64>, &mut Params<f64>) -> Result<(), StabilityError>,
) -> Result<LanczosRun, StabilityError> {
    let mut vp = Params::zeros(layout.clone());
    let mut out = Params::zeros(layout.clone());
    let project = |v: &mut [f64]| {
        let mut p = Params::from_vec(layout.clone(), v.to_vec()).expect("same layout");
        project_onto(&mut p, sub);
        v.copy_from_slice(p.as_slice());
    };
    // At most dim(sub) steps: beyond it the Krylov space is exhausted, and with inexact
    // (central-difference) products the breakdown test may miss it and add a spurious vector.
    let steps = steps.min(subspace_dim(layout, sub)).max(1);
    lanczos(
        start,
        steps,
        |v, o| {
            vp.as_mut_slice().copy_from_slice(v);
            hvp(&vp, &mut out)?;
            o.copy_from_slice(out.as_slice());
            Ok(())
        },
        &project,
    )
}

/// Dimension of E (every parameter outside the group layers, and dim E of each group layer)
/// or of E-perp (the rest of the group layers).
pub fn subspace_dim(layout: &Layout, sub: Subspace) -> usize {
    let mut e = 0;
    let mut perp = 0;
    for t in layout.tensors() {
        match &t.kind {
            eqaug_nn::TensorKind::Group { projector, .. } => {
                e += projector.dim();
                perp += t.len - projector.dim();
            }
            _ => e += t.len,
        }
    }
    match sub {
        Subspace::Equivariant => e,
        Subspace::Orthogonal => perp,
    }
}

/// Bytes of a Lanczos basis of `steps` vectors of dimension `dim` in f64.
pub fn basis_bytes(steps: usize, dim: usize) -> u128 {
    steps as u128 * dim as u128 * 8
}

/// The available memory in bytes (`MemAvailable` of `/proc/meminfo`), if known.
pub fn available_memory() -> Option<u128> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Refuses a request of `bytes` (named by the config `key` that sets its size) that exceeds
/// `available` bytes (default: [`available_memory`]; unknown = no check), with a message that
/// says how much is needed and what to lower.
pub fn check_memory(
    bytes: u128,
    key: &str,
    what: &str,
    available: Option<u128>,
) -> Result<(), StabilityError> {
    let available = available.or_else(available_memory);
    match available {
        Some(av) if bytes > av => Err(StabilityError::OutOfMemory {
            key: key.to_string(),
            what: what.to_string(),
            needed: bytes,
            available: av,
        }),
        _ => Ok(()),
    }
}

/// A spectral density estimate by stochastic Lanczos quadrature: for each random start, the
/// Ritz values (nodes) and the squared first components of the eigenvectors of `T` (weights,
/// summing to 1 per start). The density is the average over starts of
/// `sum_i w_i N(t; theta_i, sigma^2)` (Ghorbani et al. 2019).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SpectralDensity {
    /// Ritz values per start.
    pub nodes: Vec<Vec<f64>>,
    /// Quadrature weights per start.
    pub weights: Vec<Vec<f64>>,
}

impl SpectralDensity {
    /// The Gaussian-smoothed density at each point of `grid` (integrates to about 1).
    pub fn evaluate(&self, grid: &[f64], sigma: f64) -> Vec<f64> {
        let starts = self.nodes.len().max(1) as f64;
        let c = 1.0 / (sigma * (2.0 * std::f64::consts::PI).sqrt());
        grid.iter()
            .map(|&t| {
                let mut s = 0.0;
                for (ns, ws) in self.nodes.iter().zip(&self.weights) {
                    for (&x, &w) in ns.iter().zip(ws) {
                        let z = (t - x) / sigma;
                        s += w * c * (-0.5 * z * z).exp();
                    }
                }
                s / starts
            })
            .collect()
    }

    /// The estimate of `(1/d) trace f(H)` for the quadrature: `mean_v sum_i w_i f(theta_i)`.
    pub fn integrate(&self, f: impl Fn(f64) -> f64) -> f64 {
        let starts = self.nodes.len().max(1) as f64;
        let s: f64 = self
            .nodes
            .iter()
            .zip(&self.weights)
            .map(|(ns, ws)| ns.iter().zip(ws).map(|(&x, &w)| w * f(x)).sum::<f64>())
            .sum();
        s / starts
    }

    /// Smallest and largest node over all starts.
    pub fn range(&self) -> (f64, f64) {
        let all = self.nodes.iter().flatten();
        let lo = all.clone().cloned().fold(f64::INFINITY, f64::min);
        let hi = all.cloned().fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    }
}

/// Stochastic Lanczos quadrature from the given start vectors (e.g. Rademacher or Gaussian;
/// each is projected and normalised), `steps` Lanczos steps each.
pub fn slq(
    starts: &[Vec<f64>],
    steps: usize,
    mut op: impl FnMut(&[f64], &mut [f64]) -> Result<(), StabilityError>,
    project: &dyn Fn(&mut [f64]),
) -> Result<SpectralDensity, StabilityError> {
    let mut nodes = Vec::new();
    let mut weights = Vec::new();
    for s in starts {
        let run = lanczos(s, steps, &mut op, project)?;
        nodes.push(run.ritz_values);
        weights.push(run.weights);
    }
    Ok(SpectralDensity { nodes, weights })
}

/// Eigenvalues (ascending) and eigenvectors of the symmetric tridiagonal matrix with diagonal
/// `a` and off-diagonal `b`, by [`symmetric_eigen`] on the dense matrix (the matrices are
/// at most a few hundred wide). `vectors[i]` belongs to `values[i]`.
pub fn tridiagonal_eigen(a: &[f64], b: &[f64]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = a.len();
    let mut m = vec![vec![0.0; n]; n];
    for i in 0..n {
        m[i][i] = a[i];
        if i + 1 < n && i < b.len() {
            m[i][i + 1] = b[i];
            m[i + 1][i] = b[i];
        }
    }
    let (values, v) = symmetric_eigen(&m);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let vals = order.iter().map(|&i| values[i]).collect();
    let vecs = order
        .iter()
        .map(|&i| (0..n).map(|r| v[r][i]).collect())
        .collect();
    (vals, vecs)
}

/// Eigen-decomposition of a dense symmetric matrix (nalgebra's Householder tridiagonalisation
/// and implicit QR, O(n^3) with a small constant): returns the eigenvalues (unsorted) and the
/// matrix whose columns are the eigenvectors, as [`jacobi_eigen`] does. The dense Hessians on E
/// (dim E up to a few hundred) use it; cyclic Jacobi costs seconds there.
pub fn symmetric_eigen(m: &[Vec<f64>]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = m.len();
    if n == 0 {
        return (Vec::new(), Vec::new());
    }
    let a = nalgebra::DMatrix::from_fn(n, n, |i, j| m[i][j]);
    let e = nalgebra::SymmetricEigen::new(a);
    let vectors = (0..n)
        .map(|i| (0..n).map(|k| e.eigenvectors[(i, k)]).collect())
        .collect();
    (e.eigenvalues.iter().copied().collect(), vectors)
}

/// Eigen-decomposition of a dense symmetric matrix by cyclic Jacobi (slow, simple: the
/// reference [`symmetric_eigen`] is tested against): returns the eigenvalues
/// (unsorted) and the matrix whose columns are the eigenvectors.
pub fn jacobi_eigen(mut m: Vec<Vec<f64>>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = m.len();
    let mut v = vec![vec![0.0; n]; n];
    for (i, row) in v.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    let total: f64 = m.iter().flatten().map(|x| x * x).sum();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i][j] * m[i][j])
            .sum();
        if off <= 1e-30 * total || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if m[p][q] == 0.0 {
                    continue;
                }
                let theta = (m[q][q] - m[p][p]) / (2.0 * m[p][q]);
                let t = if theta == 0.0 {
                    1.0
                } else {
                    theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt())
                };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (mkp, mkq) = (m[k][p], m[k][q]);
                    m[k][p] = c * mkp - s * mkq;
                    m[k][q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m[p][k], m[q][k]);
                    m[p][k] = c * mpk - s * mqk;
                    m[q][k] = s * mpk + c * mqk;
                }
                for row in v.iter_mut() {
                    let (vp, vq) = (row[p], row[q]);
                    row[p] = c * vp - s * vq;
                    row[q] = s * vp + c * vq;
                }
            }
        }
    }
    ((0..n).map(|i| m[i][i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A symmetric matrix `Q diag(ev) Q^T` with a random orthogonal `Q` (Gram-Schmidt).
    fn with_spectrum(ev: &[f64], rng: &mut ChaCha8Rng) -> Vec<Vec<f64>> {
        let n = ev.len();
        let mut q: Vec<Vec<f64>> = Vec::new();
        while q.len() < n {
            let mut v: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
            for _ in 0..2 {
                for b in &q {
                    let c = dot(&v, b);
                    axpy(-c, b, &mut v);
                }
            }
            let nv = norm(&v);
            v.iter_mut().for_each(|x| *x /= nv);
            q.push(v);
        }
        let mut m = vec![vec![0.0; n]; n];
        for i in 0..n {
            for j in 0..n {
                m[i][j] = (0..n).map(|k| q[k][i] * ev[k] * q[k][j]).sum();
            }
        }
        m
    }

    fn matvec(m: &[Vec<f64>], v: &[f64], out: &mut [f64]) {
        for (o, row) in out.iter_mut().zip(m) {
            *o = dot(row, v);
        }
    }

    #[test]
    fn jacobi_matches_known_tridiagonal_spectrum() {
        // The path graph Laplacian-like matrix tridiag(-1, 2, -1) of size n has eigenvalues
        // 2 - 2 cos(k pi / (n + 1)).
        let n = 12;
        let (vals, vecs) = tridiagonal_eigen(&vec![2.0; n], &vec![-1.0; n - 1]);
        for (k, v) in vals.iter().enumerate() {
            let exact =
                2.0 - 2.0 * ((k + 1) as f64 * std::f64::consts::PI / (n as f64 + 1.0)).cos();
            assert!((v - exact).abs() < 1e-12, "{k}: {v} vs {exact}");
        }
        for y in &vecs {
            assert!((norm(y) - 1.0).abs() < 1e-12);
        }
    }

    /// The dense symmetric eigen-solver on a matrix with a known spectrum (a random orthogonal
    /// similarity of a diagonal with a repeated value): every eigenvalue, residuals
    /// `||M v - lambda v||` of its eigenvectors, and agreement with cyclic Jacobi.
    #[test]
    fn symmetric_eigen_recovers_a_known_spectrum() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let n = 80;
        let mut ev: Vec<f64> = (0..n).map(|i| -2.0 + 5.0 * i as f64 / n as f64).collect();
        ev[3] = ev[2];
        let m = with_spectrum(&ev, &mut rng);
        let (mut vals, vecs) = symmetric_eigen(&m);
        for (k, &l) in vals.iter().enumerate() {
            let col: Vec<f64> = (0..n).map(|i| vecs[i][k]).collect();
            let r: f64 = (0..n)
                .map(|i| {
                    let mv: f64 = (0..n).map(|j| m[i][j] * col[j]).sum();
                    (mv - l * col[i]).powi(2)
                })
                .sum::<f64>()
                .sqrt();
            assert!(r < 1e-12 && (norm(&col) - 1.0).abs() < 1e-12, "{k}: {r}");
        }
        vals.sort_by(f64::total_cmp);
        let (mut jac, _) = jacobi_eigen(m);
        jac.sort_by(f64::total_cmp);
        for ((v, e), j) in vals.iter().zip(&ev).zip(&jac) {
            assert!(
                (v - e).abs() < 1e-12 && (v - j).abs() < 1e-12,
                "{v} {e} {j}"
            );
        }
    }

    #[test]
    fn lanczos_extremes_and_residuals_on_a_known_spectrum() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let n = 60;
        let ev: Vec<f64> = (0..n)
            .map(|i| {
                if i == 0 {
                    -3.0
                } else {
                    -1.0 + 6.0 * i as f64 / n as f64
                }
            })
            .collect();
        let m = with_spectrum(&ev, &mut rng);
        let start: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let run = lanczos(
            &start,
            40,
            |v, o| {
                matvec(&m, v, o);
                Ok(())
            },
            &|_| {},
        )
        .unwrap();
        assert!((run.min() + 3.0).abs() < 1e-8, "{}", run.min());
        let exact_max = ev.iter().cloned().fold(f64::MIN, f64::max);
        assert!((run.max() - exact_max).abs() < 1e-4, "{}", run.max());
        // The residual estimate matches the true residual of the Ritz vector.
        let x = run.ritz_vector(0);
        let mut hx = vec![0.0; n];
        matvec(&m, &x, &mut hx);
        axpy(-run.min(), &x, &mut hx);
        let true_res = norm(&hx);
        assert!(
            (true_res - run.ritz_residuals[0]).abs() < 1e-8,
            "{true_res} vs {}",
            run.ritz_residuals[0]
        );
        // A full run reproduces every eigenvalue.
        let full = lanczos(
            &start,
            n,
            |v, o| {
                matvec(&m, v, o);
                Ok(())
            },
            &|_| {},
        )
        .unwrap();
        let mut sorted = ev.clone();
        sorted.sort_by(f64::total_cmp);
        for (a, b) in full.ritz_values.iter().zip(&sorted) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
    }

    #[test]
    fn restriction_to_a_subspace() {
        // Operator diag(1..n) restricted to the even coordinates: its spectrum is the even
        // entries only, and no product leaves the subspace.
        let n = 20;
        let project = |v: &mut [f64]| {
            for (i, x) in v.iter_mut().enumerate() {
                if i % 2 == 1 {
                    *x = 0.0;
                }
            }
        };
        let start = vec![1.0; n];
        let run = lanczos(
            &start,
            n,
            |v, o| {
                for i in 0..n {
                    o[i] = (i as f64 + 1.0) * v[i] + if i + 1 < n { v[i + 1] } else { 0.0 };
                }
                Ok(())
            },
            &project,
        )
        .unwrap();
        assert_eq!(run.steps(), n / 2);
        assert!((run.min() - 1.0).abs() < 1e-12 && (run.max() - 19.0).abs() < 1e-12);
        for q in &run.basis {
            assert!(q.iter().skip(1).step_by(2).all(|&x| x == 0.0));
        }
    }

    /// A block that is not a coordinate subspace (the complement of 40 random directions in
    /// R^120), an operator `P (H v + noise)` whose restriction has only three distinct
    /// eigenvalues (1, 2, 3: the Krylov space is exhausted after three steps, so the later
    /// `beta` are the size of the 1e-9 noise, like central-difference HVPs at a point with many
    /// eigenvalues equal to the ridge), and 60 steps. The division by those small `beta` must
    /// not carry round-off out of the block: every basis vector stays in it, and no Ritz value
    /// leaves the restriction's spectrum [1, 3] (before the fix, spurious zeros appeared).
    #[test]
    fn basis_stays_in_a_non_coordinate_block_when_beta_is_tiny() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let (n, k) = (120, 40);
        let mut u: Vec<Vec<f64>> = Vec::new();
        while u.len() < k {
            let mut v: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
            for _ in 0..2 {
                for b in &u {
                    let c = dot(&v, b);
                    axpy(-c, b, &mut v);
                }
            }
            let nv = norm(&v);
            v.iter_mut().for_each(|x| *x /= nv);
            u.push(v);
        }
        let project = |v: &mut [f64]| {
            for b in &u {
                let c = dot(v, b);
                axpy(-c, b, v);
            }
        };
        // H = P diag-like part + coupling to the complement: P H P has eigenvalues 1, 2, 3
        // (a random orthonormal basis of the block split in three groups), H couples the block
        // to span(U) strongly.
        let mut w: Vec<Vec<f64>> = Vec::new();
        while w.len() < n - k {
            let mut v: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
            project(&mut v);
            for _ in 0..2 {
                for b in &w {
                    let c = dot(&v, b);
                    axpy(-c, b, &mut v);
                }
            }
            let nv = norm(&v);
            v.iter_mut().for_each(|x| *x /= nv);
            w.push(v);
        }
        let mut h = vec![vec![0.0; n]; n];
        for (j, wj) in w.iter().enumerate() {
            let ev = 1.0 + (j % 3) as f64;
            for a in 0..n {
                for b in 0..n {
                    h[a][b] += ev * wj[a] * wj[b];
                }
            }
        }
        for (i, ui) in u.iter().enumerate() {
            let wi = &w[i];
            for a in 0..n {
                for b in 0..n {
                    h[a][b] += 5.0 * (ui[a] * wi[b] + wi[a] * ui[b]) + 7.0 * ui[a] * ui[b];
                }
            }
        }
        let noise: Vec<Vec<f64>> = (0..n)
            .map(|_| (0..n).map(|_| 1e-9 * rng.gen_range(-1.0..1.0)).collect())
            .collect();
        let start: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let run = lanczos(
            &start,
            60,
            |v, o| {
                for (i, oi) in o.iter_mut().enumerate() {
                    *oi = dot(&h[i], v) + dot(&noise[i], v);
                }
                Ok(())
            },
            &project,
        )
        .unwrap();
        let leak = run
            .basis
            .iter()
            .map(|q| {
                let mut p = q.clone();
                project(&mut p);
                p.iter()
                    .zip(q)
                    .map(|(x, y)| (x - y) * (x - y))
                    .sum::<f64>()
                    .sqrt()
            })
            .fold(0.0f64, f64::max);
        eprintln!(
            "steps {}, Ritz values in [{:e}, {:e}], largest part of a basis vector outside the block {leak:e}",
            run.steps(),
            run.min(),
            run.max()
        );
        assert!(leak < 1e-10, "{leak:e}");
        assert!(run.min() > 1.0 - 1e-6 && run.max() < 3.0 + 1e-6);
    }

    #[test]
    fn slq_density_matches_the_exact_spectrum() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let n = 200;
        // Two clusters: 150 eigenvalues near 0, 50 near 5.
        let ev: Vec<f64> = (0..n)
            .map(|i| {
                if i < 150 {
                    0.01 * i as f64 / 150.0
                } else {
                    5.0 + 0.5 * (i - 150) as f64 / 50.0
                }
            })
            .collect();
        let m = with_spectrum(&ev, &mut rng);
        let starts: Vec<Vec<f64>> = (0..8)
            .map(|_| {
                (0..n)
                    .map(|_| if rng.gen::<bool>() { 1.0 } else { -1.0 })
                    .collect()
            })
            .collect();
        let d = slq(
            &starts,
            30,
            |v, o| {
                matvec(&m, v, o);
                Ok(())
            },
            &|_| {},
        )
        .unwrap();
        // The mass of the upper cluster, 1/4, is estimated from the weights.
        let upper = d.integrate(|x| if x > 2.5 { 1.0 } else { 0.0 });
        assert!((upper - 0.25).abs() < 0.08, "mass above 2.5: {upper}");
        // The mean eigenvalue (trace / n) is recovered.
        let mean = d.integrate(|x| x);
        let exact = ev.iter().sum::<f64>() / n as f64;
        assert!((mean - exact).abs() < 0.15 * exact, "{mean} vs {exact}");
        // The extremes of the nodes are the extreme eigenvalues.
        let (lo, hi) = d.range();
        let exact_hi = ev.iter().cloned().fold(f64::MIN, f64::max);
        assert!(lo.abs() < 1e-3 && (hi - exact_hi).abs() < 1e-3, "{lo} {hi}");
        // The smoothed density integrates to 1.
        let grid: Vec<f64> = (0..2000).map(|i| -1.0 + 8.0 * i as f64 / 2000.0).collect();
        let dens = d.evaluate(&grid, 0.05);
        let integral: f64 = dens.iter().sum::<f64>() * 8.0 / 2000.0;
        assert!((integral - 1.0).abs() < 1e-3, "{integral}");
    }

    #[test]
    fn memory_check_names_the_key() {
        let err = check_memory(
            basis_bytes(100, 61_000_000),
            "stability.lanczos_steps",
            "the Lanczos basis",
            Some(24 << 30),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("stability.lanczos_steps"), "{msg}");
        assert!(check_memory(1000, "k", "x", Some(1 << 20)).is_ok());
    }
}
