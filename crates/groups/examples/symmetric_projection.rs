//! Projects a random layer of S_n acting on n points onto the equivariant layers E and checks
//! the O(#weights) orbit mean against the brute-force group average over all n! elements
//! (docs/science.md §1.1).
//!
//! `cargo run -p eqaug-groups --example symmetric_projection [n]` (default n = 5).

use eqaug_groups::rand::{Rng, SeedableRng};
use eqaug_groups::{reynolds_average, Group, GroupError, Projector, Rep};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = match std::env::args().nth(1) {
        Some(a) => a.parse().map_err(|e| format!("n = `{a}`: {e}"))?,
        None => 5,
    };
    run(n)
}

fn run(n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let group = Group::builtin("sym", n)?;
    // 3 input channels on the n points -> 2 output channels on the points
    let proj = Projector::between(&group, Rep::base(3), Rep::base(2))?;
    println!(
        "S_{n} (order {}) on {n} points: layer {} -> {}: {} x {} weights, dim E = {} \
         ({} per channel pair: the maps a I + b 11^T)",
        group.order(),
        proj.rep_in(),
        proj.rep_out(),
        proj.rows(),
        proj.cols(),
        proj.dim(),
        proj.dim_per_channel_pair()
    );

    let mut rng = eqaug_groups::rand::rngs::StdRng::seed_from_u64(7);
    let w: Vec<f64> = (0..proj.len()).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let fast = proj.project(&w)?;
    let slow = reynolds_average(&group, &proj, &w)?;
    let max_diff = fast
        .iter()
        .zip(&slow)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f64, f64::max);
    println!(
        "||W - Pi_E W|| = {:.6}; max |orbit mean - group average| = {max_diff:.2e}; \
         distance of Pi_E W to E = {:.2e}",
        proj.distance_to_equivariant(&w)?,
        proj.distance_to_equivariant(&fast)?
    );
    assert!(max_diff < 1e-12, "the projection is not the group average");

    // A wrong length is an error, not a panic.
    match proj.project(&w[1..]) {
        Err(e @ GroupError::ShapeMismatch { .. }) => println!("wrong length: {e}"),
        other => panic!("expected a shape error, got {other:?}"),
    }
    Ok(())
}

#[cfg(test)]
#[test]
fn example_runs() {
    for n in 1..=5 {
        run(n).unwrap();
    }
}
