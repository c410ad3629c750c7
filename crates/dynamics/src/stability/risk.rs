//! The deterministic full-batch risks of the analysis ([`Risk`]: nominal, exactly or sampled
//! augmented, per-sample draws), the data transformation by a group element, the choice of the
//! augmentation's elements, and the Hessian-vector product (central differences of the exact
//! gradient, [`crate::hessian::hvp`]).

use super::options::{HvpMethod, StabilityOptions};
use crate::error::StabilityError;
use crate::TrainData;
use eqaug_groups::{act_on_sample, Group, Perm, Points};
use eqaug_nn::{Network, Params, Workspace};
use ndarray::{s, Array2};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::ops::Range;
use std::sync::Arc;

/// Rows per chunk pushed through the network at once (rounded to whole mini-batches).
const CHUNK_ROWS: usize = 512;

/// Work is split into at most this many blocks, reduced in a fixed order (deterministic
/// whatever the number of threads).
const MAX_BLOCKS: usize = 4;

#[derive(Debug)]
pub(super) struct Block {
    items: Range<usize>,
    ws: Workspace<f64>,
    grads: Params<f64>,
    xbuf: Array2<f64>,
    ybuf: Array2<f64>,
    /// Per item of the block, the prepared point of the exact HVP (empty unless cached).
    points: Vec<ItemPoint>,
}

/// One work item's data and the network's state at the point ([`eqaug_nn::Sequential::hvp_point`]).
#[derive(Debug)]
struct ItemPoint {
    ws: Workspace<f64>,
    x: Array2<f64>,
    t: Array2<f64>,
}

/// The most memory the exact HVP's kept point may take (every work item's activations,
/// tangents, output gradients and data); above it each product recomputes the point.
pub const HVP_CACHE_BYTES: usize = 1 << 30;

/// A deterministic full-batch risk in f64: the nominal risk `R` (no elements), or the
/// augmented risk averaged over a fixed list of group elements (every element for the exact
/// `R_aug`), each mini-batch transformed by each element as in the exact mode of the training
/// protocol. Provides values, gradients and Hessian-vector products.
#[derive(Debug)]
pub struct Risk<'a> {
    net: &'a Network<f64>,
    data: &'a TrainData<f64>,
    minibatch: usize,
    elements: Vec<Perm>,
    /// Per work item, its units `(element index, row range)`: one unit, or (augmented risk,
    /// whole mini-batches) several elements' rows stacked into one pass of up to `CHUNK_ROWS`
    /// rows, so that small data sets still give the GEMMs many rows.
    items: Vec<Vec<(usize, Range<usize>)>>,
    blocks: Vec<Block>,
    hvp_step: f64,
    weight_decay: f64,
    /// Per-sample draws ([`Risk::new_per_sample`]): per column, the element index of every
    /// data row; the units' first index is then the column.
    per_row: Option<Vec<Vec<usize>>>,
    gradients: usize,
    /// Scratch parameters of the HVP (point, second gradient), allocated on first use.
    scratch: Option<(Params<f64>, Params<f64>)>,
    hvp_method: HvpMethod,
    /// The parameters at which `Block::points` were prepared.
    point_at: Option<Vec<f64>>,
    keep_point: bool,
    hvps: usize,
}

impl<'a> Risk<'a> {
    /// The risk of `net` on `data` with normalisation statistics per `minibatch` rows;
    /// `elements = None` for the nominal risk, `Some(list)` for the average over the listed
    /// group elements (acting on inputs, and on targets when `data.target_rep` is set).
    pub fn new(
        net: &'a Network<f64>,
        data: &'a TrainData<f64>,
        minibatch: usize,
        elements: Option<Vec<Perm>>,
    ) -> Result<Self, StabilityError> {
        if minibatch == 0 {
            return Err(StabilityError::Invalid(
                "the mini-batch size must be at least 1".into(),
            ));
        }
        if data.is_empty() {
            return Err(StabilityError::Invalid("the data set is empty".into()));
        }
        if let Some(m) = data.mismatch(net) {
            return Err(StabilityError::Invalid(m));
        }
        let augmented = elements.is_some();
        let elements = elements.unwrap_or_else(|| vec![Perm::identity(net.group().degree())]);
        if elements.is_empty() {
            return Err(StabilityError::Invalid(
                "the augmented risk needs at least one group element".into(),
            ));
        }
        let n = data.len();
        let rows =
            ((CHUNK_ROWS / minibatch).max(1) * minibatch).min(n.div_ceil(minibatch) * minibatch);
        let mut units = Vec::new();
        for e in 0..elements.len() {
            for start in (0..n).step_by(rows) {
                units.push((e, start..(start + rows).min(n)));
            }
        }
        // Stacking keeps every mini-batch (the normalisation statistics) intact only when
        // each unit is made of whole mini-batches.
        let stack = augmented && n.is_multiple_of(minibatch);
        let mut items: Vec<Vec<(usize, Range<usize>)>> = Vec::new();
        let mut used = 0;
        for u in units {
            let len = u.1.len();
            match items.last_mut() {
                Some(last) if stack && used + len <= CHUNK_ROWS => {
                    last.push(u);
                    used += len;
                }
                _ => {
                    items.push(vec![u]);
                    used = len;
                }
            }
        }
        let item_rows = items
            .iter()
            .map(|it| it.iter().map(|u| u.1.len()).sum::<usize>())
            .max()
            .unwrap_or(0);
        let nb = items.len().min(MAX_BLOCKS);
        let per = items.len().div_ceil(nb);
        let blocks = (0..nb)
            .map(|b| Block {
                items: b * per..((b + 1) * per).min(items.len()),
                ws: net.workspace(item_rows),
                grads: net.zeros(),
                xbuf: Array2::zeros((if augmented { item_rows } else { 0 }, data.x.ncols())),
                ybuf: Array2::zeros((if augmented { item_rows } else { 0 }, data.targets.ncols())),
                points: Vec::new(),
            })
            .filter(|b| !b.items.is_empty())
            .collect();
        Ok(Risk {
            net,
            data,
            minibatch,
            elements: if augmented { elements } else { Vec::new() },
            items,
            blocks,
            hvp_step: 1e-6,
            weight_decay: 0.0,
            per_row: None,
            gradients: 0,
            scratch: None,
            hvp_method: if net.check_second_order().is_ok() {
                HvpMethod::Exact
            } else {
                HvpMethod::CentralDifferences
            },
            point_at: None,
            keep_point: true,
            hvps: 0,
        })
    }

    /// The risk under per-sample draws: the mean over the columns of `assignments` of the
    /// risk of the data with row `i` transformed by `elements[assignments[k][i]]` (column
    /// `k`), normalisation statistics per `minibatch` rows as in [`Risk::new`]. With batch
    /// norm the rows of a mini-batch then carry different transformations, so its statistics
    /// mix them; with independent uniform columns it is an unbiased sample of the expected
    /// per-sample-augmented risk (and of its gradient and Hessian).
    pub fn new_per_sample(
        net: &'a Network<f64>,
        data: &'a TrainData<f64>,
        minibatch: usize,
        elements: Vec<Perm>,
        assignments: Vec<Vec<usize>>,
    ) -> Result<Self, StabilityError> {
        if assignments.is_empty() {
            return Err(StabilityError::Invalid(
                "per-sample draws need at least one assignment".into(),
            ));
        }
        for (k, col) in assignments.iter().enumerate() {
            if col.len() != data.len() || col.iter().any(|&e| e >= elements.len()) {
                return Err(StabilityError::Invalid(format!(
                    "assignment {k}: needs one element index below {} per data row ({} rows), got {} entries",
                    elements.len(),
                    data.len(),
                    col.len()
                )));
            }
        }
        let columns = vec![Perm::identity(net.group().degree()); assignments.len()];
        let mut r = Risk::new(net, data, minibatch, Some(columns))?;
        r.elements = elements;
        r.per_row = Some(assignments);
        Ok(r)
    }

    /// Number of group elements averaged over (1 for the nominal risk; the number of
    /// assignments under per-sample draws).
    pub fn num_elements(&self) -> usize {
        match &self.per_row {
            Some(cols) => cols.len(),
            None => self.elements.len().max(1),
        }
    }

    /// The network.
    pub fn network(&self) -> &'a Network<f64> {
        self.net
    }

    /// Sets the relative step of the central differences (default 1e-6; see the module docs).
    pub fn set_hvp_step(&mut self, step: f64) {
        self.hvp_step = step;
    }

    /// Adds the ridge `mu / 2 ||A||^2` to the risk (default 0). The norm is invariant under the
    /// group action (orthogonal representations), so E stays invariant and Proposition 3 still
    /// applies; both Hessian blocks shift by exactly `mu`. It makes the minimum finite where the
    /// data are separable (cross-entropy on few samples), where otherwise the infimum is only
    /// approached as `||A|| -> infinity` and every "stationary point" is a saturated one.
    pub fn set_weight_decay(&mut self, mu: f64) {
        self.weight_decay = mu;
    }

    /// The ridge coefficient `mu` (see [`Risk::set_weight_decay`]).
    pub fn weight_decay(&self) -> f64 {
        self.weight_decay
    }

    /// Gradients computed so far (each central-difference HVP costs two; exact HVPs are
    /// counted by [`Risk::hvp_count`]).
    pub fn gradient_count(&self) -> usize {
        self.gradients
    }

    /// Hessian-vector products computed so far (either method).
    pub fn hvp_count(&self) -> usize {
        self.hvps
    }

    /// Chooses the HVP method (default [`HvpMethod::Exact`] when every layer has a tangent
    /// pass). Errors if the exact method is asked of a network without one.
    pub fn set_hvp_method(&mut self, method: HvpMethod) -> Result<(), StabilityError> {
        if method == HvpMethod::Exact {
            self.net
                .check_second_order()
                .map_err(|e| StabilityError::Invalid(e.to_string()))?;
        }
        self.hvp_method = method;
        Ok(())
    }

    /// Whether exact HVPs keep the point's state between products (default true, within
    /// [`HVP_CACHE_BYTES`]); false recomputes the point's forward and backward pass for every
    /// product (to measure what the kept point saves).
    pub fn set_keep_point(&mut self, keep: bool) {
        self.keep_point = keep;
        if !keep {
            self.point_at = None;
            for b in &mut self.blocks {
                b.points.clear();
            }
        }
    }

    /// The HVP method in use.
    pub fn hvp_method(&self) -> HvpMethod {
        self.hvp_method
    }

    /// The risk at `a` (mean loss over samples and elements, plus the ridge if any).
    pub fn loss(&mut self, a: &Params<f64>) -> Result<f64, StabilityError> {
        let l = self.run(a, false)?;
        Ok(l + self.ridge(a))
    }

    fn ridge(&self, a: &Params<f64>) -> f64 {
        if self.weight_decay == 0.0 {
            0.0
        } else {
            0.5 * self.weight_decay * a.dot(a)
        }
    }

    /// The risk at `a`, and its gradient written into `grad`.
    pub fn loss_and_gradient(
        &mut self,
        a: &Params<f64>,
        grad: &mut Params<f64>,
    ) -> Result<f64, StabilityError> {
        let l = self.run(a, true)?;
        self.reduce_blocks(a, grad);
        self.gradients += 1;
        Ok(l + self.ridge(a))
    }

    /// `H v` at `a` into `out`, by the chosen [`HvpMethod`]: exact (the default), or central
    /// differences of the gradient ([`crate::hessian::hvp`], step [`Risk::set_hvp_step`]).
    pub fn hvp(
        &mut self,
        a: &Params<f64>,
        v: &Params<f64>,
        out: &mut Params<f64>,
    ) -> Result<(), StabilityError> {
        self.hvps += 1;
        match self.hvp_method {
            HvpMethod::Exact => self.exact_hvp(a, v, out),
            HvpMethod::CentralDifferences => self.central_hvp(a, v, out),
        }
    }

    /// The error level of this risk's HVPs at `a`, per unit vector, for a Hessian of scale
    /// `scale` (its largest |eigenvalue|): for central differences the documented 1e-7
    /// relative; for exact products, round-off, measured as 10 times the largest asymmetry
    /// `|v^T H w - w^T H v|` over `pairs` pairs of random unit vectors, and at least
    /// `64 u scale` (`u` the unit round-off). Tested against dense Hessians.
    pub fn hvp_error(
        &mut self,
        a: &Params<f64>,
        scale: f64,
        pairs: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<f64, StabilityError> {
        if self.hvp_method == HvpMethod::CentralDifferences {
            return Ok(1e-7 * scale);
        }
        let mut worst = 0.0f64;
        let (mut hv, mut hw) = (a.zeros_like(), a.zeros_like());
        for _ in 0..pairs {
            let mut v =
                Params::from_vec(a.layout().clone(), super::random::gaussian(a.len(), rng))?;
            let mut w =
                Params::from_vec(a.layout().clone(), super::random::gaussian(a.len(), rng))?;
            v.scale(1.0 / v.norm());
            w.scale(1.0 / w.norm());
            self.hvp(a, &v, &mut hv)?;
            self.hvp(a, &w, &mut hw)?;
            worst = worst.max((w.dot(&hv) - v.dot(&hw)).abs());
        }
        Ok((10.0 * worst).max(64.0 * f64::EPSILON * 0.5 * scale))
    }

    /// Bytes the kept point of the exact HVP takes (every work item's buffers).
    fn point_bytes(&self) -> usize {
        let widths: usize = self.net.widths().iter().sum();
        let maxw = self.net.widths().iter().copied().max().unwrap_or(0);
        let cols = self.data.x.ncols() + self.data.targets.ncols();
        let rows: usize = self
            .items
            .iter()
            .map(|it| it.iter().map(|u| u.1.len()).sum::<usize>())
            .sum();
        // activations, tangents, output gradients, normalisation states (two each), the
        // two gradient buffers, the data
        rows.saturating_mul(6 * widths + 2 * maxw + cols)
            .saturating_mul(8)
    }

    fn exact_hvp(
        &mut self,
        a: &Params<f64>,
        v: &Params<f64>,
        out: &mut Params<f64>,
    ) -> Result<(), StabilityError> {
        self.check_layout(a)?;
        let cache = self.keep_point && self.point_bytes() <= HVP_CACHE_BYTES;
        let fresh = cache && self.point_at.as_deref() != Some(a.as_slice());
        let (net, data, mb) = (self.net, self.data, self.minibatch);
        let (items, elements, per_row) = (&self.items, &self.elements, &self.per_row);
        let res: Result<(), eqaug_nn::NnError> = self.blocks.par_iter_mut().try_for_each(|b| {
            b.grads.fill_zero();
            if fresh {
                b.points.clear();
            }
            for (k, units) in items[b.items.clone()].iter().enumerate() {
                if cache && !fresh {
                    let pt = &mut b.points[k];
                    net.accumulate_hvp_at_point(
                        a,
                        v,
                        pt.x.view(),
                        pt.t.view(),
                        mb,
                        &mut b.grads,
                        &mut pt.ws,
                    )?;
                    continue;
                }
                let r0 = item_data(data, elements, per_row, units, &mut b.xbuf, &mut b.ybuf);
                let (x, t) = if elements.is_empty() {
                    let rows = &units[0].1;
                    (
                        data.x.slice(s![rows.start..rows.end, ..]),
                        data.targets.slice(s![rows.start..rows.end, ..]),
                    )
                } else {
                    (b.xbuf.slice(s![..r0, ..]), b.ybuf.slice(s![..r0, ..]))
                };
                if cache {
                    let mut pt = ItemPoint {
                        ws: net.workspace(x.nrows()),
                        x: x.to_owned(),
                        t: t.to_owned(),
                    };
                    net.hvp_point(a, pt.x.view(), pt.t.view(), mb, None, &mut pt.ws)?;
                    net.accumulate_hvp_at_point(
                        a,
                        v,
                        pt.x.view(),
                        pt.t.view(),
                        mb,
                        &mut b.grads,
                        &mut pt.ws,
                    )?;
                    b.points.push(pt);
                } else {
                    net.accumulate_hvp(a, v, x, t, mb, &mut b.grads, &mut b.ws)?;
                }
            }
            Ok(())
        });
        res.map_err(|e| StabilityError::Invalid(e.to_string()))?;
        if fresh {
            self.point_at = Some(a.as_slice().to_vec());
        }
        self.reduce_blocks(v, out);
        Ok(())
    }

    /// One fused pass over the blocks' sums (gradients or HVPs), in a fixed order:
    /// `out = c sum_b block_b + mu x`, `c = 1 / (samples x elements)` and `mu` the ridge (whose
    /// gradient at `a` is `mu a` and whose Hessian times `v` is `mu v`).
    fn reduce_blocks(&self, x: &Params<f64>, out: &mut Params<f64>) {
        let c = 1.0 / (self.data.len() * self.num_elements()) as f64;
        let mu = self.weight_decay;
        let o = out.as_mut_slice();
        let (first, rest) = self.blocks.split_first().expect("at least one block");
        o.copy_from_slice(first.grads.as_slice());
        for b in rest {
            for (s, y) in o.iter_mut().zip(b.grads.as_slice()) {
                *s += y;
            }
        }
        for (s, y) in o.iter_mut().zip(x.as_slice()) {
            *s = c * *s + mu * y;
        }
    }

    fn check_layout(&self, a: &Params<f64>) -> Result<(), StabilityError> {
        if !Arc::ptr_eq(a.layout(), self.net.layout()) && !a.layout().compatible(self.net.layout())
        {
            return Err(StabilityError::Invalid(
                "parameters do not belong to the network".into(),
            ));
        }
        Ok(())
    }

    fn central_hvp(
        &mut self,
        a: &Params<f64>,
        v: &Params<f64>,
        out: &mut Params<f64>,
    ) -> Result<(), StabilityError> {
        let (mut p, mut gm) = self
            .scratch
            .take()
            .unwrap_or_else(|| (a.zeros_like(), a.zeros_like()));
        let step = self.hvp_step;
        let r = crate::hessian::hvp(a, v, step, out, &mut p, &mut gm, |x, g| {
            self.loss_and_gradient(x, g)
        });
        self.scratch = Some((p, gm));
        r
    }

    fn run(&mut self, a: &Params<f64>, with_grad: bool) -> Result<f64, StabilityError> {
        self.check_layout(a)?;
        let (net, data, mb) = (self.net, self.data, self.minibatch);
        let (items, elements, per_row) = (&self.items, &self.elements, &self.per_row);
        let sums: Vec<f64> = self
            .blocks
            .par_iter_mut()
            .map(|b| {
                if with_grad {
                    b.grads.fill_zero();
                }
                let mut total = 0.0;
                for units in &items[b.items.clone()] {
                    let l = if elements.is_empty() {
                        let rows = &units[0].1;
                        let x = data.x.slice(s![rows.start..rows.end, ..]);
                        let t = data.targets.slice(s![rows.start..rows.end, ..]);
                        if with_grad {
                            net.accumulate_loss_and_grad(a, x, t, mb, &mut b.grads, &mut b.ws)
                        } else {
                            net.loss(a, x, t, mb, &mut b.ws)
                        }
                    } else {
                        let r0 =
                            item_data(data, elements, per_row, units, &mut b.xbuf, &mut b.ybuf);
                        let xb = b.xbuf.slice(s![..r0, ..]);
                        let tb = b.ybuf.slice(s![..r0, ..]);
                        if with_grad {
                            net.accumulate_loss_and_grad(a, xb, tb, mb, &mut b.grads, &mut b.ws)
                        } else {
                            net.loss(a, xb, tb, mb, &mut b.ws)
                        }
                    };
                    total +=
                        l.expect("data, parameters and mini-batch checked against the network");
                }
                total
            })
            .collect();
        let loss = sums.iter().sum::<f64>() / (data.len() * self.num_elements()) as f64;
        if !loss.is_finite() {
            return Err(StabilityError::Invalid(format!(
                "the risk is not finite ({loss})"
            )));
        }
        Ok(loss)
    }
}

/// Writes an augmented work item's rows (each unit's rows transformed by its element, or per
/// row under per-sample draws) into the buffers; returns the number of rows. Nothing for the
/// nominal risk (no elements: the data are used in place).
fn item_data(
    data: &TrainData<f64>,
    elements: &[Perm],
    per_row: &Option<Vec<Vec<usize>>>,
    units: &[(usize, Range<usize>)],
    xbuf: &mut Array2<f64>,
    ybuf: &mut Array2<f64>,
) -> usize {
    if elements.is_empty() {
        return units.iter().map(|u| u.1.len()).sum();
    }
    let mut r0 = 0;
    for (e, rows) in units {
        match per_row {
            None => transform(data, &elements[*e], rows, r0, xbuf, ybuf),
            Some(cols) => {
                for (k, i) in rows.clone().enumerate() {
                    let g = &elements[cols[*e][i]];
                    transform(data, g, &(i..i + 1), r0 + k, xbuf, ybuf);
                }
            }
        }
        r0 += rows.len();
    }
    r0
}

/// A [`Risk`] with the analysis' HVP method, step and ridge (`opts.hvp`, `opts.hvp_step`,
/// `opts.weight_decay`)
/// and normalisation statistics per `opts.minibatch` rows.
pub(super) fn configured_risk<'a>(
    net: &'a Network<f64>,
    data: &'a TrainData<f64>,
    opts: &StabilityOptions,
    elements: Option<Vec<Perm>>,
) -> Result<Risk<'a>, StabilityError> {
    configure(Risk::new(net, data, opts.minibatch, elements)?, opts)
}

/// Applies the analysis' HVP method and step and its ridge to a risk.
pub(super) fn configure<'a>(
    mut r: Risk<'a>,
    opts: &StabilityOptions,
) -> Result<Risk<'a>, StabilityError> {
    r.set_hvp_step(opts.hvp_step);
    r.set_hvp_method(opts.hvp)?;
    r.set_weight_decay(opts.weight_decay);
    Ok(r)
}

/// Writes the rows `rows` of the data, transformed by `g`, into the buffers from row `r0` on:
/// inputs moved when they live on the base points, targets moved when they do and copied
/// otherwise.
pub(super) fn transform(
    data: &TrainData<f64>,
    g: &Perm,
    rows: &Range<usize>,
    r0: usize,
    xbuf: &mut Array2<f64>,
    ybuf: &mut Array2<f64>,
) {
    let move_x = data.input_rep.points == Points::Base;
    let move_t = matches!(data.target_rep, Some(r) if r.points == Points::Base);
    for (k, i) in rows.clone().enumerate() {
        let r = r0 + k;
        let xs = data.x.row(i);
        let xs = xs.as_slice().expect("standard layout");
        let xo = xbuf.row_mut(r).into_slice().expect("standard layout");
        if move_x {
            act_on_sample(g, xs, xo);
        } else {
            xo.copy_from_slice(xs);
        }
        let ts = data.targets.row(i);
        let ts = ts.as_slice().expect("standard layout");
        let to = ybuf.row_mut(r).into_slice().expect("standard layout");
        if move_t {
            act_on_sample(g, ts, to);
        } else {
            to.copy_from_slice(ts);
        }
    }
}

/// The group elements of the augmented risk: all of them when the group has at most
/// `enumeration_limit` elements (exact), otherwise `sample` uniform draws from `rng` (an
/// estimate). Returns the elements and whether they are the whole group.
pub fn augmentation_elements(
    group: &Group,
    enumeration_limit: usize,
    sample: usize,
    rng: &mut ChaCha8Rng,
) -> Result<(Vec<Perm>, bool), StabilityError> {
    if group.order() <= enumeration_limit as u128 {
        Ok((group.elements(enumeration_limit)?, true))
    } else if sample == 0 {
        Err(StabilityError::Invalid(format!(
            "the group {} has {} elements (more than the enumeration limit {enumeration_limit}) \
             and the sample size is 0",
            group.name(),
            group.order()
        )))
    } else {
        Ok(((0..sample).map(|_| group.sample(rng)).collect(), false))
    }
}
