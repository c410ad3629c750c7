//! A small CNN on 28 x 28 images whose 3 x 3 kernels live on a support Omega, in an
//! equivariant and a non-equivariant version, built as a [`Sequential`] of layers: the
//! networks of experiment E5 (docs/science.md §4 and §9).
//!
//! ```text
//! conv 3x3 (1 -> c1) -> avg-pool 2 -> tanh -> layer norm of each 14 x 14 map
//! conv 3x3 (c1 -> c2) -> avg-pool 2 -> tanh -> layer norm of each 7 x 7 map
//! conv 3x3 (c2 -> c3) -> tanh -> layer norm of each 7 x 7 map
//! flatten (c3 x 7 x 7, channel-major as PyTorch's view) -> linear (-> classes), no biases
//! ```
//!
//! * [`Parametrisation::Equivariant`]: kernels in `E ∩ L_Omega` (orbit basis) and a final
//!   linear layer invariant under rot90 of the 7 x 7 map (a [`GroupLinear`] whose projector
//!   is C_4 on the 7 x 7 grid from `Rep::base(c3)` to `Rep::trivial(classes)`: its gradient is
//!   projected by [`Params::project_group_layers`], and it starts in E).
//! * [`Parametrisation::Unitary`] / [`Parametrisation::NonUnitary`]: kernels on Omega through
//!   the indicator basis or a random unit-norm basis, and a dense final layer.
//! * Loss: [`Loss::Mse`] against one-hot rows, averaged over the classes (and, in the
//!   training code, over the samples of a mini-batch): the authors' convention, i.e. the
//!   sample-mean of PyTorch's `mse_loss(reduction = "mean")`. Averaging over samples only
//!   would multiply the loss and its gradient by the number of classes.
//! * The layers of distance metrics are, in order, `conv1`, `conv2`, `conv3`, `linear`.

use std::sync::Arc;

use eqaug_groups::{Group, Projector, Real, Rep};
use ndarray::{Array2, ArrayView2};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::conv::{AvgPool2, Conv3x3, ConvShape, KernelBasis, Parametrisation, Support};
use crate::layers::{Dense, GroupLinear, Layer, LayerNorm, Pointwise, PointwiseFn};
use crate::transform::Deviation;
use crate::{act_on_rows, Loss, NnError, NormOver, Params, Sequential, Workspace};

/// The names of the layers whose distance to `E ∩ L` is recorded, in order.
pub const SUPPORT_CNN_LAYERS: [&str; 4] = ["conv1", "conv2", "conv3", "linear"];

/// What a [`SupportCnn`] is: its kernel support, parametrisation, sizes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportCnnSpec {
    /// The kernel support Omega.
    pub support: Support,
    /// The parametrisation ([`Parametrisation::Equivariant`] = the phase-1 model).
    pub parametrisation: Parametrisation,
    /// Channels of the three convolutions (paper: 32, 64, 64).
    pub channels: [usize; 3],
    /// Image side (paper: 28; a multiple of 4).
    pub side: usize,
    /// Classes (paper: 10).
    pub classes: usize,
}

impl SupportCnnSpec {
    /// The paper's sizes (channels 32, 64, 64 on 28 x 28 images, 10 classes).
    pub fn paper(support: Support, parametrisation: Parametrisation) -> Self {
        SupportCnnSpec {
            support,
            parametrisation,
            channels: [32, 64, 64],
            side: 28,
            classes: 10,
        }
    }
    /// The same network with another parametrisation.
    pub fn with_parametrisation(&self, parametrisation: Parametrisation) -> Self {
        SupportCnnSpec {
            parametrisation,
            ..self.clone()
        }
    }
    /// Whether this is the equivariant model.
    pub fn is_equivariant(&self) -> bool {
        self.parametrisation == Parametrisation::Equivariant
    }
    /// Side of the last maps (`side / 4`).
    pub fn last_side(&self) -> usize {
        self.side / 4
    }
}

/// How weights were carried from the equivariant model into a model on Omega.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoadReport {
    /// Per convolution: the least-squares residual `||L theta - w||_F` solved in f64
    /// (0 for the unitary copy).
    pub least_squares_residuals: Vec<f64>,
    /// Per convolution: `||K_loaded - K_equivariant||_F` with both kernels computed in the
    /// network's precision `T` (what the forward passes actually use).
    pub kernel_mismatch: Vec<f64>,
}

/// A CNN with kernels on a support: the [`Sequential`] of its layers plus what the metrics
/// of experiment E5 need (the convolutions with their bases and kernel projectors, the final
/// layer's rot90 projector).
#[derive(Clone)]
pub struct SupportCnn<T> {
    spec: SupportCnnSpec,
    seq: Sequential<T>,
    convs: Vec<Arc<Conv3x3>>,
    /// Tensor index of each convolution's coefficients and of the linear weight.
    tensors: [usize; 4],
    linear_projector: Projector,
    image_group: Arc<Group>,
}

impl<T: Real> std::fmt::Debug for SupportCnn<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupportCnn")
            .field("spec", &self.spec)
            .field("params", &self.seq.num_params())
            .finish()
    }
}

impl<T: Real> SupportCnn<T> {
    /// Builds the network of `spec`; `rng` is drawn from only for the non-unitary bases
    /// (one `k x k` Gaussian matrix per convolution, conv1 first).
    pub fn new(spec: &SupportCnnSpec, rng: &mut impl Rng) -> Result<Self, NnError> {
        let invalid = |message: String| NnError::InvalidSpec {
            layer: 0,
            kind: "support_cnn",
            message,
        };
        let n = spec.side;
        if n == 0 || !n.is_multiple_of(4) {
            return Err(invalid(format!(
                "the image side must be a positive multiple of 4 (two 2 x 2 poolings), got {n}"
            )));
        }
        if spec.channels.contains(&0) || spec.classes == 0 {
            return Err(invalid(format!(
                "channels {:?} and classes {} must be at least 1",
                spec.channels, spec.classes
            )));
        }
        let [c1, c2, c3] = spec.channels;
        let (n2, n4) = (n / 2, n / 4);
        let kernel_err = |e: crate::conv::KernelError| invalid(e.to_string());
        let mut conv = |c_in: usize, c_out: usize, side: usize| -> Result<Arc<Conv3x3>, NnError> {
            let basis =
                KernelBasis::new(spec.parametrisation, &spec.support, rng).map_err(kernel_err)?;
            Ok(Arc::new(Conv3x3::new(
                ConvShape {
                    c_in,
                    c_out,
                    h: side,
                    w: side,
                },
                basis,
            )?))
        };
        let convs = vec![conv(1, c1, n)?, conv(c1, c2, n2)?, conv(c2, c3, n4)?];
        let tanh = |w: usize| Pointwise::new(PointwiseFn::Tanh, w);
        let last_group = Group::builtin("rot", n4).map_err(|e| invalid(e.to_string()))?;
        let linear_projector =
            Projector::between(&last_group, Rep::base(c3), Rep::trivial(spec.classes))
                .map_err(|e| invalid(e.to_string()))?;
        // PyTorch's kaiming_uniform_(a = sqrt 5) has std 1/sqrt(3 fan_in); the authors'
        // invariant layer draws one value per orbit with fan_in = c3 * ceil(n4/2) * floor(n4/2)
        // (their "corner matrix"), so a Gaussian of twice that std, averaged over orbits of
        // 4, has about their spread.
        let fan_in = (c3 * n4.div_ceil(2) * (n4 / 2)).max(1) as f64;
        let linear: Arc<dyn Layer<T>> = if spec.is_equivariant() {
            Arc::new(GroupLinear::new(
                linear_projector.clone(),
                2.0 / (3.0 * fan_in).sqrt(),
                false,
            )?)
        } else {
            let inp = c3 * n4 * n4;
            Arc::new(Dense::new(
                inp,
                spec.classes,
                1.0 / (3.0 * inp as f64).sqrt(),
                false,
            )?)
        };
        let layers: Vec<Arc<dyn Layer<T>>> = vec![
            convs[0].clone(),
            Arc::new(AvgPool2::new(c1, n, n)?),
            Arc::new(tanh(c1 * n2 * n2)?),
            Arc::new(LayerNorm::new(NormOver::Positions, c1, n2 * n2)?),
            convs[1].clone(),
            Arc::new(AvgPool2::new(c2, n2, n2)?),
            Arc::new(tanh(c2 * n4 * n4)?),
            Arc::new(LayerNorm::new(NormOver::Positions, c2, n4 * n4)?),
            convs[2].clone(),
            Arc::new(tanh(c3 * n4 * n4)?),
            Arc::new(LayerNorm::new(NormOver::Positions, c3, n4 * n4)?),
            linear,
        ];
        let seq = Sequential::new(layers, Loss::Mse, 1)?;
        let tensors = [0, 1, 2, 3];
        debug_assert_eq!(seq.layout().tensors().len(), 4);
        Ok(SupportCnn {
            spec: spec.clone(),
            seq,
            convs,
            tensors,
            linear_projector,
            image_group: Group::builtin("rot", n).map_err(|e| invalid(e.to_string()))?,
        })
    }

    /// The spec.
    pub fn spec(&self) -> &SupportCnnSpec {
        &self.spec
    }
    /// The layer sequence (forward, loss, gradients, workspace, parameter layout).
    pub fn sequential(&self) -> &Sequential<T> {
        &self.seq
    }
    /// The three convolutions.
    pub fn convs(&self) -> &[Arc<Conv3x3>] {
        &self.convs
    }
    /// The projector onto the rot90-invariant final layers (C_4 on the last maps).
    pub fn linear_projector(&self) -> &Projector {
        &self.linear_projector
    }
    /// C_4 on the input images.
    pub fn image_group(&self) -> &Arc<Group> {
        &self.image_group
    }
    /// Width of an input row (`side^2`).
    pub fn input_width(&self) -> usize {
        self.seq.input_width()
    }
    /// Width of an output row (classes).
    pub fn output_width(&self) -> usize {
        self.seq.output_width()
    }
    /// Forward floating-point operations per sample (convolutions and final layer);
    /// forward + backward is about 3 x this.
    pub fn flops_per_sample(&self) -> usize {
        self.seq.linear_flops_per_sample()
    }
    /// Initial parameters (drawn in f64, the final layer projected onto E for the
    /// equivariant model).
    pub fn init_params(&self, rng: &mut impl Rng) -> Params<T> {
        self.seq.init_params(rng)
    }
    /// Zeros (a gradient store).
    pub fn zeros(&self) -> Params<T> {
        self.seq.zeros()
    }

    /// `dim(E ∩ L)` of every layer ([`SUPPORT_CNN_LAYERS`] order): for a convolution
    /// `c_out c_in` x the rot90 orbits of kernel offsets inside Omega (cross 2, skew 1), for
    /// the final layer the number of rot90-invariant weights.
    pub fn dims_of_e(&self) -> Vec<usize> {
        let mut d: Vec<usize> = self.convs.iter().map(|c| c.projector().dim()).collect();
        d.push(self.linear_projector.dim());
        d
    }

    /// The kernels `[c_out, c_in, 9]` of the three convolutions.
    pub fn kernels(&self, params: &Params<T>) -> Vec<Vec<T>> {
        self.convs
            .iter()
            .zip(self.tensors)
            .map(|(c, t)| c.kernel(params.tensor(t).data))
            .collect()
    }

    /// The distance of every layer to `E ∩ L` ([`SUPPORT_CNN_LAYERS`] order): each convolution's
    /// `||K - Pi(K)||_F` in kernel space, the final layer's `||W - Pi_E W||_F` (distance to
    /// its rot90-invariant part).
    pub fn distances_to_e(&self, params: &Params<T>) -> Vec<f64> {
        let mut d: Vec<f64> = self
            .convs
            .iter()
            .zip(self.tensors)
            .map(|(c, t)| c.distance_to_e(params.tensor(t).data))
            .collect();
        d.push(
            self.linear_projector
                .distance_to_equivariant_f64(params.tensor(self.tensors[3]).data)
                .expect("the tensor has the projector's shape"),
        );
        d
    }

    /// The kernel-space norm of a parameter-space vector per layer ([`SUPPORT_CNN_LAYERS`] order):
    /// for a convolution `||g_theta B||_F` (the kernel change per unit learning rate of a
    /// step along `g`), for the final layer `||g_W||_F`. For unitary bases it equals the
    /// parameter norm.
    pub fn kernel_space_norms(&self, g: &Params<T>) -> Vec<f64> {
        let mut out: Vec<f64> = self
            .convs
            .iter()
            .zip(self.tensors)
            .map(|(c, t)| {
                c.kernel(g.tensor(t).data)
                    .iter()
                    .map(|v| v.to_f64_exact().powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect();
        out.push(
            g.tensor(self.tensors[3])
                .data
                .iter()
                .map(|v| v.to_f64_exact().powi(2))
                .sum::<f64>()
                .sqrt(),
        );
        out
    }

    /// Constrains a gradient as the model's training does: for the equivariant model the
    /// final layer's gradient is projected onto E (its convolution coefficients need nothing:
    /// every coefficient vector gives a kernel in `E ∩ L`); for the others, nothing.
    pub fn constrain_gradient(&self, grads: &mut Params<T>) {
        if self.spec.is_equivariant() {
            grads.project_group_layers();
        }
    }

    /// Parameters for this (non-equivariant) network that compute the same function as the
    /// equivariant network `eq` at `eq_params` (docs/science.md §9): unitary bases copy the
    /// support entries of each kernel, non-unitary bases solve the least-squares system in
    /// f64 ([`KernelBasis::coefficients_from_kernel`]); the final layer is copied as a dense
    /// weight. Errors if the networks do not share support and sizes, or `eq` is not
    /// equivariant.
    pub fn load_from_equivariant(
        &self,
        eq: &SupportCnn<T>,
        eq_params: &Params<T>,
    ) -> Result<(Params<T>, LoadReport), NnError> {
        let same = eq.spec.support == self.spec.support
            && eq.spec.channels == self.spec.channels
            && eq.spec.side == self.spec.side
            && eq.spec.classes == self.spec.classes;
        if !eq.spec.is_equivariant() || self.spec.is_equivariant() || !same {
            return Err(NnError::InvalidSpec {
                layer: 0,
                kind: "support_cnn",
                message: format!(
                    "weights load from an equivariant network into a non-equivariant one with \
                     the same support and sizes, not from {:?} into {:?}",
                    eq.spec, self.spec
                ),
            });
        }
        let mut p = self.zeros();
        let mut report = LoadReport {
            least_squares_residuals: Vec::new(),
            kernel_mismatch: Vec::new(),
        };
        for ((conv, eq_conv), t) in self.convs.iter().zip(&eq.convs).zip(self.tensors) {
            let k_eq = eq_conv.kernel(eq_params.tensor(t).data);
            let basis = conv.basis();
            let theta = p.tensor_mut(t).data;
            let residual = match basis.parametrisation() {
                Parametrisation::Unitary => {
                    let k = basis.len();
                    for (pair, kr) in theta.chunks_exact_mut(k).zip(k_eq.chunks_exact(9)) {
                        for (v, &o) in pair.iter_mut().zip(basis.offsets()) {
                            *v = kr[o];
                        }
                    }
                    0.0
                }
                _ => {
                    let k64: Vec<f64> = k_eq.iter().map(|v| v.to_f64_exact()).collect();
                    let (sol, res) = basis.coefficients_from_kernel(&k64);
                    theta
                        .iter_mut()
                        .zip(&sol)
                        .for_each(|(v, &s)| *v = T::from_f64_lossy(s));
                    res
                }
            };
            report.least_squares_residuals.push(residual);
            let k_new = conv.kernel(p.tensor(t).data);
            let mismatch = k_new
                .iter()
                .zip(&k_eq)
                .map(|(a, b)| (a.to_f64_exact() - b.to_f64_exact()).powi(2))
                .sum::<f64>()
                .sqrt();
            report.kernel_mismatch.push(mismatch);
        }
        p.tensor_mut(self.tensors[3])
            .data
            .copy_from_slice(eq_params.tensor(eq.tensors[3]).data);
        Ok((p, report))
    }

    /// The largest `|f(rot^k x) - f(x)|` over `k = 1, 2, 3` and all entries, divided by
    /// `max |f(x)|`: the rot90 invariance error of the outputs on the chunk `x`
    /// (`rows x side^2`). Near round-off for the equivariant model. Allocates: a check.
    pub fn rotation_invariance_error(
        &self,
        params: &Params<T>,
        x: ArrayView2<'_, T>,
        ws: &mut Workspace<T>,
    ) -> Result<f64, NnError> {
        let r = x.nrows().max(1);
        let fx = self.seq.forward(params, x, r, ws)?.to_owned();
        let mut dev = Deviation::new(fx.view());
        let g = &self.image_group.generators()[0];
        let mut cur = x.to_owned();
        let mut next = Array2::zeros(x.dim());
        for _ in 1..4 {
            act_on_rows(
                &self.image_group,
                Rep::base(1),
                g,
                cur.view(),
                next.view_mut(),
            )?;
            std::mem::swap(&mut cur, &mut next);
            dev.add(self.seq.forward(params, cur.view(), r, ws)?, fx.view());
        }
        Ok(dev.relative())
    }
}
