//! The first layer's convolution (one input channel) computed directly, without a GEMM.
//!
//! With one input channel the im2col GEMM would have an inner dimension of only 9 (18 FLOPs
//! per output entry written and read back), so the layer is computed from cache instead.
//! Per image, three column-shifted copies of the image with a zero row above and below are
//! built (`3 x (h + 2) w`: 10 KB in f32 at 28 x 28); the image shifted by offset
//! `o = 3 dr + dc` is then the contiguous window of copy `dc` starting at row `dr`, so the 9
//! shifted images are read from 3 small buffers in L1 cache.
//!
//! - Forward: every output map is formed in registers, `y[co, p] = sum_o K[co, o]
//!   shift_o(x)[p]`, 9 multiply-adds per position with the 9 kernel values held in
//!   registers (with AVX2: 6 vectors of 8 positions in flight, one output map after the
//!   other, one store per 9 fused multiply-adds).
//! - Kernel gradient `dK[co, o] += <dy[co], shift_o(x)>`: 4 output channels x the 3 offsets
//!   of one kernel row accumulate side by side (12 vector registers; per 8 positions 7 loads
//!   and 12 fused multiply-adds).
//!
//! Both are compute-bound from L1 and run with AVX2 + FMA when the CPU has them (see
//! [`super::simd`]; the f32 versions in [`super::avx2`]). Images run in parallel; the
//! kernel-gradient partial sums are formed per fixed task of images and added in task order,
//! so the results do not depend on the number of threads.

#[cfg(target_arch = "x86_64")]
use super::avx2;
use super::col2im::col2im_image;
use super::shape::ConvShape;
use super::simd::{dispatch, madd, Isa};
use eqaug_groups::Real;
use rayon::prelude::*;

/// Images per task of the backward pass (a fixed partition of the chunk, so the
/// kernel-gradient partial sums, added in task order, do not depend on the threads).
const TASK: usize = 4;

/// Positions per block of the generic forward kernel.
const FORWARD_LANES: usize = 32;

/// Lanes of the kernel-gradient accumulators (one vector of 8 f32).
const GRAD_LANES: usize = 8;

/// Output channels per block of the kernel gradient.
const GRAD_CHANNELS: usize = 4;

/// Length of the buffer of [`shifted_copies`]: `3 (h + 2) w`.
fn copies_len(s: &ConvShape) -> usize {
    3 * (s.h + 2) * s.w
}

/// Builds the three column-shifted copies of one image `xn` (`h w` values) into `buf`
/// (`3 x (h + 2) w`): copy `dc` holds `x[pr, pc + dc - 1]` (0 outside the map) at row
/// `pr + 1`, and zero rows 0 and `h + 1`. Returns the 9 shifted images, each `h w` values:
/// `shift_o(x)[pr w + pc] = x[pr + dr - 1, pc + dc - 1]` for `o = 3 dr + dc` is copy `dc`
/// from row `dr`.
fn shifted_copies<'b, T: Real>(s: &ConvShape, xn: &[T], buf: &'b mut [T]) -> [&'b [T]; 9] {
    let (h, w) = (s.h, s.w);
    let hw = h * w;
    let len = (h + 2) * w;
    for (dc, copy) in buf[..3 * len].chunks_exact_mut(len).enumerate() {
        copy[..w].iter_mut().for_each(|v| *v = T::zero());
        copy[w + hw..].iter_mut().for_each(|v| *v = T::zero());
        let body = &mut copy[w..w + hw];
        match dc {
            1 => body.copy_from_slice(xn),
            0 => {
                // body[t] = x[t - 1], and column 0 of every row is 0
                body[1..].copy_from_slice(&xn[..hw - 1]);
                body.iter_mut().step_by(w).for_each(|v| *v = T::zero());
            }
            _ => {
                // body[t] = x[t + 1], and the last column of every row is 0
                body[..hw - 1].copy_from_slice(&xn[1..]);
                body[w - 1..]
                    .iter_mut()
                    .step_by(w)
                    .for_each(|v| *v = T::zero());
            }
        }
    }
    let buf: &'b [T] = buf;
    std::array::from_fn(|o| {
        let (dr, dc) = (o / 3, o % 3);
        &buf[dc * len + dr * w..][..hw]
    })
}

/// Forward pass of a one-input-channel convolution on `r` rows: `y = conv(x, kernel)`
/// (`x`: `r x (h w)`, `kernel`: `[c_out, 1, 9]`, `y`: `r x (c_out h w)`, overwritten).
pub(super) fn forward<T: Real>(
    isa: Isa,
    s: &ConvShape,
    x: &[T],
    kernel: &[T],
    y: &mut [T],
    r: usize,
) {
    let hw = s.h * s.w;
    y[..r * s.output_width()]
        .par_chunks_mut(s.output_width())
        .enumerate()
        .for_each_init(
            || vec![T::zero(); copies_len(s)],
            |buf, (n, yn)| {
                let c = shifted_copies(s, &x[n * hw..(n + 1) * hw], buf);
                combine(isa, kernel, c, yn, hw);
            },
        );
}

/// `y[co, p] = sum_o kernel[co, o] c[o][p]` for every output channel `co` (`y`:
/// `c_out x hw`, each `c[o]`: `hw`), each entry summed in the order `o = 0, ..., 8`.
fn combine<T: Real>(isa: Isa, kernel: &[T], c: [&[T]; 9], y: &mut [T], hw: usize) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2Fma {
        if let (Some(k), Some(c), Some(y)) =
            (avx2::as_f32(kernel), avx2::rows_f32(c), avx2::as_f32_mut(y))
        {
            // SAFETY: `Isa::Avx2Fma` comes from `Isa::detect`, which found AVX2 and FMA.
            #[allow(unsafe_code)]
            unsafe {
                avx2::combine(k, c, y, hw)
            };
            return;
        }
    }
    combine_generic(isa, kernel, c, y, hw);
}

dispatch! {
    /// [`combine`] by the generic kernel (f64, or without AVX2 + FMA).
    fn combine_generic => combine_kernel(kernel: &[T], c: [&[T]; 9], y: &mut [T], hw: usize)
}

#[inline(always)]
fn combine_kernel<T: Real, const FMA: bool>(kernel: &[T], c: [&[T]; 9], y: &mut [T], hw: usize) {
    const B: usize = FORWARD_LANES;
    let full = hw / B * B;
    for (k, yc) in kernel.chunks_exact(9).zip(y.chunks_exact_mut(hw)) {
        let k: [T; 9] = std::array::from_fn(|o| k[o]);
        for p0 in (0..full).step_by(B) {
            let mut acc = [T::zero(); B];
            for o in 0..9 {
                let src = &c[o][p0..p0 + B];
                for l in 0..B {
                    acc[l] = madd::<T, FMA>(k[o], src[l], acc[l]);
                }
            }
            yc[p0..p0 + B].copy_from_slice(&acc);
        }
        for p in full..hw {
            let mut a = T::zero();
            for o in 0..9 {
                a = madd::<T, FMA>(k[o], c[o][p], a);
            }
            yc[p] = a;
        }
    }
}

/// Backward pass of [`forward`]: ADDS `dL/dK` into `dkernel` and, if asked, writes `dL/dx`
/// into `dx` (`r x (h w)`), from `dy` (`r x (c_out h w)`).
pub(super) fn backward<T: Real>(
    isa: Isa,
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
    let tasks = r.div_ceil(TASK);
    let task = |t: usize, dxt: Option<&mut [T]>| -> Vec<T> {
        let mut buf = vec![T::zero(); copies_len(s)];
        let mut dcol = vec![T::zero(); if dxt.is_some() { 9 * hw } else { 0 }];
        let mut dkt = vec![T::zero(); s.kernel_len()];
        let n_end = ((t + 1) * TASK).min(r);
        let mut dxt = dxt;
        for n in t * TASK..n_end {
            let dyn_ = &dy[n * out_w..(n + 1) * out_w];
            let c = shifted_copies(s, &x[n * hw..(n + 1) * hw], &mut buf);
            kernel_gradient(isa, dyn_, c, &mut dkt, hw);
            if let Some(dxt) = dxt.as_deref_mut() {
                // dcol <- K^T dy_n (9 x hw), then col2im
                input_gradient(isa, kernel, dyn_, &mut dcol, hw);
                let i = n - t * TASK;
                col2im_image(isa, s, &dcol, hw, 0, &mut dxt[i * hw..(i + 1) * hw]);
            }
        }
        dkt
    };
    let partial: Vec<Vec<T>> = match dx {
        Some(dx) => dx[..r * hw]
            .par_chunks_mut(TASK * hw)
            .enumerate()
            .map(|(t, dxt)| task(t, Some(dxt)))
            .collect(),
        None => (0..tasks).into_par_iter().map(|t| task(t, None)).collect(),
    };
    for p in &partial {
        dkernel.iter_mut().zip(p).for_each(|(d, &v)| *d += v);
    }
}

dispatch! {
    /// `dk[co, o] += <dy[co], c[o]>` for every output channel (`dy`: `c_out x hw`, each
    /// `c[o]`: `hw`, `dk`: `c_out x 9`). Each dot product: lane `l` of [`GRAD_LANES`] sums
    /// the positions `p = l mod GRAD_LANES` in order, the lanes are added in order, then the
    /// remaining positions.
    fn kernel_gradient => kernel_gradient_kernel(dy: &[T], c: [&[T]; 9], dk: &mut [T], hw: usize)
}

#[inline(always)]
fn kernel_gradient_kernel<T: Real, const FMA: bool>(
    dy: &[T],
    c: [&[T]; 9],
    dk: &mut [T],
    hw: usize,
) {
    let c_out = dk.len() / 9;
    let blocks = c_out / GRAD_CHANNELS;
    for b in 0..blocks {
        let co = b * GRAD_CHANNELS;
        let d: [&[T]; GRAD_CHANNELS] = std::array::from_fn(|i| &dy[(co + i) * hw..][..hw]);
        grad_block::<T, FMA, GRAD_CHANNELS>(d, c, &mut dk[co * 9..(co + GRAD_CHANNELS) * 9], hw);
    }
    for co in blocks * GRAD_CHANNELS..c_out {
        let d = [&dy[co * hw..][..hw]];
        grad_block::<T, FMA, 1>(d, c, &mut dk[co * 9..(co + 1) * 9], hw);
    }
}

/// [`kernel_gradient_kernel`] for the `CB` channels `d` (`dk`: `CB x 9`): per kernel row
/// `dr`, the `CB x 3` dot products with the offsets `3 dr, 3 dr + 1, 3 dr + 2` accumulate
/// side by side.
#[inline(always)]
fn grad_block<T: Real, const FMA: bool, const CB: usize>(
    d: [&[T]; CB],
    c: [&[T]; 9],
    dk: &mut [T],
    hw: usize,
) {
    const L: usize = GRAD_LANES;
    let full = hw / L * L;
    for dr in 0..3 {
        let v: [&[T]; 3] = std::array::from_fn(|t| c[3 * dr + t]);
        let sums: [[T; 3]; CB] = if CB == GRAD_CHANNELS {
            let r = tile4::<T, FMA>(std::array::from_fn(|i| d[i]), v, full);
            std::array::from_fn(|i| r[i % GRAD_CHANNELS])
        } else {
            let mut acc = [[[T::zero(); L]; 3]; CB];
            for p0 in (0..full).step_by(L) {
                let vv: [[T; L]; 3] = std::array::from_fn(|t| lanes(&v[t][p0..]));
                for i in 0..CB {
                    let dd: [T; L] = lanes(&d[i][p0..]);
                    for t in 0..3 {
                        acc[i][t] = lane_madd::<T, FMA, L>(dd, vv[t], acc[i][t]);
                    }
                }
            }
            acc.map(|a| a.map(lane_sum))
        };
        for i in 0..CB {
            for t in 0..3 {
                let mut sum = sums[i][t];
                for p in full..hw {
                    sum = madd::<T, FMA>(d[i][p], v[t][p], sum);
                }
                dk[i * 9 + 3 * dr + t] += sum;
            }
        }
    }
}

/// The `4 x 3` dot products `<d[i], v[t]>` over the first `full` positions (a multiple of
/// [`GRAD_LANES`]): lane `l` sums the positions `p = l mod GRAD_LANES` in order, then the
/// lanes are added in order. In f32 with `FMA`, by the intrinsics of [`avx2::grad_tile4`]
/// (the same sums).
#[inline(always)]
fn tile4<T: Real, const FMA: bool>(d: [&[T]; 4], v: [&[T]; 3], full: usize) -> [[T; 3]; 4] {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        if let (Some(d0), Some(d1), Some(d2), Some(d3), Some(v0), Some(v1), Some(v2)) = (
            avx2::as_f32(d[0]),
            avx2::as_f32(d[1]),
            avx2::as_f32(d[2]),
            avx2::as_f32(d[3]),
            avx2::as_f32(v[0]),
            avx2::as_f32(v[1]),
            avx2::as_f32(v[2]),
        ) {
            // SAFETY: the `FMA = true` kernels are only instantiated inside the AVX2 + FMA
            // wrappers of `dispatch!`, which run only after `Isa::detect` found both.
            #[allow(unsafe_code)]
            let r = unsafe { avx2::grad_tile4([d0, d1, d2, d3], [v0, v1, v2], full) };
            let r: [[f32; 3]; 4] = r.map(|a| a.map(lane_sum));
            return r.map(|a| a.map(|x| T::from_f32(x).unwrap_or_else(T::zero)));
        }
    }
    tile4_generic::<T, FMA, GRAD_LANES>(d, v, full).map(|a| a.map(lane_sum))
}

/// The lanes of `a` added in order.
#[inline(always)]
fn lane_sum<T: Real, const L: usize>(a: [T; L]) -> T {
    a.iter().fold(T::zero(), |s, &v| s + v)
}

/// The lane accumulators of [`tile4`] by generic code, each in its own variable.
#[inline(always)]
fn tile4_generic<T: Real, const FMA: bool, const L: usize>(
    d: [&[T]; 4],
    v: [&[T]; 3],
    full: usize,
) -> [[[T; L]; 3]; 4] {
    let z = [T::zero(); L];
    let (mut a00, mut a01, mut a02, mut a10, mut a11, mut a12) = (z, z, z, z, z, z);
    let (mut a20, mut a21, mut a22, mut a30, mut a31, mut a32) = (z, z, z, z, z, z);
    fn ch<T, const L: usize>(s: &[T], full: usize) -> std::slice::ChunksExact<'_, T> {
        s[..full].chunks_exact(L)
    }
    let ch = |s| ch::<T, L>(s, full);
    let vs = ch(v[0]).zip(ch(v[1])).zip(ch(v[2]));
    let ds = ch(d[0]).zip(ch(d[1])).zip(ch(d[2])).zip(ch(d[3]));
    for (((v0, v1), v2), (((d0, d1), d2), d3)) in vs.zip(ds) {
        let (v0, v1, v2): ([T; L], [T; L], [T; L]) = (lanes(v0), lanes(v1), lanes(v2));
        let m = |a: [T; L], d: &[T], v: [T; L]| lane_madd::<T, FMA, L>(lanes(d), v, a);
        a00 = m(a00, d0, v0);
        a01 = m(a01, d0, v1);
        a02 = m(a02, d0, v2);
        a10 = m(a10, d1, v0);
        a11 = m(a11, d1, v1);
        a12 = m(a12, d1, v2);
        a20 = m(a20, d2, v0);
        a21 = m(a21, d2, v1);
        a22 = m(a22, d2, v2);
        a30 = m(a30, d3, v0);
        a31 = m(a31, d3, v1);
        a32 = m(a32, d3, v2);
    }
    [
        [a00, a01, a02],
        [a10, a11, a12],
        [a20, a21, a22],
        [a30, a31, a32],
    ]
}

dispatch! {
    /// `dcol[o, p] = sum_co kernel[co, o] dy[co, p]` (overwritten; `dy`: `c_out x hw`,
    /// `dcol`: `9 x hw`), summed in the order `co = 0, 1, ...`.
    fn input_gradient => input_gradient_kernel(kernel: &[T], dy: &[T], dcol: &mut [T], hw: usize)
}

#[inline(always)]
fn input_gradient_kernel<T: Real, const FMA: bool>(
    kernel: &[T],
    dy: &[T],
    dcol: &mut [T],
    hw: usize,
) {
    for o in 0..9 {
        let dst = &mut dcol[o * hw..(o + 1) * hw];
        dst.iter_mut().for_each(|v| *v = T::zero());
        for (co, dyc) in dy.chunks_exact(hw).enumerate() {
            let k = kernel[co * 9 + o];
            dst.iter_mut()
                .zip(dyc)
                .for_each(|(v, &d)| *v = madd::<T, FMA>(k, d, *v));
        }
    }
}

/// The first `L` values of `v` as an array.
#[inline(always)]
fn lanes<T: Real, const L: usize>(v: &[T]) -> [T; L] {
    let v: &[T; L] = v[..L].try_into().expect("L values");
    *v
}

/// `a b + c` lane by lane.
#[inline(always)]
fn lane_madd<T: Real, const FMA: bool, const L: usize>(a: [T; L], b: [T; L], c: [T; L]) -> [T; L] {
    std::array::from_fn(|l| madd::<T, FMA>(a[l], b[l], c[l]))
}
