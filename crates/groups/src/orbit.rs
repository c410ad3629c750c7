//! Orbits of index pairs under the diagonal action, by union-find over the generators.

use crate::group::Group;
use crate::projector::Points;

/// The orbits of the pairs `(s_out, s_in)` of a layer shape under
/// `g.(s_out, s_in) = (g s_out, g s_in)`.
///
/// Orbits are numbered `0..n_orbits()` in the order of their first pair (row-major), so the
/// numbering is deterministic.
#[derive(Debug, Clone)]
pub struct OrbitMap {
    s_out: usize,
    s_in: usize,
    orbit_of: Vec<u32>,
    sizes: Vec<u32>,
}

impl OrbitMap {
    /// Computes the orbits for a layer from `inp` points to `out` points of `group`.
    pub fn new(group: &Group, out: Points, inp: Points) -> Self {
        let (s_out, s_in) = (group.points(out), group.points(inp));
        let n = s_out * s_in;
        let mut parent: Vec<u32> = (0..n as u32).collect();
        fn find(parent: &mut [u32], mut x: u32) -> u32 {
            while parent[x as usize] != x {
                let p = parent[x as usize];
                parent[x as usize] = parent[p as usize];
                x = p;
            }
            x
        }
        for g in group.generators() {
            let act = |p: Points, s: usize| match p {
                Points::Base => g.apply(s),
                Points::Trivial => s,
            };
            for so in 0..s_out {
                let go = act(out, so);
                for si in 0..s_in {
                    let a = find(&mut parent, (so * s_in + si) as u32);
                    let b = find(&mut parent, (go * s_in + act(inp, si)) as u32);
                    if a != b {
                        // Union by smaller index keeps roots stable and deterministic.
                        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
                        parent[hi as usize] = lo;
                    }
                }
            }
        }
        let mut label = vec![u32::MAX; n];
        let mut orbit_of = vec![0u32; n];
        let mut sizes = Vec::new();
        for i in 0..n {
            let r = find(&mut parent, i as u32) as usize;
            if label[r] == u32::MAX {
                label[r] = sizes.len() as u32;
                sizes.push(0);
            }
            orbit_of[i] = label[r];
            sizes[label[r] as usize] += 1;
        }
        OrbitMap {
            s_out,
            s_in,
            orbit_of,
            sizes,
        }
    }

    /// Number of output positions.
    pub fn s_out(&self) -> usize {
        self.s_out
    }

    /// Number of input positions.
    pub fn s_in(&self) -> usize {
        self.s_in
    }

    /// Number of orbits = dimension of the equivariant maps per channel pair.
    pub fn n_orbits(&self) -> usize {
        self.sizes.len()
    }

    /// Orbit index of every pair, row-major `(s_out, s_in)`.
    pub fn orbit_of(&self) -> &[u32] {
        &self.orbit_of
    }

    /// Number of pairs in every orbit.
    pub fn sizes(&self) -> &[u32] {
        &self.sizes
    }
}
