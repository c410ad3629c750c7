//! Synthetic shapes (E3).

use eqaug_data::shapes::{self, Shape, ShapesParams};
use eqaug_data::Targets;

fn masks(t: &Targets) -> &ndarray::Array2<f64> {
    match t {
        Targets::Masks { masks, channels: 2 } => masks,
        t => panic!("expected two mask channels, got {t:?}"),
    }
}

/// Distance from `p` to the segment `a`-`b`.
fn seg_dist(p: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let t = (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0);
    ((p.0 - a.0 - t * dx).powi(2) + (p.1 - a.1 - t * dy).powi(2)).sqrt()
}

/// Exact point-in-polygon by the crossing number (an oracle independent of the
/// generator's half-plane test).
fn crossing_inside(poly: &[(f64, f64)], p: (f64, f64)) -> bool {
    let mut inside = false;
    for i in 0..poly.len() {
        let (a, b) = (poly[i], poly[(i + 1) % poly.len()]);
        if (a.1 > p.1) != (b.1 > p.1) && p.0 < a.0 + (p.1 - a.1) * (b.0 - a.0) / (b.1 - a.1) {
            inside = !inside;
        }
    }
    inside
}

#[test]
fn balance_areas_binary_masks_and_background() {
    let p = ShapesParams::default();
    let d = shapes::generate(&p, 11);
    d.check_shapes().unwrap();
    assert_eq!((d.len(), d.channels, d.positions), (3000, 1, 196));
    let m = masks(&d.targets);
    let specs = shapes::specs(&p, 11);
    let h = 2.0 * p.view / 14.0;
    let (mut n, mut area) = ([0usize; 2], [0.0f64; 2]);
    for (i, spec) in specs.iter().enumerate() {
        let ch = spec.shape.channel();
        let other = 1 - ch;
        let row = m.row(i);
        assert!(row.iter().all(|&v| v == 0.0 || v == 1.0), "mask not binary");
        assert!(
            (0..196).all(|s| row[other * 196 + s] == 0.0),
            "absent shape's mask not empty"
        );
        let a: f64 = (0..196).map(|s| row[ch * 196 + s]).sum();
        assert!(a > 0.0, "empty mask for a present shape");
        n[ch] += 1;
        area[ch] += a;
        let poly = spec.polygon();
        for s in 0..196 {
            let (r, c) = (s / 14, s % 14);
            let centre = (
                -p.view + (c as f64 + 0.5) * h,
                p.view - (r as f64 + 0.5) * h,
            );
            let dist = (0..poly.len())
                .map(|k| seg_dist(centre, poly[k], poly[(k + 1) % poly.len()]))
                .fold(f64::INFINITY, f64::min);
            let inside = crossing_inside(&poly, centre);
            let v = d.x[[i, s]];
            assert!((0.43 - 1e-12..=1.0).contains(&v));
            // More than half a pixel diagonal from the boundary, the pixel is entirely in
            // or out: exactly background (1.0) and not in the mask, or exactly the shape's
            // grey and in the mask.
            if dist > h / std::f64::consts::SQRT_2 + 1e-9 {
                if inside {
                    assert_eq!(v, 0.43);
                    assert_eq!(row[ch * 196 + s], 1.0);
                } else {
                    assert_eq!(
                        v, 1.0,
                        "image {i} pixel {s}: not background away from the shape"
                    );
                    assert_eq!(row[ch * 196 + s], 0.0);
                }
            }
            // Mask rule: at least half the pixel covered, with pixel value = 1 - 0.57 * cover.
            let cover = (1.0 - v) / 0.57;
            assert_eq!(
                row[ch * 196 + s] == 1.0,
                cover >= 0.5 - 1e-9,
                "image {i} pixel {s}"
            );
        }
        // The ink equals the shape's area inside the image (supersampling error is small).
        let ink: f64 = (0..196).map(|s| (1.0 - d.x[[i, s]]) / 0.57).sum::<f64>() * h * h;
        assert!(
            ink <= spec.area() + 0.05,
            "ink {ink} exceeds area {}",
            spec.area()
        );
    }
    let frac = n[0] as f64 / 3000.0;
    let mean = [area[0] / n[0] as f64, area[1] / n[1] as f64];
    eprintln!(
        "shapes: {} triangles ({frac:.3}), {} pentagons; mean mask areas {:.2} px (triangles), {:.2} px (pentagons)",
        n[0], n[1], mean[0], mean[1]
    );
    // Binomial(3000, 1/2): standard error 0.0091; allow 4 of them.
    assert!((frac - 0.5).abs() < 0.037, "triangle fraction {frac}");
    // The documented calibration targets (module docs): about 22 and 42 pixels. The
    // standard error of the mean area is below 0.15 px for both.
    assert!(
        (mean[0] - 22.7).abs() < 0.8,
        "triangle mean area {}",
        mean[0]
    );
    assert!(
        (mean[1] - 41.8).abs() < 1.2,
        "pentagon mean area {}",
        mean[1]
    );
}

#[test]
fn geometry_follows_the_spec_distributions() {
    let p = ShapesParams {
        count: 4000,
        ..ShapesParams::default()
    };
    let s = shapes::specs(&p, 5);
    assert!(s.iter().all(|x| (0.7..0.8).contains(&x.radius)));
    assert!(s
        .iter()
        .all(|x| x.centre.0.abs() <= 0.5 && x.centre.1.abs() <= 0.5));
    let mean_r = s.iter().map(|x| x.radius).sum::<f64>() / 4000.0;
    assert!((mean_r - 0.75).abs() < 0.003, "{mean_r}");
    let mean_a = s.iter().map(|x| x.angle).sum::<f64>() / 4000.0;
    assert!((mean_a - std::f64::consts::PI).abs() < 0.15, "{mean_a}");
    let tri = s.iter().filter(|x| x.shape == Shape::Triangle).count();
    assert!((tri as f64 / 4000.0 - 0.5).abs() < 0.035);
    // Polygon vertices are at the circumradius.
    for x in &s[..10] {
        for v in x.polygon() {
            let r = ((v.0 - x.centre.0).powi(2) + (v.1 - x.centre.1).powi(2)).sqrt();
            approx::assert_abs_diff_eq!(r, x.radius, epsilon = 1e-12);
        }
    }
}

#[test]
fn coverage_of_a_square_is_exact() {
    // The square [-0.5, 0.5]^2 on an 8 x 8 grid over [-1, 1]^2 covers exactly the central
    // 4 x 4 pixels.
    let sq = [(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)];
    let cov = shapes::coverage(&sq, 8, 4, 1.0);
    for r in 0..8 {
        for c in 0..8 {
            let expect = if (2..6).contains(&r) && (2..6).contains(&c) {
                1.0
            } else {
                0.0
            };
            assert_eq!(cov[r * 8 + c], expect, "({r},{c})");
        }
    }
    // Half-covered pixels: the square [-0.125, 0.125] x [-1, 1] on 4 x 4 pixels of side 0.5.
    let strip = [(-0.125, -1.0), (0.125, -1.0), (0.125, 1.0), (-0.125, 1.0)];
    let cov = shapes::coverage(&strip, 4, 8, 1.0);
    assert!(cov
        .iter()
        .enumerate()
        .all(|(s, &v)| v == if s % 4 == 1 || s % 4 == 2 { 0.25 } else { 0.0 }));
}

#[test]
fn same_seed_same_data_bit_for_bit() {
    let p = ShapesParams {
        count: 200,
        size: 10,
        ..ShapesParams::default()
    };
    let a = shapes::generate(&p, 3);
    let b = shapes::generate(&p, 3);
    assert_eq!(a, b);
    assert_eq!(a.positions, 100);
    assert_ne!(a.x, shapes::generate(&p, 4).x);
    let bad = ShapesParams {
        radius_min: 0.9,
        ..ShapesParams::default()
    };
    assert!(shapes::try_generate(&bad, 0).is_err());
}
