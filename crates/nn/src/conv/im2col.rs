//! 3 x 3 convolution (stride 1, zero padding 1, no bias) by im2col and GEMMs per block of
//! images, with its exact backward pass.
//!
//! Forward, for a block of `nb` images: `colt = im2col(x)` is `(c_in 9) x (nb h w)` (row
//! `(ci, o)`: the images shifted by offset `o`; column `(n, p)`), and one GEMM gives
//! `Y^T = colt^T K^T`, `(nb h w) x c_out`, stored column-major; its runs of `h w` values are
//! copied into the channel-major rows of `y`. Backward: `dY^T` (`c_out x (nb h w)`) gathered
//! from `dy` the same way; the kernel gradient from a position-major im2col `col`
//! (`(nb h w) x (9 c_in)`, columns offset-major), `dK'^T += col^T dY` (two GEMMs, one per half
//! of the images, run side by side and added in a fixed order); the input gradient
//! `dcolt^T = dY K` (one GEMM) added back by `col2im`.
//!
//! Every GEMM has the long `(n h w)` dimension either as its rows or as its inner dimension
//! with contiguous packing reads (matrixmultiply packs the operand blocks along the rows in
//! parallel, the other operand on one thread). The memory-bound passes (im2col, col2im, the
//! copies) run in parallel over rows or images with disjoint writes, so the results do not
//! depend on the number of threads. Blocks hold at most [`BLOCK_ELEMENTS`] entries of `col`
//! (balanced: the blocks of a chunk differ by at most one image), so the scratch memory stays
//! bounded whatever the chunk size and a block's im2col stays in cache, while each GEMM
//! still has thousands of rows. One input channel (the first layer) takes a direct path
//! (see `super::single`). The hand-written loops (col2im, in `super::col2im`) are compiled
//! for AVX2 when the CPU has it (see `super::simd`); the copies are `memcpy`s.

use super::col2im::col2im_t;
use super::shape::ConvShape;
use super::simd::Isa;
use super::single;
use eqaug_groups::Real;
use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, ArrayView2, ArrayViewMut2, ShapeBuilder};
use rayon::prelude::*;

/// Upper bound on the entries of the im2col buffer of one block (1 Mi entries: 4 MB in f32;
/// at the paper's sizes and chunks of 100 images, blocks of 17 images for the 32 -> 64
/// layer on 14 x 14 maps and 34 for the 64 -> 64 layer on 7 x 7). Small enough that a
/// block's im2col is still in cache when the GEMM packs it (measured on one core: with 4 Mi
/// entries the 32 -> 64 layer ran 5% and the 64 -> 64 layer 17% slower).
pub(crate) const BLOCK_ELEMENTS: usize = 1 << 20;

/// Images per im2col block of a layer (at least 1).
fn images_per_block(s: &ConvShape) -> usize {
    (BLOCK_ELEMENTS / (s.h * s.w * s.c_in * 9).max(1)).max(1)
}

/// Reusable buffers of [`conv2d_forward`] / [`conv2d_backward`] (grown on demand; one per
/// thread).
#[derive(Debug, Default, Clone)]
pub struct ConvScratch<T> {
    buf: Vec<T>,
    opts: Opts,
}

/// How a call runs: the block cap, and whether the hand-written loops may use AVX2 + FMA.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Opts {
    /// At most this many images per GEMM block (also disables the single-channel path).
    pub(crate) max_block: Option<usize>,
    /// Run the hand-written loops with the build's baseline instructions only.
    pub(crate) portable: bool,
}

impl Opts {
    fn isa(&self) -> Isa {
        if self.portable {
            Isa::Portable
        } else {
            Isa::detect()
        }
    }
}

impl<T: Real> ConvScratch<T> {
    /// Empty buffers.
    pub fn new() -> Self {
        ConvScratch {
            buf: Vec::new(),
            opts: Opts::default(),
        }
    }
    /// Empty buffers, and at most `images` images per GEMM (by default as many as fit in
    /// 4 Mi entries of the im2col buffer); small blocks exercise the blocking in tests.
    pub fn with_max_block(images: usize) -> Self {
        ConvScratch {
            buf: Vec::new(),
            opts: Opts {
                max_block: Some(images.max(1)),
                portable: false,
            },
        }
    }
    /// The same buffers, but the hand-written loops (the first layer's direct path, the
    /// layout copies) run with the build's baseline instructions only, never with the
    /// AVX2 + FMA versions detected at run time (see [`super::simd_kernels_available`]):
    /// lets tests check both paths on one machine. The GEMMs are not affected.
    pub fn portable(mut self) -> Self {
        self.opts.portable = true;
        self
    }
}

/// Images per block (balanced: the blocks of a chunk differ by at most one image), and the
/// im2col and transposed-output buffers carved out of `buf`.
fn buffers<'b, T: Real>(
    s: &ConvShape,
    r: usize,
    buf: &'b mut Vec<T>,
    max_block: Option<usize>,
) -> (usize, &'b mut [T], &'b mut [T]) {
    let block = images_per_block(s);
    let cap = max_block.map_or(block, |m| block.min(m));
    let r1 = r.max(1);
    let block = r1.div_ceil(r1.div_ceil(cap));
    let hw = s.h * s.w;
    let (ncol, npm) = (block * hw * s.c_in * 9, block * hw * s.c_out);
    crate::layers::grow(buf, ncol + npm);
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

/// The transposed im2col of `nb` images: `colt[(ci, o), n h w + p] = x[n, ci, p + offset(o)]`
/// (0 outside the map), a `(c_in 9) x (nb h w)` matrix. Every row is the images shifted by
/// one offset, so it is built from contiguous copies of image rows; the rows are filled in
/// parallel (disjoint writes: the result does not depend on the threads).
fn im2col_t<T: Real>(s: &ConvShape, x: &[T], colt: &mut [T], nb: usize) {
    let m = nb * s.h * s.w;
    colt[..s.c_in * 9 * m]
        .par_chunks_mut(m)
        .enumerate()
        .for_each(|(row_id, row)| im2col_row(s, x, nb, row_id, row));
}

/// Row `row_id = 9 ci + o` of [`im2col_t`]: channel `ci` of the `nb` images shifted by offset
/// `o`. Per image, the rows whose source row is inside the map are one contiguous copy (the
/// column shift included), then the column that wrapped around is zeroed.
pub(super) fn im2col_row<T: Real>(s: &ConvShape, x: &[T], nb: usize, row_id: usize, row: &mut [T]) {
    let (h, w, cin) = (s.h, s.w, s.c_in);
    let hw = h * w;
    let (ci, dr, dc) = (row_id / 9, row_id % 9 / 3, row_id % 3);
    // output rows lo..hi have their source row (pr + dr - 1) inside the map
    let lo = usize::from(dr == 0);
    let hi = (h - usize::from(dr == 2)).max(lo);
    let len = (hi - lo) * w;
    let src0 = (lo + dr).saturating_sub(1) * w;
    for n in 0..nb {
        let xc = &x[(n * cin + ci) * hw..][..hw];
        let dst = &mut row[n * hw..(n + 1) * hw];
        dst[..lo * w].iter_mut().for_each(|v| *v = T::zero());
        dst[hi * w..].iter_mut().for_each(|v| *v = T::zero());
        if len == 0 {
            continue;
        }
        let d = &mut dst[lo * w..hi * w];
        match dc {
            1 => d.copy_from_slice(&xc[src0..src0 + len]),
            0 => {
                d[1..].copy_from_slice(&xc[src0..src0 + len - 1]);
                d.iter_mut().step_by(w).for_each(|v| *v = T::zero());
            }
            _ => {
                d[..len - 1].copy_from_slice(&xc[src0 + 1..src0 + len]);
                d[w - 1..]
                    .iter_mut()
                    .step_by(w)
                    .for_each(|v| *v = T::zero());
            }
        }
    }
}

/// The im2col of `nb` images with one row per position: `col[n h w + p, (o, ci)] = x[n, ci,
/// p + offset(o)]` (0 outside the map), an `(nb h w) x (9 c_in)` matrix whose columns are
/// ordered offset-major. Per image (in parallel), the image is transposed to
/// position-major `(h w) x c_in`, so each row of `col` is built from contiguous runs of
/// `c_in` (up to `3 c_in`) values.
fn im2col_rows<T: Real>(s: &ConvShape, x: &[T], col: &mut [T], nb: usize) {
    let (h, w, cin) = (s.h, s.w, s.c_in);
    let hw = h * w;
    let kk = 9 * cin;
    col[..nb * hw * kk]
        .par_chunks_mut(hw * kk)
        .enumerate()
        .for_each_init(
            || vec![T::zero(); hw * cin],
            |xt, (n, coln)| {
                let xn = &x[n * cin * hw..(n + 1) * cin * hw];
                for (ci, xc) in xn.chunks_exact(hw).enumerate() {
                    for (p, &v) in xc.iter().enumerate() {
                        xt[p * cin + ci] = v;
                    }
                }
                for pr in 0..h {
                    for pc in 0..w {
                        let dst = &mut coln[(pr * w + pc) * kk..][..kk];
                        // source columns pc - 1 ..= pc + 1, clipped to the map
                        let (c_lo, c_hi) = (pc.saturating_sub(1), (pc + 1).min(w - 1));
                        let dc_lo = c_lo + 1 - pc;
                        let len = (c_hi + 1 - c_lo) * cin;
                        for dr in 0..3 {
                            let seg = &mut dst[dr * 3 * cin..(dr + 1) * 3 * cin];
                            let rr = pr + dr; // source row + 1
                            if rr == 0 || rr > h {
                                seg.iter_mut().for_each(|v| *v = T::zero());
                                continue;
                            }
                            let src = &xt[((rr - 1) * w + c_lo) * cin..][..len];
                            seg[..dc_lo * cin].iter_mut().for_each(|v| *v = T::zero());
                            seg[dc_lo * cin..dc_lo * cin + len].copy_from_slice(src);
                            seg[dc_lo * cin + len..]
                                .iter_mut()
                                .for_each(|v| *v = T::zero());
                        }
                    }
                }
            },
        );
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
    forward_in(s, x, kernel, y, r, &mut scratch.buf, scratch.opts);
}

/// [`conv2d_forward`] with the scratch as a plain vector (e.g. a layer executor's).
pub(crate) fn forward_in<T: Real>(
    s: &ConvShape,
    x: &[T],
    kernel: &[T],
    y: &mut [T],
    r: usize,
    buf: &mut Vec<T>,
    opts: Opts,
) {
    check(s, x, r, kernel, "conv2d_forward");
    assert!(
        y.len() >= r * s.output_width(),
        "conv2d_forward: y too short"
    );
    if s.c_in == 1 && opts.max_block.is_none() {
        return single::forward(opts.isa(), s, x, kernel, y, r);
    }
    let hw = s.h * s.w;
    let kk = s.c_in * 9;
    let (out_w, in_w) = (s.output_width(), s.input_width());
    let (block, colbuf, ybuf) = buffers(s, r, buf, opts.max_block);
    let kv = ArrayView2::from_shape((s.c_out, kk), kernel).expect("kernel shape");
    let mut n0 = 0;
    while n0 < r {
        let nb = block.min(r - n0);
        let m = nb * hw;
        im2col_t(s, &x[n0 * in_w..], colbuf, nb);
        let colt = ArrayView2::from_shape((kk, m), &colbuf[..kk * m]).expect("col shape");
        // Y^T = colt^T K^T, an (nb h w) x c_out matrix stored column-major (ybuf holds the
        // c_out x (nb h w) matrix K colt): with the long dimension as the GEMM's rows, the
        // packing of colt is split between the GEMM's threads.
        let mut yt =
            ArrayViewMut2::from_shape((m, s.c_out).strides((1, m)), &mut ybuf[..s.c_out * m])
                .expect("y shape");
        general_mat_mul(T::one(), &colt.t(), &kv.t(), T::zero(), &mut yt);
        // each (co, n) run of h w values of ybuf into row n of y
        let ybuf: &[T] = ybuf;
        y[n0 * out_w..(n0 + nb) * out_w]
            .par_chunks_mut(out_w)
            .enumerate()
            .for_each(|(n, yn)| {
                for (co, yc) in yn.chunks_exact_mut(hw).enumerate() {
                    yc.copy_from_slice(&ybuf[co * m + n * hw..][..hw]);
                }
            });
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
        scratch.opts,
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
    opts: Opts,
) {
    check(s, x, r, kernel, "conv2d_backward");
    assert_eq!(dkernel.len(), s.kernel_len(), "conv2d_backward: dkernel");
    assert!(dy.len() >= r * s.output_width(), "conv2d_backward: dy");
    if s.c_in == 1 && opts.max_block.is_none() {
        return single::backward(opts.isa(), s, x, kernel, dy, dkernel, dx, r);
    }
    let hw = s.h * s.w;
    let kk = s.c_in * 9;
    let (out_w, in_w) = (s.output_width(), s.input_width());
    let (block, colbuf, ybuf) = buffers(s, r, buf, opts.max_block);
    let kv = ArrayView2::from_shape((s.c_out, kk), kernel).expect("kernel shape");
    // dK'^T: rows (o, ci), columns co, accumulated over the blocks
    let mut dkt = Array2::<T>::zeros((kk, s.c_out));
    let mut n0 = 0;
    while n0 < r {
        let nb = block.min(r - n0);
        let m = nb * hw;
        let dyb = &dy[n0 * out_w..];
        // dY^T: c_out x (nb h w), gathered from the rows of dy
        ybuf[..s.c_out * m]
            .par_chunks_mut(m)
            .enumerate()
            .for_each(|(co, row)| {
                for n in 0..nb {
                    row[n * hw..][..hw].copy_from_slice(&dyb[(n * s.c_out + co) * hw..][..hw]);
                }
            });
        im2col_rows(s, &x[n0 * in_w..], colbuf, nb);
        let dyt = ArrayView2::from_shape((s.c_out, m), &ybuf[..s.c_out * m]).expect("dy shape");
        {
            // dK'^T += col^T dY, with col = colbuf as an (nb h w) x (9 c_in) matrix: the
            // GEMM's packing reads contiguous runs of col.
            let col =
                ArrayView2::from_shape((kk, m).strides((1, kk)), &colbuf[..kk * m]).expect("col");
            // Two GEMMs, one per half of the block's images, run side by side (each
            // matrixmultiply call spends much of its time in serial packing and thread
            // hand-offs along the long inner dimension, which the other call fills), each
            // into its own partial sum; the partial sums are added in a fixed order.
            let half = nb / 2 * hw;
            let partial = |a: usize, b: usize| {
                let mut p = Array2::<T>::zeros((kk, s.c_out));
                general_mat_mul(
                    T::one(),
                    &col.slice(s![.., a..b]),
                    &dyt.slice(s![.., a..b]).t(),
                    T::zero(),
                    &mut p,
                );
                p
            };
            let (p1, p2) = rayon::join(|| partial(0, half), || partial(half, m));
            dkt += &p1;
            dkt += &p2;
        }
        if let Some(dx) = dx.as_deref_mut() {
            // dcolt^T = dY K, an (nb h w) x (c_in 9) matrix stored column-major (the layout
            // of colt), long dimension first as in the forward pass
            let mut dcolt =
                ArrayViewMut2::from_shape((m, kk).strides((1, m)), &mut colbuf[..kk * m])
                    .expect("col shape");
            general_mat_mul(T::one(), &dyt.t(), &kv, T::zero(), &mut dcolt);
            col2im_t(opts.isa(), s, colbuf, &mut dx[n0 * in_w..], nb);
        }
        n0 += nb;
    }
    for (co, dkc) in dkernel.chunks_exact_mut(kk).enumerate() {
        for (ci, dkp) in dkc.chunks_exact_mut(9).enumerate() {
            for (o, d) in dkp.iter_mut().enumerate() {
                *d += dkt[[o * s.c_in + ci, co]];
            }
        }
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
