//! Representations, layer shapes and the projection onto equivariant layers.

use crate::group::Group;
use crate::orbit::OrbitMap;
use crate::perm::Perm;
use crate::points::Points;
use crate::{GroupError, Real};
use rayon::prelude::*;
use std::sync::Arc;

/// Output channels projected together (see `Projector::orbit_sums`).
const LANES: usize = 4;

/// A permutation representation: `channels` copies of R^{points}.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct Rep {
    /// Number of channels.
    pub channels: usize,
    /// The G-set every channel lives on.
    pub points: Points,
}

impl std::fmt::Display for Rep {
    /// `3 channels on base points`, `1 channel on a fixed point`.
    ///
    /// ```
    /// use eqaug_groups::Rep;
    /// assert_eq!(Rep::base(3).to_string(), "3 channels on base points");
    /// assert_eq!(Rep::trivial(1).to_string(), "1 channel on a fixed point");
    /// ```
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = if self.channels == 1 { "" } else { "s" };
        write!(f, "{} channel{s} on {}", self.channels, self.points)
    }
}

impl Rep {
    /// `channels` copies of the base permutation representation (rho).
    pub fn base(channels: usize) -> Self {
        Rep {
            channels,
            points: Points::Base,
        }
    }

    /// `channels` copies of the trivial representation.
    pub fn trivial(channels: usize) -> Self {
        Rep {
            channels,
            points: Points::Trivial,
        }
    }

    /// Positions per channel.
    pub fn positions(&self, group: &Group) -> usize {
        group.points(self.points)
    }

    /// Dimension of the feature space: channels x positions.
    pub fn dim(&self, group: &Group) -> usize {
        self.channels * self.positions(group)
    }
}

/// The projection onto the equivariant layers `Hom_G(rep_in, rep_out)` for weights stored
/// row-major as `(c_out * s_out) x (c_in * s_in)` with channel-major features.
///
/// Cheap to clone (the orbit map is shared); `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Projector {
    rep_out: Rep,
    rep_in: Rep,
    map: Arc<OrbitMap>,
}

impl Projector {
    /// The projector for a layer `from -> to` of `group` (input first, as everywhere in
    /// eqaug: `Dense::new(input, output, ..)`, `Network::new(.., input, ..)`). Errors when the
    /// space of equivariant layers is {0} (a representation with no channels).
    ///
    /// ```
    /// use eqaug_groups::{Group, Projector, Rep};
    /// let g = Group::builtin("sym", 5).unwrap();
    /// // 3 input channels on the 5 points -> 2 output channels on the points
    /// let p = Projector::between(&g, Rep::base(3), Rep::base(2)).unwrap();
    /// assert_eq!((p.rows(), p.cols(), p.dim()), (10, 15, 2 * 3 * 2));
    /// ```
    pub fn between(group: &Group, from: Rep, to: Rep) -> Result<Self, GroupError> {
        let (rep_in, rep_out) = (from, to);
        let map = group.orbit_map(rep_out.points, rep_in.points);
        if rep_out.channels == 0 || rep_in.channels == 0 || map.n_orbits() == 0 {
            return Err(GroupError::EmptyEquivariantSpace {
                what: format!("of group `{}` from {rep_in} to {rep_out}", group.name()),
            });
        }
        Ok(Projector {
            rep_out,
            rep_in,
            map,
        })
    }

    /// The projector for a layer `rep_in -> rep_out`, output first (the order of the weight
    /// matrix's shape).
    #[deprecated(
        note = "use `Projector::between(group, from, to)`: input first, as everywhere in eqaug"
    )]
    pub fn new(group: &Group, rep_out: Rep, rep_in: Rep) -> Result<Self, GroupError> {
        Projector::between(group, rep_in, rep_out)
    }

    /// The output representation.
    pub fn rep_out(&self) -> Rep {
        self.rep_out
    }

    /// The input representation.
    pub fn rep_in(&self) -> Rep {
        self.rep_in
    }

    /// The shared orbit map of the position pairs.
    pub fn orbit_map(&self) -> &OrbitMap {
        &self.map
    }

    /// Rows of the weight matrix: `c_out * s_out`.
    pub fn rows(&self) -> usize {
        self.rep_out.channels * self.map.s_out()
    }

    /// Columns of the weight matrix: `c_in * s_in`.
    pub fn cols(&self) -> usize {
        self.rep_in.channels * self.map.s_in()
    }

    /// Number of weights: `rows * cols`.
    pub fn len(&self) -> usize {
        self.rows() * self.cols()
    }

    /// Always false (empty layers are rejected by [`Projector::between`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Dimension of E per channel pair (the number of orbits of position pairs).
    pub fn dim_per_channel_pair(&self) -> usize {
        self.map.n_orbits()
    }

    /// Dimension of E: `c_out * c_in * dim_per_channel_pair`.
    pub fn dim(&self) -> usize {
        self.rep_out.channels * self.rep_in.channels * self.map.n_orbits()
    }

    fn check<T>(&self, w: &[T], what: &'static str) -> Result<(), GroupError> {
        if w.len() != self.len() {
            return Err(GroupError::ShapeMismatch {
                what,
                rows: self.rows(),
                cols: self.cols(),
                got: w.len(),
            });
        }
        Ok(())
    }

    /// Sums (in f64) over every orbit of the block `(co, ci)` of each of `L` consecutive
    /// output channels (`bands[k]` holds the `s_out` rows of one output channel): `sums[o][k]`.
    ///
    /// The bands' sums are independent, so interleaving them hides the latency of the f64
    /// additions, while every sum still adds the same terms in the same order as one band at a
    /// time: the results are bit-identical for any `L`.
    fn orbit_sums<T: Real, const L: usize>(
        &self,
        bands: [&[T]; L],
        ci: usize,
        sums: &mut [[f64; L]],
    ) {
        let (s_out, s_in, cols) = (self.map.s_out(), self.map.s_in(), self.cols());
        let orbit_of = self.map.orbit_of();
        sums.fill([0.0; L]);
        for r in 0..s_out {
            let off = r * cols + ci * s_in;
            let rows: [&[T]; L] = std::array::from_fn(|k| &bands[k][off..off + s_in]);
            let ids = &orbit_of[r * s_in..][..s_in];
            for (j, &o) in ids.iter().enumerate() {
                let acc = &mut sums[o as usize];
                for k in 0..L {
                    acc[k] += rows[k][j].to_f64_exact();
                }
            }
        }
    }

    /// The size of every orbit. Means divide by it (rather than multiply by a reciprocal): a
    /// sum of `c` equal values divided by `c` gives the value back exactly, so f32 layers
    /// already in E are fixed bit for bit.
    fn orbit_sizes(&self) -> Vec<f64> {
        self.map.sizes().iter().map(|&c| c as f64).collect()
    }

    /// Pi_E in place on `L` consecutive output channels (`group.len() == L * s_out * cols`).
    fn project_bands<T: Real, const L: usize>(&self, group: &mut [T], sizes: &[f64]) {
        let (s_out, s_in, cols) = (self.map.s_out(), self.map.s_in(), self.cols());
        let band_len = s_out * cols;
        let orbit_of = self.map.orbit_of();
        let mut sums = vec![[0.0f64; L]; sizes.len()];
        let mut means = vec![[T::zero(); L]; sizes.len()];
        for ci in 0..self.rep_in.channels {
            let bands: [&[T]; L] = std::array::from_fn(|k| &group[k * band_len..][..band_len]);
            self.orbit_sums(bands, ci, &mut sums);
            for ((m, s), &size) in means.iter_mut().zip(&sums).zip(sizes) {
                for k in 0..L {
                    m[k] = T::from_f64_lossy(s[k] / size);
                }
            }
            for (k, band) in group.chunks_exact_mut(band_len).enumerate() {
                for r in 0..s_out {
                    let row = &mut band[r * cols + ci * s_in..][..s_in];
                    let ids = &orbit_of[r * s_in..][..s_in];
                    for (x, &o) in row.iter_mut().zip(ids) {
                        *x = means[o as usize][k];
                    }
                }
            }
        }
    }

    /// `||W_k - Pi_E W_k||^2` (accumulated in f64 in a fixed order) of each of `L`
    /// consecutive output channels.
    fn distance_bands<T: Real, const L: usize>(&self, group: &[T], sizes: &[f64]) -> [f64; L] {
        let (s_out, s_in, cols) = (self.map.s_out(), self.map.s_in(), self.cols());
        let band_len = s_out * cols;
        let orbit_of = self.map.orbit_of();
        let bands: [&[T]; L] = std::array::from_fn(|k| &group[k * band_len..][..band_len]);
        let mut sums = vec![[0.0f64; L]; sizes.len()];
        let mut acc = [0.0f64; L];
        for ci in 0..self.rep_in.channels {
            self.orbit_sums(bands, ci, &mut sums);
            for (m, &size) in sums.iter_mut().zip(sizes) {
                for v in m.iter_mut() {
                    *v /= size;
                }
            }
            for r in 0..s_out {
                let off = r * cols + ci * s_in;
                let rows: [&[T]; L] = std::array::from_fn(|k| &bands[k][off..off + s_in]);
                let ids = &orbit_of[r * s_in..][..s_in];
                for (j, &o) in ids.iter().enumerate() {
                    let mean = &sums[o as usize];
                    for k in 0..L {
                        let d = rows[k][j].to_f64_exact() - mean[k];
                        acc[k] += d * d;
                    }
                }
            }
        }
        acc
    }

    /// Pi_E in place: every weight replaced by the mean of its orbit (per channel pair).
    ///
    /// # Errors
    /// [`GroupError::ShapeMismatch`] if `w.len() != rows * cols` (`w` is left unchanged).
    pub fn project_in_place<T: Real>(&self, w: &mut [T]) -> Result<(), GroupError> {
        self.check(w, "weight")?;
        let band_len = self.map.s_out() * self.cols();
        let sizes = self.orbit_sizes();
        w.par_chunks_mut(LANES * band_len).for_each(|group| {
            if group.len() == LANES * band_len {
                self.project_bands::<T, LANES>(group, &sizes);
            } else {
                for band in group.chunks_exact_mut(band_len) {
                    self.project_bands::<T, 1>(band, &sizes);
                }
            }
        });
        Ok(())
    }

    /// Pi_E out of place.
    ///
    /// # Errors
    /// [`GroupError::ShapeMismatch`] if `w.len() != rows * cols`.
    pub fn project<T: Real>(&self, w: &[T]) -> Result<Vec<T>, GroupError> {
        let mut out = w.to_vec();
        self.project_in_place(&mut out)?;
        Ok(out)
    }

    /// `||W - Pi_E W||` (Frobenius, not squared), accumulated in f64 in a fixed order.
    ///
    /// # Errors
    /// [`GroupError::ShapeMismatch`] if `w.len() != rows * cols`.
    pub fn distance_to_equivariant<T: Real>(&self, w: &[T]) -> Result<T, GroupError> {
        Ok(T::from_f64_lossy(self.distance_to_equivariant_f64(w)?))
    }

    /// As [`Projector::distance_to_equivariant`], returned in f64.
    pub fn distance_to_equivariant_f64<T: Real>(&self, w: &[T]) -> Result<f64, GroupError> {
        self.check(w, "weight")?;
        let band_len = self.map.s_out() * self.cols();
        let sizes = self.orbit_sizes();
        // One squared distance per output channel, summed in channel order.
        let partial: Vec<Vec<f64>> = w
            .par_chunks(LANES * band_len)
            .map(|group| {
                if group.len() == LANES * band_len {
                    self.distance_bands::<T, LANES>(group, &sizes).to_vec()
                } else {
                    group
                        .chunks_exact(band_len)
                        .map(|band| self.distance_bands::<T, 1>(band, &sizes)[0])
                        .collect()
                }
            })
            .collect();
        Ok(partial.iter().flatten().sum::<f64>().sqrt())
    }

    /// The action on layers: `out = g.W = rho_out(g) W rho_in(g)^-1`, i.e.
    /// `out[(c, g s_o), (c', g s_i)] = W[(c, s_o), (c', s_i)]`.
    ///
    /// # Errors
    /// [`GroupError::ShapeMismatch`] if a length does not match the layer shape,
    /// [`GroupError::PointsMismatch`] if `g` permutes another number of points than the
    /// layer's positions.
    pub fn act_on_layer<T: Copy>(
        &self,
        g: &Perm,
        w: &[T],
        out: &mut [T],
    ) -> Result<(), GroupError> {
        self.check(w, "weight")?;
        self.check(out, "output")?;
        let (s_out, s_in, cols) = (self.map.s_out(), self.map.s_in(), self.cols());
        let base = if self.rep_out.points == Points::Base {
            Some(s_out)
        } else if self.rep_in.points == Points::Base {
            Some(s_in)
        } else {
            None
        };
        if let Some(points) = base.filter(|&p| p != g.len()) {
            return Err(GroupError::PointsMismatch {
                expected: points,
                got: g.len(),
            });
        }
        let act = |p: Points, s: usize| match p {
            Points::Base => g.apply(s),
            Points::Trivial => s,
        };
        for co in 0..self.rep_out.channels {
            for so in 0..s_out {
                let ro = co * s_out + act(self.rep_out.points, so);
                let ri = co * s_out + so;
                for ci in 0..self.rep_in.channels {
                    for si in 0..s_in {
                        out[ro * cols + ci * s_in + act(self.rep_in.points, si)] =
                            w[ri * cols + ci * s_in + si];
                    }
                }
            }
        }
        Ok(())
    }
}

/// The brute-force Reynolds average `(1/|G|) sum_g g.W` over all elements of the group: the
/// slow, obviously correct oracle for [`Projector::project`]. Errors when the group is too
/// large to enumerate.
pub fn reynolds_average<T: Real>(
    group: &Group,
    projector: &Projector,
    w: &[T],
) -> Result<Vec<T>, GroupError> {
    projector.check(w, "weight")?;
    let elements = group.elements(crate::DEFAULT_ENUMERATION_LIMIT)?;
    let mut acc = vec![0.0f64; w.len()];
    let mut moved = vec![T::zero(); w.len()];
    for g in &elements {
        projector.act_on_layer(g, w, &mut moved)?;
        for (a, &m) in acc.iter_mut().zip(&moved) {
            *a += m.to_f64_exact();
        }
    }
    let inv = 1.0 / elements.len() as f64;
    Ok(acc
        .into_iter()
        .map(|a| T::from_f64_lossy(a * inv))
        .collect())
}
