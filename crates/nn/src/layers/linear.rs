//! The GEMM kernels shared by the linear layers ([`super::GroupLinear`], [`super::Dense`]):
//! one GEMM forward, at most two backward. Buffers are row-major, `r` rows.

use eqaug_groups::Real;
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};

fn view<T>(s: &[T], r: usize, w: usize) -> ArrayView2<'_, T> {
    ArrayView2::from_shape((r, w), &s[..r * w]).expect("buffer shape")
}

fn view_mut<T>(s: &mut [T], r: usize, w: usize) -> ArrayViewMut2<'_, T> {
    ArrayViewMut2::from_shape((r, w), &mut s[..r * w]).expect("buffer shape")
}

/// `Y = X W^T (+ b)`; `x: r x inp`, `w: out x inp`, `y: r x out`.
pub fn linear_forward<T: Real>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    r: usize,
    inp: usize,
    out: usize,
) {
    if r == 0 {
        return;
    }
    let xv = view(x, r, inp);
    let wv = view(w, out, inp);
    let mut yv = view_mut(y, r, out);
    general_mat_mul(T::one(), &xv, &wv.t(), T::zero(), &mut yv);
    if let Some(b) = bias {
        for row in y[..r * out].chunks_exact_mut(out) {
            for (v, &bb) in row.iter_mut().zip(b) {
                *v += bb;
            }
        }
    }
}

/// `dW += dY^T X`, `db += sum_rows dY` (unless `dw` is `None`), and if asked `dX = dY W`.
pub fn linear_backward<T: Real>(
    x: &[T],
    w: &[T],
    dy: &[T],
    dw: Option<&mut [T]>,
    db: Option<&mut [T]>,
    dx: Option<&mut [T]>,
    r: usize,
    inp: usize,
    out: usize,
) {
    if r == 0 {
        return;
    }
    let xv = view(x, r, inp);
    let dyv = view(dy, r, out);
    if let Some(dw) = dw {
        let mut dwv = view_mut(dw, out, inp);
        general_mat_mul(T::one(), &dyv.t(), &xv, T::one(), &mut dwv);
    }
    if let Some(db) = db {
        for row in dy[..r * out].chunks_exact(out) {
            for (d, &g) in db.iter_mut().zip(row) {
                *d += g;
            }
        }
    }
    if let Some(dx) = dx {
        let wv = view(w, out, inp);
        let mut dxv = view_mut(dx, r, inp);
        general_mat_mul(T::one(), &dyv, &wv, T::zero(), &mut dxv);
    }
}

/// The tangent of [`linear_forward`]: `dY = X dW^T (+ db) (+ dX W^T)` (`dx = None`: a zero
/// input tangent).
#[allow(clippy::too_many_arguments)]
pub fn linear_forward_tangent<T: Real>(
    x: &[T],
    dx: Option<&[T]>,
    w: &[T],
    dw: &[T],
    dbias: Option<&[T]>,
    dy: &mut [T],
    r: usize,
    inp: usize,
    out: usize,
) {
    linear_forward(x, dw, dbias, dy, r, inp, out);
    if let (Some(dx), true) = (dx, r > 0) {
        let mut yv = view_mut(dy, r, out);
        general_mat_mul(
            T::one(),
            &view(dx, r, inp),
            &view(w, out, inp).t(),
            T::one(),
            &mut yv,
        );
    }
}

/// The tangent of [`linear_backward`] (the R-operator): with `g = dL/dY` at the point and
/// `gd` its tangent, `dW' += gd^T X + g^T dX`, `db' += sum_rows gd` and, if asked,
/// `dX' = gd W + g dW`.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward_tangent<T: Real>(
    x: &[T],
    dx: Option<&[T]>,
    w: &[T],
    dw: &[T],
    g: &[T],
    gd: &[T],
    grads_dot: &mut [T],
    dbias_dot: Option<&mut [T]>,
    xbar_dot: Option<&mut [T]>,
    r: usize,
    inp: usize,
    out: usize,
) {
    if r == 0 {
        return;
    }
    // dW' += gd^T X (+ g^T dX), db' += sum gd
    linear_backward(x, w, gd, Some(grads_dot), dbias_dot, None, r, inp, out);
    if let Some(dx) = dx {
        let mut dwv = view_mut(grads_dot, out, inp);
        general_mat_mul(
            T::one(),
            &view(g, r, out).t(),
            &view(dx, r, inp),
            T::one(),
            &mut dwv,
        );
    }
    if let Some(xd) = xbar_dot {
        let mut xv = view_mut(xd, r, inp);
        general_mat_mul(
            T::one(),
            &view(gd, r, out),
            &view(w, out, inp),
            T::zero(),
            &mut xv,
        );
        general_mat_mul(
            T::one(),
            &view(g, r, out),
            &view(dw, out, inp),
            T::one(),
            &mut xv,
        );
    }
}
