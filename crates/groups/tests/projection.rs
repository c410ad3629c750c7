//! Pi_E against independent oracles: idempotence and self-adjointness, the brute-force Reynolds
//! average, invariance under the group, dimensions (docs/science.md §2, Burnside, matrix rank).

use approx::assert_abs_diff_eq;
use eqaug_groups::{
    act_on_sample, reynolds_average, Group, GroupError, GroupSpec, Perm, Points, Projector, Rep,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn random_vec(n: usize, r: &mut ChaCha8Rng) -> Vec<f64> {
    (0..n).map(|_| r.gen_range(-1.0..1.0)).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// A small instance of every built-in group plus a user-defined one.
fn small_groups() -> Vec<Arc<Group>> {
    vec![
        Group::builtin("perm", 4).unwrap(),
        Group::builtin("perm", 5).unwrap(),
        Group::builtin("trans2d", 5).unwrap(),
        Group::builtin("trans1d", 5).unwrap(),
        Group::builtin("rot", 6).unwrap(),
        Group::builtin("rot", 7).unwrap(),
        Group::builtin("rototrans", 4).unwrap(),
        Group::builtin("swap", 2).unwrap(),
        Group::builtin("trivial", 3).unwrap(),
        // D_4 on the 4 corners of a square: rotation and a reflection.
        Group::new(GroupSpec::User {
            name: "d4-square".into(),
            points: 4,
            generators: vec![vec![1, 2, 3, 0], vec![1, 0, 3, 2]],
        })
        .unwrap(),
    ]
}

fn shapes() -> [(Rep, Rep); 4] {
    [
        (Rep::base(2), Rep::base(3)),
        (Rep::trivial(3), Rep::base(2)),
        (Rep::trivial(2), Rep::trivial(3)),
        (Rep::base(2), Rep::trivial(1)),
    ]
}

#[test]
fn projection_is_idempotent_and_self_adjoint() {
    let mut r = rng(1);
    for g in small_groups() {
        for (out, inp) in shapes() {
            let p = Projector::between(&g, inp, out).unwrap();
            let a = random_vec(p.len(), &mut r);
            let b = random_vec(p.len(), &mut r);
            let pa = p.project(&a).unwrap();
            let ppa = p.project(&pa).unwrap();
            for (x, y) in pa.iter().zip(&ppa) {
                assert_abs_diff_eq!(x, y, epsilon = 1e-12);
            }
            // In f32 (sums accumulated exactly in f64) layers in E are fixed bit for bit.
            let a32: Vec<f32> = a.iter().map(|&x| x as f32).collect();
            let pa32 = p.project(&a32).unwrap();
            assert!(
                pa32 == p.project(&pa32).unwrap(),
                "f32 projection not exactly idempotent"
            );
            assert_eq!(p.distance_to_equivariant(&pa32).unwrap(), 0.0);
            let pb = p.project(&b).unwrap();
            let lhs = dot(&pa, &b);
            let rhs = dot(&a, &pb);
            assert_abs_diff_eq!(lhs, rhs, epsilon = 1e-10 * (1.0 + lhs.abs()));
            // The projection is orthogonal: the residual is orthogonal to E.
            let resid: Vec<f64> = a.iter().zip(&pa).map(|(x, y)| x - y).collect();
            assert_abs_diff_eq!(dot(&resid, &pb), 0.0, epsilon = 1e-10);
            let d = p.distance_to_equivariant(&a).unwrap();
            assert_abs_diff_eq!(d, dot(&resid, &resid).sqrt(), epsilon = 1e-10);
        }
    }
}

#[test]
fn projection_equals_brute_force_reynolds_average() {
    let mut r = rng(2);
    for g in small_groups() {
        for (out, inp) in shapes() {
            let p = Projector::between(&g, inp, out).unwrap();
            let a = random_vec(p.len(), &mut r);
            let fast = p.project(&a).unwrap();
            let slow = reynolds_average(&g, &p, &a).unwrap();
            for (x, y) in fast.iter().zip(&slow) {
                assert_abs_diff_eq!(x, y, epsilon = 1e-12);
            }
        }
    }
}

#[test]
fn projection_in_f32_matches_f64() {
    let g = Group::builtin("rot", 6).unwrap();
    let p = Projector::between(&g, Rep::base(2), Rep::base(3)).unwrap();
    let a = random_vec(p.len(), &mut rng(3));
    let a32: Vec<f32> = a.iter().map(|&x| x as f32).collect();
    let (p64, p32) = (p.project(&a).unwrap(), p.project(&a32).unwrap());
    for (x, y) in p64.iter().zip(&p32) {
        assert_abs_diff_eq!(*x, *y as f64, epsilon = 1e-6);
    }
    assert!(p.distance_to_equivariant(&p32).unwrap() < 1e-6);
    let d64 = p.distance_to_equivariant(&a).unwrap();
    let d32 = p.distance_to_equivariant(&a32).unwrap() as f64;
    assert_abs_diff_eq!(d64, d32, epsilon = 1e-5 * d64);
}

#[test]
fn projected_layers_are_invariant_under_generators_and_random_elements() {
    let mut r = rng(4);
    let mut groups = small_groups();
    groups.push(Group::builtin("perm", 10).unwrap()); // not enumerable: sampled elements only
    groups.push(Group::builtin("rototrans", 14).unwrap());
    for g in groups {
        for (out, inp) in shapes() {
            let p = Projector::between(&g, inp, out).unwrap();
            let a = random_vec(p.len(), &mut r);
            let pa = p.project(&a).unwrap();
            let mut moved = vec![0.0; p.len()];
            let mut elements: Vec<Perm> = g.generators().to_vec();
            elements.extend((0..5).map(|_| g.sample(&mut r)));
            for e in &elements {
                p.act_on_layer(e, &pa, &mut moved).unwrap();
                assert_eq!(moved, pa, "group {} element not fixing Pi_E A", g.name());
            }
            // A generic layer is moved by some generator (unless the group acts trivially).
            if g.order() > 1 && p.dim() < p.len() {
                let moved_any = g.generators().iter().any(|e| {
                    p.act_on_layer(e, &a, &mut moved).unwrap();
                    moved != a
                });
                assert!(
                    moved_any,
                    "group {}: a random layer is fixed by all generators",
                    g.name()
                );
            }
        }
    }
}

#[test]
fn equivariant_layers_commute_with_the_action_on_samples() {
    // W in E  =>  W (g x) = g (W x), with act_on_sample as the action on features.
    let mut r = rng(5);
    for g in small_groups() {
        let d = g.degree();
        for (out, inp) in shapes() {
            let p = Projector::between(&g, inp, out).unwrap();
            let w = p.project(&random_vec(p.len(), &mut r)).unwrap();
            let x = random_vec(p.cols(), &mut r);
            let e = g.sample(&mut r);
            let matvec = |v: &[f64]| -> Vec<f64> {
                (0..p.rows())
                    .map(|i| dot(&w[i * p.cols()..][..p.cols()], v))
                    .collect()
            };
            let act = |rep: Rep, v: &[f64]| -> Vec<f64> {
                let mut o = v.to_vec();
                if rep.points == Points::Base {
                    act_on_sample(&e, v, &mut o);
                }
                o
            };
            let lhs = matvec(&act(inp, &x));
            let rhs = act(out, &matvec(&x));
            assert_eq!(d, g.degree());
            for (a, b) in lhs.iter().zip(&rhs) {
                assert_abs_diff_eq!(a, b, epsilon = 1e-12);
            }
        }
    }
}

#[test]
fn dimensions_match_spec_section_2() {
    for n in 4..=10 {
        let g = Group::builtin("perm", n).unwrap();
        assert_eq!(
            Projector::between(&g, Rep::base(1), Rep::base(1))
                .unwrap()
                .dim(),
            15
        );
        assert_eq!(
            Projector::between(&g, Rep::base(1), Rep::trivial(1))
                .unwrap()
                .dim(),
            2
        );
    }
    for n in [3, 5, 8, 14] {
        let g = Group::builtin("trans2d", n).unwrap();
        assert_eq!(
            Projector::between(&g, Rep::base(1), Rep::base(1))
                .unwrap()
                .dim(),
            n * n
        );
        assert_eq!(
            Projector::between(&g, Rep::base(1), Rep::trivial(1))
                .unwrap()
                .dim(),
            1
        );
        let g = Group::builtin("trans1d", n).unwrap();
        assert_eq!(
            Projector::between(&g, Rep::base(1), Rep::base(1))
                .unwrap()
                .dim(),
            n * n * n
        );
        assert_eq!(
            Projector::between(&g, Rep::base(1), Rep::trivial(1))
                .unwrap()
                .dim(),
            n
        );
    }
    for n in [2, 4, 6, 14] {
        let g = Group::builtin("rot", n).unwrap();
        assert_eq!(
            Projector::between(&g, Rep::base(1), Rep::base(1))
                .unwrap()
                .dim(),
            n.pow(4) / 4
        );
        assert_eq!(
            Projector::between(&g, Rep::base(1), Rep::trivial(1))
                .unwrap()
                .dim(),
            n * n / 4
        );
    }
    // Per channel pair, the dimension multiplies by the channel counts.
    let g = Group::builtin("rot", 6).unwrap();
    let p = Projector::between(&g, Rep::base(5), Rep::base(3)).unwrap();
    assert_eq!(p.dim(), 15 * p.dim_per_channel_pair());
    // A layer between trivial representations is unconstrained.
    let p = Projector::between(&g, Rep::trivial(5), Rep::trivial(3)).unwrap();
    assert_eq!(p.dim(), 15);
}

/// Burnside: dim E = (1/|G|) sum_g #{pairs fixed by g} = the trace of the Reynolds operator.
#[test]
fn dimensions_match_burnside_counts() {
    let groups = [
        Group::builtin("perm", 5).unwrap(),
        Group::builtin("rot", 7).unwrap(),
        Group::builtin("rot", 5).unwrap(),
        Group::builtin("rototrans", 5).unwrap(),
        Group::builtin("trans2d", 4).unwrap(),
        Group::builtin("trans1d", 6).unwrap(),
    ];
    for g in groups {
        let els = g.elements(1 << 20).unwrap();
        let d = g.degree();
        let fixed_pts = |e: &Perm| (0..d).filter(|&s| e.apply(s) == s).count();
        let burnside_rr: usize = els.iter().map(|e| fixed_pts(e).pow(2)).sum();
        let burnside_rt: usize = els.iter().map(fixed_pts).sum();
        assert_eq!(burnside_rr % els.len(), 0);
        let p = Projector::between(&g, Rep::base(1), Rep::base(1)).unwrap();
        assert_eq!(p.dim(), burnside_rr / els.len(), "group {}", g.name());
        let p = Projector::between(&g, Rep::base(1), Rep::trivial(1)).unwrap();
        assert_eq!(p.dim(), burnside_rt / els.len(), "group {}", g.name());
    }
}

/// Rank of a dense matrix by Gaussian elimination with partial pivoting.
fn rank(mut m: Vec<Vec<f64>>, cols: usize) -> usize {
    let mut rank = 0;
    for c in 0..cols {
        let Some(piv) = (rank..m.len()).max_by(|&a, &b| m[a][c].abs().total_cmp(&m[b][c].abs()))
        else {
            break;
        };
        if m[piv][c].abs() < 1e-9 {
            continue;
        }
        m.swap(rank, piv);
        for i in 0..m.len() {
            if i != rank {
                let f = m[i][c] / m[rank][c];
                if f != 0.0 {
                    for j in c..cols {
                        m[i][j] -= f * m[rank][j];
                    }
                }
            }
        }
        rank += 1;
    }
    rank
}

/// dim E = dim of the common null space of (g.W - W) over the generators, by matrix rank.
#[test]
fn dimensions_match_nullspace_rank_for_tiny_cases() {
    let groups = [
        Group::builtin("perm", 3).unwrap(),
        Group::builtin("trans2d", 3).unwrap(),
        Group::builtin("trans1d", 3).unwrap(),
        Group::builtin("rot", 3).unwrap(),
        Group::builtin("rot", 2).unwrap(),
        Group::builtin("rototrans", 3).unwrap(),
        Group::builtin("swap", 2).unwrap(),
        Group::builtin("trivial", 2).unwrap(),
    ];
    for g in groups {
        for (out, inp) in [
            (Rep::base(1), Rep::base(1)),
            (Rep::trivial(1), Rep::base(1)),
            (Rep::base(2), Rep::base(1)),
        ] {
            let p = Projector::between(&g, inp, out).unwrap();
            let n = p.len();
            let mut rows = Vec::new();
            let mut moved = vec![0.0; n];
            for gen in g.generators() {
                // Column j of (g. - I) is g.e_j - e_j.
                let mut cols_of = vec![vec![0.0; n]; n];
                for j in 0..n {
                    let mut e = vec![0.0; n];
                    e[j] = 1.0;
                    p.act_on_layer(gen, &e, &mut moved).unwrap();
                    for i in 0..n {
                        cols_of[i][j] = moved[i] - e[i];
                    }
                }
                rows.extend(cols_of);
            }
            let nullity = n - rank(rows, n);
            assert_eq!(
                p.dim(),
                nullity,
                "group {} {:?} -> {:?}",
                g.name(),
                inp,
                out
            );
        }
    }
}

#[test]
fn empty_equivariant_space_is_an_error() {
    let g = Group::builtin("rot", 4).unwrap();
    let e = Projector::between(&g, Rep::base(3), Rep::base(0)).unwrap_err();
    assert!(matches!(e, GroupError::EmptyEquivariantSpace { .. }));
    assert!(e.to_string().contains("empty"));
}

/// The orbit-mean projection and distance, one channel pair at a time in the plainest order:
/// the lane-interleaved implementation must agree bit for bit (it only interleaves
/// independent sums).
fn reference_projection(p: &Projector, w: &[f32]) -> (Vec<f32>, f64) {
    let map = p.orbit_map();
    let (s_out, s_in, cols) = (map.s_out(), map.s_in(), p.cols());
    let inv: Vec<f64> = map.sizes().iter().map(|&c| 1.0 / c as f64).collect();
    let mut out = w.to_vec();
    let mut per_band = Vec::new();
    for co in 0..p.rep_out().channels {
        let mut acc = 0.0f64;
        for ci in 0..p.rep_in().channels {
            let at = |r: usize, j: usize| co * s_out * cols + r * cols + ci * s_in + j;
            let mut sums = vec![0.0f64; map.n_orbits()];
            for r in 0..s_out {
                for j in 0..s_in {
                    sums[map.orbit_of()[r * s_in + j] as usize] += w[at(r, j)] as f64;
                }
            }
            for r in 0..s_out {
                for j in 0..s_in {
                    let o = map.orbit_of()[r * s_in + j] as usize;
                    out[at(r, j)] = (sums[o] * inv[o]) as f32;
                    let d = w[at(r, j)] as f64 - sums[o] * inv[o];
                    acc += d * d;
                }
            }
        }
        per_band.push(acc);
    }
    (out, per_band.iter().sum::<f64>().sqrt())
}

#[test]
fn lane_interleaved_projection_is_bit_identical_to_one_channel_at_a_time() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for (name, n) in [("perm", 5), ("trans2d", 4), ("rot", 5)] {
        let g = Group::builtin(name, n).unwrap();
        for (out, inp) in [
            (Rep::base(7), Rep::base(3)),
            (Rep::trivial(9), Rep::base(2)),
            (Rep::base(4), Rep::base(1)),
            (Rep::base(2), Rep::base(5)),
        ] {
            let p = Projector::between(&g, inp, out).unwrap();
            let w: Vec<f32> = (0..p.len())
                .map(|_| rng.gen_range(-1.0f32..1.0) * 10f32.powi(rng.gen_range(-6..6)))
                .collect();
            let (want, want_d) = reference_projection(&p, &w);
            let got = p.project(&w).unwrap();
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{name} {out:?} <- {inp:?}"
            );
            let d = p.distance_to_equivariant_f64(&w).unwrap();
            assert_eq!(d.to_bits(), want_d.to_bits(), "{name} {out:?} <- {inp:?}");
        }
    }
}
