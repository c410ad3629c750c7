//! Convolutional building blocks of experiment E5 (docs/science.md §4 and §9): 3 x 3 convolutions
//! with zero padding 1 and stride 1 whose kernels are parametrised on a support Omega through
//! a basis ([`KernelBasis`]), the projection onto `E ∩ L_Omega` in kernel space
//! ([`KernelProjector`]), 2 x 2 average pooling, the layers [`Conv3x3`] and [`AvgPool2`] of
//! the [`crate::Layer`] trait, and the numeric kernels behind them.
//!
//! Layout conventions (as everywhere in eqaug-nn): a chunk of `r` samples is `r` rows, each
//! row channel-major `(channel, position)` with positions row-major `s = w * row + col`. A
//! kernel tensor is `[c_out, c_in, 9]` with offsets `o = 3 * dr + dc` (`dr`, `dc` in 0..3),
//! and `y[co, p] = sum_{ci, o} K[co, ci, o] x[ci, p + (dr - 1, dc - 1)]` (cross-correlation,
//! as PyTorch's `conv2d`), zero outside the image.

#[cfg(target_arch = "x86_64")]
mod avx2;
mod col2im;
mod im2col;
mod kernel;
mod layers;
mod pool;
mod shape;
mod simd;
mod single;

pub use im2col::{conv2d_backward, conv2d_forward, conv2d_reference, ConvScratch};
pub use kernel::{
    describe_kernel_gset, kernel_group, KernelBasis, KernelError, KernelGSet, KernelProjector,
    Parametrisation, Support, KERNEL_OFFSETS,
};
pub use layers::{AvgPool2, Conv3x3};
pub use pool::{avg_pool2_backward, avg_pool2_forward};
pub use shape::ConvShape;
pub use simd::simd_kernels_available;
