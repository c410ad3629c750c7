//! 3 x 3 kernels on a support Omega: supports, parametrisations (bases), and the orthogonal
//! projection onto `E ∩ L_Omega` in kernel space (docs/science.md §9).
//!
//! C_4 acts on the 9 offsets `o = 3 * dr + dc` of a 3 x 3 kernel by rot90; that is the
//! built-in group `rot` on a 3 x 3 grid, so its orbits (centre, the four sides, the four
//! corners) come from the same orbit engine (eqaug-groups) as every other layer's E.

use std::fmt;
use std::sync::Arc;

use eqaug_groups::{Group, Projector, Real, Rep};
use ndarray::ArrayView2;
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// Number of offsets of a 3 x 3 kernel.
pub const KERNEL_OFFSETS: usize = 9;

/// Errors of kernel supports and bases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// A support offset is outside the 3 x 3 kernel or repeated, or the support is empty.
    #[error("invalid kernel support {support}: {reason}")]
    BadSupport {
        /// The support as given.
        support: String,
        /// What is wrong.
        reason: String,
    },
    /// The equivariant parametrisation on this support has no parameters (no C_4 orbit of
    /// offsets lies inside it).
    #[error(
        "E ∩ L_Omega is {{0}} for the support {support}: no rot90 orbit of kernel offsets \
         (centre, sides, corners) lies inside it, so an equivariant kernel on it is always 0"
    )]
    EmptyEquivariantSpace {
        /// The support.
        support: String,
    },
    /// A kernel tensor has the wrong length.
    #[error("kernel tensor has {got} entries, {expected} expected ([c_out, c_in, 9])")]
    Length {
        /// Entries given.
        got: usize,
        /// Entries expected.
        expected: usize,
    },
}

/// A support Omega: the set of kernel offsets `(row, col)` (each in 0..3) a kernel may use.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Support {
    /// `{(0,1), (1,0), (1,1), (1,2), (2,1)}`: centre and sides; rotation invariant, so
    /// compatible (Pi_E maps L into L).
    Cross,
    /// `{(0,0), (0,1), (1,0), (1,2), (2,1)}`: the sides and one corner; not compatible.
    Skew,
    /// All 9 offsets (an unconstrained 3 x 3 kernel).
    Full,
    /// Any set of offsets `[row, col]`.
    Offsets(Vec<[usize; 2]>),
}

impl Support {
    /// The support's offsets `o = 3 row + col`, sorted, validated (in range, distinct,
    /// non-empty).
    pub fn offsets(&self) -> Result<Vec<usize>, KernelError> {
        let list: Vec<[usize; 2]> = match self {
            Support::Cross => vec![[0, 1], [1, 0], [1, 1], [1, 2], [2, 1]],
            Support::Skew => vec![[0, 0], [0, 1], [1, 0], [1, 2], [2, 1]],
            Support::Full => (0..9).map(|o| [o / 3, o % 3]).collect(),
            Support::Offsets(v) => v.clone(),
        };
        let bad = |reason: String| KernelError::BadSupport {
            support: self.to_string(),
            reason,
        };
        if list.is_empty() {
            return Err(bad("it is empty".into()));
        }
        let mut out = Vec::with_capacity(list.len());
        for [r, c] in list {
            if r >= 3 || c >= 3 {
                return Err(bad(format!("offset ({r}, {c}) is outside 0..3 x 0..3")));
            }
            out.push(3 * r + c);
        }
        out.sort_unstable();
        if out.windows(2).any(|w| w[0] == w[1]) {
            return Err(bad("an offset is repeated".into()));
        }
        Ok(out)
    }
}

impl fmt::Display for Support {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Support::Cross => write!(f, "cross"),
            Support::Skew => write!(f, "skew"),
            Support::Full => write!(f, "full"),
            Support::Offsets(v) => {
                write!(f, "{{")?;
                for (i, [r, c]) in v.iter().enumerate() {
                    let sep = if i > 0 { ", " } else { "" };
                    write!(f, "{sep}({r},{c})")?;
                }
                write!(f, "}}")
            }
        }
    }
}

/// How the kernel on a support is parametrised: `K[co, ci, :] = sum_j theta[co, ci, j] B_j`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parametrisation {
    /// `B_j` = the indicator of the j-th support offset (an orthonormal basis of L_Omega).
    Unitary,
    /// `B_i = sum_j C_ij e_{omega_j}`, `C` standard Gaussian, each `B_i` normalised to unit
    /// norm (the authors' `cross_non_orthogonal`): a basis of L_Omega that is not orthogonal.
    /// Serialised as `"nonunitary"` (as in the experiment configs); `"non_unitary"` is also read.
    #[serde(rename = "nonunitary", alias = "non_unitary")]
    NonUnitary,
    /// The orthonormal orbit basis of E restricted to the orbits inside Omega (centre: 1;
    /// sides: 1/2 on each of the four; corners: 1/2 on each), in the order centre, sides,
    /// corners: a basis of `E ∩ L_Omega`.
    Equivariant,
}

impl Parametrisation {
    /// `unitary`, `nonunitary` or `equivariant` (as in configs and records).
    pub fn name(self) -> &'static str {
        match self {
            Parametrisation::Unitary => "unitary",
            Parametrisation::NonUnitary => "nonunitary",
            Parametrisation::Equivariant => "equivariant",
        }
    }
}

/// C_4 acting on the 9 kernel offsets (rot90 of the 3 x 3 grid).
pub fn kernel_group() -> Arc<Group> {
    Group::builtin("rot", 3).expect("rot on a 3 x 3 grid is a valid group")
}

/// The rot90 orbits of the 9 offsets, as computed by the orbit engine, ordered by distance
/// from the centre (centre, sides, corners), each sorted.
fn offset_orbits(g: &Group) -> Vec<Vec<usize>> {
    let p = Projector::between(g, Rep::base(1), Rep::trivial(1)).expect("non-empty E");
    let map = p.orbit_map();
    let ids = map.orbit_of();
    let mut orbits: Vec<Vec<usize>> = vec![Vec::new(); map.n_orbits()];
    for (o, &id) in ids.iter().enumerate().take(KERNEL_OFFSETS) {
        orbits[id as usize].push(o);
    }
    let d2 = |o: usize| {
        let (r, c) = ((o / 3) as isize - 1, (o % 3) as isize - 1);
        r * r + c * c
    };
    orbits.sort_by_key(|orb| (d2(orb[0]), orb[0]));
    orbits
}

/// The basis of a kernel parametrisation on a support: `k` vectors of length 9 (rows of a
/// `k x 9` matrix `B`), held in f64 and cast to the network's precision when used.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelBasis {
    param: Parametrisation,
    support: Support,
    offsets: Vec<usize>,
    k: usize,
    rows: Vec<f64>,
}

impl KernelBasis {
    /// The basis of `param` on `support`; `rng` is drawn from only for
    /// [`Parametrisation::NonUnitary`] (`k^2` standard Gaussians, row by row).
    pub fn new(
        param: Parametrisation,
        support: &Support,
        rng: &mut impl Rng,
    ) -> Result<Self, KernelError> {
        let offsets = support.offsets()?;
        let n = offsets.len();
        let rows = match param {
            Parametrisation::Unitary => {
                let mut b = vec![0.0; n * 9];
                for (j, &o) in offsets.iter().enumerate() {
                    b[j * 9 + o] = 1.0;
                }
                b
            }
            Parametrisation::NonUnitary => {
                let coeff: Vec<f64> = (0..n * n).map(|_| rng.sample(StandardNormal)).collect();
                let mut b = vec![0.0; n * 9];
                for i in 0..n {
                    for (j, &o) in offsets.iter().enumerate() {
                        b[i * 9 + o] = coeff[i * n + j];
                    }
                    let norm = b[i * 9..(i + 1) * 9]
                        .iter()
                        .map(|v| v * v)
                        .sum::<f64>()
                        .sqrt();
                    b[i * 9..(i + 1) * 9].iter_mut().for_each(|v| *v /= norm);
                }
                b
            }
            Parametrisation::Equivariant => {
                let g = kernel_group();
                let mut b = Vec::new();
                for orb in offset_orbits(&g) {
                    if orb.iter().all(|o| offsets.contains(o)) {
                        let v = 1.0 / (orb.len() as f64).sqrt();
                        let mut row = [0.0; 9];
                        orb.iter().for_each(|&o| row[o] = v);
                        b.extend_from_slice(&row);
                    }
                }
                if b.is_empty() {
                    return Err(KernelError::EmptyEquivariantSpace {
                        support: support.to_string(),
                    });
                }
                b
            }
        };
        Ok(KernelBasis {
            param,
            support: support.clone(),
            offsets,
            k: rows.len() / 9,
            rows,
        })
    }

    /// The parametrisation.
    pub fn parametrisation(&self) -> Parametrisation {
        self.param
    }
    /// The support.
    pub fn support(&self) -> &Support {
        &self.support
    }
    /// The support's offsets `3 row + col`, sorted.
    pub fn offsets(&self) -> &[usize] {
        &self.offsets
    }
    /// Number of coefficients per channel pair (`k`).
    pub fn len(&self) -> usize {
        self.k
    }
    /// Always false (an empty basis is an error).
    pub fn is_empty(&self) -> bool {
        self.k == 0
    }
    /// The basis as a `k x 9` matrix (row `j` is `B_j`).
    pub fn matrix(&self) -> ArrayView2<'_, f64> {
        ArrayView2::from_shape((self.k, 9), &self.rows).expect("k x 9")
    }

    /// `K[p, :] = sum_j theta[p, j] B_j` for every channel pair `p`: `theta` is
    /// `[pairs, k]`, `kernel` `[pairs, 9]` (overwritten).
    ///
    /// # Panics
    /// If the lengths do not agree.
    pub fn kernel<T: Real>(&self, theta: &[T], kernel: &mut [T]) {
        let k = self.k;
        assert!(
            theta.len().is_multiple_of(k) && kernel.len() == theta.len() / k * 9,
            "KernelBasis::kernel: theta {} and kernel {} entries do not match k = {k}",
            theta.len(),
            kernel.len()
        );
        let b: Vec<T> = self.rows.iter().map(|&v| T::from_f64_lossy(v)).collect();
        for (t, kr) in theta.chunks_exact(k).zip(kernel.chunks_exact_mut(9)) {
            kr.iter_mut().for_each(|v| *v = T::zero());
            for (j, &tj) in t.iter().enumerate() {
                for (v, &bv) in kr.iter_mut().zip(&b[j * 9..(j + 1) * 9]) {
                    *v += tj * bv;
                }
            }
        }
    }

    /// The chain rule through the basis: `dtheta[p, j] += <dK[p, :], B_j>` (`dkernel`
    /// `[pairs, 9]`, `dtheta` `[pairs, k]`).
    ///
    /// # Panics
    /// If the lengths do not agree.
    pub fn coefficient_gradient<T: Real>(&self, dkernel: &[T], dtheta: &mut [T]) {
        let k = self.k;
        assert!(
            dtheta.len().is_multiple_of(k) && dkernel.len() == dtheta.len() / k * 9,
            "KernelBasis::coefficient_gradient: lengths do not match k = {k}"
        );
        let b: Vec<T> = self.rows.iter().map(|&v| T::from_f64_lossy(v)).collect();
        for (d, t) in dkernel.chunks_exact(9).zip(dtheta.chunks_exact_mut(k)) {
            for (j, tj) in t.iter_mut().enumerate() {
                let s = d
                    .iter()
                    .zip(&b[j * 9..(j + 1) * 9])
                    .fold(T::zero(), |a, (&x, &y)| a + x * y);
                *tj += s;
            }
        }
    }

    /// The coefficients whose kernel is closest to `kernel` (`[pairs, 9]`): per channel pair
    /// the least-squares solution of `L theta = w` with `L = B^T` (9 x k), i.e. of the normal
    /// equations `(L^T L) theta = L^T w` of docs/science.md §9, computed in f64 by Householder QR
    /// of `L` (which avoids squaring its condition number) plus one step of iterative
    /// refinement. Returns `theta` (`[pairs, k]`) and the residual `||L theta - w||_F` over
    /// all pairs: 0 up to f64 round-off when every kernel lies in the span of the basis (an
    /// equivariant kernel on the same support).
    pub fn coefficients_from_kernel(&self, kernel: &[f64]) -> (Vec<f64>, f64) {
        assert!(
            kernel.len().is_multiple_of(9),
            "kernel length is not a multiple of 9"
        );
        let k = self.k;
        let qr = Qr::new(&self.rows, k);
        let mut theta = vec![0.0; kernel.len() / 9 * k];
        let mut res2 = 0.0;
        for (w, t) in kernel.chunks_exact(9).zip(theta.chunks_exact_mut(k)) {
            let sol = qr.solve(w);
            t.copy_from_slice(&sol);
            // one step of iterative refinement on the residual
            let r = self.residual(t, w);
            let corr = qr.solve(&r);
            t.iter_mut().zip(&corr).for_each(|(a, b)| *a += b);
            res2 += self.residual(t, w).iter().map(|v| v * v).sum::<f64>();
        }
        (theta, res2.sqrt())
    }

    /// `w - L theta` for one channel pair.
    fn residual(&self, theta: &[f64], w: &[f64]) -> [f64; 9] {
        let mut r = [0.0; 9];
        r.copy_from_slice(w);
        for (j, &tj) in theta.iter().enumerate() {
            for o in 0..9 {
                r[o] -= tj * self.rows[j * 9 + o];
            }
        }
        r
    }
}

/// Householder QR of `L = B^T` (9 x k), for least squares.
struct Qr {
    k: usize,
    /// `L` overwritten by the Householder vectors (below the diagonal) and `R` (on and above),
    /// column-major 9 x k.
    a: Vec<f64>,
    beta: Vec<f64>,
}

impl Qr {
    fn new(rows: &[f64], k: usize) -> Self {
        // column j of L is B_j
        let mut a = rows.to_vec();
        let mut beta = vec![0.0; k];
        for j in 0..k {
            let col = &mut a[j * 9..(j + 1) * 9];
            let norm = col[j..].iter().map(|v| v * v).sum::<f64>().sqrt();
            if norm == 0.0 {
                continue;
            }
            let alpha = if col[j] > 0.0 { -norm } else { norm };
            let v0 = col[j] - alpha;
            // v = (col[j] - alpha, col[j+1..]); store v / v0 with implicit leading 1
            let vnorm2 = v0 * v0 + col[j + 1..].iter().map(|v| v * v).sum::<f64>();
            beta[j] = 2.0 * v0 * v0 / vnorm2;
            for v in &mut col[j + 1..] {
                *v /= v0;
            }
            col[j] = alpha;
            for jj in j + 1..k {
                let (left, right) = a.split_at_mut(jj * 9);
                let v = &left[j * 9..(j + 1) * 9];
                let c = &mut right[..9];
                let s = c[j] + (j + 1..9).map(|i| v[i] * c[i]).sum::<f64>();
                let f = beta[j] * s;
                c[j] -= f;
                for i in j + 1..9 {
                    c[i] -= f * v[i];
                }
            }
        }
        Qr { k, a, beta }
    }

    /// The least-squares solution of `L theta = w`.
    fn solve(&self, w: &[f64]) -> Vec<f64> {
        let k = self.k;
        let mut y = [0.0; 9];
        y.copy_from_slice(w);
        for j in 0..k {
            let v = &self.a[j * 9..(j + 1) * 9];
            let s = y[j] + (j + 1..9).map(|i| v[i] * y[i]).sum::<f64>();
            let f = self.beta[j] * s;
            y[j] -= f;
            for i in j + 1..9 {
                y[i] -= f * v[i];
            }
        }
        let mut t = vec![0.0; k];
        for j in (0..k).rev() {
            let mut s = y[j];
            for jj in j + 1..k {
                s -= self.a[jj * 9 + j] * t[jj];
            }
            let d = self.a[j * 9 + j];
            t[j] = if d != 0.0 { s / d } else { 0.0 };
        }
        t
    }
}

/// The orthogonal projection onto `E ∩ L_Omega` in kernel space for a `[c_out, c_in, 9]`
/// kernel tensor (docs/science.md §9): the mean over each rot90 orbit of offsets, per channel
/// pair (eqaug-groups' [`Projector`] for C_4 on the 3 x 3 grid, from `Rep::base(c_in)` to
/// `Rep::trivial(c_out)`, on the kernel as a `c_out x (c_in 9)` matrix), then zero on every
/// offset whose orbit is not contained in Omega.
#[derive(Clone, Debug)]
pub struct KernelProjector {
    support: Support,
    projector: Projector,
    keep: [bool; KERNEL_OFFSETS],
    dim_per_pair: usize,
}

impl KernelProjector {
    /// The projector for kernels `[c_out, c_in, 9]` on `support`, from `c_in` input to `c_out`
    /// output channels (input first, as [`Projector::between`]).
    pub fn between(support: &Support, c_in: usize, c_out: usize) -> Result<Self, KernelError> {
        let offsets = support.offsets()?;
        let g = kernel_group();
        let projector = Projector::between(&g, Rep::base(c_in.max(1)), Rep::trivial(c_out.max(1)))
            .map_err(|e| KernelError::BadSupport {
                support: support.to_string(),
                reason: format!("no projector for {c_out} x {c_in} channels: {e}"),
            })?;
        let mut keep = [false; KERNEL_OFFSETS];
        let mut dim_per_pair = 0;
        for orb in offset_orbits(&g) {
            if orb.iter().all(|o| offsets.contains(o)) {
                orb.iter().for_each(|&o| keep[o] = true);
                dim_per_pair += 1;
            }
        }
        Ok(KernelProjector {
            support: support.clone(),
            projector,
            keep,
            dim_per_pair,
        })
    }

    /// The projector for kernels `[c_out, c_in, 9]` on `support`, output channels first.
    #[deprecated(note = "use `KernelProjector::between(support, c_in, c_out)`: input first")]
    pub fn new(support: &Support, c_out: usize, c_in: usize) -> Result<Self, KernelError> {
        KernelProjector::between(support, c_in, c_out)
    }

    /// The support.
    pub fn support(&self) -> &Support {
        &self.support
    }
    /// Output channels.
    pub fn c_out(&self) -> usize {
        self.projector.rep_out().channels
    }
    /// Input channels.
    pub fn c_in(&self) -> usize {
        self.projector.rep_in().channels
    }
    /// Entries of a kernel tensor: `c_out * c_in * 9`.
    pub fn len(&self) -> usize {
        self.projector.len()
    }
    /// Always false.
    pub fn is_empty(&self) -> bool {
        self.projector.is_empty()
    }
    /// `dim(E ∩ L_Omega)` per channel pair: the number of rot90 orbits inside Omega
    /// (cross: 2, skew: 1, full: 3).
    pub fn dim_per_channel_pair(&self) -> usize {
        self.dim_per_pair
    }
    /// `dim(E ∩ L_Omega) = c_out * c_in * dim_per_channel_pair`.
    pub fn dim(&self) -> usize {
        self.c_out() * self.c_in() * self.dim_per_pair
    }
    /// Whether offset `o` is kept by the projection (its orbit lies inside Omega).
    pub fn keeps(&self, o: usize) -> bool {
        self.keep[o]
    }

    fn check<T>(&self, kernel: &[T]) -> Result<(), KernelError> {
        if kernel.len() != self.len() {
            return Err(KernelError::Length {
                got: kernel.len(),
                expected: self.len(),
            });
        }
        Ok(())
    }

    /// Projects a kernel tensor onto `E ∩ L_Omega` in place.
    ///
    /// # Errors
    /// [`KernelError::Length`] if the kernel does not have `c_out * c_in * 9` entries.
    pub fn project_in_place<T: Real>(&self, kernel: &mut [T]) -> Result<(), KernelError> {
        self.check(kernel)?;
        self.projector
            .project_in_place(kernel)
            .expect("the length was checked");
        for pair in kernel.chunks_exact_mut(KERNEL_OFFSETS) {
            for (v, &k) in pair.iter_mut().zip(&self.keep) {
                if !k {
                    *v = T::zero();
                }
            }
        }
        Ok(())
    }

    /// The projection of a kernel tensor onto `E ∩ L_Omega`.
    ///
    /// # Errors
    /// As [`KernelProjector::project_in_place`].
    pub fn project<T: Real>(&self, kernel: &[T]) -> Result<Vec<T>, KernelError> {
        let mut p = kernel.to_vec();
        self.project_in_place(&mut p)?;
        Ok(p)
    }

    /// `||K - Pi(K)||_F`, accumulated in f64: the distance of the kernel to `E ∩ L_Omega`.
    ///
    /// # Errors
    /// As [`KernelProjector::project_in_place`].
    pub fn distance<T: Real>(&self, kernel: &[T]) -> Result<f64, KernelError> {
        let p = self.project(kernel)?;
        Ok(kernel
            .iter()
            .zip(&p)
            .map(|(&a, &b)| {
                let d = a.to_f64_exact() - b.to_f64_exact();
                d * d
            })
            .sum::<f64>()
            .sqrt())
    }
}

/// What `eqaug inspect` shows about a kernel support: the C_4 G-set of the 9 kernel offsets
/// (its orbits, from the orbit engine), which orbits lie inside Omega, `dim(E ∩ L_Omega)` per
/// channel pair, and whether Omega is compatible (a union of orbits, so that `Pi_E` maps
/// `L_Omega` into itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KernelGSet {
    /// The support.
    pub support: String,
    /// Its offsets `(row, col)`.
    pub offsets: Vec<(usize, usize)>,
    /// The rot90 orbits of the 9 offsets `(row, col)` (centre, sides, corners).
    pub orbits: Vec<Vec<(usize, usize)>>,
    /// For each orbit: whether it lies inside the support.
    pub inside: Vec<bool>,
    /// `dim E` per channel pair (number of orbits: 3).
    pub dim_e_per_channel_pair: usize,
    /// `dim L_Omega` per channel pair (support size).
    pub dim_l_per_channel_pair: usize,
    /// `dim(E ∩ L_Omega)` per channel pair (orbits inside the support).
    pub dim_e_cap_l_per_channel_pair: usize,
    /// Whether the support is a union of orbits (Pi_E and Pi_L commute).
    pub compatible: bool,
}

/// Describes the kernel G-set and `E ∩ L_Omega` for a support (for `eqaug inspect`).
pub fn describe_kernel_gset(support: &Support) -> Result<KernelGSet, KernelError> {
    let offsets = support.offsets()?;
    let g = kernel_group();
    let orbits = offset_orbits(&g);
    let inside: Vec<bool> = orbits
        .iter()
        .map(|orb| orb.iter().all(|o| offsets.contains(o)))
        .collect();
    let partial = orbits.iter().any(|orb| {
        let n = orb.iter().filter(|o| offsets.contains(o)).count();
        n > 0 && n < orb.len()
    });
    let rc = |o: usize| (o / 3, o % 3);
    Ok(KernelGSet {
        support: support.to_string(),
        offsets: offsets.iter().map(|&o| rc(o)).collect(),
        dim_e_per_channel_pair: orbits.len(),
        dim_l_per_channel_pair: offsets.len(),
        dim_e_cap_l_per_channel_pair: inside.iter().filter(|&&b| b).count(),
        orbits: orbits
            .iter()
            .map(|orb| orb.iter().map(|&o| rc(o)).collect())
            .collect(),
        inside,
        compatible: !partial,
    })
}

impl fmt::Display for KernelGSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pts = |v: &[(usize, usize)]| {
            v.iter()
                .map(|(r, c)| format!("({r},{c})"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        writeln!(
            f,
            "kernel support `{}`: offsets {}",
            self.support,
            pts(&self.offsets)
        )?;
        writeln!(
            f,
            "C_4 (rot90) on the 9 offsets of a 3 x 3 kernel: {} orbits",
            self.orbits.len()
        )?;
        for (orb, &ins) in self.orbits.iter().zip(&self.inside) {
            let tag = if ins { "inside Omega" } else { "not inside" };
            writeln!(f, "  orbit of {}: {} ({tag})", orb.len(), pts(orb))?;
        }
        writeln!(
            f,
            "dim E = {}, dim L = {}, dim(E ∩ L) = {} per channel pair; {}",
            self.dim_e_per_channel_pair,
            self.dim_l_per_channel_pair,
            self.dim_e_cap_l_per_channel_pair,
            if self.compatible {
                "compatible (Omega is a union of orbits)"
            } else {
                "NOT compatible (Pi_E does not map L_Omega into itself)"
            }
        )
    }
}
