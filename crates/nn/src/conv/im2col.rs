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
//! bounded whatever the chunk size, while each GEMM still has thousands of rows. One input
//! channel (the first layer) takes a direct path (see `forward_single_channel`).

use eqaug_groups::Real;
use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, ArrayView2, ArrayViewMut2, ShapeBuilder};
use rayon::prelude::*;

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

/// Images per block (balanced: the blocks of a chunk differ by at most one image), and the
/// im2col and transposed-output buffers carved out of `buf`.
fn buffers<'b, T: Real>(
    s: &ConvShape,
    r: usize,
    buf: &'b mut Vec<T>,
    max_block: Option<usize>,
) -> (usize, &'b mut [T], &'b mut [T]) {
    let cap = max_block.map_or(s.block(), |m| s.block().min(m));
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
fn im2col_row<T: Real>(s: &ConvShape, x: &[T], nb: usize, row_id: usize, row: &mut [T]) {
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

/// The adjoint of [`im2col_t`]: `dx = col2im(dcolt)` (overwrites `dx` of `nb` images), in
/// parallel over the images (each image's sums in the same fixed order).
fn col2im_t<T: Real>(s: &ConvShape, dcolt: &[T], dx: &mut [T], nb: usize) {
    let m = nb * s.h * s.w;
    dx[..nb * s.input_width()]
        .par_chunks_mut(s.input_width())
        .enumerate()
        .for_each(|(n, dxn)| col2im_image(s, dcolt, m, n, dxn));
}

/// Image `n` of [`col2im_t`] (`dcolt` has rows of `m` entries): per channel, the centre
/// offset (which covers every position) is copied, then the other eight are added, each as
/// one contiguous add over the rows it reaches; the entries that add would wrongly reach
/// across a row end (the wrapped column) are saved before and restored after, so every
/// entry receives exactly its own terms, in the offset order.
fn col2im_image<T: Real>(s: &ConvShape, dcolt: &[T], m: usize, n: usize, dxn: &mut [T]) {
    let (h, w) = (s.h, s.w);
    let hw = h * w;
    let mut saved = vec![T::zero(); h];
    for (ci, dxc) in dxn.chunks_exact_mut(hw).enumerate() {
        dxc.copy_from_slice(&dcolt[(ci * 9 + 4) * m + n * hw..][..hw]);
        for o in (0..9).filter(|&o| o != 4) {
            let (dr, dc) = (o / 3, o % 3);
            let src = &dcolt[(ci * 9 + o) * m + n * hw..][..hw];
            // source rows lo..hi reach the map (target row pr + dr - 1)
            let lo = usize::from(dr == 0);
            let hi = (h - usize::from(dr == 2)).max(lo);
            let rows = hi - lo;
            if rows == 0 {
                continue;
            }
            let len = rows * w;
            let (bs, bd) = (lo * w, (lo + dr - 1) * w);
            match dc {
                1 => add_into(&mut dxc[bd..bd + len], &src[bs..bs + len]),
                0 => {
                    // dx[bd + t - 1] += src[bs + t], t = 1..len; t = k w (column 0) must not
                    // reach the last column of the row above
                    let wrapped = |k: usize| bd + k * w - 1;
                    (1..rows).for_each(|k| saved[k] = dxc[wrapped(k)]);
                    add_into(&mut dxc[bd..bd + len - 1], &src[bs + 1..bs + len]);
                    (1..rows).for_each(|k| dxc[wrapped(k)] = saved[k]);
                }
                _ => {
                    // dx[bd + t + 1] += src[bs + t], t = 0..len - 1; t = k w - 1 (the last
                    // column) must not reach the first column of the row below
                    let wrapped = |k: usize| bd + k * w;
                    (1..rows).for_each(|k| saved[k] = dxc[wrapped(k)]);
                    add_into(&mut dxc[bd + 1..bd + len], &src[bs..bs + len - 1]);
                    (1..rows).for_each(|k| dxc[wrapped(k)] = saved[k]);
                }
            }
        }
    }
}

/// `dst += src` entrywise.
#[inline]
fn add_into<T: Real>(dst: &mut [T], src: &[T]) {
    dst.iter_mut().zip(src).for_each(|(a, &b)| *a += b);
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
    if s.c_in == 1 && max_block.is_none() {
        return forward_single_channel(s, x, kernel, y, r);
    }
    let hw = s.h * s.w;
    let kk = s.c_in * 9;
    let (out_w, in_w) = (s.output_width(), s.input_width());
    let (block, colbuf, ybuf) = buffers(s, r, buf, max_block);
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
    if s.c_in == 1 && max_block.is_none() {
        return backward_single_channel(s, x, kernel, dy, dkernel, dx, r);
    }
    let hw = s.h * s.w;
    let kk = s.c_in * 9;
    let (out_w, in_w) = (s.output_width(), s.input_width());
    let (block, colbuf, ybuf) = buffers(s, r, buf, max_block);
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
            col2im_t(s, colbuf, &mut dx[n0 * in_w..], nb);
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

/// Images per task of the single-channel path (a fixed partition of the chunk, so the
/// kernel-gradient partial sums, added in task order, do not depend on the threads).
const SINGLE_CHANNEL_TASK: usize = 4;

/// One input channel (the first layer): the GEMM would have an inner dimension of only 9,
/// so each image is convolved directly from its 9 shifted copies (`9 x h w`, in cache):
/// 9 contiguous multiply-adds per output map, written in place; images in parallel.
fn forward_single_channel<T: Real>(s: &ConvShape, x: &[T], kernel: &[T], y: &mut [T], r: usize) {
    let hw = s.h * s.w;
    y[..r * s.output_width()]
        .par_chunks_mut(s.output_width())
        .enumerate()
        .for_each_init(
            || vec![T::zero(); 9 * hw],
            |colt, (n, yn)| {
                let xn = &x[n * hw..(n + 1) * hw];
                (0..9).for_each(|o| im2col_row(s, xn, 1, o, &mut colt[o * hw..(o + 1) * hw]));
                // two output maps per pass over the shifted copies
                let mut maps = yn.chunks_exact_mut(2 * hw);
                for (pair, y2) in (&mut maps).enumerate() {
                    let (ya, yb) = y2.split_at_mut(hw);
                    let k2 = &kernel[pair * 18..(pair + 1) * 18];
                    shifted_combination2(&k2[..9], &k2[9..], colt, ya, yb);
                }
                let rest = maps.into_remainder();
                if !rest.is_empty() {
                    let co = s.c_out - 1;
                    shifted_combination(&kernel[co * 9..(co + 1) * 9], colt, rest);
                }
            },
        );
}

/// The backward pass of [`forward_single_channel`]: `dK[co, o] += <dy[n, co], shift_o x_n>`
/// and, if asked, `dx_n = col2im(K^T dy_n)`. Tasks of [`SINGLE_CHANNEL_TASK`] images run in
/// parallel; their kernel-gradient partial sums are added in task order.
fn backward_single_channel<T: Real>(
    s: &ConvShape,
    x: &[T],
    kernel: &[T],
    dy: &[T],
    dkernel: &mut [T],
    dx: Option<&mut [T]>,
    r: usize,
) {
    let hw = s.h * s.w;
    let out_w = s.output_width();
    let tasks = r.div_ceil(SINGLE_CHANNEL_TASK);
    let task = |t: usize, dxt: Option<&mut [T]>| -> Vec<T> {
        let mut colt = vec![T::zero(); 9 * hw];
        let mut dkt = vec![T::zero(); s.kernel_len()];
        let n_end = ((t + 1) * SINGLE_CHANNEL_TASK).min(r);
        let mut dxt = dxt;
        for n in t * SINGLE_CHANNEL_TASK..n_end {
            let dyn_ = &dy[n * out_w..(n + 1) * out_w];
            let xn = &x[n * hw..(n + 1) * hw];
            (0..9).for_each(|o| im2col_row(s, xn, 1, o, &mut colt[o * hw..(o + 1) * hw]));
            for (co, dyc) in dyn_.chunks_exact(hw).enumerate() {
                let d = shifted_dots(dyc, &colt);
                dkt[co * 9..(co + 1) * 9]
                    .iter_mut()
                    .zip(&d)
                    .for_each(|(a, &b)| *a += b);
            }
            if let Some(dxt) = dxt.as_deref_mut() {
                // colt <- K^T dy_n, then col2im
                for o in 0..9 {
                    let dst = &mut colt[o * hw..(o + 1) * hw];
                    dst.iter_mut().for_each(|v| *v = T::zero());
                    for (co, dyc) in dyn_.chunks_exact(hw).enumerate() {
                        let k = kernel[co * 9 + o];
                        dst.iter_mut().zip(dyc).for_each(|(v, &d)| *v += k * d);
                    }
                }
                let i = n - t * SINGLE_CHANNEL_TASK;
                col2im_image(s, &colt, hw, 0, &mut dxt[i * hw..(i + 1) * hw]);
            }
        }
        dkt
    };
    let partial: Vec<Vec<T>> = match dx {
        Some(dx) => dx[..r * hw]
            .par_chunks_mut(SINGLE_CHANNEL_TASK * hw)
            .enumerate()
            .map(|(t, dxt)| task(t, Some(dxt)))
            .collect(),
        None => (0..tasks).into_par_iter().map(|t| task(t, None)).collect(),
    };
    for p in &partial {
        dkernel.iter_mut().zip(p).for_each(|(d, &v)| *d += v);
    }
}

/// `y[p] = sum_o k[o] colt[o, p]` over the 9 shifted copies `colt` (`9 x len(y)`), added
/// in the order `o = 0, 1, ..., 8`, in one pass over `y`.
#[inline]
fn shifted_combination<T: Real>(k: &[T], colt: &[T], y: &mut [T]) {
    let hw = y.len();
    let c: [&[T]; 9] = std::array::from_fn(|o| &colt[o * hw..(o + 1) * hw]);
    let k: [T; 9] = std::array::from_fn(|o| k[o]);
    for p in 0..hw {
        y[p] = k[0] * c[0][p]
            + k[1] * c[1][p]
            + k[2] * c[2][p]
            + k[3] * c[3][p]
            + k[4] * c[4][p]
            + k[5] * c[5][p]
            + k[6] * c[6][p]
            + k[7] * c[7][p]
            + k[8] * c[8][p];
    }
}

/// [`shifted_combination`] for two kernels `ka`, `kb` into `ya`, `yb` in one pass (each
/// entry summed in the same order).
#[inline]
fn shifted_combination2<T: Real>(ka: &[T], kb: &[T], colt: &[T], ya: &mut [T], yb: &mut [T]) {
    let hw = ya.len();
    let yb = &mut yb[..hw];
    let c: [&[T]; 9] = std::array::from_fn(|o| &colt[o * hw..(o + 1) * hw]);
    let ka: [T; 9] = std::array::from_fn(|o| ka[o]);
    let kb: [T; 9] = std::array::from_fn(|o| kb[o]);
    for p in 0..hw {
        let v: [T; 9] = std::array::from_fn(|o| c[o][p]);
        ya[p] = ka[0] * v[0]
            + ka[1] * v[1]
            + ka[2] * v[2]
            + ka[3] * v[3]
            + ka[4] * v[4]
            + ka[5] * v[5]
            + ka[6] * v[6]
            + ka[7] * v[7]
            + ka[8] * v[8];
        yb[p] = kb[0] * v[0]
            + kb[1] * v[1]
            + kb[2] * v[2]
            + kb[3] * v[3]
            + kb[4] * v[4]
            + kb[5] * v[5]
            + kb[6] * v[6]
            + kb[7] * v[7]
            + kb[8] * v[8];
    }
}

/// The 9 dot products `<dy, colt[o, :]>` (`colt` is `9 x len(dy)`), each by [`dot16`].
#[inline]
fn shifted_dots<T: Real>(dy: &[T], colt: &[T]) -> [T; 9] {
    let hw = dy.len();
    std::array::from_fn(|o| dot16(dy, &colt[o * hw..(o + 1) * hw]))
}

/// `<a, b>` with sixteen partial sums (lane `l` sums the entries `16 j + l`: independent
/// chains, so the additions' latencies overlap) added in a fixed order, then the tail.
#[inline]
fn dot16<T: Real>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .fold(T::zero(), |t, (&u, &v)| t + u * v);
    for (u, v) in ca.zip(cb) {
        for l in 0..16 {
            acc[l] += u[l] * v[l];
        }
    }
    acc.iter().fold(T::zero(), |t, &v| t + v) + tail
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
