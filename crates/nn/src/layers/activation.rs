//! Pointwise non-linearities: LeakyReLU, its smooth variant, tanh, sigmoid, softplus.

use std::sync::Arc;

use eqaug_groups::Real;

use super::{Backward, BuildCtx, Built, Forward, GradIn, Layer, TangentBackward, TangentForward};
use crate::NnError;

/// A hyperparameter of a [`PointwiseFn`] out of range.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
#[error("{name} must be finite and > 0, got {value}")]
pub struct HyperparameterError {
    /// The hyperparameter (`slope`, `sharpness`).
    pub name: &'static str,
    /// Its value.
    pub value: f64,
}

/// A pointwise function, with its hyperparameters in `f64`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PointwiseFn {
    /// `max(x, 0) + slope * min(x, 0)`; kink at 0.
    LeakyRelu {
        /// Negative slope, finite and > 0.
        slope: f64,
    },
    /// `slope * x + (1 - slope) * softplus(sharpness * x) / sharpness`: smooth, tends to
    /// LeakyReLU(slope) as `sharpness -> inf`; derivative
    /// `slope + (1 - slope) * sigmoid(sharpness * x)`.
    SmoothLeakyRelu {
        /// Slope for `x -> -inf`, finite and > 0.
        slope: f64,
        /// `beta`, finite and > 0 (the curvature at 0 is `beta (1 - slope) / 4`).
        sharpness: f64,
    },
    /// Hyperbolic tangent.
    Tanh,
    /// Logistic sigmoid.
    Sigmoid,
    /// `ln(1 + e^x)`.
    Softplus,
}

impl PointwiseFn {
    /// The type name as in a config.
    pub fn name(&self) -> &'static str {
        match self {
            PointwiseFn::LeakyRelu { .. } => "leaky_relu",
            PointwiseFn::SmoothLeakyRelu { .. } => "smooth_leaky_relu",
            PointwiseFn::Tanh => "tanh",
            PointwiseFn::Sigmoid => "sigmoid",
            PointwiseFn::Softplus => "softplus",
        }
    }

    /// Checks the hyperparameters; the error names the one at fault.
    pub fn check(&self) -> Result<(), HyperparameterError> {
        let positive = |name: &'static str, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(HyperparameterError { name, value })
            }
        };
        match *self {
            PointwiseFn::LeakyRelu { slope } => positive("slope", slope),
            PointwiseFn::SmoothLeakyRelu { slope, sharpness } => {
                positive("slope", slope)?;
                positive("sharpness", sharpness)
            }
            _ => Ok(()),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Kernel<T> {
    LeakyRelu(T),
    SmoothLeakyRelu { slope: T, beta: T },
    Tanh,
    Sigmoid,
    Softplus,
}

/// A pointwise non-linearity on rows of `width` features (any representation: it commutes
/// with every permutation of the features).
#[derive(Clone, Debug)]
pub struct Pointwise<T> {
    f: PointwiseFn,
    kernel: Kernel<T>,
    width: usize,
}

impl<T: Real> Pointwise<T> {
    /// `f` on rows of `width` features. Errors if a hyperparameter is out of range.
    pub fn new(f: PointwiseFn, width: usize) -> Result<Self, NnError> {
        f.check().map_err(|e| NnError::InvalidSpec {
            layer: 0,
            kind: f.name(),
            message: e.to_string(),
        })?;
        let kernel = match f {
            PointwiseFn::LeakyRelu { slope } => Kernel::LeakyRelu(T::from_f64_lossy(slope)),
            PointwiseFn::SmoothLeakyRelu { slope, sharpness } => Kernel::SmoothLeakyRelu {
                slope: T::from_f64_lossy(slope),
                beta: T::from_f64_lossy(sharpness),
            },
            PointwiseFn::Tanh => Kernel::Tanh,
            PointwiseFn::Sigmoid => Kernel::Sigmoid,
            PointwiseFn::Softplus => Kernel::Softplus,
        };
        Ok(Pointwise { f, kernel, width })
    }
    /// The function.
    pub fn function(&self) -> PointwiseFn {
        self.f
    }
}

pub(crate) fn from_spec<T: Real>(ctx: &BuildCtx<'_>, f: PointwiseFn) -> Result<Built<T>, NnError> {
    f.check().map_err(|e| ctx.invalid(e.to_string()))?;
    let layer = Pointwise::<T>::new(f, ctx.width())?;
    Ok((Arc::new(layer), ctx.rep))
}

#[inline]
fn sigmoid<T: Real>(v: T) -> T {
    // exp(-v) may overflow to +inf for very negative v: 1/(1+inf) = 0, no NaN.
    T::one() / (T::one() + (-v).exp())
}

#[inline]
fn softplus<T: Real>(v: T) -> T {
    v.max(T::zero()) + (-v.abs()).exp().ln_1p()
}

impl<T: Real> Layer<T> for Pointwise<T> {
    fn kind(&self) -> &'static str {
        self.f.name()
    }
    fn input_width(&self) -> usize {
        self.width
    }
    fn output_width(&self) -> usize {
        self.width
    }
    fn forward(&self, f: Forward<'_, T>) {
        let x = f.input;
        let y = &mut f.output[..x.len()];
        match self.kernel {
            Kernel::LeakyRelu(slope) => {
                for (o, &v) in y.iter_mut().zip(x) {
                    let m = if v > T::zero() { T::one() } else { slope };
                    *o = v * m;
                }
            }
            Kernel::SmoothLeakyRelu { slope, beta } => {
                let k = (T::one() - slope) / beta;
                for (o, &v) in y.iter_mut().zip(x) {
                    *o = slope * v + k * softplus(beta * v);
                }
            }
            Kernel::Tanh => y.iter_mut().zip(x).for_each(|(o, &v)| *o = v.tanh()),
            Kernel::Sigmoid => y.iter_mut().zip(x).for_each(|(o, &v)| *o = sigmoid(v)),
            Kernel::Softplus => y.iter_mut().zip(x).for_each(|(o, &v)| *o = softplus(v)),
        }
    }
    /// In place: `g <- g * f'(x)`, using the layer input `x` or output `y`.
    fn backward(&self, b: Backward<'_, T>) -> GradIn {
        let (x, y) = (b.input, b.output);
        let g = &mut b.dy[..x.len()];
        match self.kernel {
            Kernel::LeakyRelu(slope) => {
                for (d, &v) in g.iter_mut().zip(x) {
                    let m = if v > T::zero() { T::one() } else { slope };
                    *d *= m;
                }
            }
            Kernel::SmoothLeakyRelu { slope, beta } => {
                let k = T::one() - slope;
                for (d, &v) in g.iter_mut().zip(x) {
                    *d *= slope + k * sigmoid(beta * v);
                }
            }
            Kernel::Tanh => g
                .iter_mut()
                .zip(y)
                .for_each(|(d, &v)| *d *= T::one() - v * v),
            Kernel::Sigmoid => g
                .iter_mut()
                .zip(y)
                .for_each(|(d, &v)| *d = *d * v * (T::one() - v)),
            Kernel::Softplus => g.iter_mut().zip(x).for_each(|(d, &v)| *d *= sigmoid(v)),
        }
        GradIn::InDy
    }
    fn kinks(&self) -> &[f64] {
        match self.kernel {
            Kernel::LeakyRelu(_) => &[0.0],
            _ => &[],
        }
    }
    fn has_tangent(&self) -> bool {
        true
    }
    /// `dy = f'(x) dx`.
    fn forward_tangent(&self, t: TangentForward<'_, T>) {
        let n = t.input.len();
        let yd = &mut t.output_dot[..n];
        match t.input_dot {
            None => yd.fill(T::zero()),
            Some(xd) => {
                for ((o, &d), (&x, &y)) in yd.iter_mut().zip(xd).zip(t.input.iter().zip(t.output)) {
                    *o = self.derivatives(x, y).0 * d;
                }
            }
        }
    }
    /// `xbar' = f''(x) dx ybar + f'(x) ybar'`. LeakyReLU's second derivative is zero away
    /// from its kink at 0 (at the kink it does not exist; the analysis reports the distance
    /// of the data to it, [`Layer::kinks`]).
    fn backward_tangent(&self, t: TangentBackward<'_, T>) -> GradIn {
        let n = t.input.len();
        let gd = &mut t.ybar_dot[..n];
        for (i, d) in gd.iter_mut().enumerate() {
            let (x, y) = (t.input[i], t.output[i]);
            let (f1, f2) = self.derivatives(x, y);
            let xd = t.input_dot.map_or(T::zero(), |v| v[i]);
            *d = f1 * *d + f2 * xd * t.ybar[i];
        }
        GradIn::InDy
    }
}

impl<T: Real> Pointwise<T> {
    /// `(f'(x), f''(x))` from the input `x` and the output `y = f(x)`.
    #[inline]
    fn derivatives(&self, x: T, y: T) -> (T, T) {
        let one = T::one();
        match self.kernel {
            Kernel::LeakyRelu(slope) => (if x > T::zero() { one } else { slope }, T::zero()),
            Kernel::SmoothLeakyRelu { slope, beta } => {
                let s = sigmoid(beta * x);
                let k = one - slope;
                (slope + k * s, k * beta * s * (one - s))
            }
            Kernel::Tanh => {
                let d = one - y * y;
                (d, -(y + y) * d)
            }
            Kernel::Sigmoid => {
                let d = y * (one - y);
                (d, d * (one - y - y))
            }
            Kernel::Softplus => {
                let s = sigmoid(x);
                (s, s * (one - s))
            }
        }
    }
}
