//! A network compiled from a [`NetworkSpec`]: forward and exact backward on chunks of rows.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use eqaug_groups::{Group, Points, Projector, Real, Rep};
use ndarray::ArrayView2;
use rand::Rng;
use rand_distr::StandardNormal;

use crate::ops::{self, Pointwise};
use crate::params::{Layout, Params, TensorKind};
use crate::{LayerSpec, Loss, NetworkSpec, NnError, NormOver};

/// One compiled layer; parameters referred to by tensor index in the layout.
#[derive(Clone, Copy, Debug)]
enum Op<T> {
    Linear {
        w: usize,
        bias: Option<usize>,
        inp: usize,
        out: usize,
    },
    Pointwise(Pointwise<T>),
    Softmax,
    BatchNorm {
        over: NormOver,
        channels: usize,
        positions: usize,
        scale: usize,
        shift: usize,
    },
    LayerNorm {
        over: NormOver,
        channels: usize,
        positions: usize,
    },
}

/// A network: the compiled structure (layers, representations, parameter layout with the
/// projectors of its group layers). It holds no weights; see [`Params`].
///
/// Inputs are chunks `x: rows x input_width`, one sample per row, features channel-major
/// `(c, s)`; targets are `rows x output_width` (0/1 for BCE, one-hot rows for the
/// cross-entropies, masks channel-major for segmentation, values for MSE).
pub struct Network<T> {
    spec: NetworkSpec,
    group: Arc<Group>,
    input: Rep,
    loss: Loss,
    ops: Vec<Op<T>>,
    /// `widths[0]` input width, `widths[i + 1]` output width of layer `i`.
    widths: Vec<usize>,
    /// `reps[0]` input, `reps[i + 1]` output representation of layer `i`.
    reps: Vec<Rep>,
    layout: Arc<Layout>,
    /// First layer with parameters: backward stops there (no input gradient needed).
    first_param: Option<usize>,
    /// Flops (multiply-adds x 2) of the linear layers per sample, forward only.
    flops_fwd: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Network<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("group", &self.group.name())
            .field("input", &self.input)
            .field("loss", &self.loss)
            .field("widths", &self.widths)
            .field("params", &self.layout.len())
            .finish()
    }
}

impl<T: Copy> Clone for Network<T> {
    fn clone(&self) -> Self {
        Network {
            spec: self.spec.clone(),
            group: self.group.clone(),
            input: self.input,
            loss: self.loss,
            ops: self.ops.clone(),
            widths: self.widths.clone(),
            reps: self.reps.clone(),
            layout: self.layout.clone(),
            first_param: self.first_param,
            flops_fwd: self.flops_fwd,
            _t: PhantomData,
        }
    }
}

fn shape_err(layer: usize, spec: &LayerSpec, message: String) -> NnError {
    NnError::Shape {
        layer,
        kind: spec.kind(),
        message,
    }
}

fn invalid(layer: usize, spec: &LayerSpec, message: String) -> NnError {
    NnError::InvalidSpec {
        layer,
        kind: spec.kind(),
        message,
    }
}

fn describe(rep: Rep, group: &Group) -> String {
    format!(
        "{} channel(s) x {} position(s) ({:?})",
        rep.channels,
        rep.positions(group),
        rep.points
    )
}

/// Reusable buffers for one network and chunks of up to `rows` rows (grown on demand).
pub struct Workspace<T> {
    rows: usize,
    /// Rows of the chunk of the last forward pass.
    last_rows: usize,
    widths: Vec<usize>,
    /// Output of every layer.
    acts: Vec<Vec<T>>,
    /// Normalised values of batch-norm layers (empty otherwise).
    aux: Vec<Vec<T>>,
    /// Inverse standard deviations of normalisation layers (grown on demand).
    stats: Vec<Vec<T>>,
    grad: [Vec<T>; 2],
    xcopy: Vec<T>,
    tcopy: Vec<T>,
    scratch: Vec<T>,
}

impl<T> fmt::Debug for Workspace<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workspace")
            .field("rows", &self.rows)
            .field("widths", &self.widths)
            .finish()
    }
}

impl<T> Workspace<T> {
    /// Rows it currently holds buffers for.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

fn grow<T: Real>(v: &mut Vec<T>, n: usize) {
    if v.len() < n {
        v.resize(n, T::zero());
    }
}

impl<T: Real> Network<T> {
    /// Compiles `spec` for `group` and the input representation `input`, with `loss`.
    ///
    /// Errors name the layer index and the shapes that do not fit (e.g. a dense layer after a
    /// non-trivial representation), an out-of-range hyperparameter, or an empty E.
    pub fn new(
        spec: &NetworkSpec,
        group: Arc<Group>,
        input: Rep,
        loss: Loss,
    ) -> Result<Self, NnError> {
        if spec.layers.is_empty() {
            return Err(NnError::EmptyNetwork);
        }
        if input.channels == 0 {
            return Err(NnError::Shape {
                layer: 0,
                kind: spec.layers[0].kind(),
                message: "the input representation has 0 channels".into(),
            });
        }
        let g = &*group;
        let mut rep = input;
        let mut widths = vec![input.dim(g)];
        let mut reps = vec![input];
        let mut entries: Vec<(String, Vec<usize>, usize, TensorKind)> = Vec::new();
        let mut ops = Vec::new();
        let mut flops_fwd = 0usize;
        for (i, ls) in spec.layers.iter().enumerate() {
            let width = rep.dim(g);
            let op = match *ls {
                LayerSpec::Group {
                    channels,
                    points,
                    init_std,
                    ..
                } => {
                    if channels == 0 {
                        return Err(invalid(i, ls, "channels must be at least 1".into()));
                    }
                    if !(init_std.is_finite() && init_std >= 0.0) {
                        return Err(invalid(
                            i,
                            ls,
                            format!("init_std must be finite and >= 0, got {init_std}"),
                        ));
                    }
                    let rep_out = Rep {
                        channels,
                        points: points.into(),
                    };
                    let projector =
                        Projector::new(g, rep_out, rep).map_err(|e| NnError::Group {
                            layer: i,
                            message: e.to_string(),
                        })?;
                    let (out, inp) = (rep_out.dim(g), width);
                    debug_assert_eq!((projector.rows(), projector.cols()), (out, inp));
                    entries.push((
                        format!("layer{i}.weight"),
                        vec![out, inp],
                        i,
                        TensorKind::Group {
                            projector,
                            rep_out,
                            rep_in: rep,
                        },
                    ));
                    flops_fwd += 2 * out * inp;
                    rep = rep_out;
                    Op::Linear {
                        w: entries.len() - 1,
                        bias: None,
                        inp,
                        out,
                    }
                }
                LayerSpec::Dense {
                    out,
                    init_scale,
                    bias,
                } => {
                    if rep.points != Points::Trivial {
                        return Err(shape_err(
                            i,
                            ls,
                            format!(
                                "a dense layer maps between trivial representations, but its \
                                 input is {}; put a group layer with points = \"trivial\" \
                                 (an invariant layer) before it",
                                describe(rep, g)
                            ),
                        ));
                    }
                    if out == 0 {
                        return Err(invalid(i, ls, "out must be at least 1".into()));
                    }
                    if !init_scale.is_finite() {
                        return Err(invalid(i, ls, format!("init_scale is {init_scale}")));
                    }
                    let inp = rep.channels;
                    entries.push((
                        format!("layer{i}.weight"),
                        vec![out, inp],
                        i,
                        TensorKind::Dense,
                    ));
                    let w = entries.len() - 1;
                    let bias = bias.then(|| {
                        entries.push((format!("layer{i}.bias"), vec![out], i, TensorKind::Dense));
                        entries.len() - 1
                    });
                    flops_fwd += 2 * out * inp;
                    rep = Rep::trivial(out);
                    Op::Linear { w, bias, inp, out }
                }
                LayerSpec::LeakyRelu { slope } => {
                    if !(slope.is_finite() && slope > 0.0) {
                        return Err(invalid(
                            i,
                            ls,
                            format!("slope must be finite and > 0, got {slope}"),
                        ));
                    }
                    Op::Pointwise(Pointwise::LeakyRelu(T::from_f64_lossy(slope)))
                }
                LayerSpec::Tanh => Op::Pointwise(Pointwise::Tanh),
                LayerSpec::Sigmoid => Op::Pointwise(Pointwise::Sigmoid),
                LayerSpec::Softplus => Op::Pointwise(Pointwise::Softplus),
                LayerSpec::Softmax => Op::Softmax,
                LayerSpec::BatchNorm { over } => {
                    let n = match over {
                        NormOver::Features => width,
                        NormOver::Channels => rep.channels,
                    };
                    entries.push((format!("layer{i}.scale"), vec![n], i, TensorKind::Norm));
                    entries.push((format!("layer{i}.shift"), vec![n], i, TensorKind::Norm));
                    Op::BatchNorm {
                        over,
                        channels: rep.channels,
                        positions: rep.positions(g),
                        scale: entries.len() - 2,
                        shift: entries.len() - 1,
                    }
                }
                LayerSpec::LayerNorm { over } => {
                    let n = match over {
                        NormOver::Features => width,
                        NormOver::Channels => rep.channels,
                    };
                    if n < 2 {
                        return Err(shape_err(
                            i,
                            ls,
                            format!(
                                "layer norm over {over:?} of {} normalises a single value \
                                 (output always 0)",
                                describe(rep, g)
                            ),
                        ));
                    }
                    Op::LayerNorm {
                        over,
                        channels: rep.channels,
                        positions: rep.positions(g),
                    }
                }
            };
            ops.push(op);
            widths.push(rep.dim(g));
            reps.push(rep);
        }
        let out_w = *widths.last().expect("non-empty");
        let loss_err = |message: String| NnError::Loss {
            loss: loss.name(),
            message,
        };
        match loss {
            Loss::CrossEntropyLogits | Loss::CrossEntropyOnProbabilities if out_w < 2 => {
                return Err(loss_err(format!(
                    "needs at least 2 output features (classes), the network gives {out_w}"
                )))
            }
            _ => {}
        }
        let first_param = ops
            .iter()
            .position(|op| matches!(op, Op::Linear { .. } | Op::BatchNorm { .. }));
        Ok(Network {
            spec: spec.clone(),
            group,
            input,
            loss,
            ops,
            widths,
            reps,
            layout: Arc::new(Layout::new(entries)),
            first_param,
            flops_fwd,
            _t: PhantomData,
        })
    }

    /// The spec it was built from.
    pub fn spec(&self) -> &NetworkSpec {
        &self.spec
    }
    /// The group.
    pub fn group(&self) -> &Arc<Group> {
        &self.group
    }
    /// The loss.
    pub fn loss_kind(&self) -> Loss {
        self.loss
    }
    /// The parameter layout (shared by all parameter and gradient sets of this network).
    pub fn layout(&self) -> &Arc<Layout> {
        &self.layout
    }
    /// Number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.layout.len()
    }
    /// Number of layers.
    pub fn num_layers(&self) -> usize {
        self.ops.len()
    }
    /// Width of an input row (`input_rep().dim(group)`).
    pub fn input_width(&self) -> usize {
        self.widths[0]
    }
    /// Width of an output row.
    pub fn output_width(&self) -> usize {
        *self.widths.last().expect("non-empty")
    }
    /// The input representation.
    pub fn input_rep(&self) -> Rep {
        self.input
    }
    /// The output representation (the last layer's; non-linearities keep it).
    pub fn output_rep(&self) -> Rep {
        *self.reps.last().expect("non-empty")
    }
    /// The representation after each layer (`[0]` is the input).
    pub fn reps(&self) -> &[Rep] {
        &self.reps
    }
    /// Floating-point operations (2 x multiply-adds) of the linear layers for one sample's
    /// forward pass; forward + backward is about 3x this.
    pub fn linear_flops_per_sample(&self) -> usize {
        self.flops_fwd
    }

    /// All-zero parameters (also a gradient store).
    pub fn zeros(&self) -> Params<T> {
        Params::zeros(self.layout.clone())
    }

    /// The initialisation of SPEC sections 3-4: group layers i.i.d. `N(0, init_std^2)` (or one
    /// Gaussian per channel pair broadcast over positions), dense weights `N(0,1) init_scale`,
    /// biases 0, batch-norm scale 1 and shift 0; drawn in f64 (so f32 and f64 runs start from
    /// the same A0 up to rounding), group layers then projected onto E, then cast to `T`.
    pub fn init_params(&self, rng: &mut impl Rng) -> Params<T> {
        let mut p = Params::<f64>::zeros(self.layout.clone());
        for ti in 0..self.layout.tensors().len() {
            let info = &self.layout.tensors()[ti];
            let spec = &self.spec.layers[info.layer];
            let data = p.tensor_mut(ti).data;
            match (spec, &info.kind) {
                (
                    LayerSpec::Group {
                        init_std,
                        constant_over_positions,
                        ..
                    },
                    TensorKind::Group {
                        rep_out, rep_in, ..
                    },
                ) => {
                    if *constant_over_positions {
                        let (so, si) = (
                            rep_out.positions(&self.group),
                            rep_in.positions(&self.group),
                        );
                        let cols = rep_in.channels * si;
                        for co in 0..rep_out.channels {
                            for ci in 0..rep_in.channels {
                                let v: f64 = rng.sample::<f64, _>(StandardNormal) * init_std;
                                for r in co * so..(co + 1) * so {
                                    data[r * cols + ci * si..r * cols + (ci + 1) * si].fill(v);
                                }
                            }
                        }
                    } else {
                        for x in data.iter_mut() {
                            *x = rng.sample::<f64, _>(StandardNormal) * init_std;
                        }
                    }
                }
                (LayerSpec::Dense { init_scale, .. }, _) if info.shape.len() == 2 => {
                    for x in data.iter_mut() {
                        *x = rng.sample::<f64, _>(StandardNormal) * init_scale;
                    }
                }
                (LayerSpec::BatchNorm { .. }, _) if info.name.ends_with(".scale") => {
                    data.fill(1.0);
                }
                _ => {}
            }
        }
        p.project_group_layers();
        p.cast()
    }

    /// A workspace for chunks of up to `rows` rows (it grows if given a larger chunk).
    pub fn workspace(&self, rows: usize) -> Workspace<T> {
        let maxw = *self.widths.iter().max().expect("non-empty");
        Workspace {
            rows,
            last_rows: 0,
            widths: self.widths.clone(),
            acts: self.widths[1..]
                .iter()
                .map(|&w| vec![T::zero(); rows * w])
                .collect(),
            aux: self
                .ops
                .iter()
                .zip(&self.widths[1..])
                .map(|(op, &w)| match op {
                    Op::BatchNorm { .. } => vec![T::zero(); rows * w],
                    _ => Vec::new(),
                })
                .collect(),
            stats: vec![Vec::new(); self.ops.len()],
            grad: [vec![T::zero(); rows * maxw], vec![T::zero(); rows * maxw]],
            xcopy: Vec::new(),
            tcopy: Vec::new(),
            scratch: Vec::new(),
        }
    }

    fn prepare(&self, ws: &mut Workspace<T>, rows: usize) {
        if ws.widths != self.widths {
            *ws = self.workspace(rows);
        } else if rows > ws.rows {
            let maxw = *self.widths.iter().max().expect("non-empty");
            for (i, &w) in self.widths[1..].iter().enumerate() {
                grow(&mut ws.acts[i], rows * w);
                if matches!(self.ops[i], Op::BatchNorm { .. }) {
                    grow(&mut ws.aux[i], rows * w);
                }
            }
            grow(&mut ws.grad[0], rows * maxw);
            grow(&mut ws.grad[1], rows * maxw);
            ws.rows = rows;
        }
    }

    fn check_params(&self, p: &Params<T>, what: &str) {
        assert!(
            Arc::ptr_eq(p.layout(), &self.layout) || p.layout().compatible(&self.layout),
            "{what}: parameter layout does not belong to this network"
        );
    }

    /// Network outputs (`rows x output_width`) for a chunk; normalisation statistics per
    /// mini-batch of `minibatch` consecutive rows (the last may be smaller).
    ///
    /// # Panics
    /// If `minibatch == 0`, the input width is wrong, or `params` is from another network.
    pub fn forward<'w>(
        &self,
        params: &Params<T>,
        x: ArrayView2<'_, T>,
        minibatch: usize,
        ws: &'w mut Workspace<T>,
    ) -> ArrayView2<'w, T> {
        self.check_params(params, "forward");
        let r = x.nrows();
        self.prepare(ws, r);
        self.forward_pass(params, x, minibatch, ws);
        let w = self.output_width();
        ArrayView2::from_shape((r, w), &ws.acts[self.ops.len() - 1][..r * w]).expect("shape")
    }

    /// The sum over mini-batches of (rows in batch x mean loss of the batch), i.e. the sum of
    /// per-sample losses; divide by the number of rows for the mean. No gradient.
    pub fn loss(
        &self,
        params: &Params<T>,
        x: ArrayView2<'_, T>,
        targets: ArrayView2<'_, T>,
        minibatch: usize,
        ws: &mut Workspace<T>,
    ) -> T {
        self.check_params(params, "loss");
        let r = x.nrows();
        self.prepare(ws, r);
        self.forward_pass(params, x, minibatch, ws);
        T::from_f64_lossy(self.loss_terms(targets, ws, false))
    }

    /// Forward and backward on a chunk. Mini-batches are consecutive groups of `minibatch`
    /// rows (the last may be smaller); normalisation statistics are per mini-batch. Returns the
    /// sum over mini-batches of (rows in batch x mean loss of the batch) and ADDS the gradient
    /// of that quantity into `grads` (so summing over chunks and dividing by the number of
    /// samples gives the full-batch mean-loss gradient). Each linear layer costs one GEMM
    /// forward and two backward (one for the first layer).
    ///
    /// # Panics
    /// If `minibatch == 0`, the shapes of `x` / `targets` are wrong, or `params` / `grads`
    /// are not laid out for this network.
    pub fn loss_and_grad(
        &self,
        params: &Params<T>,
        x: ArrayView2<'_, T>,
        targets: ArrayView2<'_, T>,
        minibatch: usize,
        grads: &mut Params<T>,
        ws: &mut Workspace<T>,
    ) -> T {
        self.check_params(params, "loss_and_grad (params)");
        self.check_params(grads, "loss_and_grad (grads)");
        let r = x.nrows();
        self.prepare(ws, r);
        self.forward_pass(params, x, minibatch, ws);
        let l = self.loss_terms(targets, ws, true);
        self.backward_pass(params, x, minibatch, grads, ws);
        T::from_f64_lossy(l)
    }

    /// Checks the network's own equivariance on a chunk: the largest `|f(g x) - g f(x)|` over
    /// the given group elements (all rows of the chunk transformed by the same `g`, so
    /// per-mini-batch statistics transform with it), divided by `max |f(x)|`. Near round-off
    /// (about 1e-15 in f64, 1e-6 in f32) when every group layer is in E; an invariant output
    /// (trivial representation) is compared with `f(x)` itself. Allocates: a check, not a
    /// hot path.
    pub fn equivariance_error(
        &self,
        params: &Params<T>,
        x: ArrayView2<'_, T>,
        elements: &[eqaug_groups::Perm],
        minibatch: usize,
        ws: &mut Workspace<T>,
    ) -> f64 {
        let fx = self.forward(params, x, minibatch, ws).to_owned();
        let scale = fx.iter().fold(0.0f64, |a, v| a.max(v.to_f64_exact().abs()));
        let mut gx = x.to_owned();
        let mut gfx = fx.clone();
        let mut worst = 0.0f64;
        for g in elements {
            crate::act_on_rows(&self.group, self.input, g, x, gx.view_mut());
            crate::act_on_rows(&self.group, self.output_rep(), g, fx.view(), gfx.view_mut());
            let fgx = self.forward(params, gx.view(), minibatch, ws);
            let e = fgx.iter().zip(gfx.iter()).fold(0.0f64, |a, (u, v)| {
                a.max((u.to_f64_exact() - v.to_f64_exact()).abs())
            });
            worst = worst.max(e);
        }
        if scale > 0.0 {
            worst / scale
        } else {
            worst
        }
    }

    fn forward_pass(
        &self,
        params: &Params<T>,
        x: ArrayView2<'_, T>,
        minibatch: usize,
        ws: &mut Workspace<T>,
    ) {
        assert!(minibatch > 0, "minibatch must be at least 1");
        assert_eq!(
            x.ncols(),
            self.input_width(),
            "input rows have {} features, the network expects {}",
            x.ncols(),
            self.input_width()
        );
        let r = x.nrows();
        ws.last_rows = r;
        let Workspace {
            acts,
            aux,
            stats,
            xcopy,
            scratch,
            ..
        } = ws;
        let xs: &[T] = match x.as_slice() {
            Some(s) => s,
            None => {
                xcopy.clear();
                xcopy.extend(x.iter().copied());
                xcopy
            }
        };
        let p = params.as_slice();
        let lay = self.layout.tensors();
        let ten = |i: usize| &p[lay[i].offset..lay[i].offset + lay[i].len];
        for (i, op) in self.ops.iter().enumerate() {
            let (before, after) = acts.split_at_mut(i);
            let (win, wout) = (self.widths[i], self.widths[i + 1]);
            let input: &[T] = if i == 0 {
                xs
            } else {
                &before[i - 1][..r * win]
            };
            let output = &mut after[0][..r * wout];
            match *op {
                Op::Linear { w, bias, inp, out } => {
                    ops::linear_forward(input, ten(w), bias.map(ten), output, r, inp, out)
                }
                Op::Pointwise(f) => ops::pointwise_forward(f, input, output),
                Op::Softmax => ops::softmax_forward(input, output, win),
                Op::BatchNorm {
                    over,
                    channels,
                    positions,
                    scale,
                    shift,
                } => {
                    let nper = match over {
                        NormOver::Features => win,
                        NormOver::Channels => channels,
                    };
                    let st = &mut stats[i];
                    grow(st, r.div_ceil(minibatch) * nper);
                    let xhat = &mut aux[i][..r * win];
                    for (b, (b0, b1)) in ops::batches(r, minibatch).enumerate() {
                        let rng = b0 * win..b1 * win;
                        let inv = &mut st[b * nper..(b + 1) * nper];
                        match over {
                            NormOver::Features => ops::bn_features_forward(
                                &input[rng.clone()],
                                &mut xhat[rng.clone()],
                                &mut output[rng],
                                inv,
                                ten(scale),
                                ten(shift),
                                win,
                            ),
                            NormOver::Channels => ops::bn_channels_forward(
                                &input[rng.clone()],
                                &mut xhat[rng.clone()],
                                &mut output[rng],
                                inv,
                                ten(scale),
                                ten(shift),
                                channels,
                                positions,
                            ),
                        }
                    }
                }
                Op::LayerNorm {
                    over,
                    channels,
                    positions,
                } => {
                    let st = &mut stats[i];
                    match over {
                        NormOver::Features => {
                            grow(st, r);
                            ops::ln_features_forward(input, output, &mut st[..r], win);
                        }
                        NormOver::Channels => {
                            grow(st, r * positions);
                            grow(scratch, positions);
                            ops::ln_channels_forward(
                                input,
                                output,
                                &mut st[..r * positions],
                                &mut scratch[..positions],
                                channels,
                                positions,
                            );
                        }
                    }
                }
            }
        }
    }

    /// Loss sum over the chunk (f64); if `grad`, its gradient w.r.t. the output into `ws.grad[0]`.
    fn loss_terms(&self, targets: ArrayView2<'_, T>, ws: &mut Workspace<T>, grad: bool) -> f64 {
        let w = self.output_width();
        let r = ws.last_rows;
        assert_eq!(
            targets.dim(),
            (r, w),
            "targets must be rows x output_width = {r} x {w}"
        );
        let Workspace {
            acts,
            grad: gbuf,
            tcopy,
            ..
        } = ws;
        let t: &[T] = match targets.as_slice() {
            Some(s) => s,
            None => {
                tcopy.clear();
                tcopy.extend(targets.iter().copied());
                tcopy
            }
        };
        let y = &acts[self.ops.len() - 1][..r * w];
        let g = if grad {
            Some(&mut gbuf[0][..r * w])
        } else {
            None
        };
        match self.loss {
            Loss::Bce => ops::bce(y, t, g, w as f64),
            Loss::SegmentationBce => {
                let pos = self.output_rep().positions(&self.group);
                ops::bce(y, t, g, pos as f64)
            }
            Loss::CrossEntropyLogits | Loss::CrossEntropyOnProbabilities => {
                ops::cross_entropy(y, t, g, w)
            }
            Loss::Mse => ops::mse(y, t, g, w as f64),
        }
    }

    fn backward_pass(
        &self,
        params: &Params<T>,
        x: ArrayView2<'_, T>,
        minibatch: usize,
        grads: &mut Params<T>,
        ws: &mut Workspace<T>,
    ) {
        let Some(first) = self.first_param else {
            return;
        };
        let r = x.nrows();
        let Workspace {
            acts,
            aux,
            stats,
            grad: gbuf,
            xcopy,
            scratch,
            ..
        } = ws;
        let xs: &[T] = match x.as_slice() {
            Some(s) => s,
            // forward_pass left the copy in place
            None => &xcopy[..],
        };
        let p = params.as_slice();
        let lay = self.layout.tensors();
        let ten = |i: usize| &p[lay[i].offset..lay[i].offset + lay[i].len];
        let gs = grads.as_mut_slice();
        let [g0, g1] = gbuf;
        let (mut cur, mut other) = (g0, g1);
        for i in (first..self.ops.len()).rev() {
            let (win, wout) = (self.widths[i], self.widths[i + 1]);
            let input: &[T] = if i == 0 { xs } else { &acts[i - 1][..r * win] };
            let output: &[T] = &acts[i][..r * wout];
            match self.ops[i] {
                Op::Linear { w, bias, inp, out } => {
                    let (wo, wl) = (lay[w].offset, lay[w].len);
                    let (dw, db) = match bias {
                        Some(b) => {
                            // the bias directly follows its weight in the layout
                            let (a, rest) = gs[wo..].split_at_mut(wl);
                            (a, Some(&mut rest[..lay[b].len]))
                        }
                        None => (&mut gs[wo..wo + wl], None),
                    };
                    let need_dx = i > first;
                    ops::linear_backward(
                        input,
                        ten(w),
                        &cur[..r * out],
                        dw,
                        db,
                        need_dx.then(|| &mut other[..r * inp]),
                        r,
                        inp,
                        out,
                    );
                    std::mem::swap(&mut cur, &mut other);
                }
                Op::Pointwise(f) => ops::pointwise_backward(f, input, output, &mut cur[..r * win]),
                Op::Softmax => ops::softmax_backward(output, &mut cur[..r * win], win),
                Op::BatchNorm {
                    over,
                    channels,
                    positions,
                    scale,
                    shift,
                } => {
                    let nper = match over {
                        NormOver::Features => win,
                        NormOver::Channels => channels,
                    };
                    let (so, sl) = (lay[scale].offset, lay[scale].len);
                    debug_assert_eq!(lay[shift].offset, so + sl);
                    let (dgamma, dbeta) = gs[so..so + 2 * sl].split_at_mut(sl);
                    let xhat = &aux[i][..r * win];
                    let st = &stats[i];
                    grow(scratch, 2 * nper);
                    let (s1, s2) = scratch[..2 * nper].split_at_mut(nper);
                    for (b, (b0, b1)) in ops::batches(r, minibatch).enumerate() {
                        let rng = b0 * win..b1 * win;
                        let inv = &st[b * nper..(b + 1) * nper];
                        match over {
                            NormOver::Features => ops::bn_features_backward(
                                &xhat[rng.clone()],
                                &mut cur[rng],
                                inv,
                                ten(scale),
                                dgamma,
                                dbeta,
                                s1,
                                s2,
                                win,
                            ),
                            NormOver::Channels => ops::bn_channels_backward(
                                &xhat[rng.clone()],
                                &mut cur[rng],
                                inv,
                                ten(scale),
                                dgamma,
                                dbeta,
                                channels,
                                positions,
                            ),
                        }
                    }
                }
                Op::LayerNorm {
                    over,
                    channels,
                    positions,
                } => match over {
                    NormOver::Features => {
                        ops::ln_features_backward(output, &mut cur[..r * win], &stats[i][..r], win)
                    }
                    NormOver::Channels => {
                        grow(scratch, 2 * positions);
                        let (s1, s2) = scratch[..2 * positions].split_at_mut(positions);
                        ops::ln_channels_backward(
                            output,
                            &mut cur[..r * win],
                            &stats[i][..r * positions],
                            s1,
                            s2,
                            channels,
                            positions,
                        )
                    }
                },
            }
        }
    }
}
