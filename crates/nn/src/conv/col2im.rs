//! col2im, the adjoint of im2col: the columns of a 3 x 3 convolution's input gradient added
//! back into the images (see `super::im2col`); compiled for AVX2 when the CPU has it (see
//! `super::simd`).

use super::shape::ConvShape;
use super::simd::{dispatch, Isa};
use eqaug_groups::Real;
use rayon::prelude::*;

/// The adjoint of im2col (`super::im2col`'s `im2col_t`): `dx = col2im(dcolt)` (overwrites `dx` of `nb` images), in
/// parallel over the images (each image's sums in the same fixed order).
pub(super) fn col2im_t<T: Real>(isa: Isa, s: &ConvShape, dcolt: &[T], dx: &mut [T], nb: usize) {
    let m = nb * s.h * s.w;
    dx[..nb * s.input_width()]
        .par_chunks_mut(s.input_width())
        .enumerate()
        .for_each(|(n, dxn)| col2im_image(isa, s, dcolt, m, n, dxn));
}

dispatch! {
    /// Image `n` of [`col2im_t`] (`dcolt` has rows of `m` entries): per channel, the centre
    /// offset (which covers every position) is copied, then the other eight are added, each as
    /// one contiguous add over the rows it reaches; the entries that add would wrongly reach
    /// across a row end (the wrapped column) are saved before and restored after, so every
    /// entry receives exactly its own terms, in the offset order.
    /// (Adds only: compiled with AVX2 when the CPU has it, the sums are the same.)
    fn col2im_image => col2im_image_kernel(s: &ConvShape, dcolt: &[T], m: usize, n: usize, dxn: &mut [T])
}

#[inline(always)]
fn col2im_image_kernel<T: Real, const FMA: bool>(
    s: &ConvShape,
    dcolt: &[T],
    m: usize,
    n: usize,
    dxn: &mut [T],
) {
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
#[inline(always)]
fn add_into<T: Real>(dst: &mut [T], src: &[T]) {
    dst.iter_mut().zip(src).for_each(|(a, &b)| *a += b);
}
