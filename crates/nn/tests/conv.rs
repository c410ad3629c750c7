//! E5's convolution kernels against independent oracles: the im2col + GEMM convolution
//! against the direct loop, its backward pass by central differences (f64), the pooling
//! adjoint, kernel bases and least squares, and the projection onto `E ∩ L_Omega` against
//! the brute-force average over the four rotations followed by the mask.

mod common;

use common::rng;
use eqaug_nn::conv::{
    avg_pool2_backward, avg_pool2_forward, conv2d_backward, conv2d_forward, conv2d_reference,
    describe_kernel_gset, simd_kernels_available, ConvScratch, ConvShape, KernelBasis,
    KernelProjector, Parametrisation, Support,
};
use rand::Rng;
use rand_distr::StandardNormal;

fn gauss(r: &mut impl Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| r.sample(StandardNormal)).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

const SHAPES: [ConvShape; 3] = [
    ConvShape {
        c_in: 1,
        c_out: 3,
        h: 6,
        w: 6,
    },
    ConvShape {
        c_in: 3,
        c_out: 2,
        h: 5,
        w: 4,
    },
    ConvShape {
        c_in: 2,
        c_out: 4,
        h: 1,
        w: 3,
    },
];

#[test]
fn forward_matches_the_direct_loop() {
    let mut g = rng(1);
    for s in SHAPES {
        let r = 7;
        let x = gauss(&mut g, r * s.input_width());
        let k = gauss(&mut g, s.kernel_len());
        let mut want = vec![0.0; r * s.output_width()];
        conv2d_reference(&s, &x, &k, &mut want, r);
        // one block, and blocks of 2 images (the last one short)
        for mut scratch in [ConvScratch::new(), ConvScratch::with_max_block(2)] {
            let mut y = vec![f64::NAN; r * s.output_width()];
            conv2d_forward(&s, &x, &k, &mut y, r, &mut scratch);
            let e = max_abs_diff(&y, &want);
            assert!(e < 1e-12, "{s:?}: forward differs from the loop by {e:e}");
        }
        // f32 too
        let (x32, k32): (Vec<f32>, Vec<f32>) = (
            x.iter().map(|&v| v as f32).collect(),
            k.iter().map(|&v| v as f32).collect(),
        );
        let mut y32 = vec![0.0f32; r * s.output_width()];
        conv2d_forward(&s, &x32, &k32, &mut y32, r, &mut ConvScratch::new());
        let e = y32
            .iter()
            .zip(&want)
            .fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b).abs()));
        assert!(e < 1e-4, "{s:?}: f32 forward off by {e:e}");
    }
}

/// `L = <conv(x, K), g>`: its exact gradients against central differences in every entry.
#[test]
fn backward_matches_central_differences() {
    let mut gen = rng(2);
    for s in SHAPES {
        let r = 3;
        let x = gauss(&mut gen, r * s.input_width());
        let k = gauss(&mut gen, s.kernel_len());
        let g = gauss(&mut gen, r * s.output_width());
        let loss = |x: &[f64], k: &[f64]| {
            let mut y = vec![0.0; r * s.output_width()];
            conv2d_reference(&s, x, k, &mut y, r);
            dot(&y, &g)
        };
        let h = 1e-3; // the loss is bilinear: central differences are exact up to round-off
        let fd_k: Vec<f64> = (0..k.len())
            .map(|i| {
                let (mut kp, mut km) = (k.clone(), k.clone());
                kp[i] += h;
                km[i] -= h;
                (loss(&x, &kp) - loss(&x, &km)) / (2.0 * h)
            })
            .collect();
        let fd_x: Vec<f64> = (0..x.len())
            .map(|i| {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[i] += h;
                xm[i] -= h;
                (loss(&xp, &k) - loss(&xm, &k)) / (2.0 * h)
            })
            .collect();
        // default blocking (the direct path for one input channel) and blocks of 2 images
        for mut scratch in [ConvScratch::new(), ConvScratch::with_max_block(2)] {
            let mut dk = vec![0.5; s.kernel_len()]; // accumulates: start from 0.5
            let mut dx = vec![f64::NAN; x.len()];
            conv2d_backward(&s, &x, &k, &g, &mut dk, Some(&mut dx), r, &mut scratch);
            for i in 0..k.len() {
                assert!((dk[i] - 0.5 - fd_k[i]).abs() < 1e-8, "{s:?} dK[{i}]");
            }
            for i in 0..x.len() {
                assert!(
                    (dx[i] - fd_x[i]).abs() < 1e-8,
                    "{s:?} dx[{i}]: {} vs {}",
                    dx[i],
                    fd_x[i]
                );
            }
            // without the input gradient, the kernel gradient is the same
            let mut dk2 = vec![0.5; s.kernel_len()];
            conv2d_backward(&s, &x, &k, &g, &mut dk2, None, r, &mut scratch);
            assert_eq!(dk, dk2);
        }
    }
}

/// The backward pass by its definition, one loop per index (an oracle independent of
/// im2col): `dK[co, ci, o] = sum_{n, p} dy[n, co, p] x[n, ci, p + offset(o)]` and
/// `dx[n, ci, q] = sum_{co, o} K[co, ci, o] dy[n, co, q - offset(o)]`, zero padding.
fn backward_reference(
    s: &ConvShape,
    x: &[f64],
    k: &[f64],
    dy: &[f64],
    r: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (h, w) = (s.h as isize, s.w as isize);
    let (mut dk, mut dx) = (vec![0.0; s.kernel_len()], vec![0.0; r * s.input_width()]);
    let at = |n: usize, c: usize, row: isize, col: isize, width: usize| {
        (row >= 0 && col >= 0 && row < h && col < w)
            .then(|| n * width + c * s.h * s.w + (row * w + col) as usize)
    };
    for n in 0..r {
        for co in 0..s.c_out {
            for ci in 0..s.c_in {
                for o in 0..9 {
                    let (dr, dc) = ((o / 3) as isize - 1, (o % 3) as isize - 1);
                    for pr in 0..h {
                        for pc in 0..w {
                            let g = dy[at(n, co, pr, pc, s.output_width()).unwrap()];
                            if let Some(i) = at(n, ci, pr + dr, pc + dc, s.input_width()) {
                                dk[(co * s.c_in + ci) * 9 + o] += g * x[i];
                                dx[i] += k[(co * s.c_in + ci) * 9 + o] * g;
                            }
                        }
                    }
                }
            }
        }
    }
    (dk, dx)
}

/// The paths of the production code at the chunk sizes that matter (1, 7 and the runner's
/// 100 images), in f64 and f32, against the loop definitions: the GEMMs with the long
/// `(n h w)` dimension as rows, the position-major im2col of the kernel gradient, col2im,
/// several (balanced, uneven) blocks, and the direct single-channel path with its parallel
/// tasks; the results are bit-identical run to run and with one thread or several.
#[test]
fn all_paths_match_the_loops_at_chunks_1_7_100() {
    let mut g = rng(11);
    let shapes = [
        ConvShape {
            c_in: 1,
            c_out: 4,
            h: 5,
            w: 6,
        },
        ConvShape {
            c_in: 5,
            c_out: 3,
            h: 4,
            w: 4,
        },
        ConvShape {
            c_in: 2,
            c_out: 7,
            h: 3,
            w: 1,
        },
    ];
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for s in shapes {
        for r in [1, 7, 100] {
            let x = gauss(&mut g, r * s.input_width());
            let k = gauss(&mut g, s.kernel_len());
            let dy = gauss(&mut g, r * s.output_width());
            let mut want_y = vec![0.0; r * s.output_width()];
            conv2d_reference(&s, &x, &k, &mut want_y, r);
            let (want_dk, want_dx) = backward_reference(&s, &x, &k, &dy, r);
            let scale = |v: &[f64]| v.iter().fold(1.0f64, |m, a| m.max(a.abs()));
            let run64 = |scratch: &mut ConvScratch<f64>| {
                let mut y = vec![f64::NAN; r * s.output_width()];
                conv2d_forward(&s, &x, &k, &mut y, r, scratch);
                let mut dk = vec![0.0; s.kernel_len()];
                let mut dx = vec![f64::NAN; r * s.input_width()];
                conv2d_backward(&s, &x, &k, &dy, &mut dk, Some(&mut dx), r, scratch);
                (y, dk, dx)
            };
            for max_block in [None, Some(3), Some(40)] {
                let mut scratch =
                    max_block.map_or_else(ConvScratch::new, ConvScratch::with_max_block);
                let (y, dk, dx) = run64(&mut scratch);
                let tag = format!("{s:?}, {r} images, blocks of at most {max_block:?}");
                for (name, got, want) in [
                    ("y", &y, &want_y),
                    ("dK", &dk, &want_dk),
                    ("dx", &dx, &want_dx),
                ] {
                    let e = max_abs_diff(got, want);
                    assert!(e < 1e-12 * scale(want), "{tag}: f64 {name} off by {e:e}");
                }
                // bit-identical again, and on one thread
                assert_eq!(
                    run64(&mut scratch),
                    (y.clone(), dk.clone(), dx.clone()),
                    "{tag}: rerun"
                );
                let single = one_thread.install(|| run64(&mut ConvScratch::new()));
                if max_block.is_none() {
                    assert_eq!(single, (y, dk, dx), "{tag}: one thread");
                }
            }
            // f32, default blocking (the runner's path)
            let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
            let (x32, k32, dy32) = (f(&x), f(&k), f(&dy));
            let mut scratch = ConvScratch::new();
            let mut y = vec![f32::NAN; r * s.output_width()];
            conv2d_forward(&s, &x32, &k32, &mut y, r, &mut scratch);
            let mut dk = vec![0.0f32; s.kernel_len()];
            let mut dx = vec![f32::NAN; r * s.input_width()];
            conv2d_backward(
                &s,
                &x32,
                &k32,
                &dy32,
                &mut dk,
                Some(&mut dx),
                r,
                &mut scratch,
            );
            let mut dk_only = vec![0.0f32; s.kernel_len()];
            conv2d_backward(&s, &x32, &k32, &dy32, &mut dk_only, None, r, &mut scratch);
            assert_eq!(dk, dk_only, "{s:?}, {r} images: f32 dK without dx");
            for (name, got, want) in [
                ("y", &y, &want_y),
                ("dK", &dk, &want_dk),
                ("dx", &dx, &want_dx),
            ] {
                let e = got
                    .iter()
                    .zip(want.iter())
                    .fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b).abs()));
                // f32 round-off of sums of up to 9 c_in (forward, dx) or 9 r h w (dK) terms
                assert!(
                    e < 1e-5 * scale(want) * (r as f64).sqrt().max(3.0),
                    "{s:?}, {r} images: f32 {name} off by {e:e}"
                );
            }
        }
    }
}

/// The hand-written loops exist twice: portable (the build's baseline instructions, separate
/// multiply and add) and AVX2 + FMA (selected at run time when the CPU has both; f32 by
/// vector intrinsics, f64 by the generic code). Both, forced one way or the other, against
/// the loop definitions in f64 and f32 at chunks 1, 7 and 100, on shapes that reach every
/// branch of the first layer's kernels (blocks of 96 positions, single vectors, scalar
/// tails; tiles of 4 output channels and the remaining channels) and of the GEMM path;
/// each bit-identical on a rerun and on one thread.
#[test]
fn portable_and_simd_loops_both_match_the_loops() {
    let mut g = rng(12);
    let shapes = [
        // 143 positions: one block of 96, 5 vectors of 8, 7 scalars; 6 = 4 + 2 channels
        ConvShape {
            c_in: 1,
            c_out: 6,
            h: 11,
            w: 13,
        },
        // the paper's first layer size, fewer channels
        ConvShape {
            c_in: 1,
            c_out: 5,
            h: 28,
            w: 28,
        },
        ConvShape {
            c_in: 3,
            c_out: 4,
            h: 7,
            w: 9,
        },
    ];
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let scale = |v: &[f64]| v.iter().fold(1.0f64, |m, a| m.max(a.abs()));
    for s in shapes {
        for r in [1, 7, 100] {
            let x = gauss(&mut g, r * s.input_width());
            let k = gauss(&mut g, s.kernel_len());
            let dy = gauss(&mut g, r * s.output_width());
            let mut want_y = vec![0.0; r * s.output_width()];
            conv2d_reference(&s, &x, &k, &mut want_y, r);
            let (want_dk, want_dx) = backward_reference(&s, &x, &k, &dy, r);
            let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
            let (x32, k32, dy32) = (f(&x), f(&k), f(&dy));
            let mut f32_results = Vec::new();
            for portable in [false, true] {
                let tag = format!("{s:?}, {r} images, portable {portable}");
                let run64 = || {
                    let mut scratch = if portable {
                        ConvScratch::new().portable()
                    } else {
                        ConvScratch::new()
                    };
                    let mut y = vec![f64::NAN; r * s.output_width()];
                    conv2d_forward(&s, &x, &k, &mut y, r, &mut scratch);
                    let mut dk = vec![0.0; s.kernel_len()];
                    let mut dx = vec![f64::NAN; r * s.input_width()];
                    conv2d_backward(&s, &x, &k, &dy, &mut dk, Some(&mut dx), r, &mut scratch);
                    (y, dk, dx)
                };
                let run32 = || {
                    let mut scratch = if portable {
                        ConvScratch::new().portable()
                    } else {
                        ConvScratch::new()
                    };
                    let mut y = vec![f32::NAN; r * s.output_width()];
                    conv2d_forward(&s, &x32, &k32, &mut y, r, &mut scratch);
                    let mut dk = vec![0.0f32; s.kernel_len()];
                    let mut dx = vec![f32::NAN; r * s.input_width()];
                    conv2d_backward(
                        &s,
                        &x32,
                        &k32,
                        &dy32,
                        &mut dk,
                        Some(&mut dx),
                        r,
                        &mut scratch,
                    );
                    (y, dk, dx)
                };
                let (y, dk, dx) = run64();
                for (name, got, want) in [
                    ("y", &y, &want_y),
                    ("dK", &dk, &want_dk),
                    ("dx", &dx, &want_dx),
                ] {
                    let e = max_abs_diff(got, want);
                    assert!(e < 1e-12 * scale(want), "{tag}: f64 {name} off by {e:e}");
                }
                let out32 = run32();
                for (name, got, want) in [
                    ("y", &out32.0, &want_y),
                    ("dK", &out32.1, &want_dk),
                    ("dx", &out32.2, &want_dx),
                ] {
                    let e = got
                        .iter()
                        .zip(want.iter())
                        .fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b).abs()));
                    assert!(
                        e < 1e-5 * scale(want) * (r as f64).sqrt().max(3.0),
                        "{tag}: f32 {name} off by {e:e}"
                    );
                }
                assert_eq!(run64(), (y, dk, dx), "{tag}: f64 rerun");
                assert_eq!(one_thread.install(run64), run64(), "{tag}: f64 one thread");
                assert_eq!(run32(), out32, "{tag}: f32 rerun");
                assert_eq!(one_thread.install(run32), out32, "{tag}: f32 one thread");
                f32_results.push(out32);
            }
            // With AVX2 + FMA, the default path is the fused one: its single roundings give
            // different f32 results from the portable path's (the first layer's loops are
            // all fused; a chunk of random data has thousands of entries to tell them apart).
            if s.c_in == 1 && simd_kernels_available() {
                assert_ne!(
                    f32_results[0].0, f32_results[1].0,
                    "{s:?}, {r} images: the f32 forward did not take the fused path"
                );
            }
        }
    }
}

#[test]
fn pooling_and_its_adjoint() {
    let mut gen = rng(3);
    let (maps, h, w) = (5, 6, 4);
    let x = gauss(&mut gen, maps * h * w);
    let mut y = vec![0.0; maps * h * w / 4];
    avg_pool2_forward(&x, &mut y, maps, h, w);
    for m in 0..maps {
        for i in 0..h / 2 {
            for j in 0..w / 2 {
                let at = |a: usize, b: usize| x[m * h * w + a * w + b];
                let want = (at(2 * i, 2 * j)
                    + at(2 * i, 2 * j + 1)
                    + at(2 * i + 1, 2 * j)
                    + at(2 * i + 1, 2 * j + 1))
                    / 4.0;
                assert!((y[m * h * w / 4 + i * w / 2 + j] - want).abs() < 1e-15);
            }
        }
    }
    let g = gauss(&mut gen, y.len());
    let mut dx = vec![f64::NAN; x.len()];
    avg_pool2_backward(&g, &mut dx, maps, h, w);
    let (a, b) = (dot(&y, &g), dot(&x, &dx));
    assert!(
        (a - b).abs() < 1e-12 * a.abs().max(1.0),
        "<Px, g> {a} != <x, P^T g> {b}"
    );
}

/// rot90 of a 3 x 3 offset (np.rot90 convention), written out independently of eqaug-groups.
fn rot(o: usize) -> usize {
    let (r, c) = (o / 3, o % 3);
    3 * (2 - c) + r
}

/// Brute force: the mean of the kernel over its four rotations, then zero on every offset
/// whose orbit (its four rotations) is not inside the support.
fn brute_force_projection(kernel: &[f64], support: &[usize]) -> Vec<f64> {
    let mut out = vec![0.0; kernel.len()];
    for (pk, po) in kernel.chunks_exact(9).zip(out.chunks_exact_mut(9)) {
        for o in 0..9 {
            let orbit = [o, rot(o), rot(rot(o)), rot(rot(rot(o)))];
            let mean = orbit.iter().map(|&q| pk[q]).sum::<f64>() / 4.0;
            let inside = orbit.iter().all(|q| support.contains(q));
            po[o] = if inside { mean } else { 0.0 };
        }
    }
    out
}

#[test]
fn projection_matches_the_brute_force_average() {
    let mut gen = rng(4);
    let custom = Support::Offsets(vec![[1, 1], [0, 0], [0, 2], [2, 0], [2, 2], [0, 1]]);
    for (support, dim) in [
        (Support::Cross, 2),
        (Support::Skew, 1),
        (Support::Full, 3),
        (custom, 2),
    ] {
        let (co, ci) = (3, 2);
        let p = KernelProjector::between(&support, ci, co).unwrap();
        assert_eq!(p.dim_per_channel_pair(), dim, "{support}");
        assert_eq!(p.dim(), co * ci * dim);
        let info = describe_kernel_gset(&support).unwrap();
        assert_eq!(info.dim_e_cap_l_per_channel_pair, dim);
        assert_eq!(info.dim_e_per_channel_pair, 3);
        assert_eq!(
            info.compatible,
            matches!(support, Support::Cross | Support::Full)
        );
        let offsets = support.offsets().unwrap();
        let k = gauss(&mut gen, co * ci * 9);
        let want = brute_force_projection(&k, &offsets);
        let got = p.project(&k).unwrap();
        assert!(max_abs_diff(&got, &want) < 1e-15, "{support}");
        // idempotent, and the distance is ||K - Pi K||
        assert!(max_abs_diff(&p.project(&got).unwrap(), &got) < 1e-15);
        let d: f64 = k
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt();
        assert!((p.distance(&k).unwrap() - d).abs() < 1e-14);
        // orthogonal: K - Pi K is orthogonal to Pi K
        let r: Vec<f64> = k.iter().zip(&got).map(|(a, b)| a - b).collect();
        assert!(dot(&r, &got).abs() < 1e-13);
        // a kernel of the wrong length is an error
        assert!(p.project(&k[1..]).is_err());
    }
    // E ∩ L of the orbit engine's G-set, as `eqaug inspect` prints it
    let text = describe_kernel_gset(&Support::Skew).unwrap().to_string();
    assert!(
        text.contains("dim(E ∩ L) = 1") && text.contains("NOT compatible"),
        "{text}"
    );
}

#[test]
fn bases_span_the_support_and_least_squares_inverts_them() {
    let mut gen = rng(5);
    for support in [Support::Cross, Support::Skew] {
        let offsets = support.offsets().unwrap();
        for param in [
            Parametrisation::Unitary,
            Parametrisation::NonUnitary,
            Parametrisation::Equivariant,
        ] {
            let b = KernelBasis::new(param, &support, &mut gen).unwrap();
            let k = b.len();
            let m = b.matrix();
            for j in 0..k {
                let row = m.row(j);
                let norm = row.dot(&row).sqrt();
                assert!((norm - 1.0).abs() < 1e-14, "{param:?} B_{j} not unit norm");
                for o in 0..9 {
                    assert!(row[o] == 0.0 || offsets.contains(&o), "B_{j} leaves Omega");
                }
            }
            let expected_k = match (param, &support) {
                (Parametrisation::Equivariant, Support::Cross) => 2,
                (Parametrisation::Equivariant, _) => 1,
                _ => 5,
            };
            assert_eq!(k, expected_k, "{param:?} on {support}");
            // kernel and its adjoint
            let pairs = 6;
            let theta = gauss(&mut gen, pairs * k);
            let mut kern = vec![0.0; pairs * 9];
            b.kernel(&theta, &mut kern);
            let dk = gauss(&mut gen, pairs * 9);
            let mut dtheta = vec![0.0; pairs * k];
            b.coefficient_gradient(&dk, &mut dtheta);
            assert!((dot(&kern, &dk) - dot(&theta, &dtheta)).abs() < 1e-12);
            // least squares recovers theta from its own kernel
            let (back, res) = b.coefficients_from_kernel(&kern);
            assert!(res < 1e-13, "{param:?} on {support}: residual {res:e}");
            assert!(
                max_abs_diff(&back, &theta) < 1e-11,
                "{param:?} on {support}"
            );
        }
        // a kernel off the span: the residual is the distance to the span (here, to L_Omega
        // for a basis of L_Omega: the mass outside the support)
        let b = KernelBasis::new(Parametrisation::NonUnitary, &support, &mut gen).unwrap();
        let kern = gauss(&mut gen, 9);
        let (_, res) = b.coefficients_from_kernel(&kern);
        let outside: f64 = (0..9)
            .filter(|o| !offsets.contains(o))
            .map(|o| kern[o] * kern[o])
            .sum::<f64>()
            .sqrt();
        assert!((res - outside).abs() < 1e-12);
    }
    // no orbit inside: an empty E ∩ L is an error naming the support
    let corner = Support::Offsets(vec![[0, 0], [0, 1]]);
    let e = KernelBasis::new(Parametrisation::Equivariant, &corner, &mut gen).unwrap_err();
    assert!(e.to_string().contains("{(0,0), (0,1)}"), "{e}");
    assert!(Support::Offsets(vec![[3, 0]]).offsets().is_err());
    assert!(Support::Offsets(vec![[1, 1], [1, 1]]).offsets().is_err());
}
