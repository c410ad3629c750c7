//! The metrics of docs/science.md §3 and the empirical equivariance error of a network.

use eqaug_groups::Real;
use eqaug_nn::{act_on_rows, Network, Params};
use ndarray::{Array2, ArrayView2};
use rand::Rng;

/// One row of a run's metrics: a strategy's state after `epoch` steps.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochMetrics {
    /// Epoch (0 = the start, `A0`).
    pub epoch: usize,
    /// Strategy name.
    pub strategy: String,
    /// Mean training loss at these parameters (for augmentation, over all passes).
    pub loss: f64,
    /// `||A - A0||` over the group layers: `sqrt(sum_k ||W_k - W_k^0||^2)` (not squared).
    pub dist_from_start: f64,
    /// `||A_Eperp|| = ||A - Pi_E A||` over the group layers (not squared).
    pub dist_to_e: f64,
    /// `||W_k - W_k^0||` per group layer.
    pub dist_from_start_per_layer: Vec<f64>,
    /// `||W_k - Pi_E W_k||` per group layer.
    pub dist_to_e_per_layer: Vec<f64>,
    /// The regulariser's penalty `gamma/2 ||A_Eperp||^2` at these parameters (`None` without
    /// a regulariser). [`EpochMetrics::loss`] is the data loss alone; the regularised risk the
    /// strategy descends is `loss + penalty` ([`EpochMetrics::risk`]).
    #[serde(default)]
    pub penalty: Option<f64>,
    /// Mean loss on the held-out split (`None` when no split is evaluated).
    #[serde(default)]
    pub test_loss: Option<f64>,
    /// Accuracy on the held-out split (see [`crate::TestMetrics::accuracy`]).
    #[serde(default)]
    pub test_accuracy: Option<f64>,
    /// Mean IoU of the predicted masks on the held-out split (segmentation only).
    #[serde(default)]
    pub test_mean_iou: Option<f64>,
}

impl EpochMetrics {
    /// Measures `params` against the start `a0`.
    pub fn measure<T: Real>(
        epoch: usize,
        strategy: &str,
        loss: f64,
        params: &Params<T>,
        a0: &Params<T>,
    ) -> Self {
        let from: Vec<f64> = params
            .distance_per_group_layer(a0)
            .into_iter()
            .map(Real::to_f64_exact)
            .collect();
        let to_e: Vec<f64> = params
            .distance_to_equivariant_per_group_layer()
            .into_iter()
            .map(Real::to_f64_exact)
            .collect();
        let total = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        EpochMetrics {
            epoch,
            strategy: strategy.to_string(),
            loss,
            dist_from_start: total(&from),
            dist_to_e: total(&to_e),
            dist_from_start_per_layer: from,
            dist_to_e_per_layer: to_e,
            penalty: None,
            test_loss: None,
            test_accuracy: None,
            test_mean_iou: None,
        }
    }

    /// The regularised risk `loss + penalty` (equal to `loss` without a regulariser).
    pub fn risk(&self) -> f64 {
        self.loss + self.penalty.unwrap_or(0.0)
    }

    /// Records held-out test metrics in this row.
    pub fn set_test(&mut self, t: &crate::TestMetrics) {
        self.test_loss = Some(t.loss);
        self.test_accuracy = t.accuracy;
        self.test_mean_iou = t.mean_iou;
    }
}

/// The empirical equivariance error of a network function on held-out samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EquivarianceError {
    /// `max |Phi(g x) - g Phi(x)|` over samples, output entries and sampled `g`.
    pub max: f64,
    /// Mean of `|Phi(g x) - g Phi(x)|` over samples, output entries and sampled `g`.
    pub mean: f64,
}

/// Measures `|Phi(g x) - g Phi(x)|` for `draws` elements `g` drawn uniformly, each applied to
/// every row of `x` (so mini-batch statistics see a consistently transformed batch). The
/// output is transformed as the network's output representation says: segmentation masks
/// move with `g`, invariant outputs stay.
pub fn equivariance_error<T: Real, R: Rng>(
    net: &Network<T>,
    params: &Params<T>,
    x: ArrayView2<T>,
    minibatch: usize,
    draws: usize,
    rng: &mut R,
) -> Result<EquivarianceError, eqaug_nn::NnError> {
    let group = net.group();
    let mut ws = net.workspace(x.nrows());
    let base = net.forward(params, x, minibatch, &mut ws)?.to_owned();
    let mut gx = Array2::<T>::zeros(x.raw_dim());
    let mut g_out = base.clone();
    let (mut max, mut sum, mut count) = (0.0f64, 0.0f64, 0usize);
    for _ in 0..draws {
        let g = group.sample(rng);
        act_on_rows(group, net.input_rep(), &g, x, gx.view_mut())?;
        act_on_rows(group, net.output_rep(), &g, base.view(), g_out.view_mut())?;
        let out = net.forward(params, gx.view(), minibatch, &mut ws)?;
        for (a, b) in out.iter().zip(g_out.iter()) {
            let d = (a.to_f64_exact() - b.to_f64_exact()).abs();
            max = max.max(d);
            sum += d;
            count += 1;
        }
    }
    Ok(EquivarianceError {
        max,
        mean: if count > 0 { sum / count as f64 } else { 0.0 },
    })
}
