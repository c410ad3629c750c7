//! The sequence executor: forward and exact backward over a list of [`Layer`]s on chunks of
//! rows, the parameter layout, the workspace and the loss.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use eqaug_groups::Real;
use ndarray::ArrayView2;
use rand::Rng;

use crate::layers::{
    grow, Backward, Forward, GradIn, Layer, LayerState, TangentBackward, TangentForward,
};
use crate::params::{Layout, Params};
use crate::{loss, Loss, NnError};

/// A sequence of layers with a loss: the executor behind [`crate::Network`], usable on its
/// own for networks built from layers directly (e.g. with layers of other crates).
///
/// Inputs are chunks `x: rows x input_width` (one sample per row), targets
/// `rows x output_width`. The parameters of layer `i` are the tensors `layer{i}.{name}` of
/// its [`Layer::params`], consecutive in the [`Layout`]; their initialisation is drawn by each
/// layer in order, then every tensor with a projector is projected onto E.
#[derive(Clone)]
pub struct Sequential<T> {
    layers: Vec<Arc<dyn Layer<T>>>,
    /// `widths[0]` input width, `widths[i + 1]` output width of layer `i`.
    widths: Vec<usize>,
    /// Offsets of each layer's parameters in the flat vector.
    blocks: Vec<Range<usize>>,
    layout: Arc<Layout>,
    loss: Loss,
    output_positions: usize,
    /// First layer with parameters: backward stops there (no input gradient needed).
    first_param: Option<usize>,
    flops_fwd: usize,
    /// The loss resolved against the last layer (from the logits of a final sigmoid).
    kernel: loss::Kernel,
}

impl<T: Real> fmt::Debug for Sequential<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sequential")
            .field(
                "layers",
                &self.layers.iter().map(|l| l.kind()).collect::<Vec<_>>(),
            )
            .field("widths", &self.widths)
            .field("loss", &self.loss)
            .field("params", &self.layout.len())
            .finish()
    }
}

/// Reusable buffers for one network and chunks of up to `rows` rows (grown on demand).
pub struct Workspace<T> {
    rows: usize,
    /// Rows of the chunk of the last forward pass.
    last_rows: usize,
    widths: Vec<usize>,
    /// Output of every layer.
    acts: Vec<Vec<T>>,
    /// What each layer keeps from forward to backward.
    states: Vec<LayerState<T>>,
    grad: [Vec<T>; 2],
    xcopy: Vec<T>,
    tcopy: Vec<T>,
    scratch: Vec<T>,
    /// Second-order buffers ([`Sequential::hvp`]), empty until used: the tangent of every
    /// layer's output, the layers' tangent states, the gradient w.r.t. every layer's output
    /// at the point, and a scratch gradient store.
    tacts: Vec<Vec<T>>,
    tstates: Vec<LayerState<T>>,
    ybars: Vec<Vec<T>>,
    gscratch: Vec<T>,
    /// Rows of the chunk whose point [`Sequential::hvp_point`] prepared (None after any other
    /// forward pass).
    point_rows: Option<usize>,
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

impl<T: Real> Sequential<T> {
    /// The sequence `layers` (first applied first) with `loss`; `output_positions` is the
    /// number of positions per output channel (used by [`Loss::SegmentationBce`], which
    /// averages over positions; 1 for plain features).
    ///
    /// Errors: no layers, a layer whose input width differs from the previous layer's output
    /// width, an input of width 0, or a loss that does not fit the output (fewer than 2
    /// classes for a cross-entropy, [`Loss::CrossEntropyOnProbabilities`] without a final
    /// softmax, [`Loss::CrossEntropyLogits`] after a final softmax).
    pub fn new(
        layers: Vec<Arc<dyn Layer<T>>>,
        loss: Loss,
        output_positions: usize,
    ) -> Result<Self, NnError> {
        let Some(first) = layers.first() else {
            return Err(NnError::EmptyNetwork);
        };
        let mut widths = vec![first.input_width()];
        if widths[0] == 0 {
            return Err(NnError::Shape {
                layer: 0,
                kind: first.kind(),
                message: "the input has 0 features".into(),
            });
        }
        let mut entries = Vec::new();
        let mut blocks = Vec::new();
        let mut offset = 0;
        let mut flops_fwd = 0;
        for (i, layer) in layers.iter().enumerate() {
            let prev = *widths.last().expect("non-empty");
            if layer.input_width() != prev {
                return Err(NnError::Shape {
                    layer: i,
                    kind: layer.kind(),
                    message: format!(
                        "takes rows of {} features, but its input has {prev}",
                        layer.input_width()
                    ),
                });
            }
            widths.push(layer.output_width());
            let start = offset;
            for e in layer.params() {
                offset += e.len();
                entries.push((format!("layer{i}.{}", e.name), e.shape, i, e.kind));
            }
            blocks.push(start..offset);
            flops_fwd += layer.flops_per_sample();
        }
        let out_w = *widths.last().expect("non-empty");
        let last = layers.last().expect("non-empty");
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
            Loss::CrossEntropyOnProbabilities if !last.outputs_probabilities() => {
                return Err(loss_err(format!(
                    "takes probabilities, but the last layer (layer {}) is `{}`, not a softmax; \
                     end the network with a softmax layer, or use cross_entropy_logits for an \
                     output of logits",
                    layers.len() - 1,
                    last.kind()
                )))
            }
            Loss::CrossEntropyLogits if last.outputs_probabilities() => {
                return Err(loss_err(format!(
                    "takes logits, but the last layer (layer {}) is a `softmax`, so the loss \
                     would apply a second softmax; drop the softmax layer (a preset does so for \
                     this loss), or use cross_entropy_on_probabilities for the authors' double \
                     softmax",
                    layers.len() - 1
                )))
            }
            Loss::SegmentationBce if output_positions == 0 || out_w % output_positions != 0 => {
                return Err(loss_err(format!(
                    "the output width {out_w} is not channels x {output_positions} positions"
                )))
            }
            _ => {}
        }
        let first_param = blocks.iter().position(|b| !b.is_empty());
        let logits = matches!(loss, Loss::Bce | Loss::SegmentationBce)
            && last.kind() == "sigmoid"
            && first_param.is_some_and(|f| f + 1 < layers.len());
        let kernel = loss::Kernel::new(loss, out_w, output_positions, logits);
        let layout = Layout::new(entries);
        debug_assert_eq!(layout.len(), offset);
        Ok(Sequential {
            layers,
            widths,
            blocks,
            layout: Arc::new(layout),
            loss,
            output_positions,
            first_param,
            flops_fwd,
            kernel,
        })
    }

    /// The layers, first applied first.
    pub fn layers(&self) -> &[Arc<dyn Layer<T>>] {
        &self.layers
    }
    /// `[0]` the input width, `[i + 1]` the output width of layer `i`.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }
    /// The range of layer `i`'s parameters in the flat vector ([`Params::as_slice`]).
    pub fn param_range(&self, i: usize) -> Range<usize> {
        self.blocks[i].clone()
    }
    /// The loss.
    pub fn loss_kind(&self) -> Loss {
        self.loss
    }
    /// Positions per output channel (for the segmentation loss).
    pub fn output_positions(&self) -> usize {
        self.output_positions
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
        self.layers.len()
    }
    /// Width of an input row.
    pub fn input_width(&self) -> usize {
        self.widths[0]
    }
    /// Width of an output row.
    pub fn output_width(&self) -> usize {
        *self.widths.last().expect("non-empty")
    }
    /// Floating-point operations (2 x multiply-adds) of the GEMM layers for one sample's
    /// forward pass; forward + backward is about 3x this.
    pub fn linear_flops_per_sample(&self) -> usize {
        self.flops_fwd
    }

    /// All-zero parameters (also a gradient store).
    pub fn zeros(&self) -> Params<T> {
        Params::zeros(self.layout.clone())
    }

    /// Initial parameters: each layer's [`Layer::init`] in order, drawn in `f64` (so `f32`
    /// and `f64` runs start from the same point up to rounding), then every tensor with a
    /// projector projected onto E, then cast to `T`.
    pub fn init_params(&self, rng: &mut impl Rng) -> Params<T> {
        let mut p = Params::<f64>::zeros(self.layout.clone());
        for (layer, block) in self.layers.iter().zip(&self.blocks) {
            layer.init(&mut p.as_mut_slice()[block.clone()], rng);
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
            states: vec![LayerState::default(); self.layers.len()],
            grad: [vec![T::zero(); rows * maxw], vec![T::zero(); rows * maxw]],
            xcopy: Vec::new(),
            tcopy: Vec::new(),
            scratch: Vec::new(),
            tacts: Vec::new(),
            tstates: Vec::new(),
            ybars: Vec::new(),
            gscratch: Vec::new(),
            point_rows: None,
        }
    }

    fn prepare(&self, ws: &mut Workspace<T>, rows: usize) {
        if ws.widths != self.widths {
            *ws = self.workspace(rows);
        } else if rows > ws.rows {
            let maxw = *self.widths.iter().max().expect("non-empty");
            for (i, &w) in self.widths[1..].iter().enumerate() {
                grow(&mut ws.acts[i], rows * w);
            }
            grow(&mut ws.grad[0], rows * maxw);
            grow(&mut ws.grad[1], rows * maxw);
            ws.rows = rows;
        }
    }

    /// Checks that `p` is laid out for this network (`argument` names it in the error).
    pub(crate) fn check_params(
        &self,
        p: &Params<T>,
        argument: &'static str,
    ) -> Result<(), NnError> {
        if Arc::ptr_eq(p.layout(), &self.layout) || p.layout().compatible(&self.layout) {
            Ok(())
        } else {
            Err(NnError::input(
                argument,
                format_args!(
                    "parameters laid out for this network ({} tensors, {} values)",
                    self.layout.tensors().len(),
                    self.layout.len()
                ),
                format_args!(
                    "a layout of {} tensors, {} values",
                    p.layout().tensors().len(),
                    p.layout().len()
                ),
            ))
        }
    }

    /// Checks a chunk `x` (and its `targets`, if given) and the mini-batch size.
    fn check_chunk(
        &self,
        x: ArrayView2<'_, T>,
        targets: Option<ArrayView2<'_, T>>,
        minibatch: usize,
    ) -> Result<(), NnError> {
        if minibatch == 0 {
            return Err(NnError::input("minibatch", "at least 1", 0));
        }
        if x.ncols() != self.input_width() {
            return Err(NnError::input(
                "x",
                format_args!("rows of {} features", self.input_width()),
                format_args!("{} x {}", x.nrows(), x.ncols()),
            ));
        }
        if let Some(t) = targets {
            let (r, w) = (x.nrows(), self.output_width());
            if t.dim() != (r, w) {
                return Err(NnError::input(
                    "targets",
                    format_args!("{r} x {w} (rows of x x output width)"),
                    format_args!("{} x {}", t.nrows(), t.ncols()),
                ));
            }
        }
        Ok(())
    }

    /// The outputs (`rows x output_width`) of the last forward pass run in `ws` (by
    /// [`Sequential::forward`], [`Sequential::loss`] or [`Sequential::loss_and_grad`]), e.g.
    /// for the accuracy of the mini-batch just trained on.
    ///
    /// # Errors
    /// [`NnError::Input`] if `ws` is not this network's workspace.
    pub fn output<'w>(&self, ws: &'w Workspace<T>) -> Result<ArrayView2<'w, T>, NnError> {
        if ws.widths != self.widths {
            return Err(NnError::input(
                "ws",
                format_args!("a workspace of layer widths {:?}", self.widths),
                format_args!("one of widths {:?}", ws.widths),
            ));
        }
        let (r, w) = (ws.last_rows, self.output_width());
        Ok(
            ArrayView2::from_shape((r, w), &ws.acts[self.layers.len() - 1][..r * w])
                .expect("shape"),
        )
    }

    /// Network outputs (`rows x output_width`) for a chunk; statistics across rows per
    /// mini-batch of `minibatch` consecutive rows (the last may be smaller).
    ///
    /// # Errors
    /// [`NnError::Input`] if `minibatch == 0`, the input width is wrong, or `params` is laid
    /// out for another network.
    pub fn forward<'w>(
        &self,
        params: &Params<T>,
        x: ArrayView2<'_, T>,
        minibatch: usize,
        ws: &'w mut Workspace<T>,
    ) -> Result<ArrayView2<'w, T>, NnError> {
        self.check_params(params, "params")?;
        self.check_chunk(x, None, minibatch)?;
        let r = x.nrows();
        self.prepare(ws, r);
        self.forward_pass(params, x, minibatch, ws);
        let w = self.output_width();
        Ok(
            ArrayView2::from_shape((r, w), &ws.acts[self.layers.len() - 1][..r * w])
                .expect("shape"),
        )
    }

    /// The sum over mini-batches of (rows in batch x mean loss of the batch), i.e. the sum of
    /// per-sample losses; divide by the number of rows for the mean. No gradient.
    ///
    /// # Errors
    /// As [`Sequential::forward`], and if `targets` is not `rows x output_width`.
    pub fn loss(
        &self,
        params: &Params<T>,
        x: ArrayView2<'_, T>,
        targets: ArrayView2<'_, T>,
        minibatch: usize,
        ws: &mut Workspace<T>,
    ) -> Result<T, NnError> {
        self.check_params(params, "params")?;
        self.check_chunk(x, Some(targets), minibatch)?;
        let r = x.nrows();
        self.prepare(ws, r);
        self.forward_pass(params, x, minibatch, ws);
        Ok(T::from_f64_lossy(self.loss_terms(targets, ws, false)))
    }

    /// One forward pass giving both [`Sequential::loss`] (the sum of per-sample losses) and
    /// the outputs (`rows x output_width`) of [`Sequential::forward`]; no gradient.
    ///
    /// # Errors
    /// As [`Sequential::loss`].
    pub fn forward_and_loss<'w>(
        &self,
        params: &Params<T>,
        x: ArrayView2<'_, T>,
        targets: ArrayView2<'_, T>,
        minibatch: usize,
        ws: &'w mut Workspace<T>,
    ) -> Result<(T, ArrayView2<'w, T>), NnError> {
        self.check_params(params, "params")?;
        self.check_chunk(x, Some(targets), minibatch)?;
        let r = x.nrows();
        self.prepare(ws, r);
        self.forward_pass(params, x, minibatch, ws);
        let l = T::from_f64_lossy(self.loss_terms(targets, ws, false));
        let w = self.output_width();
        let y = ArrayView2::from_shape((r, w), &ws.acts[self.layers.len() - 1][..r * w])
            .expect("shape");
        Ok((l, y))
    }

    /// Forward and backward on a chunk: returns the sum over mini-batches of (rows in batch x
    /// mean loss of the batch), i.e. the sum of per-sample losses, and OVERWRITES `grads` with
    /// the gradient of that sum (divide both by the number of rows for the mean loss). To sum
    /// gradients over several chunks, use [`Sequential::accumulate_loss_and_grad`].
    ///
    /// Mini-batches are consecutive groups of `minibatch` rows (the last may be smaller);
    /// normalisation statistics are per mini-batch.
    ///
    /// # Errors
    /// [`NnError::Input`] if `minibatch == 0`, the shapes of `x` / `targets` are wrong, or
    /// `params` / `grads` are laid out for another network (`grads` is then unchanged).
    pub fn loss_and_grad(
        &self,
        params: &Params<T>,
        x: ArrayView2<'_, T>,
        targets: ArrayView2<'_, T>,
        minibatch: usize,
        grads: &mut Params<T>,
        ws: &mut Workspace<T>,
    ) -> Result<T, NnError> {
        self.check_params(grads, "grads")?;
        self.check_params(params, "params")?;
        self.check_chunk(x, Some(targets), minibatch)?;
        grads.fill_zero();
        self.accumulate_loss_and_grad(params, x, targets, minibatch, grads, ws)
    }

    /// As [`Sequential::loss_and_grad`], but ADDS the gradient into `grads`: summing over the
    /// chunks of a data set (starting from [`Params::fill_zero`] or [`Sequential::zeros`])
    /// and dividing by the number of samples gives the full-batch mean-loss gradient. Each
    /// linear layer costs one GEMM forward and two backward (one for the first layer).
    ///
    /// # Errors
    /// As [`Sequential::loss_and_grad`].
    pub fn accumulate_loss_and_grad(
        &self,
        params: &Params<T>,
        x: ArrayView2<'_, T>,
        targets: ArrayView2<'_, T>,
        minibatch: usize,
        grads: &mut Params<T>,
        ws: &mut Workspace<T>,
    ) -> Result<T, NnError> {
        self.check_params(params, "params")?;
        self.check_params(grads, "grads")?;
        self.check_chunk(x, Some(targets), minibatch)?;
        let r = x.nrows();
        self.prepare(ws, r);
        self.forward_pass(params, x, minibatch, ws);
        let l = self.loss_terms(targets, ws, true);
        self.backward_pass(params, x, minibatch, grads.as_mut_slice(), ws, false, true);
        Ok(T::from_f64_lossy(l))
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
        ws.point_rows = None;
        let Workspace {
            acts,
            states,
            xcopy,
            scratch,
            ..
        } = ws;
        let xs = contiguous(x, xcopy);
        let p = params.as_slice();
        for (i, layer) in self.layers.iter().enumerate() {
            let (before, after) = acts.split_at_mut(i);
            let (win, wout) = (self.widths[i], self.widths[i + 1]);
            let input: &[T] = if i == 0 {
                xs
            } else {
                &before[i - 1][..r * win]
            };
            layer.forward(Forward {
                params: &p[self.blocks[i].clone()],
                input,
                output: &mut after[0][..r * wout],
                rows: r,
                minibatch,
                state: &mut states[i],
                scratch: &mut *scratch,
            });
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
        let t = contiguous(targets, tcopy);
        let g = if grad {
            Some(&mut gbuf[0][..r * w])
        } else {
            None
        };
        let y = &acts[self.loss_layer()][..r * w];
        self.kernel.evaluate(y, t, g)
    }

    /// The layer whose output the loss takes: the last one, or the one before a final
    /// sigmoid when the binary cross-entropy is computed from logits.
    fn loss_layer(&self) -> usize {
        self.layers.len() - if self.kernel.on_logits() { 2 } else { 1 }
    }

    /// How the binary cross-entropy is computed: `Some("logits")` when the network ends in a
    /// sigmoid and the loss is [`Loss::Bce`] or [`Loss::SegmentationBce`] (the sigmoid's input
    /// is taken, one smooth function), `Some("probabilities")` on probabilities otherwise,
    /// `Some("probabilities (PyTorch BCELoss gradient)")` for the authors' form; `None` for the
    /// other losses.
    pub fn bce_form(&self) -> Option<&'static str> {
        self.kernel.bce_form()
    }

    /// The backward pass; with `record`, the gradient w.r.t. every layer's output is kept in
    /// `ws.ybars` (for the second-order pass).
    fn backward_pass(
        &self,
        params: &Params<T>,
        x: ArrayView2<'_, T>,
        minibatch: usize,
        gs: &mut [T],
        ws: &mut Workspace<T>,
        record: bool,
        param_grads: bool,
    ) {
        let Some(first) = self.first_param else {
            return;
        };
        let r = x.nrows();
        let Workspace {
            acts,
            states,
            grad: gbuf,
            xcopy,
            scratch,
            ybars,
            ..
        } = ws;
        let xs: &[T] = match x.as_slice() {
            Some(s) => s,
            // forward_pass left the copy in place
            None => &xcopy[..],
        };
        let p = params.as_slice();
        let [g0, g1] = gbuf;
        let (mut cur, mut other) = (g0, g1);
        for i in (first..=self.loss_layer()).rev() {
            let (win, wout) = (self.widths[i], self.widths[i + 1]);
            let input: &[T] = if i == 0 { xs } else { &acts[i - 1][..r * win] };
            let block = self.blocks[i].clone();
            let need_dx = i > first;
            if record {
                grow(&mut ybars[i], r * wout);
                ybars[i][..r * wout].copy_from_slice(&cur[..r * wout]);
            }
            let res = self.layers[i].backward(Backward {
                params: &p[block.clone()],
                grads: &mut gs[block],
                input,
                output: &acts[i][..r * wout],
                dy: &mut cur[..r * wout],
                dx: need_dx.then(|| &mut other[..r * win]),
                rows: r,
                minibatch,
                state: &states[i],
                scratch: &mut *scratch,
                param_grads,
            });
            if res == GradIn::InDx {
                std::mem::swap(&mut cur, &mut other);
            }
        }
    }

    /// The first layer without a tangent pass, as an error (the exact HVP needs every layer
    /// from the first one with parameters on).
    pub fn check_second_order(&self) -> Result<(), NnError> {
        let first = self.first_param.unwrap_or(self.layers.len());
        for (i, l) in self.layers.iter().enumerate().skip(first) {
            if !l.has_tangent() {
                return Err(NnError::NoSecondOrder {
                    layer: i,
                    kind: l.kind(),
                });
            }
        }
        Ok(())
    }

    /// Prepares the exact Hessian-vector product at `params` on a chunk: one forward and one
    /// backward pass whose state stays in `ws` (the gradient w.r.t. every layer's output
    /// included), so that [`Sequential::hvp_at_point`] can then be called for any number of
    /// vectors at the cost of the tangent passes only. Writes the gradient into `grads` if given
    /// (as [`Sequential::loss_and_grad`]) and returns the loss sum.
    ///
    /// Errors: a layer without a tangent pass ([`NnError::NoSecondOrder`]).
    ///
    /// # Panics
    /// As [`Sequential::loss_and_grad`].
    pub fn hvp_point(
        &self,
        params: &Params<T>,
        x: ArrayView2<'_, T>,
        targets: ArrayView2<'_, T>,
        minibatch: usize,
        grads: Option<&mut Params<T>>,
        ws: &mut Workspace<T>,
    ) -> Result<T, NnError> {
        self.check_second_order()?;
        self.check_params(params, "params")?;
        self.check_chunk(x, Some(targets), minibatch)?;
        let r = x.nrows();
        self.prepare(ws, r);
        self.forward_pass(params, x, minibatch, ws);
        let l = self.loss_terms(targets, ws, true);
        if ws.ybars.len() != self.layers.len() {
            ws.ybars = vec![Vec::new(); self.layers.len()];
        }
        match grads {
            Some(g) => {
                self.check_params(g, "grads")?;
                g.fill_zero();
                self.backward_pass(params, x, minibatch, g.as_mut_slice(), ws, true, true);
            }
            None => {
                let mut gs = std::mem::take(&mut ws.gscratch);
                gs.clear();
                gs.resize(self.num_params(), T::zero());
                self.backward_pass(params, x, minibatch, &mut gs, ws, true, false);
                ws.gscratch = gs;
            }
        }
        ws.point_rows = Some(r);
        Ok(T::from_f64_lossy(l))
    }

    /// The exact Hessian-vector product at the point [`Sequential::hvp_point`] prepared in
    /// `ws` (the same `params`, `x`, `targets` and `minibatch`), written into `out`; see
    /// [`Sequential::accumulate_hvp_at_point`].
    #[allow(clippy::too_many_arguments)]
    pub fn hvp_at_point(
        &self,
        params: &Params<T>,
        v: &Params<T>,
        x: ArrayView2<'_, T>,
        targets: ArrayView2<'_, T>,
        minibatch: usize,
        out: &mut Params<T>,
        ws: &mut Workspace<T>,
    ) -> Result<(), NnError> {
        self.check_params(out, "out")?;
        out.fill_zero();
        self.accumulate_hvp_at_point(params, v, x, targets, minibatch, out, ws)
    }

    /// The exact Hessian-vector product at the point [`Sequential::hvp_point`] prepared in
    /// `ws` (the same `params`, `x`, `targets` and `minibatch`), ADDED into `out` (summing over
    /// chunks, as [`Sequential::accumulate_loss_and_grad`]); `H` is
    /// `H` is the Hessian of the loss sum of [`Sequential::loss_and_grad`]. One tangent
    /// forward and one second-order backward pass (Pearlmutter's R-operator), each layer's
    /// own ([`Layer::forward_tangent`], [`Layer::backward_tangent`]); nothing of the point is
    /// recomputed.
    ///
    /// Errors: no prepared point for a chunk of this many rows in `ws`
    /// ([`NnError::Workspace`]).
    ///
    /// # Panics
    /// As [`Sequential::loss_and_grad`], or if `v` / `out` are not laid out for this network.
    #[allow(clippy::too_many_arguments)]
    pub fn accumulate_hvp_at_point(
        &self,
        params: &Params<T>,
        v: &Params<T>,
        x: ArrayView2<'_, T>,
        targets: ArrayView2<'_, T>,
        minibatch: usize,
        out: &mut Params<T>,
        ws: &mut Workspace<T>,
    ) -> Result<(), NnError> {
        let r = x.nrows();
        if ws.point_rows != Some(r) || ws.widths != self.widths {
            return Err(NnError::Workspace {
                message: format!("hvp_at_point needs hvp_point on the same chunk ({r} rows) first"),
            });
        }
        self.check_params(params, "params")?;
        self.check_params(v, "v")?;
        self.check_params(out, "out")?;
        self.check_chunk(x, Some(targets), minibatch)?;
        let Some(first) = self.first_param else {
            return Ok(());
        };
        let last = self.loss_layer();
        let w = self.output_width();
        if ws.tacts.len() != self.layers.len() {
            ws.tacts = vec![Vec::new(); self.layers.len()];
            ws.tstates = vec![LayerState::default(); self.layers.len()];
        }
        let Workspace {
            acts,
            states,
            grad: gbuf,
            xcopy,
            tcopy,
            scratch,
            tacts,
            tstates,
            ybars,
            ..
        } = ws;
        let xs = contiguous(x, xcopy);
        let t = contiguous(targets, tcopy);
        let (p, pv) = (params.as_slice(), v.as_slice());
        // tangent forward from the first layer with parameters (earlier tangents are zero)
        for i in first..=last {
            let (win, wout) = (self.widths[i], self.widths[i + 1]);
            let (before, after) = tacts.split_at_mut(i);
            grow(&mut after[0], r * wout);
            let input: &[T] = if i == 0 { xs } else { &acts[i - 1][..r * win] };
            self.layers[i].forward_tangent(TangentForward {
                params: &p[self.blocks[i].clone()],
                params_dot: &pv[self.blocks[i].clone()],
                input,
                input_dot: (i > first).then(|| &before[i - 1][..r * win]),
                output: &acts[i][..r * wout],
                output_dot: &mut after[0][..r * wout],
                rows: r,
                minibatch,
                state: &states[i],
                tstate: &mut tstates[i],
                scratch: &mut *scratch,
            });
        }
        // the loss's Hessian along the output tangent
        let [g0, g1] = gbuf;
        let (mut cur, mut other) = (g0, g1);
        self.kernel.hvp(
            &acts[last][..r * w],
            &t[..r * w],
            &tacts[last][..r * w],
            &mut cur[..r * w],
        );
        let hs = out.as_mut_slice();
        for i in (first..=last).rev() {
            let (win, wout) = (self.widths[i], self.widths[i + 1]);
            let input: &[T] = if i == 0 { xs } else { &acts[i - 1][..r * win] };
            let block = self.blocks[i].clone();
            let res = self.layers[i].backward_tangent(TangentBackward {
                params: &p[block.clone()],
                params_dot: &pv[block.clone()],
                grads_dot: &mut hs[block],
                input,
                input_dot: (i > first).then(|| &tacts[i - 1][..r * win]),
                output: &acts[i][..r * wout],
                output_dot: &tacts[i][..r * wout],
                ybar: &ybars[i][..r * wout],
                ybar_dot: &mut cur[..r * wout],
                xbar_dot: (i > first).then(|| &mut other[..r * win]),
                rows: r,
                minibatch,
                state: &states[i],
                tstate: &tstates[i],
                scratch: &mut *scratch,
            });
            if res == GradIn::InDx {
                std::mem::swap(&mut cur, &mut other);
            }
        }
        Ok(())
    }

    /// The exact Hessian-vector product at `params` on a chunk, from scratch:
    /// [`Sequential::hvp_point`] then [`Sequential::accumulate_hvp_at_point`]. ADDS `H v` into
    /// `out` (summing over chunks; [`Sequential::hvp`] overwrites) and
    /// returns the loss sum.
    #[allow(clippy::too_many_arguments)]
    pub fn accumulate_hvp(
        &self,
        params: &Params<T>,
        v: &Params<T>,
        x: ArrayView2<'_, T>,
        targets: ArrayView2<'_, T>,
        minibatch: usize,
        out: &mut Params<T>,
        ws: &mut Workspace<T>,
    ) -> Result<T, NnError> {
        let l = self.hvp_point(params, x, targets, minibatch, None, ws)?;
        self.accumulate_hvp_at_point(params, v, x, targets, minibatch, out, ws)?;
        Ok(l)
    }

    /// The exact Hessian-vector product at `params` on a chunk, from scratch, written into
    /// `out`; returns the loss sum. See [`Sequential::accumulate_hvp`].
    #[allow(clippy::too_many_arguments)]
    pub fn hvp(
        &self,
        params: &Params<T>,
        v: &Params<T>,
        x: ArrayView2<'_, T>,
        targets: ArrayView2<'_, T>,
        minibatch: usize,
        out: &mut Params<T>,
        ws: &mut Workspace<T>,
    ) -> Result<T, NnError> {
        self.check_params(out, "out")?;
        out.fill_zero();
        self.accumulate_hvp(params, v, x, targets, minibatch, out, ws)
    }

    /// For every layer with kinks ([`Layer::kinks`], e.g. LeakyReLU at 0), the smallest
    /// distance `|x - kink|` over all its inputs on this chunk (the distance of the data to
    /// the nearest non-differentiable point): `(layer index, distance)`, in layer order. NaN
    /// if an input is NaN. One forward pass.
    ///
    /// # Errors
    /// As [`Sequential::forward`].
    pub fn min_abs_preactivation_per_layer(
        &self,
        params: &Params<T>,
        x: ArrayView2<'_, T>,
        minibatch: usize,
        ws: &mut Workspace<T>,
    ) -> Result<Vec<(usize, f64)>, NnError> {
        self.check_params(params, "params")?;
        self.check_chunk(x, None, minibatch)?;
        let r = x.nrows();
        self.prepare(ws, r);
        self.forward_pass(params, x, minibatch, ws);
        let xs: &[T] = match x.as_slice() {
            Some(s) => s,
            None => &ws.xcopy[..],
        };
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let kinks = layer.kinks();
            if kinks.is_empty() {
                continue;
            }
            let input: &[T] = if i == 0 {
                xs
            } else {
                &ws.acts[i - 1][..r * self.widths[i]]
            };
            let mut m = f64::INFINITY;
            for &v in input {
                for &k in kinks {
                    let d = (v.to_f64_exact() - k).abs();
                    if d.is_nan() || d < m {
                        m = d;
                    }
                }
                if m.is_nan() {
                    break;
                }
            }
            out.push((i, m));
        }
        Ok(out)
    }

    /// The smallest distance of any kinked layer's input to a kink over this chunk (see
    /// [`Sequential::min_abs_preactivation_per_layer`]); `+inf` if no layer has a kink, NaN
    /// if an input is NaN. For LeakyReLU networks: the smallest |pre-activation|.
    ///
    /// # Errors
    /// As [`Sequential::forward`].
    pub fn min_abs_preactivation(
        &self,
        params: &Params<T>,
        x: ArrayView2<'_, T>,
        minibatch: usize,
        ws: &mut Workspace<T>,
    ) -> Result<f64, NnError> {
        Ok(self
            .min_abs_preactivation_per_layer(params, x, minibatch, ws)?
            .into_iter()
            .fold(f64::INFINITY, |a, (_, d)| {
                if d.is_nan() || a.is_nan() {
                    f64::NAN
                } else {
                    a.min(d)
                }
            }))
    }
}

/// The rows of `a` as one row-major slice: `a`'s own storage when it is contiguous, else a
/// copy in `buf`.
fn contiguous<'a: 'c, 'b: 'c, 'c, T: Copy>(a: ArrayView2<'a, T>, buf: &'b mut Vec<T>) -> &'c [T] {
    match a.to_slice() {
        Some(s) => s,
        None => {
            buf.clear();
            buf.extend(a.iter().copied());
            buf
        }
    }
}
