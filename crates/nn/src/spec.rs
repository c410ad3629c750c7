//! Declarative network descriptions (serde), and the networks of docs/science.md §4.

use eqaug_groups::Points;
use serde::{Deserialize, Serialize};

/// A network as a sequence of layers, applied in order to the input representation.
///
/// In TOML:
/// ```toml
/// [[layers]]
/// type = "group"
/// channels = 32
/// points = "base"
/// init_std = 0.0714
/// [[layers]]
/// type = "leaky_relu"
/// slope = 0.01
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// The layers, first applied first.
    pub layers: Vec<LayerSpec>,
}

/// What a normalisation layer normalises over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormOver {
    /// Batch norm: each feature `(c, s)` over the mini-batch. Layer norm: all features of a row.
    Features,
    /// Batch norm: each channel over mini-batch x positions (one scale and shift per channel).
    /// Layer norm: the channels at each position of a row.
    Channels,
    /// Layer norm only: the positions of each channel of a row (each channel's map, e.g. an
    /// h x w image plane, normalised on its own). Not for batch norm.
    Positions,
}

/// The normalisation of the paper's networks: batch norm (v1, the main text) or layer norm
/// without affine parameters (later versions). Used by the presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Normalisation {
    /// Batch normalisation, per-mini-batch statistics, learnable scale and shift.
    #[default]
    Batch,
    /// Layer normalisation without affine parameters.
    Layer,
}

/// One layer of a [`NetworkSpec`]. In a config: a table with `type = "group"`, `"dense"`,
/// `"leaky_relu"`, `"smooth_leaky_relu"`, `"tanh"`, `"sigmoid"`, `"softplus"`, `"softmax"`,
/// `"batch_norm"` or `"layer_norm"` and the variant's fields; unknown keys are rejected.
/// Each kind is implemented in its module of [`crate::layers`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    /// A group linear layer from the current representation to `channels` copies of the base
    /// points (`points = "base"`) or of the one-point set (`"trivial"`). Weight shape
    /// `(c_out * s_out) x (c_in * s_in)`, no bias. Initialised i.i.d. `N(0, init_std^2)` and
    /// then projected onto E (docs/science.md §3).
    Group {
        /// Output channels.
        channels: usize,
        /// Output G-set.
        points: Points,
        /// Standard deviation of the Gaussian initialisation.
        init_std: f64,
        /// Draw one Gaussian per channel pair and broadcast it over all positions (the paper's
        /// initialisation of the invariant layer in E1/E2).
        #[serde(default)]
        constant_over_positions: bool,
    },
    /// A dense layer between trivial representations, `out x in` weights initialised
    /// `N(0,1) * init_scale`; the optional bias starts at zero.
    Dense {
        /// Output features.
        out: usize,
        /// Scale of the standard Gaussian initialisation.
        init_scale: f64,
        /// Whether the layer has a bias.
        #[serde(default)]
        bias: bool,
    },
    /// `max(x, 0) + slope * min(x, 0)`.
    LeakyRelu {
        /// The negative slope (0.01 in the paper).
        slope: f64,
    },
    /// `slope * x + (1 - slope) * softplus(sharpness * x) / sharpness`: a smooth LeakyReLU
    /// (no kink; tends to LeakyReLU as `sharpness -> inf`).
    SmoothLeakyRelu {
        /// The slope for `x -> -inf`, finite and > 0.
        slope: f64,
        /// beta, finite and > 0.
        sharpness: f64,
    },
    /// Hyperbolic tangent.
    #[serde(deserialize_with = "no_fields")]
    Tanh,
    /// Logistic sigmoid.
    #[serde(deserialize_with = "no_fields")]
    Sigmoid,
    /// `ln(1 + e^x)`.
    #[serde(deserialize_with = "no_fields")]
    Softplus,
    /// Softmax over all features of a row.
    #[serde(deserialize_with = "no_fields")]
    Softmax,
    /// Batch normalisation with per-mini-batch statistics, learnable scale (init 1) and
    /// shift (init 0), eps 1e-5.
    BatchNorm {
        /// Features or channels.
        over: NormOver,
    },
    /// Layer normalisation without affine parameters, eps 1e-5.
    LayerNorm {
        /// All features of a row, or the channels at each position.
        over: NormOver,
    },
}

/// Deserialises the (empty) body of a field-less layer, rejecting stray keys: serde ignores
/// `deny_unknown_fields` on the unit variants of an internally tagged enum.
fn no_fields<'de, D: serde::Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoFields {}
    NoFields::deserialize(d).map(|_| ())
}

impl LayerSpec {
    /// A group linear layer to `channels` copies of `points`, initialised `N(0, init_std^2)`
    /// per entry (not constant over positions).
    pub fn group(channels: usize, points: Points, init_std: f64) -> Self {
        LayerSpec::Group {
            channels,
            points,
            init_std,
            constant_over_positions: false,
        }
    }

    /// A dense layer of `out` features, initialised `N(0,1) * init_scale`, with or without a
    /// bias.
    pub fn dense(out: usize, init_scale: f64, bias: bool) -> Self {
        LayerSpec::Dense {
            out,
            init_scale,
            bias,
        }
    }

    /// The layer's type name as written in a config.
    pub fn kind(&self) -> &'static str {
        match self {
            LayerSpec::Group { .. } => "group",
            LayerSpec::Dense { .. } => "dense",
            LayerSpec::LeakyRelu { .. } => "leaky_relu",
            LayerSpec::SmoothLeakyRelu { .. } => "smooth_leaky_relu",
            LayerSpec::Tanh => "tanh",
            LayerSpec::Sigmoid => "sigmoid",
            LayerSpec::Softplus => "softplus",
            LayerSpec::Softmax => "softmax",
            LayerSpec::BatchNorm { .. } => "batch_norm",
            LayerSpec::LayerNorm { .. } => "layer_norm",
        }
    }
}

/// Loss functions; each is a mean over a mini-batch (docs/science.md §3-§4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Binary cross-entropy against 0/1 targets, mean over all entries. When the network
    /// ends in a sigmoid layer (the presets do), it is computed from the sigmoid's input, the
    /// logits `z`, as `softplus(z) - t z` (PyTorch's `BCEWithLogitsLoss`): one smooth function
    /// whose gradient `sigmoid(z) - t` and Hessian `sigmoid(z) (1 - sigmoid(z))` are its exact
    /// derivatives at every output, saturated ones included. Otherwise it is taken on the
    /// outputs as probabilities, with the exact derivative of the clamped logs.
    Bce,
    /// The authors' binary cross-entropy on the sigmoid's probabilities, exactly as PyTorch's
    /// `BCELoss`: logs clamped at -100 and the gradient `(p - t) / max(p (1 - p), 1e-12)`.
    /// Where an output saturates the gradient is not the derivative of the reported loss
    /// (docs/science.md, known departures); use it to reproduce the authors' numbers, not for
    /// second-order analysis.
    BceOnProbabilities,
    /// Plain cross-entropy of logits (log-softmax) against one-hot (or probability) rows:
    /// `logsumexp(z) - z_y`. The network must not end in a softmax layer.
    CrossEntropyLogits,
    /// Cross-entropy applied to softmax *probabilities*, i.e. log-softmax of the network's
    /// softmax output (the authors' E2/E4 "double softmax"): `logsumexp(p) - p_y` with
    /// `p = softmax(z)`. The network must end in a softmax layer.
    CrossEntropyOnProbabilities,
    /// Mean squared error, mean over all entries.
    Mse,
    /// Segmentation: the sum over output channels of the BCE mean over mini-batch x positions
    /// (from the logits when the network ends in a sigmoid, as [`Loss::Bce`]).
    SegmentationBce,
    /// [`Loss::SegmentationBce`] on probabilities with PyTorch's `BCELoss` gradient, as
    /// [`Loss::BceOnProbabilities`].
    SegmentationBceOnProbabilities,
}

impl Loss {
    /// The loss's name as written in a config.
    pub fn name(&self) -> &'static str {
        match self {
            Loss::Bce => "bce",
            Loss::CrossEntropyLogits => "cross_entropy_logits",
            Loss::CrossEntropyOnProbabilities => "cross_entropy_on_probabilities",
            Loss::Mse => "mse",
            Loss::SegmentationBce => "segmentation_bce",
            Loss::BceOnProbabilities => "bce_on_probabilities",
            Loss::SegmentationBceOnProbabilities => "segmentation_bce_on_probabilities",
        }
    }
    /// A binary cross-entropy (plain or segmentation, either form).
    pub fn is_binary_cross_entropy(&self) -> bool {
        matches!(
            self,
            Loss::Bce
                | Loss::BceOnProbabilities
                | Loss::SegmentationBce
                | Loss::SegmentationBceOnProbabilities
        )
    }
    /// A segmentation loss (mean over positions per output channel).
    pub fn is_segmentation(&self) -> bool {
        matches!(
            self,
            Loss::SegmentationBce | Loss::SegmentationBceOnProbabilities
        )
    }
}

/// The pointwise non-linearity of the presets (in their hidden layers; E2's tanh before the
/// normalisation stays). In TOML: `{ type = "leaky_relu", slope = 0.01 }` or
/// `{ type = "smooth_leaky_relu", slope = 0.01, sharpness = 20.0 }`. Default: the paper's
/// LeakyReLU(0.01).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Activation {
    /// [`LayerSpec::LeakyRelu`].
    LeakyRelu {
        /// The negative slope.
        slope: f64,
    },
    /// [`LayerSpec::SmoothLeakyRelu`]: smooth, for analyses that need second derivatives.
    SmoothLeakyRelu {
        /// The slope for `x -> -inf`.
        slope: f64,
        /// beta: the curvature at 0 is `beta (1 - slope) / 4`.
        sharpness: f64,
    },
}

impl Default for Activation {
    fn default() -> Self {
        Activation::LeakyRelu { slope: 0.01 }
    }
}

impl Activation {
    /// The layer it stands for.
    pub fn layer(&self) -> LayerSpec {
        match *self {
            Activation::LeakyRelu { slope } => LayerSpec::LeakyRelu { slope },
            Activation::SmoothLeakyRelu { slope, sharpness } => {
                LayerSpec::SmoothLeakyRelu { slope, sharpness }
            }
        }
    }
}

fn norm_layer(norm: Normalisation, over: NormOver) -> LayerSpec {
    match norm {
        Normalisation::Batch => LayerSpec::BatchNorm { over },
        Normalisation::Layer => LayerSpec::LayerNorm { over },
    }
}

impl NetworkSpec {
    /// E1 (docs/science.md §4) on graphs with `n` nodes: group layer 1 -> `c1` (std
    /// `1/(n sqrt c1)`), LeakyReLU(0.01), invariant layer -> `c2` (std `1/sqrt c2`, constant over
    /// positions), LeakyReLU, normalisation over the `c2` features, dense -> `head` (scale
    /// `10/c2`), LeakyReLU, dense -> 1 (scale `10/head`), sigmoid. Paper: `n = 10, c1 = 32,
    /// c2 = 64, head = 32`; use with [`Loss::Bce`] and the group `perm`.
    pub fn invariant_binary_classifier(
        n: usize,
        c1: usize,
        c2: usize,
        head: usize,
        norm: Normalisation,
    ) -> Self {
        Self::invariant_binary_classifier_with(n, c1, c2, head, norm, Activation::default())
    }

    /// [`NetworkSpec::invariant_binary_classifier`] with `act` in place of every LeakyReLU.
    pub fn invariant_binary_classifier_with(
        n: usize,
        c1: usize,
        c2: usize,
        head: usize,
        norm: Normalisation,
        act: Activation,
    ) -> Self {
        let (nf, c1f, c2f, hf) = (n as f64, c1 as f64, c2 as f64, head as f64);
        NetworkSpec {
            layers: vec![
                LayerSpec::Group {
                    channels: c1,
                    points: Points::Base,
                    init_std: 1.0 / (nf * c1f.sqrt()),
                    constant_over_positions: false,
                },
                act.layer(),
                LayerSpec::Group {
                    channels: c2,
                    points: Points::Trivial,
                    init_std: 1.0 / c2f.sqrt(),
                    constant_over_positions: true,
                },
                act.layer(),
                norm_layer(norm, NormOver::Features),
                LayerSpec::Dense {
                    out: head,
                    init_scale: 10.0 / c2f,
                    bias: false,
                },
                act.layer(),
                LayerSpec::Dense {
                    out: 1,
                    init_scale: 10.0 / hf,
                    bias: false,
                },
                LayerSpec::Sigmoid,
            ],
        }
    }

    /// The paper-size E1 network with batch norm.
    pub fn invariant_binary_classifier_paper() -> Self {
        Self::invariant_binary_classifier(10, 32, 64, 32, Normalisation::Batch)
    }

    /// E2 / E4 (docs/science.md §4) on `n x n` images, as the authors trained it: group layer
    /// 1 -> `c` (std `1/n`), LeakyReLU; group layer `c -> c` (std `1/(n sqrt c)`), LeakyReLU;
    /// invariant layer -> `c` (std `1/sqrt c`, constant over positions); tanh; normalisation
    /// over the `c` features; dense -> `classes` (scale `n/c`); softmax. Paper: `n = 14,
    /// c = 32, classes = 10`; use with [`Loss::CrossEntropyOnProbabilities`] (the double
    /// softmax). [`NetworkSpec::invariant_classifier_with`] follows another loss.
    pub fn invariant_classifier(n: usize, c: usize, classes: usize, norm: Normalisation) -> Self {
        Self::invariant_classifier_with(
            n,
            c,
            classes,
            norm,
            Loss::CrossEntropyOnProbabilities,
            Activation::default(),
        )
    }

    /// [`NetworkSpec::invariant_classifier`] for `loss`, with `act` in place of every LeakyReLU: the final
    /// softmax layer is there unless the loss is [`Loss::CrossEntropyLogits`] (then the
    /// network outputs logits and the loss is plain cross-entropy; with the softmax it would
    /// be the double softmax, which [`crate::Network::new`] rejects).
    pub fn invariant_classifier_with(
        n: usize,
        c: usize,
        classes: usize,
        norm: Normalisation,
        loss: Loss,
        act: Activation,
    ) -> Self {
        let (nf, cf) = (n as f64, c as f64);
        let mut layers = vec![
            LayerSpec::Group {
                channels: c,
                points: Points::Base,
                init_std: 1.0 / nf,
                constant_over_positions: false,
            },
            act.layer(),
            LayerSpec::Group {
                channels: c,
                points: Points::Base,
                init_std: 1.0 / (nf * cf.sqrt()),
                constant_over_positions: false,
            },
            act.layer(),
            LayerSpec::Group {
                channels: c,
                points: Points::Trivial,
                init_std: 1.0 / cf.sqrt(),
                constant_over_positions: true,
            },
            LayerSpec::Tanh,
            norm_layer(norm, NormOver::Features),
            LayerSpec::Dense {
                out: classes,
                init_scale: nf / cf,
                bias: false,
            },
        ];
        if loss != Loss::CrossEntropyLogits {
            layers.push(LayerSpec::Softmax);
        }
        NetworkSpec { layers }
    }

    /// The paper-size E2 network with batch norm.
    pub fn invariant_classifier_paper() -> Self {
        Self::invariant_classifier(14, 32, 10, Normalisation::Batch)
    }

    /// E3 (docs/science.md §4) on `n x n` images: group layers `1 -> c[0] -> c[1] -> c[2] -> 2`
    /// (std `1/(n sqrt c_in)`), LeakyReLU after each, normalisation over the 2 output channels
    /// (per channel over mini-batch x positions), sigmoid. Paper: `n = 14, c = [32, 32, 16]`;
    /// use with [`Loss::SegmentationBce`] and the group `rot`.
    pub fn equivariant_segmenter(n: usize, c: [usize; 3], norm: Normalisation) -> Self {
        Self::equivariant_segmenter_with(n, c, norm, Activation::default())
    }

    /// [`NetworkSpec::equivariant_segmenter`] with `act` in place of every LeakyReLU.
    pub fn equivariant_segmenter_with(
        n: usize,
        c: [usize; 3],
        norm: Normalisation,
        act: Activation,
    ) -> Self {
        let nf = n as f64;
        let mut layers = Vec::new();
        let mut c_in = 1usize;
        for c_out in [c[0], c[1], c[2], 2] {
            layers.push(LayerSpec::Group {
                channels: c_out,
                points: Points::Base,
                init_std: 1.0 / (nf * (c_in as f64).sqrt()),
                constant_over_positions: false,
            });
            layers.push(act.layer());
            c_in = c_out;
        }
        layers.push(norm_layer(norm, NormOver::Channels));
        layers.push(LayerSpec::Sigmoid);
        NetworkSpec { layers }
    }

    /// The paper-size E3 network with batch norm.
    pub fn equivariant_segmenter_paper() -> Self {
        Self::equivariant_segmenter(14, [32, 32, 16], Normalisation::Batch)
    }
}
