//! Groups: orders, enumeration, exact uniform sampling (chi-square), the reference
//! distributions of the authors' code, and clear errors.

use eqaug_groups::{Group, GroupError, GroupSpec, Perm, ReferenceTask};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{HashMap, HashSet};

#[test]
fn enumerated_groups_have_the_right_order() {
    let cases = [
        ("perm", 4, 24),
        ("perm", 5, 120),
        ("sym", 1, 1),
        ("sym", 2, 2),
        ("sym", 5, 120),
        ("trans2d", 5, 25),
        ("trans1d", 6, 6),
        ("rot", 5, 4),
        ("rot", 6, 4),
        ("rototrans", 3, 36),
        ("rototrans", 4, 64),
        ("swap", 2, 2),
        ("trivial", 3, 1),
    ];
    for (name, n, order) in cases {
        let g = Group::builtin(name, n).unwrap();
        assert_eq!(g.order(), order as u128, "{name} {n}");
        let els = g.elements(1 << 20).unwrap();
        assert_eq!(els.len(), order, "{name} {n}");
        let distinct: HashSet<&Perm> = els.iter().collect();
        assert_eq!(
            distinct.len(),
            order,
            "{name} {n}: elements are not distinct"
        );
        // Closed under composition with the generators.
        for e in &els {
            for gen in g.generators() {
                assert!(distinct.contains(&gen.compose(e)), "{name} {n}: not closed");
            }
        }
    }
}

#[test]
fn user_defined_group_is_enumerated_from_generators() {
    // The dihedral group of order 8 on the corners of a square.
    let g = Group::new(GroupSpec::User {
        name: "d4".into(),
        points: 4,
        generators: vec![vec![1, 2, 3, 0], vec![1, 0, 3, 2]],
    })
    .unwrap();
    assert_eq!(g.order(), 8);
    let e = Group::new(GroupSpec::User {
        name: "bad".into(),
        points: 3,
        generators: vec![vec![0, 0, 1]],
    })
    .unwrap_err();
    assert!(
        matches!(e, GroupError::BadGenerator { index: 0, .. }),
        "{e}"
    );
}

#[test]
fn too_large_groups_refuse_enumeration_clearly() {
    let g = Group::builtin("perm", 10).unwrap();
    assert_eq!(g.order(), 3_628_800);
    let e = g.elements(1000).unwrap_err();
    assert!(matches!(e, GroupError::TooLargeToEnumerate { .. }));
    assert!(e.to_string().contains("3628800"), "{e}");
    assert!(Group::builtin("hex", 4).is_err());
    assert!(Group::builtin("swap", 3).is_err());
    assert!(Group::builtin("rot", 0).is_err());
}

/// Upper 0.1% quantile of chi-square with k degrees of freedom (Wilson-Hilferty).
fn chi2_crit(k: usize) -> f64 {
    let k = k as f64;
    let z = 3.09; // 0.999 quantile of N(0,1)
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}

fn chi_square(counts: &[usize], probs: &[f64], draws: usize) -> f64 {
    counts
        .iter()
        .zip(probs)
        .map(|(&c, &p)| {
            let e = p * draws as f64;
            (c as f64 - e).powi(2) / e
        })
        .sum()
}

#[test]
fn samplers_are_uniform() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (name, n) in [
        ("perm", 4),
        ("trans2d", 3),
        ("trans1d", 5),
        ("rot", 5),
        ("rototrans", 3),
        ("swap", 2),
    ] {
        let g = Group::builtin(name, n).unwrap();
        let els = g.elements(1 << 20).unwrap();
        let index: HashMap<Perm, usize> = els
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, e)| (e, i))
            .collect();
        let draws = 400 * els.len();
        let mut counts = vec![0usize; els.len()];
        for _ in 0..draws {
            counts[index[&g.sample(&mut rng)]] += 1;
        }
        let probs = vec![1.0 / els.len() as f64; els.len()];
        let chi2 = chi_square(&counts, &probs, draws);
        assert!(
            chi2 < chi2_crit(els.len() - 1),
            "{name} {n}: chi2 {chi2:.1} over {} cells",
            els.len()
        );
    }
    // A user group samples from its list.
    let g = Group::new(GroupSpec::User {
        name: "c3".into(),
        points: 3,
        generators: vec![vec![1, 2, 0]],
    })
    .unwrap();
    let els = g.elements(10).unwrap();
    let mut counts = vec![0usize; 3];
    for _ in 0..3000 {
        let e = g.sample(&mut rng);
        counts[els.iter().position(|x| *x == e).unwrap()] += 1;
    }
    assert!(chi_square(&counts, &[1.0 / 3.0; 3], 3000) < chi2_crit(2));
}

#[test]
fn reference_distributions_reproduce_the_authors_code() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let g = Group::builtin("rot", 5).unwrap();
    let els = g.elements(4).unwrap(); // 0, 90, 180, 270 degrees
    let draws = 20_000;
    for (task, probs) in [
        (ReferenceTask::Classification, [0.4, 0.4, 0.2, 0.0]),
        (ReferenceTask::Segmentation, [0.4, 0.0, 0.6, 0.0]),
    ] {
        let mut counts = [0usize; 4];
        for _ in 0..draws {
            let e = g.sample_reference(&mut rng, task);
            counts[els.iter().position(|x| *x == e).unwrap()] += 1;
        }
        for k in 0..4 {
            if probs[k] == 0.0 {
                assert_eq!(counts[k], 0, "{task:?}: rotation {k} drawn");
            }
        }
        let (c, p): (Vec<usize>, Vec<f64>) = counts
            .iter()
            .zip(probs)
            .filter(|(_, p)| *p > 0.0)
            .map(|(c, p)| (*c, p))
            .unzip();
        assert!(
            chi_square(&c, &p, draws) < chi2_crit(c.len() - 1),
            "{task:?}: {counts:?}"
        );
    }
    // Shifts from 0..=n: shift 0 twice as likely as the others.
    let g = Group::builtin("trans1d", 4).unwrap();
    let els = g.elements(4).unwrap();
    let mut counts = vec![0usize; 4];
    for _ in 0..draws {
        let e = g.sample_reference(&mut rng, ReferenceTask::Classification);
        counts[els.iter().position(|x| *x == e).unwrap()] += 1;
    }
    let probs = [0.4, 0.2, 0.2, 0.2];
    assert!(
        chi_square(&counts, &probs, draws) < chi2_crit(3),
        "{counts:?}"
    );
}

#[test]
fn rotation_is_rot90_about_the_centre() {
    // np.rot90 of [[0,1],[2,3]] is [[1,3],[0,2]]: the value at (0,1) moves to (0,0).
    let g = Group::builtin("rot", 2).unwrap();
    let r = &g.generators()[0];
    let x = [0.0, 1.0, 2.0, 3.0];
    let mut out = [0.0; 4];
    eqaug_groups::act_on_sample(r, &x, &mut out);
    assert_eq!(out, [1.0, 3.0, 0.0, 2.0]);
    // On an odd grid the centre pixel is fixed, and four rotations are the identity.
    let g = Group::builtin("rot", 5).unwrap();
    let r = &g.generators()[0];
    assert_eq!(r.apply(12), 12);
    assert!(r.compose(r).compose(r).compose(r).is_identity());
    assert!(!r.compose(r).is_identity());
}

/// S_n on n points (`sym`): the orbits of point pairs and of (point, fixed point) pairs
/// counted by brute force (a union over every element of the enumerated group, not over the
/// generators the orbit map uses) agree with the orbit map; the group is all of S_n; the
/// projection is the brute-force group average; samples are uniform.
#[test]
fn symmetric_group_on_points_matches_brute_force() {
    use eqaug_groups::{reynolds_average, Points, Projector, Rep};
    for n in 1..=6usize {
        let g = Group::builtin("sym", n).unwrap();
        assert_eq!(g.spec(), &GroupSpec::Symmetric { n });
        assert_eq!(g.degree(), n);
        let els = g.elements(1 << 20).unwrap();
        let factorial: usize = (1..=n).product();
        assert_eq!(els.len(), factorial);
        assert_eq!(els.iter().collect::<HashSet<_>>().len(), factorial);
        // brute-force orbits of pairs (i, j) under (i, j) -> (g i, g j)
        let mut orbit_of_pair: HashMap<(usize, usize), usize> = HashMap::new();
        let mut orbits = 0;
        for i in 0..n {
            for j in 0..n {
                if orbit_of_pair.contains_key(&(i, j)) {
                    continue;
                }
                for e in &els {
                    orbit_of_pair.insert((e.apply(i), e.apply(j)), orbits);
                }
                orbits += 1;
            }
        }
        assert_eq!(orbits, if n == 1 { 1 } else { 2 }, "n = {n}");
        let map = g.orbit_map(Points::Base, Points::Base);
        assert_eq!(map.n_orbits(), orbits);
        for i in 0..n {
            for j in 0..n {
                // same partition: equal brute-force orbits iff equal orbit-map orbits
                assert_eq!(
                    map.orbit(i, j) == map.orbit(0, 0),
                    orbit_of_pair[&(i, j)] == orbit_of_pair[&(0, 0)]
                );
            }
        }
        assert_eq!(g.orbit_map(Points::Base, Points::Trivial).n_orbits(), 1);
        // projection = group average
        let p = Projector::between(&g, Rep::base(2), Rep::base(3)).unwrap();
        let w: Vec<f64> = (0..p.len())
            .map(|k| ((k * 7919) % 23) as f64 - 11.0)
            .collect();
        let fast = p.project(&w).unwrap();
        let slow = reynolds_average(&g, &p, &w).unwrap();
        for (a, b) in fast.iter().zip(&slow) {
            assert!((a - b).abs() < 1e-12, "n = {n}: {a} vs {b}");
        }
    }
    // uniform sampling: every element of S_3 about 1/6 of the time
    let g = Group::builtin("sym", 3).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut counts: HashMap<Perm, usize> = HashMap::new();
    for _ in 0..6000 {
        *counts.entry(g.sample(&mut rng)).or_default() += 1;
    }
    assert_eq!(counts.len(), 6);
    assert!(
        counts.values().all(|&c| (850..1150).contains(&c)),
        "{counts:?}"
    );
    // sizes out of range are errors naming the group and the size
    let e = Group::builtin("sym", 0).unwrap_err();
    assert!(matches!(e, GroupError::BadSize { size: 0, .. }), "{e}");
    assert!(e.to_string().contains("`sym`"), "{e}");
    assert!(Group::builtin("sym", 35).is_err());
}
