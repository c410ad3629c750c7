//! Orthonormal bases of E (normalised orbit indicators, [`e_basis`]) and of E-perp (Helmert
//! vectors within each orbit, [`perp_basis`]), the orbits themselves, and coordinates in a
//! basis.

use std::sync::Arc;

/// One vector of the orthonormal basis of E: the entries (flat indices) where it is non-zero,
/// all with the same value (`1 / sqrt(orbit size)`, or 1 for a free parameter).
pub(super) type BasisVector = (Vec<usize>, f64);

/// A sparse vector of the parameter space: `(index, value)` pairs.
pub(super) type SparseVector = Vec<(usize, f64)>;

/// An orthonormal basis of E: the normalised indicator of every orbit of every channel pair of
/// each group layer (orbits outside a support left out), and a unit vector per free parameter.
pub(super) fn e_basis(layout: &Arc<eqaug_nn::Layout>) -> Vec<BasisVector> {
    let mut basis = Vec::new();
    for t in layout.tensors() {
        match group_orbits(t) {
            Some(orbits) => basis.extend(orbits.into_iter().map(|m| {
                let v = 1.0 / (m.len() as f64).sqrt();
                (m, v)
            })),
            None => basis.extend((t.offset..t.offset + t.len).map(|i| (vec![i], 1.0))),
        }
    }
    basis
}

/// The orbits of a group tensor's weights (global indices, per channel pair, orbits outside a
/// support left out), or `None` for a tensor that is not a group layer.
pub(super) fn group_orbits(t: &eqaug_nn::TensorInfo) -> Option<Vec<Vec<usize>>> {
    let eqaug_nn::TensorKind::Group {
        projector, support, ..
    } = &t.kind
    else {
        return None;
    };
    let map = projector.orbit_map();
    let (s_out, s_in, n_orb) = (map.s_out(), map.s_in(), map.n_orbits());
    let cols = projector.cols();
    let (c_out, c_in) = (projector.rows() / s_out, cols / s_in);
    let mut orbits = Vec::new();
    for co in 0..c_out {
        for ci in 0..c_in {
            let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_orb];
            for r in 0..s_out {
                for j in 0..s_in {
                    let o = map.orbit_of()[r * s_in + j] as usize;
                    members[o].push((co * s_out + r) * cols + ci * s_in + j);
                }
            }
            for m in members {
                if support.as_ref().is_some_and(|sup| !sup[m[0]]) {
                    continue;
                }
                orbits.push(m.into_iter().map(|i| t.offset + i).collect());
            }
        }
    }
    Some(orbits)
}

/// Coordinates of a flat vector in the basis.
pub(super) fn coordinates(basis: &[BasisVector], v: &[f64]) -> Vec<f64> {
    basis
        .iter()
        .map(|(idx, val)| idx.iter().map(|&i| v[i]).sum::<f64>() * val)
        .collect()
}

/// An orthonormal basis of E-perp: within each orbit of each channel pair of each group layer
/// (orbits outside a support left out), the Helmert basis of the vectors that sum to zero over
/// the orbit (`k - 1` vectors for an orbit of `k` weights: the `j`-th is `1 / sqrt(j (j + 1))`
/// on the orbit's first `j` members and `-j / sqrt(j (j + 1))` on the next). Non-group tensors
/// lie in E and contribute nothing. Its length is `lanczos::subspace_dim(layout, Orthogonal)`.
pub(super) fn perp_basis(layout: &Arc<eqaug_nn::Layout>) -> Vec<SparseVector> {
    let mut basis = Vec::new();
    for m in layout.tensors().iter().filter_map(group_orbits).flatten() {
        for j in 1..m.len() {
            let c = 1.0 / ((j * (j + 1)) as f64).sqrt();
            let mut v: SparseVector = m[..j].iter().map(|&i| (i, c)).collect();
            v.push((m[j], -(j as f64) * c));
            basis.push(v);
        }
    }
    basis
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hessian::{project_onto, Subspace};
    use eqaug_groups::{Group, Points, Rep};
    use eqaug_nn::{LayerSpec, Loss, Network, NetworkSpec, Params};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The orbit basis is orthonormal, has dim E vectors, and sum_b (b.v) b = Pi_E v.
    #[test]
    fn orbit_basis_spans_e() {
        let g = Group::builtin("rot", 3).unwrap();
        let spec = NetworkSpec {
            layers: vec![
                LayerSpec::Group {
                    channels: 2,
                    points: Points::Base,
                    init_std: 0.5,
                    constant_over_positions: false,
                },
                LayerSpec::Tanh,
                LayerSpec::Group {
                    channels: 3,
                    points: Points::Trivial,
                    init_std: 0.5,
                    constant_over_positions: false,
                },
                LayerSpec::Dense {
                    out: 2,
                    init_scale: 0.5,
                    bias: true,
                },
            ],
        };
        let net = Network::<f64>::new(&spec, g, Rep::base(1), Loss::Mse).unwrap();
        let basis = e_basis(net.layout());
        let n = net.num_params();
        let mut dense_basis = Vec::new();
        for (idx, val) in &basis {
            let mut v = vec![0.0; n];
            for &i in idx {
                v[i] = *val;
            }
            dense_basis.push(v);
        }
        for (i, a) in dense_basis.iter().enumerate() {
            for (j, b) in dense_basis.iter().enumerate() {
                let d: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                assert!(
                    (d - f64::from(u8::from(i == j))).abs() < 1e-12,
                    "{i} {j} {d}"
                );
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let v: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let c = coordinates(&basis, &v);
        let mut rebuilt = vec![0.0; n];
        for (ci, b) in c.iter().zip(&dense_basis) {
            for (r, x) in rebuilt.iter_mut().zip(b) {
                *r += ci * x;
            }
        }
        let mut p = Params::from_vec(net.layout().clone(), v).unwrap();
        project_onto(&mut p, Subspace::Equivariant);
        let err = rebuilt
            .iter()
            .zip(p.as_slice())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-12, "{err}");
        // dim E = parameters minus the group-layer entries off E.
        let group_entries: usize = net
            .layout()
            .tensors()
            .iter()
            .filter_map(|t| match &t.kind {
                eqaug_nn::TensorKind::Group { projector, .. } => Some(t.len - projector.dim()),
                _ => None,
            })
            .sum();
        assert_eq!(basis.len(), n - group_entries);
    }
}
