//! Two-block stochastic block model graphs labelled by connectivity (docs/science.md §4, E1).
//!
//! Each graph has two clusters of `nodes_per_cluster` nodes. Every unordered pair of
//! distinct nodes is joined independently, with probability `p_intra` inside a cluster and
//! `p_inter` across; there are no self-loops. The nodes are then relabelled by a uniform
//! random permutation, so the cluster structure is not visible in the node order. The
//! label is 1.0 iff the graph is connected. The input is the `n x n` adjacency matrix
//! (`n = 2 * nodes_per_cluster`), flattened row-major (entry `(i, j)` at `n * i + j`),
//! one channel, values 0.0 or 1.0.

use crate::{DataError, Dataset, Targets};
use ndarray::Array2;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Parameters of the stochastic block model. [`Default`] gives the paper's E1 values.
#[derive(Debug, Clone, PartialEq)]
pub struct SbmParams {
    /// Nodes in each of the two clusters (paper: 5).
    pub nodes_per_cluster: usize,
    /// Edge probability inside a cluster (paper: 0.5).
    pub p_intra: f64,
    /// Edge probability between the clusters (paper: 0.05).
    pub p_inter: f64,
    /// Number of graphs (paper: 1000).
    pub count: usize,
}

impl Default for SbmParams {
    fn default() -> Self {
        SbmParams {
            nodes_per_cluster: 5,
            p_intra: 0.5,
            p_inter: 0.05,
            count: 1000,
        }
    }
}

impl SbmParams {
    /// Number of nodes per graph.
    pub fn nodes(&self) -> usize {
        2 * self.nodes_per_cluster
    }

    /// Checks the parameters: at least one node per cluster, probabilities in [0, 1].
    pub fn validate(&self) -> Result<(), DataError> {
        if self.nodes_per_cluster == 0 {
            return Err(DataError::InvalidParameter {
                name: "nodes_per_cluster",
                reason: "must be at least 1".into(),
            });
        }
        for (name, p) in [("p_intra", self.p_intra), ("p_inter", self.p_inter)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(DataError::InvalidParameter {
                    name,
                    reason: format!("{p} is not a probability in [0, 1]"),
                });
            }
        }
        Ok(())
    }

    /// The expected number of (undirected) edges per graph.
    pub fn expected_edges(&self) -> f64 {
        let m = self.nodes_per_cluster as f64;
        2.0 * m * (m - 1.0) / 2.0 * self.p_intra + m * m * self.p_inter
    }
}

/// Generates `params.count` graphs deterministically from `seed`.
///
/// # Panics
/// If the parameters are invalid (see [`SbmParams::validate`]); use [`try_generate`] to
/// get an error instead.
pub fn generate(params: &SbmParams, seed: u64) -> Dataset {
    try_generate(params, seed).unwrap_or_else(|e| panic!("{e}"))
}

/// Generates `params.count` graphs deterministically from `seed`, checking the parameters.
pub fn try_generate(params: &SbmParams, seed: u64) -> Result<Dataset, DataError> {
    params.validate()?;
    let n = params.nodes();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Array2::<f64>::zeros((params.count, n * n));
    let mut labels = Vec::with_capacity(params.count);
    let mut perm: Vec<usize> = (0..n).collect();
    for mut row in x.rows_mut() {
        // Nodes 0..m form cluster 0 before relabelling; perm[i] is node i's new label.
        perm.shuffle(&mut rng);
        for i in 0..n {
            for j in i + 1..n {
                let same = (i < params.nodes_per_cluster) == (j < params.nodes_per_cluster);
                let p = if same { params.p_intra } else { params.p_inter };
                if rng.gen::<f64>() < p {
                    let (a, b) = (perm[i], perm[j]);
                    row[n * a + b] = 1.0;
                    row[n * b + a] = 1.0;
                }
            }
        }
        let adjacency = row
            .as_slice()
            .expect("rows of a standard-layout array are contiguous");
        labels.push(if is_connected(adjacency, n) { 1.0 } else { 0.0 });
    }
    Ok(Dataset {
        name: "sbm".into(),
        x,
        channels: 1,
        positions: n * n,
        targets: Targets::Binary(labels),
    })
}

/// True iff the graph with the row-major `n x n` adjacency matrix `adjacency` (nonzero =
/// edge) is connected (breadth-first search from node 0). The empty graph on zero nodes
/// counts as connected.
pub fn is_connected(adjacency: &[f64], n: usize) -> bool {
    assert_eq!(adjacency.len(), n * n, "adjacency must be n x n");
    if n == 0 {
        return true;
    }
    let mut seen = vec![false; n];
    let mut stack = vec![0];
    seen[0] = true;
    let mut reached = 1;
    while let Some(i) = stack.pop() {
        for j in 0..n {
            if !seen[j] && adjacency[n * i + j] != 0.0 {
                seen[j] = true;
                reached += 1;
                stack.push(j);
            }
        }
    }
    reached == n
}

/// The exact probability that a graph of the model is connected.
///
/// Computed over vertex subsets by the classical recursion
/// `P(S connected) = 1 - sum_{T subset of S, min(S) in T, T != S} P(T connected) *
/// P(no edge between T and S \ T)`; with two blocks only the block counts of a subset
/// matter, so this is cheap. Used to check the generator's connected fraction.
pub fn connected_probability(params: &SbmParams) -> f64 {
    let m = params.nodes_per_cluster;
    let (qi, qo) = (1.0 - params.p_intra, 1.0 - params.p_inter);
    // conn[a][b]: probability that a fixed set of a nodes of block 0 and b of block 1 is
    // connected (the induced subgraph).
    let mut conn = vec![vec![0.0f64; m + 1]; m + 1];
    let binom = |n: usize, k: usize| -> f64 {
        (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
    };
    for total in 1..=2 * m {
        for a in total.saturating_sub(m)..=total.min(m) {
            let b = total - a;
            // Distinguished vertex: one of block 0 if a > 0, else of block 1.
            let mut disconnected = 0.0;
            for a1 in 0..=a {
                for b1 in 0..=b {
                    if a1 + b1 == a + b {
                        continue;
                    }
                    // T must contain the distinguished vertex.
                    let ways = if a > 0 {
                        if a1 == 0 {
                            continue;
                        }
                        binom(a - 1, a1 - 1) * binom(b, b1)
                    } else {
                        if b1 == 0 {
                            continue;
                        }
                        binom(a, a1) * binom(b - 1, b1 - 1)
                    };
                    let (a2, b2) = (a - a1, b - b1);
                    let no_cut =
                        qi.powi((a1 * a2 + b1 * b2) as i32) * qo.powi((a1 * b2 + b1 * a2) as i32);
                    disconnected += ways * conn[a1][b1] * no_cut;
                }
            }
            conn[a][b] = 1.0 - disconnected;
        }
    }
    conn[m][m]
}
