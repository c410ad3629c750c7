//! Parameters (and gradients): one flat vector viewed per tensor through a shared layout.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eqaug_groups::{Projector, Real, Rep};
use ndarray::{ArrayD, ArrayView2, ArrayViewD, ArrayViewMut2, IxDyn};
use serde::{Deserialize, Serialize};

use crate::NnError;

/// What a tensor is, and for group layers how to project it onto E.
#[derive(Clone)]
pub enum TensorKind {
    /// The weight of a group linear layer `rep_in -> rep_out`, shape
    /// `(c_out * s_out) x (c_in * s_in)`.
    ///
    /// The projector may belong to any group (not necessarily the network's). With a
    /// `support`, the constraint set is E restricted to the support (entries outside it are
    /// zero), and the projection is Pi_E followed by zeroing outside the support (orthogonal,
    /// since the support is a union of orbits). Build it with [`TensorKind::group`] or
    /// [`TensorKind::group_with_support`].
    Group {
        /// The orbit projector onto the equivariant layers for this representation pair.
        projector: Projector,
        /// Output representation.
        rep_out: Rep,
        /// Input representation.
        rep_in: Rep,
        /// Entries allowed to be non-zero (row-major over the weight), constant on every
        /// orbit; `None`: all.
        support: Option<Arc<[bool]>>,
    },
    /// A dense weight (`out x in`) or bias (`out`): unconstrained.
    Dense,
    /// A normalisation scale or shift: unconstrained.
    Norm,
}

impl TensorKind {
    /// The kind of a weight constrained to E by `projector` (shape
    /// `projector.rows() x projector.cols()`).
    pub fn group(projector: Projector) -> Self {
        TensorKind::Group {
            rep_out: projector.rep_out(),
            rep_in: projector.rep_in(),
            projector,
            support: None,
        }
    }

    /// The kind of a weight constrained to E and to `support` (`true` = may be non-zero,
    /// row-major, one entry per weight). Errors if the length is not the weight's or the
    /// support is not a union of orbits (then masking would leave E).
    pub fn group_with_support(projector: Projector, support: Arc<[bool]>) -> Result<Self, NnError> {
        if support.len() != projector.len() {
            return Err(NnError::format(
                "<support>",
                format!(
                    "the support has {} entries, the weight {} x {}",
                    support.len(),
                    projector.rows(),
                    projector.cols()
                ),
            ));
        }
        let mask: Vec<f64> = support.iter().map(|&b| f64::from(u8::from(b))).collect();
        if projector
            .project(&mask)
            .map_err(|e| NnError::format("<support>", e.to_string()))?
            != mask
        {
            return Err(NnError::format(
                "<support>",
                "the support is not constant on the orbits of the projector's group",
            ));
        }
        Ok(TensorKind::Group {
            rep_out: projector.rep_out(),
            rep_in: projector.rep_in(),
            projector,
            support: Some(support),
        })
    }

    /// Pi (onto E, and onto the support if any) in place, for a group weight; no-op
    /// otherwise.
    ///
    /// # Errors
    /// [`eqaug_groups::GroupError::ShapeMismatch`] if `w` does not have the weight's length.
    pub fn project_in_place<T: Real>(&self, w: &mut [T]) -> Result<(), eqaug_groups::GroupError> {
        if let TensorKind::Group {
            projector, support, ..
        } = self
        {
            projector.project_in_place(w)?;
            if let Some(s) = support {
                w.iter_mut()
                    .zip(s.iter())
                    .filter(|(_, &keep)| !keep)
                    .for_each(|(x, _)| *x = T::zero());
            }
        }
        Ok(())
    }

    /// `||W - Pi W||` in f64 for a group weight (`None` otherwise).
    ///
    /// # Errors
    /// [`eqaug_groups::GroupError::ShapeMismatch`] if `w` does not have the weight's length.
    pub fn distance_to_equivariant_f64<T: Real>(
        &self,
        w: &[T],
    ) -> Result<Option<f64>, eqaug_groups::GroupError> {
        Ok(match self {
            TensorKind::Group {
                projector,
                support: None,
                ..
            } => Some(projector.distance_to_equivariant_f64(w)?),
            TensorKind::Group { .. } => {
                let mut p = w.to_vec();
                self.project_in_place(&mut p)?;
                Some(squared_distance(w, &p).sqrt())
            }
            _ => None,
        })
    }

    /// Whether this is a group layer weight.
    pub fn is_group(&self) -> bool {
        matches!(self, TensorKind::Group { .. })
    }
    fn label(&self) -> &'static str {
        match self {
            TensorKind::Group { .. } => "group",
            TensorKind::Dense => "dense",
            TensorKind::Norm => "norm",
        }
    }
}

impl fmt::Debug for TensorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorKind::Group {
                rep_out, rep_in, ..
            } => f
                .debug_struct("Group")
                .field("rep_out", rep_out)
                .field("rep_in", rep_in)
                .finish(),
            TensorKind::Dense => write!(f, "Dense"),
            TensorKind::Norm => write!(f, "Norm"),
        }
    }
}

/// One tensor of a [`Layout`].
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// Unique name, e.g. `layer2.weight` (the index is the layer's index in the spec).
    pub name: String,
    /// Shape (row-major); weights are `[out, in]`, biases and norm parameters `[n]`.
    pub shape: Vec<usize>,
    /// Offset into the flat vector.
    pub offset: usize,
    /// Number of entries (product of the shape).
    pub len: usize,
    /// Index of the layer in the spec that owns the tensor.
    pub layer: usize,
    /// Kind (group layer with its projector, dense, norm).
    pub kind: TensorKind,
}

/// The table of tensors of a parameter set, shared (`Arc`) between parameters, gradients and
/// their `f32`/`f64` casts.
#[derive(Clone, Debug)]
pub struct Layout {
    tensors: Vec<TensorInfo>,
    len: usize,
}

impl Layout {
    /// Builds a layout from `(name, shape, layer, kind)` entries, assigning consecutive offsets.
    pub(crate) fn new(entries: Vec<(String, Vec<usize>, usize, TensorKind)>) -> Self {
        let mut offset = 0;
        let tensors = entries
            .into_iter()
            .map(|(name, shape, layer, kind)| {
                let len = shape.iter().product();
                let t = TensorInfo {
                    name,
                    shape,
                    offset,
                    len,
                    layer,
                    kind,
                };
                offset += len;
                t
            })
            .collect();
        Layout {
            tensors,
            len: offset,
        }
    }
    /// The tensors, in order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }
    /// Total number of scalars.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Indices (into [`Layout::tensors`]) of the group layer weights, in order.
    pub fn group_tensor_indices(&self) -> Vec<usize> {
        (0..self.tensors.len())
            .filter(|&i| self.tensors[i].kind.is_group())
            .collect()
    }
    /// Whether two layouts describe the same tensors (names, shapes, kinds).
    pub fn compatible(&self, other: &Layout) -> bool {
        self.len == other.len
            && self.tensors.len() == other.tensors.len()
            && self.tensors.iter().zip(&other.tensors).all(|(a, b)| {
                a.name == b.name && a.shape == b.shape && a.kind.label() == b.kind.label()
            })
    }
}

/// A read-only view of one tensor.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a, T> {
    /// Index in the layout.
    pub index: usize,
    /// Name (unique).
    pub name: &'a str,
    /// Shape.
    pub shape: &'a [usize],
    /// The entries, row-major.
    pub data: &'a [T],
    /// Kind.
    pub kind: &'a TensorKind,
}

impl<'a, T> TensorView<'a, T> {
    /// Whether this is a group layer weight.
    pub fn is_group(&self) -> bool {
        self.kind.is_group()
    }
    /// The tensor as an n-dimensional array view.
    pub fn array(&self) -> ArrayViewD<'a, T> {
        ArrayViewD::from_shape(IxDyn(self.shape), self.data).expect("layout shape")
    }
    /// The tensor as a matrix (1-D tensors as a single row).
    pub fn matrix(&self) -> ArrayView2<'a, T> {
        let (r, c) = as_matrix_shape(self.shape);
        ArrayView2::from_shape((r, c), self.data).expect("layout shape")
    }
}

/// A mutable view of one tensor.
#[derive(Debug)]
pub struct TensorViewMut<'a, T> {
    /// Index in the layout.
    pub index: usize,
    /// Name (unique).
    pub name: &'a str,
    /// Shape.
    pub shape: &'a [usize],
    /// The entries, row-major.
    pub data: &'a mut [T],
    /// Kind.
    pub kind: &'a TensorKind,
}

impl<T> TensorViewMut<'_, T> {
    /// Whether this is a group layer weight.
    pub fn is_group(&self) -> bool {
        self.kind.is_group()
    }
    /// The tensor as a mutable matrix (1-D tensors as a single row).
    pub fn matrix_mut(&mut self) -> ArrayViewMut2<'_, T> {
        let (r, c) = as_matrix_shape(self.shape);
        ArrayViewMut2::from_shape((r, c), &mut *self.data).expect("layout shape")
    }
}

fn as_matrix_shape(shape: &[usize]) -> (usize, usize) {
    match shape {
        [n] => (1, *n),
        [r, c] => (*r, *c),
        _ => (1, shape.iter().product()),
    }
}

/// Parameters of a [`crate::Network`], also used for gradients (same layout): one flat
/// `Vec<T>` plus a shared [`Layout`].
#[derive(Clone)]
pub struct Params<T> {
    data: Vec<T>,
    layout: Arc<Layout>,
}

impl<T: Real> fmt::Debug for Params<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut l = f.debug_list();
        for t in self.layout.tensors() {
            l.entry(&format_args!("{} {:?} {}", t.name, t.shape, t.kind.label()));
        }
        l.finish()
    }
}

fn sq<T: Real>(x: T) -> f64 {
    let v = x.to_f64().unwrap_or(f64::NAN);
    v * v
}

/// `sum_i (a_i - b_i)^2` in f64, in a fixed order that does not depend on the thread count:
/// blocks of `BLOCK` entries in parallel, each summed in 8 interleaved lanes (one serial
/// chain of f64 additions would cost 4 cycles per entry), the partial sums added in order.
fn squared_distance<T: Real>(a: &[T], b: &[T]) -> f64 {
    use rayon::prelude::*;
    const BLOCK: usize = 1 << 16;
    const LANES: usize = 8;
    let partial: Vec<f64> = a
        .par_chunks(BLOCK)
        .zip(b.par_chunks(BLOCK))
        .map(|(a, b)| {
            let mut acc = [0.0f64; LANES];
            let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
            let tail: f64 = ac
                .remainder()
                .iter()
                .zip(bc.remainder())
                .map(|(&x, &y)| sq(x - y))
                .sum();
            for (x, y) in ac.zip(bc) {
                for k in 0..LANES {
                    acc[k] += sq(x[k] - y[k]);
                }
            }
            acc.iter().sum::<f64>() + tail
        })
        .collect();
    partial.iter().sum()
}

fn from64<T: Real>(x: f64) -> T {
    T::from_f64(x).unwrap_or_else(T::nan)
}

impl<T: Real> Params<T> {
    /// All-zero parameters with the given layout.
    pub fn zeros(layout: Arc<Layout>) -> Self {
        Params {
            data: vec![T::zero(); layout.len()],
            layout,
        }
    }
    /// Parameters from a flat vector (length must equal the layout's).
    pub fn from_vec(layout: Arc<Layout>, data: Vec<T>) -> Result<Self, NnError> {
        if data.len() != layout.len() {
            return Err(NnError::format(
                "<memory>",
                format!(
                    "flat vector has {} entries, layout needs {}",
                    data.len(),
                    layout.len()
                ),
            ));
        }
        Ok(Params { data, layout })
    }
    /// Zeros with the same layout (e.g. a gradient store).
    pub fn zeros_like(&self) -> Self {
        Self::zeros(self.layout.clone())
    }
    /// The shared layout.
    pub fn layout(&self) -> &Arc<Layout> {
        &self.layout
    }
    /// Total number of scalars.
    pub fn len(&self) -> usize {
        self.data.len()
    }
    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// All parameters as one flat slice (tensors consecutive in layout order).
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }
    /// All parameters as one flat mutable slice.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.data
    }
    /// Consumes the parameters, returning the flat vector.
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }
    /// Number of tensors.
    pub fn num_tensors(&self) -> usize {
        self.layout.tensors.len()
    }
    /// View of tensor `i`.
    pub fn tensor(&self, i: usize) -> TensorView<'_, T> {
        let t = &self.layout.tensors[i];
        TensorView {
            index: i,
            name: &t.name,
            shape: &t.shape,
            data: &self.data[t.offset..t.offset + t.len],
            kind: &t.kind,
        }
    }
    /// Mutable view of tensor `i`.
    pub fn tensor_mut(&mut self, i: usize) -> TensorViewMut<'_, T> {
        let t = &self.layout.tensors[i];
        TensorViewMut {
            index: i,
            name: &t.name,
            shape: &t.shape,
            data: &mut self.data[t.offset..t.offset + t.len],
            kind: &t.kind,
        }
    }
    /// Index of the tensor with this name.
    pub fn tensor_index(&self, name: &str) -> Option<usize> {
        self.layout.tensors.iter().position(|t| t.name == name)
    }
    /// All tensors, in order.
    pub fn tensors(&self) -> impl Iterator<Item = TensorView<'_, T>> + '_ {
        (0..self.num_tensors()).map(move |i| self.tensor(i))
    }
    /// The group layer weights, in order.
    pub fn group_layers(&self) -> impl Iterator<Item = TensorView<'_, T>> + '_ {
        self.tensors().filter(|t| t.is_group())
    }
    /// Number of group layers.
    pub fn num_group_layers(&self) -> usize {
        self.layout
            .tensors
            .iter()
            .filter(|t| t.kind.is_group())
            .count()
    }

    fn check_same(&self, other: &Params<T>) {
        assert!(
            Arc::ptr_eq(&self.layout, &other.layout) || self.layout.compatible(&other.layout),
            "parameter sets with different layouts"
        );
    }

    /// Sets every entry to zero.
    pub fn fill_zero(&mut self) {
        self.data.iter_mut().for_each(|x| *x = T::zero());
    }
    /// Multiplies every entry by `a`.
    pub fn scale(&mut self, a: T) {
        self.data.iter_mut().for_each(|x| *x *= a);
    }
    /// `self += a * other` (e.g. a gradient step with `a = -eta`).
    pub fn axpy(&mut self, a: T, other: &Params<T>) {
        self.check_same(other);
        for (x, &y) in self.data.iter_mut().zip(&other.data) {
            *x += a * y;
        }
    }
    /// Copies all entries from `other` (same layout).
    pub fn copy_from(&mut self, other: &Params<T>) {
        self.check_same(other);
        self.data.copy_from_slice(&other.data);
    }
    /// Inner product `<self, other> = sum_i trace(A_i^T B_i)` over all tensors (accumulated in f64).
    pub fn dot(&self, other: &Params<T>) -> T {
        self.check_same(other);
        let s: f64 = self
            .data
            .iter()
            .zip(&other.data)
            .map(|(&a, &b)| a.to_f64().unwrap_or(f64::NAN) * b.to_f64().unwrap_or(f64::NAN))
            .sum();
        from64(s)
    }
    /// Frobenius norm of all parameters (accumulated in f64).
    pub fn norm(&self) -> T {
        from64(self.data.iter().map(|&x| sq(x)).sum::<f64>().sqrt())
    }
    /// Frobenius norm of every tensor, in order.
    pub fn norm_per_tensor(&self) -> Vec<T> {
        self.tensors()
            .map(|t| from64(t.data.iter().map(|&x| sq(x)).sum::<f64>().sqrt()))
            .collect()
    }
    /// `||self - other||` over all parameters.
    pub fn distance(&self, other: &Params<T>) -> T {
        self.check_same(other);
        let s: f64 = self
            .data
            .iter()
            .zip(&other.data)
            .map(|(&a, &b)| sq(a - b))
            .sum();
        from64(s.sqrt())
    }
    /// `||W_k - W'_k||` for every group layer k, in order (e.g. distance from start).
    pub fn distance_per_group_layer(&self, other: &Params<T>) -> Vec<T> {
        self.check_same(other);
        self.group_layers()
            .map(|t| {
                let b = other.tensor(t.index).data;
                from64(squared_distance(t.data, b).sqrt())
            })
            .collect()
    }
    /// `||W_k - W'_k||` over the group layers only: `sqrt(sum_k ||.||^2)`.
    pub fn distance_group_layers(&self, other: &Params<T>) -> T {
        total(&self.distance_per_group_layer(other))
    }
    /// Applies Pi_E (the orbit-mean projection) to every group layer; dense and norm
    /// parameters are untouched. On a gradient store this is the equivariant strategy's step
    /// direction (docs/science.md §1.2).
    pub fn project_group_layers(&mut self) {
        let layout = self.layout.clone();
        for t in layout.tensors() {
            t.kind
                .project_in_place(&mut self.data[t.offset..t.offset + t.len])
                .expect("the layout gives every tensor its length");
        }
    }
    /// `||W_k - Pi_E W_k||` for every group layer k, in order.
    pub fn distance_to_equivariant_per_group_layer(&self) -> Vec<T> {
        self.layout
            .tensors()
            .iter()
            .filter_map(|t| {
                t.kind
                    .distance_to_equivariant_f64(&self.data[t.offset..t.offset + t.len])
                    .expect("the layout gives every tensor its length")
                    .map(T::from_f64_lossy)
            })
            .collect()
    }
    /// `||A_Eperp|| = sqrt(sum_k ||W_k - Pi_E W_k||^2)` over the group layers.
    pub fn distance_to_equivariant(&self) -> T {
        total(&self.distance_to_equivariant_per_group_layer())
    }
    /// Whether every entry is finite.
    pub fn is_finite(&self) -> bool {
        self.data.iter().all(|x| x.is_finite())
    }
    /// Converts to another precision (f32 <-> f64), sharing the layout.
    pub fn cast<U: Real>(&self) -> Params<U> {
        Params {
            data: self
                .data
                .iter()
                .map(|&x| U::from_f64(x.to_f64().unwrap_or(f64::NAN)).unwrap_or_else(U::nan))
                .collect(),
            layout: self.layout.clone(),
        }
    }

    /// Saves every tensor as `<name>.npy` in `dir` (created if needed) plus `manifest.json`
    /// (names, shapes, dtype, group layers and their representations). Each file is written to
    /// a temporary name and renamed, the manifest last.
    pub fn save_npy(&self, dir: &Path) -> Result<(), NnError> {
        std::fs::create_dir_all(dir).map_err(|e| NnError::io(dir, e))?;
        let mut entries = Vec::new();
        for t in self.tensors() {
            let file = format!("{}.npy", t.name);
            let path = dir.join(&file);
            let tmp = dir.join(format!(".{file}.tmp"));
            t.array()
                .to_owned()
                .into_dimensionality::<IxDyn>()
                .map_err(|e| NnError::format(&path, e.to_string()))
                .and_then(|a| write_array(&tmp, &a))?;
            std::fs::rename(&tmp, &path).map_err(|e| NnError::io(&path, e))?;
            let (rep_out, rep_in) = match t.kind {
                TensorKind::Group {
                    rep_out, rep_in, ..
                } => (Some(*rep_out), Some(*rep_in)),
                _ => (None, None),
            };
            entries.push(ManifestTensor {
                name: t.name.to_string(),
                file,
                shape: t.shape.to_vec(),
                kind: t.kind.label().to_string(),
                rep_out,
                rep_in,
            });
        }
        let manifest = Manifest {
            format: "eqaug-params-v1".into(),
            dtype: dtype_name::<T>().into(),
            tensors: entries,
        };
        let path = dir.join("manifest.json");
        let tmp = dir.join(".manifest.json.tmp");
        let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
        std::fs::write(&tmp, text).map_err(|e| NnError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| NnError::io(&path, e))?;
        Ok(())
    }

    /// Loads a parameter set saved by [`Params::save_npy`] (in either precision) into a new
    /// `Params` with this one's layout; names, shapes and kinds must match.
    pub fn load_npy(&self, dir: &Path) -> Result<Params<T>, NnError> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|e| NnError::io(&path, e))?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| NnError::format(&path, e.to_string()))?;
        if manifest.tensors.len() != self.num_tensors() {
            return Err(NnError::format(
                &path,
                format!(
                    "{} tensors saved, the network has {}",
                    manifest.tensors.len(),
                    self.num_tensors()
                ),
            ));
        }
        let mut out = self.zeros_like();
        for (i, m) in manifest.tensors.iter().enumerate() {
            let t = &self.layout.tensors[i];
            if m.name != t.name || m.shape != t.shape || m.kind != t.kind.label() {
                return Err(NnError::format(
                    &path,
                    format!(
                        "tensor {i}: saved {} {:?} ({}), expected {} {:?} ({})",
                        m.name,
                        m.shape,
                        m.kind,
                        t.name,
                        t.shape,
                        t.kind.label()
                    ),
                ));
            }
            if let TensorKind::Group {
                rep_out, rep_in, ..
            } = &t.kind
            {
                if m.rep_out != Some(*rep_out) || m.rep_in != Some(*rep_in) {
                    return Err(NnError::format(
                        &path,
                        format!("tensor {}: representations differ", t.name),
                    ));
                }
            }
            let fpath = dir.join(&m.file);
            let values = read_array(&fpath, &manifest.dtype)?;
            if values.0 != t.shape {
                return Err(NnError::format(
                    &fpath,
                    format!("shape {:?}, expected {:?}", values.0, t.shape),
                ));
            }
            for (dst, &v) in out.data[t.offset..t.offset + t.len]
                .iter_mut()
                .zip(&values.1)
            {
                *dst = from64(v);
            }
        }
        Ok(out)
    }
}

fn total<T: Real>(parts: &[T]) -> T {
    from64(parts.iter().map(|&x| sq(x)).sum::<f64>().sqrt())
}

fn dtype_name<T: Real>() -> &'static str {
    if std::mem::size_of::<T>() == 4 {
        "f32"
    } else {
        "f64"
    }
}

fn write_array<T: Real>(path: &PathBuf, a: &ArrayD<T>) -> Result<(), NnError> {
    use ndarray_npy::write_npy;
    let r = if std::mem::size_of::<T>() == 4 {
        write_npy(path, &a.mapv(|x| x.to_f32().unwrap_or(f32::NAN)))
    } else {
        write_npy(path, &a.mapv(|x| x.to_f64().unwrap_or(f64::NAN)))
    };
    r.map_err(|e| NnError::format(path, e.to_string()))
}

fn read_array(path: &Path, dtype: &str) -> Result<(Vec<usize>, Vec<f64>), NnError> {
    use ndarray_npy::read_npy;
    let err = |e: ndarray_npy::ReadNpyError| NnError::format(path, e.to_string());
    match dtype {
        "f32" => {
            let a: ArrayD<f32> = read_npy(path).map_err(err)?;
            Ok((a.shape().to_vec(), a.iter().map(|&x| x as f64).collect()))
        }
        "f64" => {
            let a: ArrayD<f64> = read_npy(path).map_err(err)?;
            Ok((a.shape().to_vec(), a.iter().copied().collect()))
        }
        other => Err(NnError::format(path, format!("unknown dtype {other:?}"))),
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestTensor {
    name: String,
    file: String,
    shape: Vec<usize>,
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rep_out: Option<Rep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rep_in: Option<Rep>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format: String,
    dtype: String,
    tensors: Vec<ManifestTensor>,
}
