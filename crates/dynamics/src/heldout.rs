//! Test metrics on a held-out split (issue 15, section 3): loss and accuracy (or mean IoU for
//! segmentation) of the network function on samples it is not trained on.

use crate::TrainError;
use eqaug_groups::Real;
use eqaug_nn::{Loss, Network, Params, Workspace};
use ndarray::Array2;

/// What the network scores on the held-out rows after one epoch.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TestMetrics {
    /// Mean loss over the held-out rows (the network's own loss, as in training).
    pub loss: f64,
    /// Fraction of correct predictions: argmax for classification (cross-entropy, or MSE
    /// against one-hot rows), threshold 0.5 for binary cross-entropy, and per mask entry
    /// (pixel accuracy) for segmentation. `None` when the output is a single regression value.
    pub accuracy: Option<f64>,
    /// Segmentation only: the intersection over union of the predicted masks (threshold 0.5)
    /// with the target masks, pooled over all held-out samples and positions per output
    /// channel, then averaged over channels (a channel that is empty in both counts as 1).
    pub mean_iou: Option<f64>,
}

/// A held-out split and the buffers to evaluate a network on it: one forward pass gives both
/// the outputs (scores) and the loss, no gradient, no allocation per call.
///
/// Normalisation layers use per-mini-batch statistics over consecutive groups of `minibatch`
/// held-out rows, as in training (the protocol keeps no running statistics), so the result
/// is deterministic for given parameters and rows.
#[derive(Debug)]
pub struct HeldOut<T: Real> {
    x: Array2<T>,
    targets: Array2<T>,
    minibatch: usize,
    ws: Workspace<T>,
    outputs: Array2<T>,
}

impl<T: Real> HeldOut<T> {
    /// Held-out inputs `x` (`rows x net.input_width()`) and targets
    /// (`rows x net.output_width()`, encoded as for training), evaluated in mini-batches of
    /// `minibatch` rows.
    pub fn new(
        net: &Network<T>,
        x: Array2<T>,
        targets: Array2<T>,
        minibatch: usize,
    ) -> Result<Self, TrainError> {
        if minibatch == 0 {
            return Err(TrainError::Invalid(
                "the held-out mini-batch size must be at least 1".into(),
            ));
        }
        if x.nrows() == 0 {
            return Err(TrainError::Invalid("the held-out split is empty".into()));
        }
        if x.nrows() != targets.nrows()
            || x.ncols() != net.input_width()
            || targets.ncols() != net.output_width()
        {
            return Err(TrainError::Invalid(format!(
                "held-out data of shape {} x {} -> {} x {} do not fit the network ({} -> {})",
                x.nrows(),
                x.ncols(),
                targets.nrows(),
                targets.ncols(),
                net.input_width(),
                net.output_width()
            )));
        }
        let rows = x.nrows();
        Ok(HeldOut {
            ws: net.workspace(rows),
            outputs: Array2::zeros((rows, net.output_width())),
            x,
            targets,
            minibatch,
        })
    }

    /// Number of held-out rows.
    pub fn len(&self) -> usize {
        self.x.nrows()
    }

    /// Always false (an empty split is rejected by [`HeldOut::new`]).
    pub fn is_empty(&self) -> bool {
        self.x.nrows() == 0
    }

    /// Loss, accuracy and (for segmentation) mean IoU of `net` at `params` on the split.
    ///
    /// # Errors
    /// [`eqaug_nn::NnError::Input`] if the split or `params` do not fit `net`.
    pub fn evaluate(
        &mut self,
        net: &Network<T>,
        params: &Params<T>,
    ) -> Result<TestMetrics, eqaug_nn::NnError> {
        let n = self.x.nrows();
        let (loss_sum, out) = net.forward_and_loss(
            params,
            self.x.view(),
            self.targets.view(),
            self.minibatch,
            &mut self.ws,
        )?;
        self.outputs.assign(&out);
        let loss = loss_sum.to_f64_exact() / n as f64;
        let kind = net.loss_kind();
        let channels = net.output_rep().channels;
        let (accuracy, mean_iou) = score(&self.outputs, &self.targets, kind, channels);
        Ok(TestMetrics {
            loss,
            accuracy,
            mean_iou,
        })
    }
}

/// Accuracy and mean IoU of `outputs` against `targets` (see [`TestMetrics`]); `channels` is
/// the number of output channels (mask channels for segmentation).
pub fn score<T: Real>(
    outputs: &Array2<T>,
    targets: &Array2<T>,
    loss: Loss,
    channels: usize,
) -> (Option<f64>, Option<f64>) {
    let half = 0.5f64;
    let w = outputs.ncols();
    let rows = outputs.nrows().max(1) as f64;
    let thresholded_accuracy = || {
        let hits = outputs
            .iter()
            .zip(targets.iter())
            .filter(|(y, t)| (y.to_f64_exact() >= half) == (t.to_f64_exact() >= half))
            .count();
        hits as f64 / outputs.len().max(1) as f64
    };
    if loss.is_segmentation() {
        let channels = channels.max(1);
        let positions = w / channels;
        let mut iou = 0.0;
        for c in 0..channels {
            let (mut inter, mut union) = (0usize, 0usize);
            for (yr, tr) in outputs.rows().into_iter().zip(targets.rows()) {
                for s in c * positions..(c + 1) * positions {
                    let p = yr[s].to_f64_exact() >= half;
                    let t = tr[s].to_f64_exact() >= half;
                    inter += (p && t) as usize;
                    union += (p || t) as usize;
                }
            }
            iou += if union == 0 {
                1.0
            } else {
                inter as f64 / union as f64
            };
        }
        return (Some(thresholded_accuracy()), Some(iou / channels as f64));
    }
    if matches!(loss, Loss::Bce | Loss::BceOnProbabilities) {
        return (Some(thresholded_accuracy()), None);
    }
    if w < 2 {
        return (None, None);
    }
    let argmax = |r: ndarray::ArrayView1<'_, T>| {
        let mut best = 0;
        for j in 1..r.len() {
            if r[j] > r[best] {
                best = j;
            }
        }
        best
    };
    let hits = outputs
        .rows()
        .into_iter()
        .zip(targets.rows())
        .filter(|(y, t)| argmax(y.view()) == argmax(t.view()))
        .count();
    (Some(hits as f64 / rows), None)
}
