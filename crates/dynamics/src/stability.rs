//! Stability of equivariant stationary points for augmented training (SPEC section 10, the
//! paper's Proposition 3 and its open question).
//!
//! The pipeline, all in f64 on the full-batch, deterministic risks:
//!
//! 1. [`find_stationary_point`]: L-BFGS restricted to E (every iterate, difference and direction
//!    projected onto E) with Armijo backtracking on `R_eqv`, until `||Pi_E grad R||` falls
//!    below a relative tolerance of its starting value or a budget runs out. The residual is
//!    recorded, and so is the distance to the nearest LeakyReLU kink
//!    ([`min_abs_preactivation`]), where no Hessian exists.
//! 2. [`Risk::hvp`]: Hessian-vector products by **central differences of the exact gradient**,
//!    `H v ~ (grad R(A + h v) - grad R(A - h v)) / (2 h)` with `h = hvp_step * max(1, ||A||) /
//!    ||v||`. We chose this over Pearlmutter's R-operator because it reuses the hand-written
//!    backward pass of eqaug-nn unchanged (every layer kind, every loss, batch statistics
//!    included) at exactly two gradients per product; its error is
//!    `O(h^2 |D^3 R|) + O(u |grad R| / h)`. With the default `hvp_step = 1e-6` the tests
//!    measure relative errors of 2e-10 to 5e-9 against a dense Hessian (Richardson
//!    extrapolated central differences, column by column, checked for symmetry and against
//!    second differences of the loss) for every layer kind and loss; 1e-5 gave up to 4e-7 on
//!    a layer norm over 3 channels, where the third derivatives are large. It is wrong
//!    within `h ||v||` of a LeakyReLU kink, which is why that distance is reported.
//! 3. [`analyse`]: Lanczos with full reorthogonalisation ([`crate::lanczos`]) of `Hess R_eqv`
//!    on E and of `H_perp`, the Hessian of the exact augmented risk (mean over every group
//!    element, [`Risk`] with all elements; for groups too large to enumerate, a fixed sample of
//!    M elements, labelled an estimate, with a second independent sample to measure the
//!    sampling error) on E-perp; several random starts give both the extremes (with Ritz
//!    residuals) and the SLQ spectral density.
//! 4. [`measure_escape`]: exact-average augmented gradient descent from `A* + delta v`; the
//!    measured per-step factor of `||A_Eperp||` against the linearised prediction
//!    `1 - eta lambda` (SPEC section 10).

use crate::hessian::{project_onto, Subspace};
use crate::lanczos::{self, LanczosRun, SpectralDensity};
use crate::{TrainData, TrainError};
use eqaug_groups::{act_on_sample, Group, Perm, Points};
use eqaug_nn::{Network, Params, Workspace};
use ndarray::{s, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::Arc;

/// What can stop a stability analysis.
#[derive(Debug, thiserror::Error)]
pub enum StabilityError {
    /// A training-side error (set-up, network).
    #[error(transparent)]
    Train(#[from] TrainError),
    /// A network error.
    #[error(transparent)]
    Nn(#[from] eqaug_nn::NnError),
    /// A group error (e.g. enumerating a group that is too large).
    #[error(transparent)]
    Group(#[from] eqaug_groups::GroupError),
    /// The request would not fit in memory.
    #[error(
        "{what} needs {needed_mib} MiB but only {available_mib} MiB are available \
         (MemAvailable in /proc/meminfo); lower `{key}` or use a smaller network",
        needed_mib = needed / (1 << 20),
        available_mib = available / (1 << 20)
    )]
    OutOfMemory {
        /// The config key that sets the size.
        key: String,
        /// What needs the memory.
        what: String,
        /// Bytes needed.
        needed: u128,
        /// Bytes available.
        available: u128,
    },
    /// A value out of range or an inconsistent request.
    #[error("stability analysis: {0}")]
    Invalid(String),
}

/// Rows per chunk pushed through the network at once (rounded to whole mini-batches).
const CHUNK_ROWS: usize = 512;
/// Work is split into at most this many blocks, reduced in a fixed order (deterministic
/// whatever the number of threads).
const MAX_BLOCKS: usize = 4;

#[derive(Debug)]
struct Block {
    items: Range<usize>,
    ws: Workspace<f64>,
    grads: Params<f64>,
    xbuf: Array2<f64>,
    ybuf: Array2<f64>,
}

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
        let stack = augmented && n % minibatch == 0;
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

    /// Gradients computed so far (each HVP costs two).
    pub fn gradient_count(&self) -> usize {
        self.gradients
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
        // One fused pass: grad = c sum_b grads_b + mu a (blocks summed in a fixed order).
        let c = 1.0 / (self.data.len() * self.num_elements()) as f64;
        let mu = self.weight_decay;
        let out = grad.as_mut_slice();
        let (first, rest) = self.blocks.split_first().expect("at least one block");
        out.copy_from_slice(first.grads.as_slice());
        for b in rest {
            for (o, x) in out.iter_mut().zip(b.grads.as_slice()) {
                *o += x;
            }
        }
        for (o, x) in out.iter_mut().zip(a.as_slice()) {
            *o = c * *o + mu * x;
        }
        self.gradients += 1;
        Ok(l + self.ridge(a))
    }

    /// `H v` at `a` by central differences of the gradient (module docs), into `out`.
    pub fn hvp(
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
        let r = central_difference_hvp(a, v, step, out, &mut p, &mut gm, |x, g| {
            self.loss_and_gradient(x, g)
        });
        self.scratch = Some((p, gm));
        r
    }

    fn run(&mut self, a: &Params<f64>, with_grad: bool) -> Result<f64, StabilityError> {
        if !Arc::ptr_eq(a.layout(), self.net.layout()) && !a.layout().compatible(self.net.layout())
        {
            return Err(StabilityError::Invalid(
                "parameters do not belong to the network".into(),
            ));
        }
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
                            net.loss_and_grad(a, x, t, mb, &mut b.grads, &mut b.ws)
                        } else {
                            net.loss(a, x, t, mb, &mut b.ws)
                        }
                    } else {
                        let mut r0 = 0;
                        for (e, rows) in units {
                            match per_row {
                                None => transform(
                                    data,
                                    &elements[*e],
                                    rows,
                                    r0,
                                    &mut b.xbuf,
                                    &mut b.ybuf,
                                ),
                                Some(cols) => {
                                    for (k, i) in rows.clone().enumerate() {
                                        let g = &elements[cols[*e][i]];
                                        transform(
                                            data,
                                            g,
                                            &(i..i + 1),
                                            r0 + k,
                                            &mut b.xbuf,
                                            &mut b.ybuf,
                                        );
                                    }
                                }
                            }
                            r0 += rows.len();
                        }
                        let xb = b.xbuf.slice(s![..r0, ..]);
                        let tb = b.ybuf.slice(s![..r0, ..]);
                        if with_grad {
                            net.loss_and_grad(a, xb, tb, mb, &mut b.grads, &mut b.ws)
                        } else {
                            net.loss(a, xb, tb, mb, &mut b.ws)
                        }
                    };
                    total += l;
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

/// `H v ~ (grad(a + h v) - grad(a - h v)) / (2 h)`, `h = step * max(1, ||a||) / ||v||`, into
/// `out` (`p` and `gm` are scratch of `a`'s layout). The one finite-difference HVP of
/// the crate: [`Risk::hvp`] and the regularised risk's use it. `v = 0` gives 0.
pub(crate) fn central_difference_hvp(
    a: &Params<f64>,
    v: &Params<f64>,
    step: f64,
    out: &mut Params<f64>,
    p: &mut Params<f64>,
    gm: &mut Params<f64>,
    mut gradient: impl FnMut(&Params<f64>, &mut Params<f64>) -> Result<f64, StabilityError>,
) -> Result<(), StabilityError> {
    let nv = v.norm();
    if nv == 0.0 {
        out.fill_zero();
        return Ok(());
    }
    let h = step * a.norm().max(1.0) / nv;
    // Fused passes (this is all the HVP adds to its two gradients; on small data sets the
    // vector work is a visible part of a gradient's cost).
    let shifted = |p: &mut Params<f64>, h: f64| {
        for ((p, a), v) in p
            .as_mut_slice()
            .iter_mut()
            .zip(a.as_slice())
            .zip(v.as_slice())
        {
            *p = a + h * v;
        }
    };
    shifted(p, h);
    gradient(p, out)?;
    shifted(p, -h);
    gradient(p, gm)?;
    let c = 0.5 / h;
    for (o, g) in out.as_mut_slice().iter_mut().zip(gm.as_slice()) {
        *o = (*o - g) * c;
    }
    Ok(())
}

/// Writes the rows `rows` of the data, transformed by `g`, into the buffers from row `r0` on:
/// inputs moved when they live on the base points, targets moved when they do and copied
/// otherwise.
fn transform(
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

/// Options of [`find_stationary_point`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StationaryOptions {
    /// Stop when `||Pi_E grad R|| <= rtol * ||Pi_E grad R(A0)||`.
    pub rtol: f64,
    /// Budget of iterations.
    pub max_iterations: usize,
    /// L-BFGS memory (pairs kept).
    pub memory: usize,
    /// Longest step, relative to `max(1, ||A0||)`.
    pub max_step: f64,
    /// Budget of trust-region Newton iterations after the L-BFGS stage (0: none).
    #[serde(default)]
    pub newton_iterations: usize,
    /// Conjugate-gradient steps (Hessian-vector products) per Newton iteration at most.
    #[serde(default = "default_cg_steps")]
    pub cg_steps: usize,
    /// When `dim E` is at most this, the Newton stage builds the whole Hessian on E (`dim E`
    /// HVPs in an orthonormal orbit basis) and solves the trust-region subproblem exactly
    /// (eigen-decomposition); above it, Steihaug-Toint CG.
    #[serde(default = "default_dense_limit")]
    pub dense_limit: usize,
}

fn default_dense_limit() -> usize {
    500
}

fn default_cg_steps() -> usize {
    100
}

impl Default for StationaryOptions {
    fn default() -> Self {
        StationaryOptions {
            rtol: 1e-6,
            max_iterations: 500,
            memory: 10,
            max_step: 0.1,
            newton_iterations: 0,
            cg_steps: default_cg_steps(),
            dense_limit: default_dense_limit(),
        }
    }
}

/// The stationary point reached, with how stationary it is.
#[derive(Clone, Debug)]
pub struct StationaryPoint {
    /// `A*` (in E).
    pub params: Params<f64>,
    /// L-BFGS iterations taken.
    pub iterations: usize,
    /// Trust-region Newton iterations taken after them.
    pub newton_iterations: usize,
    /// Hessian-vector products of the Newton stage (conjugate-gradient steps).
    pub newton_hvps: usize,
    /// Gradient evaluations taken (one HVP = two).
    pub gradient_evaluations: usize,
    /// `R` at the start and at `A*`.
    pub loss_start: f64,
    /// `R(A*)`.
    pub loss: f64,
    /// `||Pi_E grad R||` at the start.
    pub residual_start: f64,
    /// `||Pi_E grad R(A*)||`.
    pub residual: f64,
    /// Whether the relative tolerance was met.
    pub converged: bool,
    /// Why it stopped.
    pub stop_reason: String,
}

impl StationaryPoint {
    /// `residual / residual_start` (0 when the start was already stationary).
    pub fn relative_residual(&self) -> f64 {
        if self.residual_start > 0.0 {
            self.residual / self.residual_start
        } else {
            0.0
        }
    }
}

/// Minimises `R_eqv` (the risk restricted to E) from `a0` (projected onto E first) by L-BFGS
/// with Armijo backtracking, every vector projected onto E (module docs, step 1). The risk
/// should be the nominal one (cheapest; on E its gradient projected onto E equals the
/// augmented gradient, Proposition 1).
pub fn find_stationary_point(
    risk: &mut Risk<'_>,
    a0: &Params<f64>,
    opts: &StationaryOptions,
) -> Result<StationaryPoint, StabilityError> {
    let mut a = a0.clone();
    project_onto(&mut a, Subspace::Equivariant);
    let a0_norm = a.norm().max(1.0);
    let mut g = a.zeros_like();
    let start_count = risk.gradient_count();
    let mut f = risk.loss_and_gradient(&a, &mut g)?;
    project_onto(&mut g, Subspace::Equivariant);
    let (loss_start, residual_start) = (f, g.norm());
    let target = opts.rtol * residual_start;
    let mut s_hist: Vec<Params<f64>> = Vec::new();
    let mut y_hist: Vec<Params<f64>> = Vec::new();
    let mut it = 0;
    let mut reason = String::from("iteration budget exhausted");
    let mut converged = g.norm() <= target;
    if converged {
        reason = "already stationary at the start".into();
    }
    let mut g_new = a.zeros_like();
    while !converged && it < opts.max_iterations {
        it += 1;
        // Two-loop recursion.
        let mut d = g.clone();
        let mut alphas = Vec::with_capacity(s_hist.len());
        for (s, y) in s_hist.iter().zip(&y_hist).rev() {
            let rho = 1.0 / y.dot(s);
            let al = rho * s.dot(&d);
            d.axpy(-al, y);
            alphas.push((al, rho));
        }
        let gamma = match (s_hist.last(), y_hist.last()) {
            (Some(s), Some(y)) => s.dot(y) / y.dot(y),
            _ => 1.0 / g.norm().max(1e-300),
        };
        d.scale(gamma);
        for ((s, y), (al, rho)) in s_hist.iter().zip(&y_hist).zip(alphas.into_iter().rev()) {
            let be = rho * y.dot(&d);
            d.axpy(al - be, s);
        }
        d.scale(-1.0);
        project_onto(&mut d, Subspace::Equivariant);
        let mut slope = g.dot(&d);
        if slope >= 0.0 {
            // Not a descent direction: restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            d = g.clone();
            d.scale(-1.0 / g.norm().max(1e-300));
            slope = g.dot(&d);
        }
        // Cap the step length (relative to the start, not to the current point, so that scale
        // invariant directions before a normalisation cannot grow geometrically): a long step
        // can land on a saturated plateau (tanh, sigmoid) whose gradient underflows, a
        // spurious "stationary point".
        let max_step = opts.max_step * a0_norm;
        let mut t = (max_step / d.norm().max(f64::MIN_POSITIVE)).min(1.0);
        let mut accepted = None;
        for _ in 0..50 {
            let mut trial = a.clone();
            trial.axpy(t, &d);
            match risk.loss_and_gradient(&trial, &mut g_new) {
                Ok(ft) => {
                    project_onto(&mut g_new, Subspace::Equivariant);
                    let armijo = ft <= f + 1e-4 * t * slope;
                    // At the round-off floor of f, accept a step that lowers the gradient.
                    let flat =
                        (ft - f).abs() <= 1e-13 * f.abs().max(1e-300) && g_new.norm() < g.norm();
                    if armijo || flat {
                        accepted = Some((trial, ft));
                        break;
                    }
                }
                Err(StabilityError::Invalid(_)) => {} // non-finite: shrink
                Err(e) => return Err(e),
            }
            t *= 0.5;
        }
        let Some((trial, ft)) = accepted else {
            reason = "line search failed (round-off floor reached)".into();
            break;
        };
        let mut s = trial.clone();
        s.axpy(-1.0, &a);
        let mut y = g_new.clone();
        y.axpy(-1.0, &g);
        if s.dot(&y) > 1e-12 * s.norm() * y.norm() {
            s_hist.push(s);
            y_hist.push(y);
            if s_hist.len() > opts.memory {
                s_hist.remove(0);
                y_hist.remove(0);
            }
        }
        a = trial;
        f = ft;
        g.copy_from(&g_new);
        if g.norm() <= target {
            converged = true;
            reason = format!("relative residual below {:e}", opts.rtol);
        }
    }
    let (mut newton_iterations, mut newton_hvps) = (0, 0);
    if !converged && opts.newton_iterations > 0 {
        let basis = e_basis(a.layout());
        let tr = if basis.len() <= opts.dense_limit {
            check_dense_memory(
                basis.len(),
                "stability.dense_limit",
                "the dense Hessian on E",
            )?;
            dense_newton(risk, &mut a, &mut f, &mut g, target, a0_norm, opts, &basis)?
        } else {
            trust_region_newton(risk, &mut a, &mut f, &mut g, target, a0_norm, opts)?
        };
        newton_iterations = tr.iterations;
        newton_hvps = tr.hvps;
        converged = tr.converged;
        reason = format!("after {it} L-BFGS iterations ({reason}): {}", tr.reason);
    }
    Ok(StationaryPoint {
        residual: g.norm(),
        params: a,
        iterations: it,
        newton_iterations,
        newton_hvps,
        gradient_evaluations: risk.gradient_count() - start_count,
        loss_start,
        loss: f,
        residual_start,
        converged,
        stop_reason: reason,
    })
}

/// What the trust-region Newton stage did.
struct TrustRegionOutcome {
    iterations: usize,
    hvps: usize,
    converged: bool,
    reason: String,
}

impl TrustRegionOutcome {
    /// Marks convergence once `||g|| <= target`.
    fn check_converged(&mut self, g: &Params<f64>, target: f64, rtol: f64, kind: &str) {
        if g.norm() <= target {
            self.converged = true;
            self.reason = format!(
                "relative residual below {rtol:e} after {} {kind}Newton iterations",
                self.iterations
            );
        }
    }

    /// Whether the region has shrunk to the round-off floor (and says so).
    fn collapsed(&mut self, radius: f64, a: &Params<f64>) -> bool {
        let c = !self.converged && radius <= 1e-15 * a.norm().max(1.0);
        if c {
            self.reason = "trust region collapsed (round-off floor reached)".into();
        }
        c
    }
}

/// The risk and projected gradient at a trial point; a non-finite risk is `(inf, false)` (a
/// rejected step), not an error.
fn evaluate_trial(
    risk: &mut Risk<'_>,
    trial: &Params<f64>,
    g_new: &mut Params<f64>,
) -> Result<(f64, bool), StabilityError> {
    match risk.loss_and_gradient(trial, g_new) {
        Ok(ft) => {
            project_onto(g_new, Subspace::Equivariant);
            Ok((ft, true))
        }
        Err(StabilityError::Invalid(_)) => Ok((f64::INFINITY, false)),
        Err(e) => Err(e),
    }
}

/// The Steihaug-Toint truncated conjugate-gradient solution of the trust-region model
/// `min g.p + p.B p / 2, ||p|| <= radius, p in E` (`B = Pi_E Hess R Pi_E`), with `B p`.
/// Stops at the boundary, at a direction of non-positive curvature (followed to the boundary:
/// this is how the Newton stage leaves saddle points within E), or when the CG residual falls
/// below `tol`.
fn steihaug_cg(
    risk: &mut Risk<'_>,
    a: &Params<f64>,
    g: &Params<f64>,
    radius: f64,
    tol: f64,
    max_steps: usize,
) -> Result<(Params<f64>, Params<f64>, bool, usize), StabilityError> {
    let mut z = a.zeros_like();
    let mut bz = a.zeros_like();
    let mut r = g.clone();
    let mut d = g.clone();
    d.scale(-1.0);
    let mut bd = a.zeros_like();
    // tau >= 0 with ||z + tau d|| = radius.
    let to_boundary = |z: &Params<f64>, d: &Params<f64>| {
        let (qa, qb, qc) = (d.dot(d), 2.0 * z.dot(d), z.dot(z) - radius * radius);
        (-qb + (qb * qb - 4.0 * qa * qc).max(0.0).sqrt()) / (2.0 * qa)
    };
    let mut rr = r.dot(&r);
    for step in 0..max_steps {
        risk.hvp(a, &d, &mut bd)?;
        project_onto(&mut bd, Subspace::Equivariant);
        let dbd = d.dot(&bd);
        if dbd <= 0.0 {
            let tau = to_boundary(&z, &d);
            z.axpy(tau, &d);
            bz.axpy(tau, &bd);
            return Ok((z, bz, true, step + 1));
        }
        let alpha = rr / dbd;
        let mut z_next = z.clone();
        z_next.axpy(alpha, &d);
        if z_next.norm() >= radius {
            let tau = to_boundary(&z, &d);
            z.axpy(tau, &d);
            bz.axpy(tau, &bd);
            return Ok((z, bz, true, step + 1));
        }
        z = z_next;
        bz.axpy(alpha, &bd);
        r.axpy(alpha, &bd);
        let rr_next = r.dot(&r);
        if rr_next.sqrt() <= tol {
            return Ok((z, bz, false, step + 1));
        }
        d.scale(rr_next / rr);
        d.axpy(-1.0, &r);
        rr = rr_next;
    }
    Ok((z, bz, false, max_steps))
}

/// Trust-region Newton with Steihaug-Toint CG on E (Nocedal and Wright, algorithms 4.1 and
/// 7.2), using the central-difference HVPs: quadratic convergence near a non-degenerate
/// minimum, where L-BFGS on these ill-conditioned risks (curvatures spanning 6 to 7 decades)
/// crawls, and an escape from saddle points within E along negative curvature. The CG forcing
/// term `min(0.1, sqrt(||g|| / ||g0||)) ||g||` makes the convergence superlinear. Updates
/// `a`, `f`, `g` in place.
fn trust_region_newton(
    risk: &mut Risk<'_>,
    a: &mut Params<f64>,
    f: &mut f64,
    g: &mut Params<f64>,
    target: f64,
    scale: f64,
    opts: &StationaryOptions,
) -> Result<TrustRegionOutcome, StabilityError> {
    let g0 = g.norm().max(f64::MIN_POSITIVE);
    let max_radius = scale;
    let mut radius = opts.max_step * scale;
    let mut g_new = a.zeros_like();
    let mut out = TrustRegionOutcome {
        iterations: 0,
        hvps: 0,
        converged: g.norm() <= target,
        reason: String::new(),
    };
    out.reason = format!(
        "Newton iteration budget ({}) exhausted",
        opts.newton_iterations
    );
    while !out.converged && out.iterations < opts.newton_iterations {
        out.iterations += 1;
        let gn = g.norm();
        let tol = (gn / g0).sqrt().min(0.1) * gn;
        let (p, bp, boundary, steps) = steihaug_cg(risk, a, g, radius, tol, opts.cg_steps)?;
        out.hvps += steps;
        let predicted = -(g.dot(&p) + 0.5 * p.dot(&bp));
        let mut trial = a.clone();
        trial.axpy(1.0, &p);
        let (ft, ok) = evaluate_trial(risk, &trial, &mut g_new)?;
        let rho = ratio(*f, ft, predicted, ok, g_new.norm() < gn);
        let pn = p.norm();
        if rho < 0.25 {
            radius = 0.25 * pn.min(radius);
        } else if rho > 0.75 && boundary {
            radius = (2.0 * radius).min(max_radius);
        }
        if rho > 1e-4 {
            a.copy_from(&trial);
            *f = ft;
            g.copy_from(&g_new);
            out.check_converged(g, target, opts.rtol, "");
        }
        if out.collapsed(radius, a) {
            break;
        }
    }
    Ok(out)
}

/// One vector of the orthonormal basis of E: the entries (flat indices) where it is non-zero,
/// all with the same value (`1 / sqrt(orbit size)`, or 1 for a free parameter).
type BasisVector = (Vec<usize>, f64);

/// An orthonormal basis of E: the normalised indicator of every orbit of every channel pair of
/// each group layer (orbits outside a support left out), and a unit vector per free parameter.
fn e_basis(layout: &Arc<eqaug_nn::Layout>) -> Vec<BasisVector> {
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
fn group_orbits(t: &eqaug_nn::TensorInfo) -> Option<Vec<Vec<usize>>> {
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
fn coordinates(basis: &[BasisVector], v: &[f64]) -> Vec<f64> {
    basis
        .iter()
        .map(|(idx, val)| idx.iter().map(|&i| v[i]).sum::<f64>() * val)
        .collect()
}

/// The exact trust-region step in eigen-coordinates: `p = -(Lambda + lambda I)^-1 g` with the
/// smallest `lambda >= max(0, -lambda_min)` such that `||p|| <= radius` (Moré and Sorensen; the
/// "hard case", `g` orthogonal to the lowest eigenvector, is completed along that vector to the
/// boundary). Returns the step and whether it lies on the boundary.
fn trust_region_step(values: &[f64], g: &[f64], radius: f64) -> (Vec<f64>, bool) {
    let step = |lambda: f64| -> Vec<f64> {
        values
            .iter()
            .zip(g)
            .map(|(&l, &gi)| -gi / (l + lambda))
            .collect()
    };
    let norm = |p: &[f64]| p.iter().map(|x| x * x).sum::<f64>().sqrt();
    let lmin = values.iter().copied().fold(f64::INFINITY, f64::min);
    let scale = values
        .iter()
        .map(|x| x.abs())
        .fold(0.0, f64::max)
        .max(1e-300);
    if lmin > 1e-12 * scale {
        let p = step(0.0);
        if norm(&p) <= radius {
            return (p, false);
        }
    }
    let lo0 = (-lmin).max(0.0);
    // ||p(lambda)|| decreases in lambda on (lo0, inf): bisection (in a geometric bracket).
    let mut lo = lo0 + 1e-14 * scale;
    let p_lo = step(lo);
    if norm(&p_lo) < radius {
        // Hard case: move along the lowest eigenvector to the boundary.
        let imin = values
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap_or(0);
        let mut p = p_lo;
        let rest = radius * radius - p.iter().map(|x| x * x).sum::<f64>();
        p[imin] += rest.max(0.0).sqrt();
        return (p, true);
    }
    let mut hi = lo0 + scale.max(1.0);
    while norm(&step(hi)) > radius {
        hi = lo0 + 2.0 * (hi - lo0);
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if norm(&step(mid)) > radius {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-15 * hi {
            break;
        }
    }
    (step(hi), true)
}

/// The Hessian of `risk` at `a` on E in the orthonormal orbit `basis`: [`dense_hessian_in`].
fn dense_hessian_on_e(
    risk: &mut Risk<'_>,
    a: &Params<f64>,
    basis: &[BasisVector],
) -> Result<(Vec<Vec<f64>>, f64), StabilityError> {
    let sparse: Vec<SparseVector> = basis
        .iter()
        .map(|(idx, val)| idx.iter().map(|&i| (i, *val)).collect())
        .collect();
    dense_hessian_in(risk, a, &sparse)
}

/// Refuses a dense `n x n` eigenproblem that would not fit in the available memory (the
/// matrix, its antisymmetric part, the solver's copy and workspace and the eigenvectors: five
/// `n x n` f64 matrices), naming the config `key` that allows it.
fn check_dense_memory(n: usize, key: &str, what: &str) -> Result<(), StabilityError> {
    lanczos::check_memory(5 * 8 * n as u128 * n as u128, key, what, None)
}

/// A sparse vector of the parameter space: `(index, value)` pairs.
type SparseVector = Vec<(usize, f64)>;

/// The Hessian of `risk` at `a` on the span of the orthonormal `basis` (one HVP per basis
/// vector), symmetrised, and the spectral norm of the antisymmetric part the central
/// differences left (`||(H - H^T) / 2||_2`): the exact Hessian is symmetric, so this measures
/// their error, and by Weyl's inequality an error of that size moves each eigenvalue of the
/// symmetrised matrix by about as much.
fn dense_hessian_in(
    risk: &mut Risk<'_>,
    a: &Params<f64>,
    basis: &[SparseVector],
) -> Result<(Vec<Vec<f64>>, f64), StabilityError> {
    let n = basis.len();
    let mut v = a.zeros_like();
    let mut hv = a.zeros_like();
    let mut h = vec![vec![0.0; n]; n];
    for (j, bj) in basis.iter().enumerate() {
        v.fill_zero();
        for &(i, x) in bj {
            v.as_mut_slice()[i] = x;
        }
        risk.hvp(a, &v, &mut hv)?;
        let hv = hv.as_slice();
        for (i, bi) in basis.iter().enumerate() {
            h[i][j] = bi.iter().map(|&(k, x)| x * hv[k]).sum();
        }
    }
    let mut k = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..i {
            let m = 0.5 * (h[i][j] + h[j][i]);
            k[i][j] = 0.5 * (h[i][j] - h[j][i]);
            k[j][i] = -k[i][j];
            h[i][j] = m;
            h[j][i] = m;
        }
    }
    Ok((h, antisymmetric_norm(&k)))
}

/// An orthonormal basis of E-perp: within each orbit of each channel pair of each group layer
/// (orbits outside a support left out), the Helmert basis of the vectors that sum to zero over
/// the orbit (`k - 1` vectors for an orbit of `k` weights: the `j`-th is `1 / sqrt(j (j + 1))`
/// on the orbit's first `j` members and `-j / sqrt(j (j + 1))` on the next). Non-group tensors
/// lie in E and contribute nothing. Its length is `lanczos::subspace_dim(layout, Orthogonal)`.
fn perp_basis(layout: &Arc<eqaug_nn::Layout>) -> Vec<SparseVector> {
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

/// `||K||_2` of an antisymmetric matrix: power iteration on `K^T K = -K^2` (deterministic
/// start, 100 iterations or a relative change below 1e-6; an estimate from below that is
/// within a few per cent of the norm for these matrices).
fn antisymmetric_norm(k: &[Vec<f64>]) -> f64 {
    let n = k.len();
    if n == 0 {
        return 0.0;
    }
    let mul = |x: &[f64]| -> Vec<f64> {
        k.iter()
            .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
            .collect()
    };
    let mut x: Vec<f64> = (0..n).map(|i| 1.0 + (i % 7) as f64 / 7.0).collect();
    let mut est = 0.0;
    for _ in 0..100 {
        let nx = x.iter().map(|v| v * v).sum::<f64>().sqrt();
        if nx == 0.0 {
            return 0.0;
        }
        x.iter_mut().for_each(|v| *v /= nx);
        let y = mul(&x);
        let next = y.iter().map(|v| v * v).sum::<f64>().sqrt();
        x = mul(&y);
        x.iter_mut().for_each(|v| *v = -*v);
        if (next - est).abs() <= 1e-6 * next {
            return next;
        }
        est = next;
    }
    est
}

/// The whole spectrum of `Hess R` on the span of the orthonormal `basis` (E in the orbit
/// basis when `dim E` is at most [`StationaryOptions::dense_limit`]; E-perp in
/// [`perp_basis`] when `dim E-perp` is at most [`StabilityOptions::perp_dense_limit`]): every
/// eigenvalue, exact up to the central differences' error, which is estimated by the asymmetry
/// they leave and reported in place of the Ritz residuals. The density is the exact one
/// (weight `1 / dim` per value). Also returns the unit eigenvector of the lowest eigenvalue in
/// parameter space.
fn dense_block(
    risk: &mut Risk<'_>,
    a: &Params<f64>,
    basis: &[SparseVector],
    noise: f64,
) -> Result<(BlockSpectrum, Vec<f64>), StabilityError> {
    let (h, asym) = dense_hessian_in(risk, a, basis)?;
    let n = h.len();
    let (values, vectors) = crate::lanczos::symmetric_eigen(&h);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut vmin = vec![0.0; a.len()];
    for (bj, row) in basis.iter().zip(&vectors) {
        let y = row[order[0]];
        for &(i, x) in bj {
            vmin[i] += y * x;
        }
    }
    let values: Vec<f64> = order.iter().map(|&i| values[i]).collect();
    Ok((
        BlockSpectrum {
            min: values[0],
            min_residual: asym,
            max: values[n - 1],
            max_residual: asym,
            negative: values.iter().filter(|&&x| x < 0.0).count(),
            negative_beyond_noise: values.iter().filter(|&&x| x < -noise).count(),
            noise,
            steps: n,
            runs: 1,
            density: SpectralDensity {
                nodes: vec![values.clone()],
                weights: vec![vec![1.0 / n as f64; n]],
            },
            ritz_values: values,
            dense: true,
        },
        vmin,
    ))
}

/// Trust-region Newton with the whole Hessian on E ([`StationaryOptions::dense_limit`]): the
/// Hessian in the orthonormal orbit basis from `dim E` HVPs, its eigen-decomposition, and the
/// exact trust-region step. Affine invariance makes it indifferent to the orbit sizes that make
/// these risks so ill-conditioned (the orbit of an all-entries sum spans thousands of weights);
/// a rejected step is retried with the same Hessian at no cost. Updates `a`, `f`, `g`.
#[allow(clippy::too_many_arguments)]
fn dense_newton(
    risk: &mut Risk<'_>,
    a: &mut Params<f64>,
    f: &mut f64,
    g: &mut Params<f64>,
    target: f64,
    scale: f64,
    opts: &StationaryOptions,
    basis: &[BasisVector],
) -> Result<TrustRegionOutcome, StabilityError> {
    let n = basis.len();
    // The radius bounds the scaled step ||D p|| (D^2 = the Hessian's diagonal), a change of
    // the risk's quadratic model of about radius^2 / 2: start at a tenth of the risk.
    let _ = scale;
    let max_radius = 1e3 * f.abs().max(1e-3).sqrt();
    let mut radius = (0.2 * f.abs()).max(1e-8).sqrt();
    let mut out = TrustRegionOutcome {
        iterations: 0,
        hvps: 0,
        converged: g.norm() <= target,
        reason: format!(
            "Newton iteration budget ({}) exhausted",
            opts.newton_iterations
        ),
    };
    let mut eigen: Option<(Vec<f64>, Vec<Vec<f64>>)> = None;
    let mut d: Vec<f64> = vec![1.0; n];
    let mut fresh = true;
    let mut g_new = a.zeros_like();
    while !out.converged && out.iterations < opts.newton_iterations {
        out.iterations += 1;
        if eigen.is_none() {
            fresh = true;
            let (mut h, _) = dense_hessian_on_e(risk, a, basis)?;
            out.hvps += n;
            // Jacobi scaling: unit diagonal, so that the trust region is an ellipsoid fitted to
            // the curvatures (which span up to 7 decades here) rather than a ball.
            let top = (0..n).map(|i| h[i][i].abs()).fold(0.0, f64::max);
            d = (0..n)
                .map(|i| h[i][i].abs().max(1e-12 * top).max(f64::MIN_POSITIVE).sqrt())
                .collect();
            for i in 0..n {
                for j in 0..n {
                    h[i][j] /= d[i] * d[j];
                }
            }
            eigen = Some(crate::lanczos::symmetric_eigen(&h));
        }
        let (values, vectors) = eigen.as_ref().expect("just built");
        let gc: Vec<f64> = coordinates(basis, g.as_slice())
            .iter()
            .zip(&d)
            .map(|(x, di)| x / di)
            .collect();
        // Eigen-coordinates: ghat_k = sum_i V[i][k] gc_i.
        let ghat: Vec<f64> = (0..n)
            .map(|k| (0..n).map(|i| vectors[i][k] * gc[i]).sum())
            .collect();
        let (phat, boundary) = trust_region_step(values, &ghat, radius);
        let predicted = -phat
            .iter()
            .zip(&ghat)
            .zip(values)
            .map(|((p, gh), l)| p * gh + 0.5 * l * p * p)
            .sum::<f64>();
        let mut trial = a.clone();
        for (i, (idx, val)) in basis.iter().enumerate() {
            let c: f64 = (0..n).map(|k| vectors[i][k] * phat[k]).sum::<f64>() / d[i];
            for &e in idx {
                trial.as_mut_slice()[e] += c * val;
            }
        }
        let pn = phat.iter().map(|x| x * x).sum::<f64>().sqrt();
        let (ft, ok) = evaluate_trial(risk, &trial, &mut g_new)?;
        let gn = g.norm();
        let rho = ratio(*f, ft, predicted, ok, g_new.norm() < gn);
        if rho < 0.25 && !fresh {
            // A stale Hessian failed: rebuild it at this point before shrinking the region.
            eigen = None;
            continue;
        }
        if rho < 0.25 {
            radius = 0.25 * pn.min(radius);
        } else if rho > 0.75 && boundary {
            radius = (2.0 * radius).min(max_radius);
        }
        if rho > 1e-4 {
            a.copy_from(&trial);
            *f = ft;
            let contracted = g_new.norm() <= 0.25 * gn;
            g.copy_from(&g_new);
            // Near the minimum (a model that predicts well, a gradient that contracts fast)
            // the Hessian is reused: each further step then costs one gradient, not dim E
            // HVPs, and converges linearly at a rate set by the Hessian's change.
            if rho > 0.9 && contracted {
                fresh = false;
            } else {
                eigen = None;
            }
            out.check_converged(g, target, opts.rtol, "dense ");
        }
        if out.collapsed(radius, a) {
            break;
        }
    }
    Ok(out)
}

/// The trust-region ratio of actual to predicted reduction; at the round-off floor of `f`
/// (both reductions below `1e-12 |f|`), 1 if the gradient decreased and 0 otherwise.
fn ratio(f: f64, ft: f64, predicted: f64, ok: bool, gradient_decreased: bool) -> f64 {
    let actual = f - ft;
    let floor = 1e-12 * f.abs().max(f64::MIN_POSITIVE);
    if !ok {
        f64::NEG_INFINITY
    } else if predicted.abs() <= floor && actual.abs() <= floor {
        if gradient_decreased {
            1.0
        } else {
            0.0
        }
    } else if predicted > 0.0 {
        actual / predicted
    } else {
        f64::NEG_INFINITY
    }
}

/// The smallest `|pre-activation|` at the input of any LeakyReLU over the data (statistics
/// per `minibatch` rows, untransformed data): the distance to the nearest kink, where `R` has
/// no Hessian. `None` when the network has no kinked layer (e.g. smooth LeakyReLU).
pub fn min_abs_preactivation(
    net: &Network<f64>,
    params: &Params<f64>,
    data: &TrainData<f64>,
    minibatch: usize,
) -> Result<Option<f64>, StabilityError> {
    let mut ws = net.workspace(data.len());
    let m = net.min_abs_preactivation(params, data.x.view(), minibatch, &mut ws);
    Ok(if m == f64::INFINITY { None } else { Some(m) })
}

/// A standard Gaussian vector of dimension `n` (Box-Muller). Gaussian rather than Rademacher
/// starts: a Rademacher vector can have no component in a small subspace (e.g. `(1, 1)` has
/// none in E-perp of the swap group), a Gaussian one almost surely has.
fn gaussian(n: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let u1: f64 = 1.0 - rng.gen::<f64>();
            let u2: f64 = rng.gen();
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        })
        .collect()
}

/// Spectrum of one block (E or E-perp) from several Lanczos runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockSpectrum {
    /// Smallest Ritz value over the runs.
    pub min: f64,
    /// Its Ritz residual `||H x - theta x||`.
    pub min_residual: f64,
    /// Largest Ritz value over the runs.
    pub max: f64,
    /// Its Ritz residual.
    pub max_residual: f64,
    /// Ritz values below zero (of the run that found the lowest value).
    pub negative: usize,
    /// Ritz values below `-noise` (same run): the negatives that are not convergence noise.
    pub negative_beyond_noise: usize,
    /// The noise level used (see [`analyse`]).
    pub noise: f64,
    /// Lanczos steps per run.
    pub steps: usize,
    /// Number of runs (random starts).
    pub runs: usize,
    /// Ritz values of the run that found the lowest value (the refinement run when it lowered
    /// it), ascending.
    pub ritz_values: Vec<f64>,
    /// The SLQ density (nodes and weights of every run).
    pub density: SpectralDensity,
    /// Whether the spectrum is the dense one (every eigenvalue of the Hessian on E in the orbit
    /// basis; `steps` is then `dim E`, the residuals the central differences' asymmetry).
    #[serde(default)]
    pub dense: bool,
}

/// The sampling error of an estimated `H_perp` (groups too large to enumerate).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingError {
    /// Group elements per sample (M).
    pub sample_size: usize,
    /// `lambda_min` of the second, independent sample.
    pub min_second: f64,
    /// `lambda_max` of the second sample.
    pub max_second: f64,
    /// `|lambda_min(1) - lambda_min(2)|`.
    pub min_difference: f64,
    /// `|lambda_max(1) - lambda_max(2)|`.
    pub max_difference: f64,
}

/// The held-out Rayleigh quotient of an estimated `H_perp`'s lowest Ritz vector `v` (from the
/// first sample): `q_k = v^T H_k v` under `K` further independent samples `H_k` of M elements
/// each. Each `q_k` is an unbiased estimate of `v^T H_perp v` for the exact group average, and
/// `lambda_min(H_perp) <= v^T H_perp v` for a unit `v` in E-perp: unlike the sample's own lowest
/// eigenvalue (biased downwards, being a minimum over the sample's noise), a mean of the `q_k`
/// significantly below zero proves a negative eigenvalue of the exact `H_perp`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldOutRayleigh {
    /// Group elements per sample (M).
    pub sample_size: usize,
    /// `q_k`, one per held-out sample.
    pub values: Vec<f64>,
    /// Their mean.
    pub mean: f64,
    /// Its standard error (sample standard deviation / sqrt K).
    pub standard_error: f64,
}

impl HeldOutRayleigh {
    /// From the quotients of `K >= 2` samples of `m` elements.
    pub fn from_values(sample_size: usize, values: Vec<f64>) -> Self {
        let k = values.len() as f64;
        let mean = values.iter().sum::<f64>() / k;
        let var = values.iter().map(|q| (q - mean).powi(2)).sum::<f64>() / (k - 1.0).max(1.0);
        HeldOutRayleigh {
            sample_size,
            mean,
            standard_error: (var / k).sqrt(),
            values,
        }
    }

    /// Whether the mean lies more than [`RAYLEIGH_SIGMAS`] standard errors below `-noise`.
    pub fn significantly_negative(&self, noise: f64) -> bool {
        self.values.len() >= 2 && self.mean + RAYLEIGH_SIGMAS * self.standard_error < -noise
    }
}

/// Standard errors a held-out Rayleigh quotient must lie below `-noise` to count: 4 (a
/// one-sided t-test with K - 1 = 15 degrees of freedom then has p < 0.001).
pub const RAYLEIGH_SIGMAS: f64 = 4.0;

/// A measured escape from `A* + delta v` under exact-average augmented gradient descent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Escape {
    /// What `v` is (`ritz-min` or `random`).
    pub direction: String,
    /// The learning rate.
    pub eta: f64,
    /// `||A_Eperp||` at steps `0..=steps`.
    pub norms: Vec<f64>,
    /// Measured per-step factor `(norms[T] / norms[0])^(1/T)`.
    pub measured_factor: f64,
    /// Predicted factor `1 - eta lambda` (for a Ritz direction).
    pub predicted_factor: Option<f64>,
    /// Bracket `[1 - eta lambda_max, 1 - eta lambda_min]` (for a random direction).
    pub predicted_range: Option<(f64, f64)>,
    /// `|(measured - 1) - (predicted - 1)| / |predicted - 1|`: the relative error of the rate.
    pub rate_relative_error: Option<f64>,
}

/// Exact-average augmented gradient descent with learning rate `eta` from
/// `a_star + delta * v / ||v||` (`v` projected onto E-perp), for `steps` steps or until
/// `||A_Eperp||` exceeds `10 delta` or falls below `1e-6 delta`; returns the norms of the E-perp
/// component per step.
pub fn measure_escape(
    risk_aug: &mut Risk<'_>,
    a_star: &Params<f64>,
    v: &Params<f64>,
    delta: f64,
    eta: f64,
    steps: usize,
) -> Result<Vec<f64>, StabilityError> {
    let mut dir = v.clone();
    project_onto(&mut dir, Subspace::Orthogonal);
    let nv = dir.norm();
    if nv == 0.0 {
        return Err(StabilityError::Invalid(
            "the escape direction has no E-perp component".into(),
        ));
    }
    let mut a = a_star.clone();
    a.axpy(delta / nv, &dir);
    let perp = |a: &Params<f64>| {
        let mut p = a.clone();
        project_onto(&mut p, Subspace::Orthogonal);
        p.norm()
    };
    let mut norms = vec![perp(&a)];
    let mut g = a.zeros_like();
    for _ in 0..steps {
        risk_aug.loss_and_gradient(&a, &mut g)?;
        a.axpy(-eta, &g);
        let n = perp(&a);
        norms.push(n);
        // Growth beyond the linear regime, or a decay to a millionth of delta (further on,
        // round-off in A* (about 1e-16 ||A*||) would bias the measured factor).
        if n > 10.0 * delta || n < 1e-6 * delta {
            break;
        }
    }
    Ok(norms)
}

fn factor(norms: &[f64]) -> f64 {
    let t = (norms.len() - 1).max(1) as f64;
    (norms[norms.len() - 1] / norms[0]).powf(1.0 / t)
}

/// Options of [`analyse`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StabilityOptions {
    /// Mini-batch size of the normalisation statistics.
    pub minibatch: usize,
    /// The stationary-point search.
    pub stationary: StationaryOptions,
    /// Lanczos steps per run.
    pub lanczos_steps: usize,
    /// Lanczos runs (random starts) per block; all feed the SLQ density.
    pub lanczos_runs: usize,
    /// Steps of one more Lanczos run per block, restarted from the Ritz vector of the lowest
    /// value (0: none): refines the lowest eigenpair.
    #[serde(default)]
    pub refine_steps: usize,
    /// Groups with more elements are averaged over a sample of `sample_elements` (an estimate).
    pub enumeration_limit: usize,
    /// M, the sample size for groups too large to enumerate.
    pub sample_elements: usize,
    /// Relative step of the central-difference HVPs.
    pub hvp_step: f64,
    /// Ridge `mu / 2 ||A||^2` added to every risk of the analysis ([`Risk::set_weight_decay`]).
    #[serde(default)]
    pub weight_decay: f64,
    /// K, samples of the per-sample-draw Rayleigh test at an exactly averaged point
    /// ([`per_sample_rayleigh`]; 0: none).
    #[serde(default)]
    pub per_sample_samples: usize,
    /// With an exact group average and `dim E-perp` at most this, `H_perp` is the dense one
    /// (every eigenvalue, from `dim E-perp` HVPs) instead of Lanczos (0: never).
    #[serde(default)]
    pub perp_dense_limit: usize,
    /// `delta / max(1, ||A*||)` of the escape runs.
    pub escape_delta: f64,
    /// Steps of each escape run (0: no escape runs).
    pub escape_steps: usize,
    /// Learning rate of the escape runs; `None`: `1 / max(|lambda|)` over both blocks.
    pub escape_eta: Option<f64>,
    /// Seed of the random starts and samples.
    pub seed: u64,
    /// K, the held-out samples of the Rayleigh test of an estimated `H_perp`
    /// ([`HeldOutRayleigh`]; 0: none).
    #[serde(default = "default_rayleigh_samples")]
    pub rayleigh_samples: usize,
    /// Config key named when the Lanczos basis does not fit in memory.
    pub memory_key: String,
}

fn default_rayleigh_samples() -> usize {
    16
}

impl Default for StabilityOptions {
    fn default() -> Self {
        StabilityOptions {
            minibatch: 25,
            stationary: StationaryOptions::default(),
            lanczos_steps: 30,
            lanczos_runs: 3,
            refine_steps: 0,
            enumeration_limit: 100_000,
            sample_elements: 16,
            hvp_step: 1e-6,
            weight_decay: 0.0,
            perp_dense_limit: 0,
            per_sample_samples: 0,
            escape_delta: 1e-4,
            escape_steps: 20,
            escape_eta: None,
            seed: 0,
            rayleigh_samples: default_rayleigh_samples(),
            memory_key: "stability.lanczos_steps".into(),
        }
    }
}

/// Verdict on a stationary point for augmented training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The stationary-point search did not reach its tolerance: the point is not stationary
    /// and its spectra say nothing about stability.
    NotStationary,
    /// No eigenvalue of either block below `-noise`, both lowest Ritz values converged: stable
    /// (to second order).
    Stable,
    /// `H_perp` vanishes (every Ritz value 0, or `mu` with a ridge, to the noise level): a
    /// flat point, e.g. a saturated or collapsed network whose group layers receive no
    /// gradient; no second-order information.
    Flat,
    /// `H_perp` has an eigenvalue below `-noise` while the E block has none: a minimum for
    /// equivariant training that augmented training leaves (Proposition 3).
    UnstableOffE,
    /// The E block has an eigenvalue below `-noise`: not a minimum even within E.
    UnstableInE,
    /// A minimum within E whose sampled estimate of `H_perp` (M of the group's elements) has a
    /// negative eigenvalue. Not a verdict: the mean over M elements is biased towards the
    /// single-element (nominal) Hessian, whose E-perp spectrum reaches far lower than the
    /// group average's (E4-rototrans: exact lambda_min -1.2e-4, M = 8 estimate -1.0e-1), and
    /// two samples agree with each other, so their difference does not reveal the bias.
    EstimateOnly,
    /// A minimum within E whose `H_perp` is estimated from samples, with a held-out Rayleigh
    /// quotient ([`HeldOutRayleigh`]) significantly below `-noise`: the exact group average
    /// has a negative eigenvalue, at most that quotient (a statistical proof, p < 0.001).
    UnstableOffESampled,
    /// A* is stationary, but the lowest Ritz value of a block that decides the verdict is
    /// non-negative and not converged (Ritz residual above a tenth of its size and the
    /// noise): Lanczos bounds lambda_min only from above, so nothing is proven (more
    /// `lanczos_steps`).
    Unresolved,
}

/// Everything [`analyse`] measured at one stationary point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StabilityReport {
    /// Parameters of the network.
    pub num_params: usize,
    /// Dimension of E-perp (group-layer weights orthogonal to E).
    pub dim_perp: usize,
    /// L-BFGS iterations of the stationary-point search.
    pub iterations: usize,
    /// Trust-region Newton iterations after them.
    #[serde(default)]
    pub newton_iterations: usize,
    /// Hessian-vector products of the Newton stage.
    #[serde(default)]
    pub newton_hvps: usize,
    /// The ridge coefficient `mu` of every risk (both Hessian blocks include `mu`).
    #[serde(default)]
    pub weight_decay: f64,
    /// Whether it met its relative tolerance.
    pub converged: bool,
    /// Why it stopped.
    pub stop_reason: String,
    /// `R` at the start and at `A*`.
    pub loss_start: f64,
    /// `R(A*)`.
    pub loss: f64,
    /// `||Pi_E grad R||` at the start.
    pub residual_start: f64,
    /// `||Pi_E grad R(A*)||`.
    pub residual: f64,
    /// `||A*||`.
    pub norm_a_star: f64,
    /// Smallest `|pre-activation|` at LeakyReLU inputs (`None`: no LeakyReLU).
    pub kink_distance: Option<f64>,
    /// `Hess R_eqv` on E.
    pub e_block: BlockSpectrum,
    /// `H_perp` on E-perp.
    pub perp_block: BlockSpectrum,
    /// Whether `H_perp` is exact (all group elements) or an estimate from a sample.
    pub perp_exact: bool,
    /// Group elements averaged over.
    pub perp_elements: usize,
    /// Sampling error of the estimate (two independent samples), when not exact.
    pub sampling_error: Option<SamplingError>,
    /// The held-out Rayleigh test of the estimate's lowest Ritz vector, when not exact.
    #[serde(default)]
    pub held_out_rayleigh: Option<HeldOutRayleigh>,
    /// Per-sample draws at `A*` (exact only, with `per_sample_samples`): `v^T H_k v` of the
    /// lowest eigenvector `v` of `H_perp` under K independent per-sample assignments
    /// ([`per_sample_rayleigh`]); compare with [`StabilityReport::perp_block`]'s `min`, which
    /// is `v^T H_perp v` under the per-batch (exact) average.
    #[serde(default)]
    pub per_sample_rayleigh: Option<HeldOutRayleigh>,
    /// `||Pi_perp Hess R_aug v|| / ||Hess R_aug v||` for a random `v` in E (exact only):
    /// the off-diagonal block, zero at an equivariant point (SPEC 10(d)).
    pub off_diagonal: Option<f64>,
    /// Escape along the Ritz vector of `lambda_min(H_perp)` (exact only).
    pub escape_min: Option<Escape>,
    /// Escape along a random E-perp direction (exact only).
    pub escape_random: Option<Escape>,
    /// The verdict.
    pub verdict: Verdict,
    /// Gradient evaluations of the whole analysis (one HVP = two).
    pub gradient_evaluations: usize,
}

/// The held-out Rayleigh test ([`HeldOutRayleigh`]): `v` projected onto E-perp and normalised,
/// then `q_k = v^T H_k v` at `a` for `opts.rayleigh_samples` fresh samples of
/// `opts.sample_elements` group elements drawn from `rng` (each `H_k` the Hessian of the risk
/// averaged over its sample, with the ridge). Returns `None` when `v` has no E-perp part, and
/// the gradients spent.
pub fn held_out_rayleigh(
    net: &Network<f64>,
    data: &TrainData<f64>,
    a: &Params<f64>,
    v: &Params<f64>,
    opts: &StabilityOptions,
    rng: &mut ChaCha8Rng,
) -> Result<(Option<HeldOutRayleigh>, usize), StabilityError> {
    let mut v = v.clone();
    project_onto(&mut v, Subspace::Orthogonal);
    let nv = v.norm();
    if nv == 0.0 {
        return Ok((None, 0));
    }
    v.scale(1.0 / nv);
    let mut hv = a.zeros_like();
    let mut values = Vec::with_capacity(opts.rayleigh_samples);
    let mut grads = 0;
    for _ in 0..opts.rayleigh_samples {
        let sample = (0..opts.sample_elements.max(1))
            .map(|_| net.group().sample(rng))
            .collect();
        let mut r = Risk::new(net, data, opts.minibatch, Some(sample))?;
        r.set_hvp_step(opts.hvp_step);
        r.set_weight_decay(opts.weight_decay);
        r.hvp(a, &v, &mut hv)?;
        values.push(v.dot(&hv));
        grads += r.gradient_count();
    }
    Ok((
        Some(HeldOutRayleigh::from_values(
            opts.sample_elements.max(1),
            values,
        )),
        grads,
    ))
}

/// The per-sample-draw Rayleigh test (issue 15): `v` projected onto E-perp and normalised,
/// then `q_k = v^T H_k v` at `a` for `samples` independent assignments of a uniform group
/// element to every data row, `H_k` the Hessian of [`Risk::new_per_sample`] with that one
/// assignment (with the ridge). Each `q_k` is unbiased for `v^T H_ps v`, `H_ps` the Hessian of
/// the expected per-sample-augmented risk. Where the normalisation acts per sample (layer norm,
/// none) the expected risk equals the per-batch one, so the mean estimates `v^T H_perp v`; with
/// batch norm the mini-batch statistics mix the rows' transformations and the two may differ.
/// At a point of E both expected risks are stationary (the joint law of the draws is invariant
/// under one global element, and an equivariant network's batch statistics do not see per-row
/// permutations of the positions). Returns `None` when `v` has no E-perp part or `samples < 2`,
/// and the gradients spent.
#[allow(clippy::too_many_arguments)]
pub fn per_sample_rayleigh(
    net: &Network<f64>,
    data: &TrainData<f64>,
    a: &Params<f64>,
    v: &Params<f64>,
    elements: &[Perm],
    opts: &StabilityOptions,
    samples: usize,
    rng: &mut ChaCha8Rng,
) -> Result<(Option<HeldOutRayleigh>, usize), StabilityError> {
    let mut v = v.clone();
    project_onto(&mut v, Subspace::Orthogonal);
    let nv = v.norm();
    if nv == 0.0 || samples < 2 || elements.is_empty() {
        return Ok((None, 0));
    }
    v.scale(1.0 / nv);
    let mut hv = a.zeros_like();
    let mut values = Vec::with_capacity(samples);
    let mut grads = 0;
    for _ in 0..samples {
        let col: Vec<usize> = (0..data.len())
            .map(|_| rng.gen_range(0..elements.len()))
            .collect();
        let mut r = Risk::new_per_sample(net, data, opts.minibatch, elements.to_vec(), vec![col])?;
        r.set_hvp_step(opts.hvp_step);
        r.set_weight_decay(opts.weight_decay);
        r.hvp(a, &v, &mut hv)?;
        values.push(v.dot(&hv));
        grads += r.gradient_count();
    }
    Ok((Some(HeldOutRayleigh::from_values(1, values)), grads))
}

/// Runs `lanczos_runs` Lanczos runs of `hvp` restricted to `sub`, returning the block
/// spectrum and the Ritz vector of the smallest value.
fn block_spectrum(
    risk: &mut Risk<'_>,
    a: &Params<f64>,
    sub: Subspace,
    opts: &StabilityOptions,
    rng: &mut ChaCha8Rng,
    noise: f64,
) -> Result<(BlockSpectrum, Vec<f64>), StabilityError> {
    let layout = a.layout().clone();
    let mut runs: Vec<LanczosRun> = Vec::new();
    for _ in 0..opts.lanczos_runs.max(1) {
        let start = gaussian(a.len(), rng);
        let run = lanczos::lanczos_on_block(&layout, sub, &start, opts.lanczos_steps, |v, o| {
            risk.hvp(a, v, o)
        })?;
        runs.push(run);
    }
    let (mut imin, mut imax) = (0, 0);
    for (i, r) in runs.iter().enumerate() {
        if r.min() < runs[imin].min() {
            imin = i;
        }
        if r.max() > runs[imax].max() {
            imax = i;
        }
    }
    // Restart from the best Ritz vector of the lowest value: a Lanczos run that starts close to
    // an eigenvector converges to it much faster than from a random start, and its lowest Ritz
    // value is at most the start's Rayleigh quotient. Not part of the SLQ density (not a random
    // start); kept when it lowers the value or its residual.
    let (mut min, mut min_residual, mut v) = (
        runs[imin].min(),
        runs[imin].ritz_residuals[0],
        runs[imin].ritz_vector(0),
    );
    let mut values = runs[imin].ritz_values.clone();
    if opts.refine_steps > 0 {
        let refined = lanczos::lanczos_on_block(&layout, sub, &v, opts.refine_steps, |x, o| {
            risk.hvp(a, x, o)
        })?;
        if refined.min() <= min || refined.ritz_residuals[0] < min_residual {
            min = refined.min();
            min_residual = refined.ritz_residuals[0];
            v = refined.ritz_vector(0);
            values = refined.ritz_values.clone();
        }
    }
    let spectrum = BlockSpectrum {
        min,
        min_residual,
        max: runs[imax].max(),
        max_residual: *runs[imax].ritz_residuals.last().expect("non-empty"),
        negative: values.iter().filter(|&&x| x < 0.0).count(),
        negative_beyond_noise: values.iter().filter(|&&x| x < -noise).count(),
        noise,
        steps: opts.lanczos_steps,
        runs: runs.len(),
        ritz_values: values,
        density: SpectralDensity {
            nodes: runs.iter().map(|r| r.ritz_values.clone()).collect(),
            weights: runs.iter().map(|r| r.weights.clone()).collect(),
        },
        dense: false,
    };
    Ok((spectrum, v))
}

/// The stability analysis of SPEC section 10 for one network and data set, from `a0`:
/// stationary point in E, spectra of both blocks, escapes, verdict (module docs).
///
/// The noise level of an eigenvalue is `max(residual, 1e-7 * max|lambda|)`: negative Ritz values
/// above `-noise` are not counted as instability (SPEC 10(b): at a residual `r` the
/// landscape is only known to `O(r)`, and the central differences to about 1e-7 relative).
pub fn analyse(
    net: &Network<f64>,
    data: &TrainData<f64>,
    a0: &Params<f64>,
    opts: &StabilityOptions,
) -> Result<(StabilityReport, Params<f64>), StabilityError> {
    let basis = lanczos::basis_bytes(opts.lanczos_steps + 4, net.num_params());
    lanczos::check_memory(basis, &opts.memory_key, "the Lanczos basis", None)?;
    // The dense blocks, before any work: dim E within `dense_limit` (Newton and the E block),
    // dim E-perp within `perp_dense_limit` with an enumerable group.
    let dim_e = lanczos::subspace_dim(net.layout(), Subspace::Equivariant);
    if dim_e <= opts.stationary.dense_limit {
        check_dense_memory(dim_e, "stability.dense_limit", "the dense Hessian on E")?;
    }
    let dim_perp = lanczos::subspace_dim(net.layout(), Subspace::Orthogonal);
    if dim_perp <= opts.perp_dense_limit && net.group().order() <= opts.enumeration_limit as u128 {
        check_dense_memory(dim_perp, "stability.perp_dense_limit", "the dense H_perp")?;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut nominal = Risk::new(net, data, opts.minibatch, None)?;
    nominal.set_hvp_step(opts.hvp_step);
    nominal.set_weight_decay(opts.weight_decay);
    let sp = find_stationary_point(&mut nominal, a0, &opts.stationary)?;
    let a = sp.params.clone();
    let kink_distance = min_abs_preactivation(net, &a, data, opts.minibatch)?;

    // Noise from the first E run's scale is not known yet: use the residual first, then the
    // HVP accuracy relative to the largest eigenvalue.
    let basis_e = e_basis(a.layout());
    let mut e_block = if basis_e.len() <= opts.stationary.dense_limit {
        let sparse: Vec<SparseVector> = basis_e
            .iter()
            .map(|(idx, val)| idx.iter().map(|&i| (i, *val)).collect())
            .collect();
        dense_block(&mut nominal, &a, &sparse, sp.residual)?.0
    } else {
        block_spectrum(
            &mut nominal,
            &a,
            Subspace::Equivariant,
            opts,
            &mut rng,
            sp.residual,
        )?
        .0
    };
    let mut count = nominal.gradient_count();

    let group = net.group().clone();
    let (elements, exact) = augmentation_elements(
        &group,
        opts.enumeration_limit,
        opts.sample_elements,
        &mut rng,
    )?;
    let n_el = elements.len();
    let group_elements = if exact { elements.clone() } else { Vec::new() };
    let mut aug = Risk::new(net, data, opts.minibatch, Some(elements))?;
    aug.set_hvp_step(opts.hvp_step);
    aug.set_weight_decay(opts.weight_decay);
    let (mut perp_block, vmin) = if exact && dim_perp <= opts.perp_dense_limit {
        dense_block(&mut aug, &a, &perp_basis(a.layout()), sp.residual)?
    } else {
        block_spectrum(
            &mut aug,
            &a,
            Subspace::Orthogonal,
            opts,
            &mut rng,
            sp.residual,
        )?
    };
    let scale = e_block
        .max
        .abs()
        .max(perp_block.max.abs())
        .max(e_block.min.abs());
    let noise = sp.residual.max(1e-7 * scale);
    for b in [&mut e_block, &mut perp_block] {
        b.noise = noise;
        b.negative_beyond_noise = b.ritz_values.iter().filter(|&&x| x < -noise).count();
    }
    let mut sampling_error = None;
    let mut rayleigh: Option<HeldOutRayleigh> = None;
    let (mut off_diagonal, mut escape_min, mut escape_random) = (None, None, None);
    let mut per_sample = None;
    if !exact {
        let (second, _) = augmentation_elements(
            &group,
            opts.enumeration_limit,
            opts.sample_elements,
            &mut rng,
        )?;
        let mut aug2 = Risk::new(net, data, opts.minibatch, Some(second))?;
        aug2.set_hvp_step(opts.hvp_step);
        aug2.set_weight_decay(opts.weight_decay);
        let (b2, _) = block_spectrum(&mut aug2, &a, Subspace::Orthogonal, opts, &mut rng, noise)?;
        count += aug2.gradient_count();
        sampling_error = Some(SamplingError {
            sample_size: n_el,
            min_second: b2.min,
            max_second: b2.max,
            min_difference: (b2.min - perp_block.min).abs(),
            max_difference: (b2.max - perp_block.max).abs(),
        });
        if opts.rayleigh_samples >= 2 {
            let v = Params::from_vec(a.layout().clone(), vmin.clone())?;
            let (q, grads) = held_out_rayleigh(net, data, &a, &v, opts, &mut rng)?;
            count += grads;
            rayleigh = q;
        }
    } else {
        // Off-diagonal block at A*: a random v in E, the E-perp part of Hess R_aug v.
        let mut v = Params::from_vec(a.layout().clone(), gaussian(a.len(), &mut rng))?;
        project_onto(&mut v, Subspace::Equivariant);
        let mut hv = a.zeros_like();
        aug.hvp(&a, &v, &mut hv)?;
        let mut perp = hv.clone();
        project_onto(&mut perp, Subspace::Orthogonal);
        off_diagonal = Some(perp.norm() / hv.norm().max(f64::MIN_POSITIVE));
        if opts.escape_steps > 0 {
            let eta = opts
                .escape_eta
                .unwrap_or(1.0 / scale.max(f64::MIN_POSITIVE));
            let delta = opts.escape_delta * a.norm().max(1.0);
            let vmin = Params::from_vec(a.layout().clone(), vmin.clone())?;
            let norms = measure_escape(&mut aug, &a, &vmin, delta, eta, opts.escape_steps)?;
            let m = factor(&norms);
            let p = 1.0 - eta * perp_block.min;
            escape_min = Some(Escape {
                direction: "ritz-min".into(),
                eta,
                measured_factor: m,
                predicted_factor: Some(p),
                predicted_range: None,
                rate_relative_error: Some(((m - 1.0) - (p - 1.0)).abs() / (p - 1.0).abs()),
                norms,
            });
            let r = Params::from_vec(a.layout().clone(), gaussian(a.len(), &mut rng))?;
            let norms = measure_escape(&mut aug, &a, &r, delta, eta, opts.escape_steps)?;
            escape_random = Some(Escape {
                direction: "random".into(),
                eta,
                measured_factor: factor(&norms),
                predicted_factor: None,
                predicted_range: Some((1.0 - eta * perp_block.max, 1.0 - eta * perp_block.min)),
                rate_relative_error: None,
                norms,
            });
        }
        if opts.per_sample_samples >= 2 && sp.converged {
            let v = Params::from_vec(a.layout().clone(), vmin)?;
            let (q, grads) = per_sample_rayleigh(
                net,
                data,
                &a,
                &v,
                &group_elements,
                opts,
                opts.per_sample_samples,
                &mut rng,
            )?;
            count += grads;
            per_sample = q;
        }
    }
    count += aug.gradient_count();
    // A Ritz value is an upper bound of the block's lambda_min (Cauchy interlacing): a negative
    // one proves a negative eigenvalue, a non-negative one proves nothing until it has
    // converged (Ritz residual at most a tenth of its size, or below the noise).
    let settled = |b: &BlockSpectrum| b.min_residual <= 0.1 * b.min.abs() + noise;
    let verdict = if !sp.converged {
        Verdict::NotStationary
    } else if e_block.min < -noise {
        Verdict::UnstableInE
    } else if !settled(&e_block) {
        Verdict::Unresolved
    } else if perp_block.min < -noise && !exact {
        if rayleigh
            .as_ref()
            .is_some_and(|r| r.significantly_negative(noise))
        {
            Verdict::UnstableOffESampled
        } else {
            Verdict::EstimateOnly
        }
    } else if perp_block.min < -noise {
        Verdict::UnstableOffE
    } else if (perp_block.min - opts.weight_decay).abs() <= noise
        && (perp_block.max - opts.weight_decay).abs() <= noise
    {
        Verdict::Flat
    } else if !settled(&perp_block) {
        Verdict::Unresolved
    } else {
        Verdict::Stable
    };
    Ok((
        StabilityReport {
            num_params: a.len(),
            dim_perp,
            iterations: sp.iterations,
            newton_iterations: sp.newton_iterations,
            newton_hvps: sp.newton_hvps,
            weight_decay: opts.weight_decay,
            converged: sp.converged,
            stop_reason: sp.stop_reason.clone(),
            loss_start: sp.loss_start,
            loss: sp.loss,
            residual_start: sp.residual_start,
            residual: sp.residual,
            norm_a_star: a.norm(),
            kink_distance,
            e_block,
            perp_block,
            perp_exact: exact,
            perp_elements: n_el,
            sampling_error,
            held_out_rayleigh: rayleigh,
            per_sample_rayleigh: per_sample,
            off_diagonal,
            escape_min,
            escape_random,
            verdict,
            gradient_evaluations: count,
        },
        a,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use eqaug_groups::{Group, Points, Rep};
    use eqaug_nn::{LayerSpec, Loss, NetworkSpec};
    use rand::Rng;

    /// The Moré-Sorensen conditions of the exact trust-region step, checked on random
    /// diagonal models: `||p|| <= radius`; `(Lambda + lambda I) p = -g` with `lambda >= 0`,
    /// `Lambda + lambda I` positive semi-definite and `lambda (radius - ||p||) = 0`; and no
    /// random feasible point has a lower model value.
    #[test]
    fn trust_region_step_satisfies_the_optimality_conditions() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for case in 0..200 {
            let n = 1 + case % 7;
            let values: Vec<f64> = (0..n).map(|_| rng.gen_range(-2.0..3.0)).collect();
            let g: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let radius = rng.gen_range(0.05..3.0);
            let (p, boundary) = trust_region_step(&values, &g, radius);
            let pn = p.iter().map(|x| x * x).sum::<f64>().sqrt();
            assert!(pn <= radius * (1.0 + 1e-9), "case {case}: {pn} > {radius}");
            let model = |p: &[f64]| -> f64 {
                p.iter()
                    .zip(&g)
                    .zip(&values)
                    .map(|((p, g), l)| g * p + 0.5 * l * p * p)
                    .sum()
            };
            if boundary {
                assert!((pn - radius).abs() <= 1e-9 * radius, "case {case}");
            }
            // lambda from any coordinate with p_i != 0.
            let i = (0..n)
                .max_by(|&i, &j| p[i].abs().total_cmp(&p[j].abs()))
                .unwrap();
            let lambda = -g[i] / p[i] - values[i];
            let lmin = values.iter().copied().fold(f64::INFINITY, f64::min);
            assert!(
                lambda >= -1e-9 && lambda + lmin >= -1e-9,
                "case {case}: {lambda}"
            );
            for _ in 0..200 {
                let mut q: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
                let qn = q.iter().map(|x| x * x).sum::<f64>().sqrt();
                let r = radius * rng.gen_range(0.0f64..1.0).sqrt();
                q.iter_mut().for_each(|x| *x *= r / qn);
                assert!(
                    model(&q) >= model(&p) - 1e-12,
                    "case {case}: {} < {}",
                    model(&q),
                    model(&p)
                );
            }
        }
    }

    /// The spectral norm of antisymmetric matrices: a direct sum of 2 x 2 rotation generators
    /// [[0, a], [-a, 0]] (norm max |a|), in a random orthogonal-ish basis change by a
    /// permutation, and the zero matrix.
    #[test]
    fn antisymmetric_norm_of_known_matrices() {
        let a = [0.3, -2.5, 1.7, 0.0];
        let n = 2 * a.len();
        let perm = [5, 2, 7, 0, 3, 6, 1, 4];
        let mut k = vec![vec![0.0; n]; n];
        for (b, &x) in a.iter().enumerate() {
            let (i, j) = (perm[2 * b], perm[2 * b + 1]);
            k[i][j] = x;
            k[j][i] = -x;
        }
        let got = antisymmetric_norm(&k);
        assert!((got - 2.5).abs() < 1e-5, "{got}");
        assert_eq!(antisymmetric_norm(&vec![vec![0.0; 3]; 3]), 0.0);
    }

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
