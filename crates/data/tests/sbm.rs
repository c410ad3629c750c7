//! SBM graphs (E1): labels against an independent connectivity oracle, and statistics.

use eqaug_data::sbm::{self, SbmParams};
use eqaug_data::Targets;

/// Independent connectivity test: all entries of (I + A)^(n-1) positive (boolean
/// matrix powers by repeated squaring).
fn connected_by_powers(adj: &[f64], n: usize) -> bool {
    let mut m: Vec<bool> = (0..n * n)
        .map(|k| k / n == k % n || adj[k] != 0.0)
        .collect();
    let mut reach = 1;
    while reach < n - 1 {
        let mut sq = vec![false; n * n];
        for i in 0..n {
            for j in 0..n {
                sq[i * n + j] = (0..n).any(|k| m[i * n + k] && m[k * n + j]);
            }
        }
        m = sq;
        reach *= 2;
    }
    m.iter().all(|&b| b)
}

fn binary(t: &Targets) -> &[f64] {
    match t {
        Targets::Binary(v) => v,
        other => panic!("expected binary targets, got {other:?}"),
    }
}

#[test]
fn labels_match_matrix_power_oracle_and_adjacency_is_simple() {
    let p = SbmParams {
        count: 2000,
        ..SbmParams::default()
    };
    let d = sbm::generate(&p, 7);
    assert_eq!((d.len(), d.channels, d.positions), (2000, 1, 100));
    d.check_shapes().unwrap();
    let n = 10;
    let labels = binary(&d.targets);
    let mut both = [0usize; 2];
    for (row, &y) in d.x.rows().into_iter().zip(labels) {
        let a = row.to_vec();
        for i in 0..n {
            assert_eq!(a[i * n + i], 0.0, "self-loop");
            for j in 0..n {
                assert!(a[i * n + j] == 0.0 || a[i * n + j] == 1.0);
                assert_eq!(a[i * n + j], a[j * n + i], "not symmetric");
            }
        }
        let oracle = connected_by_powers(&a, n);
        assert_eq!(y, if oracle { 1.0 } else { 0.0 });
        both[oracle as usize] += 1;
    }
    // The oracle saw both classes, so the comparison is not vacuous.
    assert!(both[0] > 100 && both[1] > 100, "{both:?}");
}

/// Brute force over all 2^6 graphs of two clusters of 2 nodes.
#[test]
fn exact_connected_probability_matches_enumeration() {
    let p = SbmParams {
        nodes_per_cluster: 2,
        p_intra: 0.3,
        p_inter: 0.15,
        count: 0,
    };
    let n = 4;
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .collect();
    let mut total = 0.0;
    for mask in 0u32..(1 << pairs.len()) {
        let mut a = vec![0.0; n * n];
        let mut prob = 1.0;
        for (k, &(i, j)) in pairs.iter().enumerate() {
            let q = if (i < 2) == (j < 2) {
                p.p_intra
            } else {
                p.p_inter
            };
            if mask >> k & 1 == 1 {
                a[i * n + j] = 1.0;
                a[j * n + i] = 1.0;
                prob *= q;
            } else {
                prob *= 1.0 - q;
            }
        }
        if connected_by_powers(&a, n) {
            total += prob;
        }
    }
    approx::assert_abs_diff_eq!(sbm::connected_probability(&p), total, epsilon = 1e-12);
}

#[test]
fn statistics_over_10000_graphs() {
    let p = SbmParams {
        count: 10_000,
        ..SbmParams::default()
    };
    let d = sbm::generate(&p, 2024);
    let labels = binary(&d.targets);
    let connected = labels.iter().sum::<f64>() / labels.len() as f64;
    let exact = sbm::connected_probability(&p);
    // Binomial standard error sqrt(p(1-p)/N) is about 0.005; allow 4.5 standard errors.
    let se = (exact * (1.0 - exact) / 10_000.0).sqrt();
    eprintln!("SBM: connected fraction {connected:.4} (exact {exact:.4}, s.e. {se:.4})");
    // The paper says "about 47%" (docs/science.md, Known departures); the stated model gives
    // 0.4197 exactly (this recursion, checked by enumeration above and by an independent
    // Monte Carlo of 10^5 graphs in Python: 0.4202). The generator must match the model, so
    // we test against 0.4197.
    approx::assert_abs_diff_eq!(exact, 0.4197, epsilon = 5e-4);
    assert!(
        (connected - exact).abs() < 4.5 * se,
        "{connected} vs {exact}"
    );

    // Edges: 20 intra pairs at 0.5 and 25 inter pairs at 0.05: mean 11.25, variance
    // 20 * 0.25 + 25 * 0.0475 = 6.1875, standard error of the mean about 0.025.
    let edges: Vec<f64> = d.x.rows().into_iter().map(|r| r.sum() / 2.0).collect();
    let mean = edges.iter().sum::<f64>() / edges.len() as f64;
    let var = edges.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (edges.len() - 1) as f64;
    eprintln!(
        "SBM: mean edge count {mean:.4} (expected 11.25), variance {var:.3} (expected 6.1875)"
    );
    approx::assert_abs_diff_eq!(p.expected_edges(), 11.25, epsilon = 1e-12);
    assert!(
        (mean - 11.25).abs() < 4.5 * (6.1875f64 / 10_000.0).sqrt(),
        "mean edges {mean}"
    );
    assert!((var - 6.1875).abs() < 0.5, "edge variance {var}");

    // Relabelling: without it nodes 0 and 1 share a cluster (edge probability 0.5) and
    // nodes 0 and 9 do not (0.05); with a uniform permutation every pair has probability
    // 11.25 / 45 = 0.25 (standard error about 0.0043).
    for (i, j) in [(0, 1), (0, 9), (4, 5)] {
        let f = d.x.column(10 * i + j).sum() / 10_000.0;
        assert!((f - 0.25).abs() < 0.02, "edge ({i},{j}) frequency {f}");
    }
}

#[test]
fn same_seed_same_graphs_bit_for_bit() {
    let p = SbmParams::default();
    let a = sbm::generate(&p, 99);
    let b = sbm::generate(&p, 99);
    assert_eq!(a, b);
    let c = sbm::generate(&p, 100);
    assert_ne!(a.x, c.x);
}

#[test]
fn invalid_parameters_are_rejected() {
    let bad = SbmParams {
        p_intra: 1.5,
        ..SbmParams::default()
    };
    let err = sbm::try_generate(&bad, 0).unwrap_err().to_string();
    assert!(err.contains("p_intra"), "{err}");
    let bad = SbmParams {
        nodes_per_cluster: 0,
        ..SbmParams::default()
    };
    assert!(sbm::try_generate(&bad, 0).is_err());
}

#[test]
fn configurable_sizes() {
    let p = SbmParams {
        nodes_per_cluster: 3,
        p_intra: 1.0,
        p_inter: 0.0,
        count: 20,
    };
    let d = sbm::generate(&p, 1);
    assert_eq!(d.positions, 36);
    // Two complete triangles, never joined: 6 edges, never connected.
    for r in d.x.rows() {
        assert_eq!(r.sum(), 12.0);
    }
    assert!(binary(&d.targets).iter().all(|&y| y == 0.0));
    let p = SbmParams { p_inter: 1.0, ..p };
    assert!(binary(&sbm::generate(&p, 1).targets)
        .iter()
        .all(|&y| y == 1.0));
}
