//! 2 x 2 average pooling with stride 2 (PyTorch's `AvgPool2d(2)`) on channel-major maps.

use eqaug_groups::Real;

use crate::c;

fn check(len_x: usize, len_y: usize, maps: usize, h: usize, w: usize, what: &str) {
    assert!(
        h.is_multiple_of(2) && w.is_multiple_of(2),
        "{what}: the map ({h} x {w}) must have even sides"
    );
    assert!(
        len_x >= maps * h * w && len_y >= maps * (h / 2) * (w / 2),
        "{what}: buffers too short for {maps} maps of {h} x {w}"
    );
}

/// `y[m, i, j] = (x[m, 2i, 2j] + x[m, 2i, 2j+1] + x[m, 2i+1, 2j] + x[m, 2i+1, 2j+1]) / 4`
/// for `maps` consecutive maps (rows x channels) of `h x w` (both even); `y` receives
/// `maps` maps of `h/2 x w/2`.
///
/// # Panics
/// If a side is odd or a buffer is too short.
pub fn avg_pool2_forward<T: Real>(x: &[T], y: &mut [T], maps: usize, h: usize, w: usize) {
    check(x.len(), y.len(), maps, h, w, "avg_pool2_forward");
    let (ho, wo) = (h / 2, w / 2);
    let q: T = c(0.25);
    for (xm, ym) in x
        .chunks_exact(h * w)
        .zip(y.chunks_exact_mut(ho * wo))
        .take(maps)
    {
        for i in 0..ho {
            let (r0, r1) = (
                &xm[2 * i * w..(2 * i + 1) * w],
                &xm[(2 * i + 1) * w..(2 * i + 2) * w],
            );
            for (j, o) in ym[i * wo..(i + 1) * wo].iter_mut().enumerate() {
                *o = (r0[2 * j] + r0[2 * j + 1] + r1[2 * j] + r1[2 * j + 1]) * q;
            }
        }
    }
}

/// The backward pass of [`avg_pool2_forward`]: each input pixel receives a quarter of its
/// window's output gradient; `dx` (`maps` maps of `h x w`) is overwritten.
///
/// # Panics
/// If a side is odd or a buffer is too short.
pub fn avg_pool2_backward<T: Real>(dy: &[T], dx: &mut [T], maps: usize, h: usize, w: usize) {
    check(dx.len(), dy.len(), maps, h, w, "avg_pool2_backward");
    let (ho, wo) = (h / 2, w / 2);
    let q: T = c(0.25);
    for (dm, gm) in dx
        .chunks_exact_mut(h * w)
        .zip(dy.chunks_exact(ho * wo))
        .take(maps)
    {
        for i in 0..ho {
            for j in 0..wo {
                let g = gm[i * wo + j] * q;
                dm[2 * i * w + 2 * j] = g;
                dm[2 * i * w + 2 * j + 1] = g;
                dm[(2 * i + 1) * w + 2 * j] = g;
                dm[(2 * i + 1) * w + 2 * j + 1] = g;
            }
        }
    }
}
