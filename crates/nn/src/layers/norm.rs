//! The tangent and second-order passes of the normalisations ([`super::BatchNorm`],
//! [`super::LayerNorm`]), on one normalisation group at a time.
//!
//! A group is the set of entries that share one mean and one standard deviation (a row, a
//! channel's map, a feature over a mini-batch, ...). With `xh = (x - mean) / s`,
//! `s = sqrt(var + eps)` and `k = 1 / s`, the Jacobian of `x -> xh` on a group of `n` entries
//! is the symmetric `J = k (I - 1 1^T / n - xh xh^T / n)`; along a tangent `dx`,
//! `ds = mean(xh dx)`, so the tangent of `J g` for a fixed `g` is
//! `J' g = -k ds (J g) - k (dxh mean(xh g) + xh mean(dxh g))` with `dxh = J dx`.

use eqaug_groups::Real;

use crate::NormOver;

/// How a layer's entries fall into normalisation groups.
#[derive(Clone, Copy, Debug)]
pub(super) enum Pattern {
    /// Layer norm, statistics per row and `over`.
    Layer {
        over: NormOver,
        channels: usize,
        positions: usize,
    },
    /// Batch norm, statistics per mini-batch and feature (`over = features`) or channel.
    Batch {
        over: NormOver,
        channels: usize,
        positions: usize,
    },
}

/// One group: its entries (flat indices into the chunk), the index of its inverse standard
/// deviation in the layer's stats, and (batch norm) the index of its scale and shift.
pub(super) struct Group<'a> {
    pub idx: &'a [usize],
    pub stat: usize,
    pub param: usize,
}

impl Pattern {
    /// Calls `f` for every group of a chunk of `rows` rows (mini-batches of `mb` rows).
    pub(super) fn for_each(&self, rows: usize, mb: usize, mut f: impl FnMut(Group<'_>)) {
        let mut idx = Vec::new();
        match *self {
            Pattern::Layer {
                over,
                channels: ch,
                positions: pos,
            } => {
                let w = ch * pos;
                for r in 0..rows {
                    match over {
                        NormOver::Features => {
                            idx.clear();
                            idx.extend(r * w..(r + 1) * w);
                            f(Group {
                                idx: &idx,
                                stat: r,
                                param: 0,
                            });
                        }
                        NormOver::Positions => {
                            for k in 0..ch {
                                idx.clear();
                                idx.extend(r * w + k * pos..r * w + (k + 1) * pos);
                                f(Group {
                                    idx: &idx,
                                    stat: r * ch + k,
                                    param: 0,
                                });
                            }
                        }
                        NormOver::Channels => {
                            for s in 0..pos {
                                idx.clear();
                                idx.extend((0..ch).map(|k| r * w + k * pos + s));
                                f(Group {
                                    idx: &idx,
                                    stat: r * pos + s,
                                    param: 0,
                                });
                            }
                        }
                    }
                }
            }
            Pattern::Batch {
                over,
                channels: ch,
                positions: pos,
            } => {
                let w = ch * pos;
                let per = if over == NormOver::Channels { ch } else { w };
                for (b, b0) in (0..rows).step_by(mb).enumerate() {
                    let b1 = (b0 + mb).min(rows);
                    for j in 0..per {
                        idx.clear();
                        if over == NormOver::Channels {
                            for r in b0..b1 {
                                idx.extend(r * w + j * pos..r * w + (j + 1) * pos);
                            }
                        } else {
                            idx.extend((b0..b1).map(|r| r * w + j));
                        }
                        f(Group {
                            idx: &idx,
                            stat: b * per + j,
                            param: j,
                        });
                    }
                }
            }
        }
    }
}

fn mean_of<T: Real>(idx: &[usize], f: impl Fn(usize) -> T) -> T {
    let s = idx.iter().fold(T::zero(), |a, &i| a + f(i));
    s / T::from_usize(idx.len()).expect("group size")
}

/// `dxh = J dx` on one group (into `out`, indexed like the chunk), and returns
/// `ds = mean(xh dx)`; `dx = None` gives zeros.
pub(super) fn jvp<T: Real>(idx: &[usize], xh: &[T], k: T, dx: Option<&[T]>, out: &mut [T]) -> T {
    let Some(dx) = dx else {
        idx.iter().for_each(|&i| out[i] = T::zero());
        return T::zero();
    };
    let m1 = mean_of(idx, |i| dx[i]);
    let m2 = mean_of(idx, |i| xh[i] * dx[i]);
    for &i in idx {
        out[i] = k * (dx[i] - m1 - xh[i] * m2);
    }
    m2
}

/// The second-order backward pass on one group: with `g` the gradient w.r.t. `xh` at the
/// point and `gd` its tangent, writes `J gd + J' g` into `out[i]` for the group's entries.
/// `g(i)`, `gd(i)` and `dxh(i)` are read before any `out[i]` is written (so `out` may alias
/// the storage `gd` reads from: the values are gathered first into `tmp`).
#[allow(clippy::too_many_arguments)]
pub(super) fn second_order<T: Real>(
    idx: &[usize],
    xh: &[T],
    k: T,
    ds: T,
    g: impl Fn(usize) -> T,
    gd: impl Fn(usize) -> T,
    dxh: impl Fn(usize) -> T,
    tmp: &mut Vec<T>,
) {
    let n = idx.len();
    tmp.clear();
    let mg = mean_of(idx, &g);
    let mgd = mean_of(idx, &gd);
    let mhg = mean_of(idx, |i| xh[i] * g(i));
    let mhgd = mean_of(idx, |i| xh[i] * gd(i));
    let mdg = mean_of(idx, |i| dxh(i) * g(i));
    for &i in idx {
        let h = xh[i];
        let jg = k * (g(i) - mg - h * mhg);
        let jgd = k * (gd(i) - mgd - h * mhgd);
        tmp.push(jgd - k * ds * jg - k * (dxh(i) * mhg + h * mdg));
    }
    debug_assert_eq!(tmp.len(), n);
}
