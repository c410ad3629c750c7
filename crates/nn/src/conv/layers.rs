//! The E5 layer kinds behind the [`Layer`] trait: [`Conv3x3`] (a 3 x 3 convolution whose
//! kernel is parametrised on a support through a [`KernelBasis`]) and [`AvgPool2`].

use eqaug_groups::Real;
use rand::{Rng, RngCore};

use super::im2col::{backward_in, forward_in, Opts};
use super::kernel::{KernelBasis, KernelProjector, Parametrisation};
use super::pool::{avg_pool2_backward, avg_pool2_forward};
use super::shape::ConvShape;
use crate::layers::{grow, Backward, Forward, GradIn, Layer, ParamEntry};
use crate::params::TensorKind;
use crate::NnError;

/// A 3 x 3 convolution, stride 1, zero padding 1, no bias, on `h x w` maps, whose kernel is
/// `K[co, ci, :] = sum_j theta[co, ci, j] B_j` for a [`KernelBasis`] `B` (`k x 9`).
///
/// * Input rows `c_in x (h w)`, output rows `c_out x (h w)`, channel-major.
/// * Parameter `weight`: the coefficients `theta`, shape `[c_out, c_in, k]`, kind
///   [`TensorKind::Dense`] (every `theta` is admissible: for the equivariant basis every
///   kernel it spans is in `E ∩ L_Omega`).
/// * Forward: `K = theta B` (small), then im2col + one GEMM per block of images. Backward:
///   `dK` by GEMMs per block, `dtheta += dK B^T`, and the input gradient by one GEMM and
///   col2im (see [`super::conv2d_forward`]; one input channel takes a direct path).
/// * Init (as the authors' PyTorch code, `kaiming_uniform_(a = sqrt 5)`, but from the run's
///   RNG): unitary and non-unitary `theta ~ U(-1/sqrt(c_in k), 1/sqrt(c_in k))`; equivariant
///   `theta_j ~ U(-b_j, b_j)` with `b_j = 1 / (sqrt(c_in) max_o |B_j[o]|)`, so every kernel
///   entry is `U(-1/sqrt(c_in), 1/sqrt(c_in))` as in the authors' `eqvConv`.
#[derive(Clone, Debug)]
pub struct Conv3x3 {
    shape: ConvShape,
    basis: KernelBasis,
    projector: KernelProjector,
}

impl Conv3x3 {
    /// A convolution of `shape` with kernels spanned by `basis`.
    pub fn new(shape: ConvShape, basis: KernelBasis) -> Result<Self, NnError> {
        if shape.c_in == 0 || shape.c_out == 0 || shape.h == 0 || shape.w == 0 {
            return Err(NnError::InvalidSpec {
                layer: 0,
                kind: "conv3x3",
                message: format!("every size must be at least 1, got {shape:?}"),
            });
        }
        let projector = KernelProjector::between(basis.support(), shape.c_in, shape.c_out)
            .map_err(|e| NnError::InvalidSpec {
                layer: 0,
                kind: "conv3x3",
                message: e.to_string(),
            })?;
        Ok(Conv3x3 {
            shape,
            basis,
            projector,
        })
    }
    /// The shape.
    pub fn shape(&self) -> ConvShape {
        self.shape
    }
    /// The kernel basis.
    pub fn basis(&self) -> &KernelBasis {
        &self.basis
    }
    /// The projection onto `E ∩ L_Omega` of this layer's kernels.
    pub fn projector(&self) -> &KernelProjector {
        &self.projector
    }
    /// Entries of the coefficient tensor `[c_out, c_in, k]`.
    pub fn num_coefficients(&self) -> usize {
        self.shape.c_out * self.shape.c_in * self.basis.len()
    }
    /// The kernel `[c_out, c_in, 9]` of the coefficients `theta` (`[c_out, c_in, k]`).
    pub fn kernel<T: Real>(&self, theta: &[T]) -> Vec<T> {
        let mut k = vec![T::zero(); self.shape.kernel_len()];
        self.basis.kernel(theta, &mut k);
        k
    }
    /// `||K - Pi(K)||_F`: the distance of the layer's kernel to `E ∩ L_Omega` (kernel space).
    pub fn distance_to_e<T: Real>(&self, theta: &[T]) -> f64 {
        self.projector
            .distance(&self.kernel(theta))
            .expect("the kernel has the projector's shape")
    }
}

impl<T: Real> Layer<T> for Conv3x3 {
    fn kind(&self) -> &'static str {
        "conv3x3"
    }
    fn input_width(&self) -> usize {
        self.shape.input_width()
    }
    fn output_width(&self) -> usize {
        self.shape.output_width()
    }
    fn params(&self) -> Vec<ParamEntry> {
        vec![ParamEntry {
            name: "weight",
            shape: vec![self.shape.c_out, self.shape.c_in, self.basis.len()],
            kind: TensorKind::Dense,
        }]
    }
    fn init(&self, params: &mut [f64], rng: &mut dyn RngCore) {
        let k = self.basis.len();
        let cin = self.shape.c_in as f64;
        let bounds: Vec<f64> = match self.basis.parametrisation() {
            Parametrisation::Equivariant => {
                let m = self.basis.matrix();
                (0..k)
                    .map(|j| {
                        let top = m.row(j).iter().fold(0.0f64, |a, v| a.max(v.abs()));
                        1.0 / (cin.sqrt() * top)
                    })
                    .collect()
            }
            _ => vec![1.0 / (cin * k as f64).sqrt(); k],
        };
        for (i, v) in params.iter_mut().enumerate() {
            let b = bounds[i % k];
            *v = rng.gen_range(-b..b);
        }
    }
    fn forward(&self, f: Forward<'_, T>) {
        // the kernel, kept for the backward pass
        grow(&mut f.state.saved, self.shape.kernel_len());
        let kernel = &mut f.state.saved[..self.shape.kernel_len()];
        self.basis.kernel(f.params, kernel);
        forward_in(
            &self.shape,
            f.input,
            kernel,
            f.output,
            f.rows,
            f.scratch,
            Opts::default(),
        );
    }
    fn backward(&self, b: Backward<'_, T>) -> GradIn {
        let kernel = &b.state.saved[..self.shape.kernel_len()];
        let mut dk = vec![T::zero(); self.shape.kernel_len()];
        backward_in(
            &self.shape,
            b.input,
            kernel,
            b.dy,
            &mut dk,
            b.dx,
            b.rows,
            b.scratch,
            Opts::default(),
        );
        self.basis.coefficient_gradient(&dk, b.grads);
        GradIn::InDx
    }
    fn flops_per_sample(&self) -> usize {
        self.shape.flops_per_sample()
    }
}

/// 2 x 2 average pooling, stride 2, of `channels` maps of `h x w` (both even): rows
/// `channels x (h w)` -> `channels x (h/2 w/2)`. No parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool2 {
    channels: usize,
    h: usize,
    w: usize,
}

impl AvgPool2 {
    /// Pooling of `channels` maps of `h x w`; errors if a side is odd or a size is 0.
    pub fn new(channels: usize, h: usize, w: usize) -> Result<Self, NnError> {
        if channels == 0 || h == 0 || w == 0 || !h.is_multiple_of(2) || !w.is_multiple_of(2) {
            return Err(NnError::InvalidSpec {
                layer: 0,
                kind: "avg_pool2",
                message: format!(
                    "2 x 2 pooling needs even, non-zero map sides and channels, got {channels} \
                     channel(s) of {h} x {w}"
                ),
            });
        }
        Ok(AvgPool2 { channels, h, w })
    }
}

impl<T: Real> Layer<T> for AvgPool2 {
    fn kind(&self) -> &'static str {
        "avg_pool2"
    }
    fn input_width(&self) -> usize {
        self.channels * self.h * self.w
    }
    fn output_width(&self) -> usize {
        self.channels * self.h * self.w / 4
    }
    fn forward(&self, f: Forward<'_, T>) {
        avg_pool2_forward(f.input, f.output, f.rows * self.channels, self.h, self.w);
    }
    fn backward(&self, b: Backward<'_, T>) -> GradIn {
        if let Some(dx) = b.dx {
            avg_pool2_backward(b.dy, dx, b.rows * self.channels, self.h, self.w);
        }
        GradIn::InDx
    }
}
