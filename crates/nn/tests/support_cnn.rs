//! The CNNs with kernels on a support (E5's networks): gradients by central differences (f64)
//! for every parametrisation, rot90 invariance of the equivariant model (f32 and f64), and
//! exact weight loading into the models on Omega.

mod common;

use common::{grad_check, perturb, rng, targets};
use eqaug_nn::conv::{Parametrisation, Support};
use eqaug_nn::support_cnn::{SupportCnn, SupportCnnSpec};
use eqaug_nn::{Loss, Params};
use ndarray::Array2;
use rand::Rng;
use rand_distr::StandardNormal;

fn small(support: Support, param: Parametrisation) -> SupportCnnSpec {
    SupportCnnSpec {
        support,
        parametrisation: param,
        channels: [2, 3, 2],
        side: 8,
        classes: 3,
    }
}

fn images(r: &mut impl Rng, rows: usize, side: usize) -> Array2<f64> {
    Array2::from_shape_fn((rows, side * side), |_| r.sample(StandardNormal))
}

#[test]
fn gradients_match_central_differences() {
    let mut r = rng(11);
    for support in [Support::Cross, Support::Skew] {
        for param in [
            Parametrisation::Equivariant,
            Parametrisation::Unitary,
            Parametrisation::NonUnitary,
        ] {
            let spec = small(support.clone(), param);
            let net = SupportCnn::<f64>::new(&spec, &mut r).unwrap();
            let mut p = net.init_params(&mut r);
            // move every weight (also the final layer off E) so no term vanishes by symmetry
            perturb(&mut p, &mut r, 0.3);
            let x = images(&mut r, 3, 8);
            let t = targets(&mut r, Loss::CrossEntropyLogits, 3, 3);
            let err = grad_check(net.sequential(), &p, &x, &t, x.nrows());
            eprintln!(
                "{support} {param:?}: {} params, relative error {err:e}",
                p.len()
            );
            assert!(err < 1e-8, "{support} {param:?}: relative error {err:e}");
        }
    }
}

#[test]
fn the_equivariant_model_is_rotation_invariant() {
    let mut r = rng(12);
    for support in [Support::Cross, Support::Skew] {
        let spec = SupportCnnSpec::paper(support.clone(), Parametrisation::Equivariant);
        let x = images(&mut r, 3, 28);
        let n64 = SupportCnn::<f64>::new(&spec, &mut r).unwrap();
        // dim(E ∩ L): 2 (cross) or 1 (skew) per channel pair; the final layer has one weight
        // per rot90 orbit of the 7 x 7 map ((49 - 1) / 4 + 1 = 13) per class and channel
        let per_pair = if support == Support::Cross { 2 } else { 1 };
        assert_eq!(
            n64.dims_of_e(),
            vec![
                32 * per_pair,
                64 * 32 * per_pair,
                64 * 64 * per_pair,
                10 * 64 * 13
            ]
        );
        let p64 = n64.init_params(&mut r);
        // the equivariant coefficients are exactly those dimensions (plus the dense storage
        // of the final layer)
        assert_eq!(
            p64.len(),
            n64.dims_of_e()[..3].iter().sum::<usize>() + 10 * 64 * 49
        );
        let mut ws = n64.sequential().workspace(3);
        let e64 = n64
            .rotation_invariance_error(&p64, x.view(), &mut ws)
            .unwrap();
        let n32 = SupportCnn::<f32>::new(&spec, &mut r).unwrap();
        let p32: Params<f32> = p64.cast();
        let mut ws = n32.sequential().workspace(3);
        let e32 = n32
            .rotation_invariance_error(&p32, x.mapv(|v| v as f32).view(), &mut ws)
            .unwrap();
        eprintln!("{support}: rot90 invariance error f64 {e64:e}, f32 {e32:e}");
        assert!(e64 < 1e-13, "{support}: f64 {e64:e}");
        assert!(e32 < 1e-5, "{support}: f32 {e32:e}");
        // the same kernels on Omega, moved off E ∩ L, are not invariant: the check can fail
        let on_omega = spec.with_parametrisation(Parametrisation::Unitary);
        let net = SupportCnn::<f64>::new(&on_omega, &mut r).unwrap();
        let p = net.init_params(&mut r);
        let mut ws = net.sequential().workspace(3);
        let e = net
            .rotation_invariance_error(&p, x.view(), &mut ws)
            .unwrap();
        assert!(
            e > 1e-3,
            "{support}: a generic model on Omega looks invariant ({e:e})"
        );
    }
}

#[test]
fn loading_into_the_model_on_omega_keeps_the_function() {
    let mut r = rng(13);
    for support in [Support::Cross, Support::Skew] {
        let eq_spec = SupportCnnSpec::paper(support.clone(), Parametrisation::Equivariant);
        let eq = SupportCnn::<f32>::new(&eq_spec, &mut r).unwrap();
        let peq = eq.init_params(&mut r);
        let x = images(&mut r, 4, 28).mapv(|v| v as f32);
        let mut ws = eq.sequential().workspace(4);
        let want = eq
            .sequential()
            .forward(&peq, x.view(), 4, &mut ws)
            .unwrap()
            .to_owned();
        let scale = want.iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64;
        for param in [Parametrisation::Unitary, Parametrisation::NonUnitary] {
            let net = SupportCnn::<f32>::new(&eq_spec.with_parametrisation(param), &mut r).unwrap();
            let (p, report) = net.load_from_equivariant(&eq, &peq).unwrap();
            let mut ws = net.sequential().workspace(4);
            let got = net
                .sequential()
                .forward(&p, x.view(), 4, &mut ws)
                .unwrap()
                .to_owned();
            let diff = got
                .iter()
                .zip(&want)
                .fold(0.0f64, |a, (u, v)| a.max((u - v).abs() as f64));
            eprintln!("{support} {param:?}: {report:?}, output difference {diff:e}");
            // the loaded model starts in E ∩ L
            let d = net.distances_to_e(&p);
            match param {
                Parametrisation::Unitary => {
                    // exact: the kernels are the same f32 numbers, so are the outputs
                    assert!(report.kernel_mismatch.iter().all(|&m| m == 0.0));
                    assert_eq!(got, want);
                    assert!(d.iter().all(|&v| v == 0.0), "{d:?}");
                }
                _ => {
                    for (&res, &m) in report
                        .least_squares_residuals
                        .iter()
                        .zip(&report.kernel_mismatch)
                    {
                        assert!(res < 1e-12, "least-squares residual {res:e}");
                        assert!(m < 1e-4, "kernel mismatch {m:e} (f32)");
                    }
                    assert!(diff < 1e-4 * scale.max(1.0), "output difference {diff:e}");
                    assert!(d.iter().all(|&v| v < 1e-4), "{d:?}");
                }
            }
        }
    }
    // loading is only from equivariant into non-equivariant with the same support
    let a = SupportCnn::<f64>::new(&small(Support::Cross, Parametrisation::Equivariant), &mut r)
        .unwrap();
    let b =
        SupportCnn::<f64>::new(&small(Support::Skew, Parametrisation::Unitary), &mut r).unwrap();
    let pa = a.init_params(&mut r);
    assert!(b.load_from_equivariant(&a, &pa).is_err());
}

#[test]
fn the_non_unitary_parametrisation_is_named_as_in_the_configs() {
    let json = serde_json::to_string(&Parametrisation::NonUnitary).unwrap();
    assert_eq!(json, "\"nonunitary\"");
    for name in ["\"nonunitary\"", "\"non_unitary\""] {
        let p: Parametrisation = serde_json::from_str(name).unwrap();
        assert_eq!(p, Parametrisation::NonUnitary);
    }
}
