//! Run-time choice of the instruction set of the hand-written convolution loops.
//!
//! The workspace builds for the baseline of its target (on x86_64: SSE2, 4-wide, no fused
//! multiply-add), so that the binaries run on any CPU; the GEMMs (matrixmultiply) detect
//! AVX2 + FMA at run time. The loops of this module's callers do the same: each numeric kernel
//! is one generic `#[inline(always)]` function with a `const FMA: bool` parameter, compiled
//! twice, once as is (the portable path: `a * b + c`, two roundings) and once inside an
//! `#[target_feature(enable = "avx2,fma")]` wrapper, where `FMA = true` turns every
//! multiply-add into `T::mul_add` (one rounding) and LLVM vectorises the loops 8 (f32) or 4
//! (f64) wide. Where LLVM's vectoriser does not keep the accumulators in registers (the first
//! layer's loops), the f32 wrapper calls hand-written vector intrinsics instead
//! (`super::avx2`), which compute the same sums in the same order. [`Isa::detect`] picks the
//! wrappers once per process if the CPU has both features. The two paths round differently (as matrixmultiply's
//! kernels do), each deterministically: the summation order is fixed in the code, not by the
//! threads or the instruction set.

use eqaug_groups::Real;
use std::sync::OnceLock;

/// The instruction set the convolution loops run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// The build's baseline (SSE2 on x86_64), separate multiply and add.
    Portable,
    /// AVX2 with fused multiply-add (x86_64 only, detected at run time).
    Avx2Fma,
}

impl Isa {
    /// [`Isa::Avx2Fma`] if this CPU has AVX2 and FMA (detected once per process), else
    /// [`Isa::Portable`].
    pub(crate) fn detect() -> Isa {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2Fma;
            }
            Isa::Portable
        })
    }
}

/// Whether the convolution loops of this process run with AVX2 and fused multiply-add
/// (detected at run time on x86_64; otherwise they run with the build's baseline
/// instructions). Tests use it to know which paths they compare.
pub fn simd_kernels_available() -> bool {
    Isa::detect() == Isa::Avx2Fma
}

/// `a b + c`: fused (one rounding) if `FMA`, else a multiply and an add.
#[inline(always)]
pub(crate) fn madd<T: Real, const FMA: bool>(a: T, b: T, c: T) -> T {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Defines `$name(isa, args...)` that runs the generic kernel `$kernel::<T, FMA>(args...)`
/// with `FMA = true` inside an AVX2 + FMA wrapper when `isa` is [`Isa::Avx2Fma`], and with
/// `FMA = false` (portable) otherwise.
macro_rules! dispatch {
    ($(#[$doc:meta])* fn $name:ident => $kernel:ident ( $($arg:ident : $ty:ty),* $(,)? )) => {
        $(#[$doc])*
        #[inline]
        pub(crate) fn $name<T: Real>(isa: $crate::conv::simd::Isa, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                /// The kernel compiled with AVX2 and FMA enabled.
                ///
                /// # Safety
                /// The CPU must support AVX2 and FMA.
                #[allow(unsafe_code)]
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide<T: Real>($($arg: $ty),*) {
                    $kernel::<T, true>($($arg),*)
                }
                if isa == $crate::conv::simd::Isa::Avx2Fma {
                    // SAFETY: `Isa::Avx2Fma` is only ever produced by `Isa::detect`, after
                    // run-time detection of both AVX2 and FMA on this CPU.
                    #[allow(unsafe_code)]
                    unsafe {
                        wide::<T>($($arg),*)
                    };
                    return;
                }
            }
            let _ = isa;
            $kernel::<T, false>($($arg),*)
        }
    };
}
pub(crate) use dispatch;
