//! The f32 AVX2 + FMA versions of the first layer's loops (see [`super::single`]), written
//! with explicit vector intrinsics: LLVM's auto-vectoriser does not keep the 12 accumulators
//! of the kernel-gradient tile in registers. Each function computes exactly what the generic
//! `FMA = true` kernel of [`super::single`] defines (same products, same summation order,
//! one rounding per multiply-add), so the two agree bit for bit; the f64 path uses the
//! generic kernel.
//!
//! Every function here is `unsafe` only because it needs AVX2 and FMA: callers check
//! [`super::simd::Isa::Avx2Fma`] first. Memory is only touched through bounds-checked slices
//! (the loads and stores take pointers derived from slices, within their lengths).
#![allow(unsafe_code)]

use std::any::TypeId;
use std::arch::x86_64::{
    __m256, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps,
    _mm256_storeu_ps,
};

/// `s` as an `f32` slice if `T` is `f32`.
pub(super) fn as_f32<T: 'static>(s: &[T]) -> Option<&[f32]> {
    (TypeId::of::<T>() == TypeId::of::<f32>()).then(|| {
        // SAFETY: T is f32 (same size, alignment and validity), same length and lifetime.
        unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<f32>(), s.len()) }
    })
}

/// The 9 rows `c` as `f32` slices if `T` is `f32`.
pub(super) fn rows_f32<T: 'static>(c: [&[T]; 9]) -> Option<[&[f32]; 9]> {
    let r = c.map(as_f32);
    r.iter()
        .all(Option::is_some)
        .then(|| r.map(|v| v.unwrap_or_default()))
}

/// `s` as a mutable `f32` slice if `T` is `f32`.
pub(super) fn as_f32_mut<T: 'static>(s: &mut [T]) -> Option<&mut [f32]> {
    (TypeId::of::<T>() == TypeId::of::<f32>()).then(|| {
        // SAFETY: T is f32 (same size, alignment and validity), same length and lifetime;
        // `s` is borrowed mutably for the result's lifetime.
        unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<f32>(), s.len()) }
    })
}

/// Vectors of 8 positions in flight in [`combine`] (6 accumulators + 9 kernel values: 15
/// of the 16 vector registers).
const FORWARD_VECTORS: usize = 6;

/// `y[co, p] = sum_o kernel[co, o] c[o][p]` summed in the order `o = 0, ..., 8` with
/// fused multiply-adds (`y`: `c_out x hw`, each `c[o]`: `hw`, `kernel`: `c_out x 9`).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn combine(kernel: &[f32], c: [&[f32]; 9], y: &mut [f32], hw: usize) {
    const U: usize = FORWARD_VECTORS;
    let c_out = kernel.len() / 9;
    assert!(c.iter().all(|r| r.len() >= hw) && y.len() >= c_out * hw);
    let cp: [*const f32; 9] = c.map(<[f32]>::as_ptr);
    let yp = y.as_mut_ptr();
    // SAFETY of the pointer accesses below: every `c[o]` holds `hw` values and `y`
    // `c_out` rows of `hw`, and every vector access covers positions `p..p + 8` with
    // `p + 8 <= vectors * 8 <= hw`.
    // One output map after the other (the 9 shifted images, windows of 10 KB of copies,
    // stay in L1), 6 vectors at a time, then single vectors, then single positions.
    let vectors = hw / 8;
    for (co, k) in kernel.chunks_exact(9).enumerate() {
        let kv: [__m256; 9] = std::array::from_fn(|o| _mm256_broadcast_ss(&k[o]));
        let yc = yp.add(co * hw);
        let mut p = 0;
        while p + 8 * U <= vectors * 8 {
            let mut acc = [_mm256_setzero_ps(); U];
            for o in 0..9 {
                for (u, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(kv[o], _mm256_loadu_ps(cp[o].add(p + 8 * u)), *a);
                }
            }
            for (u, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(yc.add(p + 8 * u), *a);
            }
            p += 8 * U;
        }
        while p < vectors * 8 {
            let mut a = _mm256_setzero_ps();
            for o in 0..9 {
                a = _mm256_fmadd_ps(kv[o], _mm256_loadu_ps(cp[o].add(p)), a);
            }
            _mm256_storeu_ps(yc.add(p), a);
            p += 8;
        }
        for p in vectors * 8..hw {
            let mut a = 0.0f32;
            for o in 0..9 {
                a = k[o].mul_add(*cp[o].add(p), a);
            }
            *yc.add(p) = a;
        }
    }
}

/// The lane sums of the `4 x 3` dot products `<d[c], v[t]>` over the first `full`
/// positions (`full` a multiple of 8): lane `l` of entry `[c][t]` sums the positions
/// `p = l mod 8` in order, with fused multiply-adds.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn grad_tile4(d: [&[f32]; 4], v: [&[f32]; 3], full: usize) -> [[[f32; 8]; 3]; 4] {
    let (d0, d1, d2, d3) = (&d[0][..full], &d[1][..full], &d[2][..full], &d[3][..full]);
    let (v0, v1, v2) = (&v[0][..full], &v[1][..full], &v[2][..full]);
    let z = _mm256_setzero_ps();
    let (mut a00, mut a01, mut a02, mut a10, mut a11, mut a12) = (z, z, z, z, z, z);
    let (mut a20, mut a21, mut a22, mut a30, mut a31, mut a32) = (z, z, z, z, z, z);
    let ld = |s: &[f32], p: usize| _mm256_loadu_ps(s.as_ptr().add(p));
    let mut p = 0;
    // SAFETY of the loads: the seven slices hold `full` values, `p + 8 <= full`.
    while p + 8 <= full {
        let (x0, x1, x2) = (ld(v0, p), ld(v1, p), ld(v2, p));
        let e = ld(d0, p);
        a00 = _mm256_fmadd_ps(e, x0, a00);
        a01 = _mm256_fmadd_ps(e, x1, a01);
        a02 = _mm256_fmadd_ps(e, x2, a02);
        let e = ld(d1, p);
        a10 = _mm256_fmadd_ps(e, x0, a10);
        a11 = _mm256_fmadd_ps(e, x1, a11);
        a12 = _mm256_fmadd_ps(e, x2, a12);
        let e = ld(d2, p);
        a20 = _mm256_fmadd_ps(e, x0, a20);
        a21 = _mm256_fmadd_ps(e, x1, a21);
        a22 = _mm256_fmadd_ps(e, x2, a22);
        let e = ld(d3, p);
        a30 = _mm256_fmadd_ps(e, x0, a30);
        a31 = _mm256_fmadd_ps(e, x1, a31);
        a32 = _mm256_fmadd_ps(e, x2, a32);
        p += 8;
    }
    let mut r = [[[0.0f32; 8]; 3]; 4];
    let acc = [
        [a00, a01, a02],
        [a10, a11, a12],
        [a20, a21, a22],
        [a30, a31, a32],
    ];
    for (rc, ac) in r.iter_mut().zip(&acc) {
        for (l, a) in rc.iter_mut().zip(ac) {
            _mm256_storeu_ps(l.as_mut_ptr(), *a);
        }
    }
    r
}
