//! 3 x 3 convolution (stride 1, zero padding 1, no bias) by im2col and one GEMM per block of
//! images, with its exact backward pass.
//!
//! Forward, for a block of `nb` images: `col = im2col(x)` is `(nb h w) x (c_in 9)` (row
//! `(n, p)`, column `(ci, o)`), `Y_pm = col K^T` is `(nb h w) x c_out` (one GEMM), transposed
//! per image into the channel-major rows of `y`. Backward: `dY_pm` from `dy` (transpose),
//! `dK += dY_pm^T col` (one GEMM), `dcol = dY_pm K` (one GEMM) scattered back by `col2im`.
//! Blocks hold at most [`BLOCK_ELEMENTS`] entries of `col`, so the scratch memory stays
//! bounded whatever the chunk size, while each GEMM still has thousands of rows.

use eqaug_groups::Real;
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};

/// Upper bound on the entries of the im2col buffer of one block (4 Mi entries: 16 MB in f32).
pub(crate) const BLOCK_ELEMENTS: usize = 1 << 22;

/// The shape of a 3 x 3 convolution layer on `h x w` maps: `c_in` channels in, `c_out` out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvShape {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Map height.
    pub h: usize,
    /// Map width.
    pub w: usize,
}

impl ConvShape {
    /// Width of an input row: `c_in * h * w`.
    pub fn input_width(&self) -> usize {
        self.c_in * self.h * self.w
    }
    /// Width of an output row: `c_out * h * w`.
    pub fn output_width(&self) -> usize {
        self.c_out * self.h * self.w
    }
    /// Entries of the kernel tensor `[c_out, c_in, 9]`.
    pub fn kernel_len(&self) -> usize {
        self.c_out * self.c_in * 9
    }
    /// Floating-point operations (2 x multiply-adds) of one sample's forward pass.
    pub fn flops_per_sample(&self) -> usize {
        2 * self.c_out * self.c_in * 9 * self.h * self.w
    }
    /// Images per im2col block (at least 1).
    fn block(&self) -> usize {
        (BLOCK_ELEMENTS / (self.h * self.w * self.c_in * 9).max(1)).max(1)
    }
}

/// Reusable buffers of [`conv2d_forward`] / [`conv2d_backward`] (grown on demand; one per
/// thread).
#[derive(Debug, Default, Clone)]
pub struct ConvScratch<T> {
    buf: Vec<T>,
    max_block: Option<usize>,
}

impl<T: Real> ConvScratch<T> {
    /// Empty buffers.
    pub fn new() -> Self {
        ConvScratch {
            buf: Vec::new(),
            max_block: None,
        }
    }
    /// Empty buffers, and at most `images` images per GEMM (by default as many as fit in
    /// 4 Mi entries of the im2col buffer); small blocks exercise the blocking in tests.
    pub fn with_max_block(images: usize) -> Self {
        ConvScratch {
            buf: Vec::new(),
            max_block: Some(images.max(1)),
        }
    }
}

/// Images per block, and the im2col and transposed-output buffers carved out of `buf`.
fn buffers<'b, T: Real>(
    s: &ConvShape,
    r: usize,
    buf: &'b mut Vec<T>,
    max_block: Option<usize>,
) -> (usize, &'b mut [T], &'b mut [T]) {
    let b = s.block().min(r.max(1));
    let block = max_block.map_or(b, |m| b.min(m));
    let hw = s.h * s.w;
    let (ncol, npm) = (block * hw * s.c_in * 9, block * hw * s.c_out);
    if buf.len() < ncol + npm {
        buf.resize(ncol + npm, T::zero());
    }
    let (col, rest) = buf.split_at_mut(ncol);
    (block, col, &mut rest[..npm])
}

fn check<T>(s: &ConvShape, x: &[T], r: usize, kernel: &[T], what: &str) {
    assert!(
        x.len() >= r * s.input_width(),
        "{what}: input holds {} values, {r} rows of {} needed",
        x.len(),
        s.input_width()
    );
    assert_eq!(
        kernel.len(),
        s.kernel_len(),
        "{what}: kernel has {} entries, [c_out, c_in, 9] = {} needed",
        kernel.len(),
        s.kernel_len()
    );
}

/// `col[(n, p), (ci, o)] = x[n, ci, p + offset(o)]` (0 outside the map) for `nb` images.
fn im2col<T: Real>(s: &ConvShape, x: &[T], col: &mut [T], nb: usize) {
    let (h, w, cin) = (s.h, s.w, s.c_in);
    let hw = h * w;
    let kk = cin * 9;
    for n in 0..nb {
        let xi = &x[n * cin * hw..(n + 1) * cin * hw];
        for pr in 0..h {
            for pc in 0..w {
                let row = &mut col[(n * hw + pr * w + pc) * kk..][..kk];
                let interior = pr >= 1 && pr + 1 < h && pc >= 1 && pc + 1 < w;
                for ci in 0..cin {
                    let xc = &xi[ci * hw..(ci + 1) * hw];
                    let dst = &mut row[ci * 9..ci * 9 + 9];
                    if interior {
                        let b = (pr - 1) * w + pc - 1;
                        dst[0..3].copy_from_slice(&xc[b..b + 3]);
                        dst[3..6].copy_from_slice(&xc[b + w..b + w + 3]);
                        dst[6..9].copy_from_slice(&xc[b + 2 * w..b + 2 * w + 3]);
                    } else {
                        for dr in 0..3 {
                            for dc in 0..3 {
                                let (rr, cc) = (pr + dr, pc + dc); // shifted by +1
                                dst[dr * 3 + dc] = if rr >= 1 && rr <= h && cc >= 1 && cc <= w {
                                    xc[(rr - 1) * w + cc - 1]
                                } else {
                                    T::zero()
                                };
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: `dx = col2im(dcol)` (overwrites `dx` of `nb` images).
fn col2im<T: Real>(s: &ConvShape, dcol: &[T], dx: &mut [T], nb: usize) {
    let (h, w, cin) = (s.h, s.w, s.c_in);
    let hw = h * w;
    let kk = cin * 9;
    dx[..nb * cin * hw].iter_mut().for_each(|v| *v = T::zero());
    for n in 0..nb {
        let di = &mut dx[n * cin * hw..(n + 1) * cin * hw];
        for pr in 0..h {
            for pc in 0..w {
                let row = &dcol[(n * hw + pr * w + pc) * kk..][..kk];
                let interior = pr >= 1 && pr + 1 < h && pc >= 1 && pc + 1 < w;
                for ci in 0..cin {
                    let dc_ = &mut di[ci * hw..(ci + 1) * hw];
                    let src = &row[ci * 9..ci * 9 + 9];
                    if interior {
                        let b = (pr - 1) * w + pc - 1;
                        for dr in 0..3 {
                            let o = b + dr * w;
                            dc_[o] += src[dr * 3];
                            dc_[o + 1] += src[dr * 3 + 1];
                            dc_[o + 2] += src[dr * 3 + 2];
                        }
                    } else {
                        for dr in 0..3 {
                            for dc in 0..3 {
                                let (rr, cc) = (pr + dr, pc + dc);
                                if rr >= 1 && rr <= h && cc >= 1 && cc <= w {
                                    dc_[(rr - 1) * w + cc - 1] += src[dr * 3 + dc];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `y[n, co, p] = pm[(n, p), co]` for `nb` images.
fn pm_to_cm<T: Copy>(pm: &[T], y: &mut [T], nb: usize, c: usize, hw: usize) {
    for n in 0..nb {
        let src = &pm[n * hw * c..(n + 1) * hw * c];
        let dst = &mut y[n * c * hw..(n + 1) * c * hw];
        for p in 0..hw {
            for k in 0..c {
                dst[k * hw + p] = src[p * c + k];
            }
        }
    }
}

/// `pm[(n, p), co] = y[n, co, p]` for `nb` images.
fn cm_to_pm<T: Copy>(y: &[T], pm: &mut [T], nb: usize, c: usize, hw: usize) {
    for n in 0..nb {
        let src = &y[n * c * hw..(n + 1) * c * hw];
        let dst = &mut pm[n * hw * c..(n + 1) * hw * c];
        for k in 0..c {
            for p in 0..hw {
                dst[p * c + k] = src[k * hw + p];
            }
        }
    }
}

/// Forward pass on `r` rows: `y = conv(x, kernel)`.
///
/// Shapes: `x` holds `r x (c_in h w)`, `kernel` is `[c_out, c_in, 9]`, `y` receives
/// `r x (c_out h w)` (overwritten).
///
/// # Panics
/// If a buffer is too short for `r` rows or the kernel has the wrong length.
pub fn conv2d_forward<T: Real>(
    s: &ConvShape,
    x: &[T],
    kernel: &[T],
    y: &mut [T],
    r: usize,
    scratch: &mut ConvScratch<T>,
) {
    forward_in(s, x, kernel, y, r, &mut scratch.buf, scratch.max_block);
}

/// [`conv2d_forward`] with the scratch as a plain vector (e.g. a layer executor's).
pub(crate) fn forward_in<T: Real>(
    s: &ConvShape,
    x: &[T],
    kernel: &[T],
    y: &mut [T],
    r: usize,
    buf: &mut Vec<T>,
    max_block: Option<usize>,
) {
    check(s, x, r, kernel, "conv2d_forward");
    assert!(
        y.len() >= r * s.output_width(),
        "conv2d_forward: y too short"
    );
    let hw = s.h * s.w;
    let kk = s.c_in * 9;
    let (block, colbuf, pmbuf) = buffers(s, r, buf, max_block);
    let kv = ArrayView2::from_shape((s.c_out, kk), kernel).expect("kernel shape");
    let mut n0 = 0;
    while n0 < r {
        let nb = block.min(r - n0);
        let m = nb * hw;
        im2col(s, &x[n0 * s.input_width()..], colbuf, nb);
        let col = ArrayView2::from_shape((m, kk), &colbuf[..m * kk]).expect("col shape");
        let mut pm =
            ArrayViewMut2::from_shape((m, s.c_out), &mut pmbuf[..m * s.c_out]).expect("pm");
        general_mat_mul(T::one(), &col, &kv.t(), T::zero(), &mut pm);
        pm_to_cm(pmbuf, &mut y[n0 * s.output_width()..], nb, s.c_out, hw);
        n0 += nb;
    }
}

/// Backward pass on `r` rows: ADDS `dL/dK` into `dkernel` and, if `dx` is given, writes
/// `dL/dx` into it, from the output gradient `dy`.
///
/// Shapes: `x` and `dx` hold `r x (c_in h w)`, `kernel` and `dkernel` are `[c_out, c_in, 9]`,
/// `dy` holds `r x (c_out h w)`.
///
/// # Panics
/// If a buffer is too short for `r` rows or a kernel has the wrong length.
pub fn conv2d_backward<T: Real>(
    s: &ConvShape,
    x: &[T],
    kernel: &[T],
    dy: &[T],
    dkernel: &mut [T],
    dx: Option<&mut [T]>,
    r: usize,
    scratch: &mut ConvScratch<T>,
) {
    backward_in(
        s,
        x,
        kernel,
        dy,
        dkernel,
        dx,
        r,
        &mut scratch.buf,
        scratch.max_block,
    );
}

/// [`conv2d_backward`] with the scratch as a plain vector.
pub(crate) fn backward_in<T: Real>(
    s: &ConvShape,
    x: &[T],
    kernel: &[T],
    dy: &[T],
    dkernel: &mut [T],
    mut dx: Option<&mut [T]>,
    r: usize,
    buf: &mut Vec<T>,
    max_block: Option<usize>,
) {
    check(s, x, r, kernel, "conv2d_backward");
    assert_eq!(dkernel.len(), s.kernel_len(), "conv2d_backward: dkernel");
    assert!(dy.len() >= r * s.output_width(), "conv2d_backward: dy");
    let hw = s.h * s.w;
    let kk = s.c_in * 9;
    let (block, colbuf, pmbuf) = buffers(s, r, buf, max_block);
    let kv = ArrayView2::from_shape((s.c_out, kk), kernel).expect("kernel shape");
    let mut dk = ArrayViewMut2::from_shape((s.c_out, kk), dkernel).expect("dkernel shape");
    let mut n0 = 0;
    while n0 < r {
        let nb = block.min(r - n0);
        let m = nb * hw;
        cm_to_pm(&dy[n0 * s.output_width()..], pmbuf, nb, s.c_out, hw);
        im2col(s, &x[n0 * s.input_width()..], colbuf, nb);
        {
            let col = ArrayView2::from_shape((m, kk), &colbuf[..m * kk]).expect("col shape");
            let pm = ArrayView2::from_shape((m, s.c_out), &pmbuf[..m * s.c_out]).expect("pm shape");
            general_mat_mul(T::one(), &pm.t(), &col, T::one(), &mut dk);
        }
        if let Some(dx) = dx.as_deref_mut() {
            let pm = ArrayView2::from_shape((m, s.c_out), &pmbuf[..m * s.c_out]).expect("pm shape");
            let mut dcol =
                ArrayViewMut2::from_shape((m, kk), &mut colbuf[..m * kk]).expect("col shape");
            general_mat_mul(T::one(), &pm, &kv, T::zero(), &mut dcol);
            col2im(s, colbuf, &mut dx[n0 * s.input_width()..], nb);
        }
        n0 += nb;
    }
}

/// The direct definition, one loop per index (slow; a test oracle): `y[n, co, pr, pc] =
/// sum_{ci, dr, dc} K[co, ci, 3 dr + dc] x[n, ci, pr + dr - 1, pc + dc - 1]`, zero padding.
pub fn conv2d_reference<T: Real>(s: &ConvShape, x: &[T], kernel: &[T], y: &mut [T], r: usize) {
    check(s, x, r, kernel, "conv2d_reference");
    let (h, w) = (s.h, s.w);
    for n in 0..r {
        for co in 0..s.c_out {
            for pr in 0..h {
                for pc in 0..w {
                    let mut acc = T::zero();
                    for ci in 0..s.c_in {
                        for dr in 0..3 {
                            for dc in 0..3 {
                                let rr = pr as isize + dr as isize - 1;
                                let cc = pc as isize + dc as isize - 1;
                                if rr < 0 || cc < 0 || rr >= h as isize || cc >= w as isize {
                                    continue;
                                }
                                let xv = x[n * s.input_width()
                                    + ci * h * w
                                    + rr as usize * w
                                    + cc as usize];
                                acc += kernel[(co * s.c_in + ci) * 9 + dr * 3 + dc] * xv;
                            }
                        }
                    }
                    y[n * s.output_width() + co * h * w + pr * w + pc] = acc;
                }
            }
        }
    }
}
