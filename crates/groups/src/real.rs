//! The floating-point types the workspace is generic over.

/// A real scalar: `f32` (the paper's precision) or `f64` (to tell round-off from sampling noise).
pub trait Real:
    ndarray::NdFloat + num_traits::FromPrimitive + Default + Send + Sync + 'static
{
    /// Converts from `f64` (rounding for `f32`).
    fn from_f64_lossy(v: f64) -> Self;
    /// Converts to `f64` (exact).
    fn to_f64_exact(self) -> f64;
}

impl Real for f32 {
    fn from_f64_lossy(v: f64) -> Self {
        v as f32
    }
    fn to_f64_exact(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    fn from_f64_lossy(v: f64) -> Self {
        v
    }
    fn to_f64_exact(self) -> f64 {
        self
    }
}
