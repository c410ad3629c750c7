//! The worked instability example of docs/science.md §1.4, computed with the same machinery as the
//! experiments: G = Z_2 swapping the two coordinates of R^2, `Phi_a(x) = softplus(a . x)`, data
//! `{((1,1), ln 2), ((1,-1), 2)}`, loss `1/2 (Phi - y)^2` averaged over the two points.
//!
//! At `a* = 0` the augmented gradient vanishes, but the Hessian of `R_aug` has eigenvalue
//! `1/4` along E and `(ln 2 - 1)/4 < 0` along E-perp: `a*` minimises `R_eqv` but is a saddle
//! of `R_aug`, and augmented gradient flow started just off E escapes to about
//! `(0.6209, -0.6209)`.

use crate::{hessian, Protocol, Sampling, StrategySpec, TrainData, TrainError, Trainer};
use eqaug_groups::{Group, Rep};
use eqaug_nn::{LayerSpec, Loss, Network, NetworkSpec, Params, Points};
use ndarray::array;

/// What the example measures.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct WorkedExample {
    /// `grad R_aug(0)` (should vanish).
    pub grad_aug_at_zero: [f64; 2],
    /// `grad R(0)` (nominal; `(ln 2 - 2)/4 * (1, -1)`).
    pub grad_nominal_at_zero: [f64; 2],
    /// The Hessian of `R_aug` at 0.
    pub hessian_aug: [[f64; 2]; 2],
    /// Its eigenvalue along E = span(1,1)/sqrt 2 (expected 1/4).
    pub eigenvalue_e: f64,
    /// Its eigenvalue along E-perp = span(1,-1)/sqrt 2 (expected (ln 2 - 1)/4).
    pub eigenvalue_perp: f64,
    /// Where augmented gradient flow (Euler, dt 0.1) from `1e-6 (1,-1)` ends.
    pub escape_point: [f64; 2],
    /// `R_aug` at the start of the flow.
    pub r_aug_start: f64,
    /// `R_aug` at its end.
    pub r_aug_end: f64,
    /// Time (steps x dt) at which `|a_1 - a_2|` first exceeded 0.1.
    pub escape_time: f64,
}

/// The network, its group and its data, in f64.
pub type Setup = (Network<f64>, std::sync::Arc<Group>, TrainData<f64>);

/// The network (`softplus(a . x)`, MSE loss: twice the example's risk), group (`swap`) and
/// data of the example; `a = 0` is [`Sequential::zeros`](eqaug_nn::Sequential::zeros).
pub fn setup() -> Result<Setup, TrainError> {
    let group = Group::builtin("swap", 2)?;
    let spec = NetworkSpec {
        layers: vec![
            LayerSpec::Group {
                channels: 1,
                points: Points::Trivial,
                init_std: 0.0,
                constant_over_positions: false,
            },
            LayerSpec::Softplus,
        ],
    };
    let net = Network::new(&spec, group.clone(), Rep::base(1), Loss::Mse)?;
    let data = TrainData {
        x: array![[1.0, 1.0], [1.0, -1.0]],
        targets: array![[std::f64::consts::LN_2], [2.0]],
        input_rep: Rep::base(1),
        target_rep: None,
    };
    Ok((net, group, data))
}

fn params_at(net: &Network<f64>, a: [f64; 2]) -> Params<f64> {
    let mut p = net.zeros();
    p.as_mut_slice().copy_from_slice(&a);
    p
}

/// Runs the example. The network's loss is the mean squared error, twice the example's
/// `1/2 (Phi - y)^2`, so gradients and Hessians are halved here.
pub fn run() -> Result<WorkedExample, TrainError> {
    let (net, _group, data) = setup()?;
    let protocol = Protocol::default()
        .with_epochs(0)
        .with_learning_rate(0.1)
        .with_minibatch(2)
        .with_chunk_rows(2);
    let mut trainer = Trainer::new(&net, &data, protocol)?;
    let aug = StrategySpec::augmented(1, Sampling::Exact);
    let nominal = StrategySpec::nominal();
    let half = |p: &Params<f64>| [p.as_slice()[0] * 0.5, p.as_slice()[1] * 0.5];
    let zero = params_at(&net, [0.0, 0.0]);
    let grad_aug_at_zero = half(&hessian::gradient(&mut trainer, &zero, &aug)?);
    let grad_nominal_at_zero = half(&hessian::gradient(&mut trainer, &zero, &nominal)?);
    let mut hessian_aug = [[0.0; 2]; 2];
    for j in 0..2 {
        let mut e = [0.0; 2];
        e[j] = 1.0;
        let (mut col, mut p, mut gm) = (zero.zeros_like(), zero.zeros_like(), zero.zeros_like());
        hessian::hvp(
            &zero,
            &params_at(&net, e),
            1e-5,
            &mut col,
            &mut p,
            &mut gm,
            |x, g| {
                g.copy_from(&hessian::gradient(&mut trainer, x, &aug)?);
                Ok::<f64, TrainError>(0.0)
            },
        )?;
        for i in 0..2 {
            hessian_aug[i][j] = 0.5 * col.as_slice()[i];
        }
    }
    let h = hessian_aug;
    let eigenvalue_e = 0.5 * (h[0][0] + h[0][1] + h[1][0] + h[1][1]);
    let eigenvalue_perp = 0.5 * (h[0][0] - h[0][1] - h[1][0] + h[1][1]);

    let mut rng = crate::strategy_rng(0, "worked-example");
    let risk = |t: &mut Trainer<'_, f64>, p: &Params<f64>, r: &mut _| -> Result<f64, TrainError> {
        Ok(0.5 * t.loss(p, &aug, r)?)
    };
    let dt = 0.1;
    let mut a = params_at(&net, [1e-6, -1e-6]);
    let r_aug_start = risk(&mut trainer, &a, &mut rng)?;
    let mut escape_time = f64::NAN;
    for step in 0..20_000 {
        trainer.gradient(&a, &aug, &mut rng)?;
        // The network's gradient is of the MSE, twice the example's risk.
        a.axpy(-0.5 * dt, trainer.grads());
        let s = a.as_slice();
        if escape_time.is_nan() && (s[0] - s[1]).abs() > 0.1 {
            escape_time = (step + 1) as f64 * dt;
        }
    }
    let r_aug_end = risk(&mut trainer, &a, &mut rng)?;
    Ok(WorkedExample {
        grad_aug_at_zero,
        grad_nominal_at_zero,
        hessian_aug,
        eigenvalue_e,
        eigenvalue_perp,
        escape_point: [a.as_slice()[0], a.as_slice()[1]],
        r_aug_start,
        r_aug_end,
        escape_time,
    })
}

/// The stability analysis of [`crate::stability::analyse`] run on the example from `a* = 0`
/// (the self-test of the stability command). The network's risk is the MSE, twice the
/// example's, so the reported eigenvalues are `2 x 1/4 = 1/2` on E and `(ln 2 - 1)/2` on
/// E-perp, and with `eta` the escape factor is `1 - eta (ln 2 - 1)/2`.
pub fn stability(
    opts: &crate::stability::StabilityOptions,
) -> Result<crate::stability::StabilityReport, crate::stability::StabilityError> {
    let (net, _group, data) = setup()?;
    let a0 = net.zeros();
    let mut o = opts.clone();
    o.minibatch = 2;
    Ok(crate::stability::analyse(&net, &data, &a0, &o)?.0)
}
