//! Permutations of `0..n` and their action on samples.

use crate::PermError;

/// A permutation of `0..n`, stored as its images: `p.apply(i) = images[i]`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Perm {
    images: Box<[u32]>,
}

impl Perm {
    /// The identity on `n` points.
    pub fn identity(n: usize) -> Self {
        Perm {
            images: (0..n as u32).collect(),
        }
    }

    /// Builds a permutation from its images, checking that they are a permutation of `0..len`.
    pub fn from_images(images: Vec<u32>) -> Result<Self, PermError> {
        let n = images.len();
        let mut seen = vec![false; n];
        for (point, &v) in images.iter().enumerate() {
            let image = v as usize;
            if image >= n {
                return Err(PermError::OutOfRange {
                    point,
                    image,
                    len: n,
                });
            }
            if seen[image] {
                return Err(PermError::Repeated { image });
            }
            seen[image] = true;
        }
        Ok(Perm {
            images: images.into_boxed_slice(),
        })
    }

    /// Builds a permutation from a map `i -> f(i)` that the caller guarantees is a bijection.
    pub(crate) fn from_fn(n: usize, f: impl Fn(usize) -> usize) -> Self {
        let p = Perm {
            images: (0..n).map(|i| f(i) as u32).collect(),
        };
        debug_assert!(Perm::from_images(p.images.to_vec()).is_ok());
        p
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// True for the permutation of the empty set.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The image of point `i`.
    #[inline]
    pub fn apply(&self, i: usize) -> usize {
        self.images[i] as usize
    }

    /// The images as a slice.
    pub fn images(&self) -> &[u32] {
        &self.images
    }

    /// `self ∘ other`: first `other`, then `self`.
    pub fn compose(&self, other: &Perm) -> Perm {
        assert_eq!(
            self.len(),
            other.len(),
            "composing permutations of different sizes"
        );
        Perm {
            images: other
                .images
                .iter()
                .map(|&j| self.images[j as usize])
                .collect(),
        }
    }

    /// The inverse permutation.
    pub fn inverse(&self) -> Perm {
        let mut inv = vec![0u32; self.len()];
        for (i, &j) in self.images.iter().enumerate() {
            inv[j as usize] = i as u32;
        }
        Perm {
            images: inv.into_boxed_slice(),
        }
    }

    /// True for the identity.
    pub fn is_identity(&self) -> bool {
        self.images
            .iter()
            .enumerate()
            .all(|(i, &j)| i == j as usize)
    }
}

/// Applies `g` to a sample laid out as channels x positions (channel-major):
/// `out[c*d + g(s)] = x[c*d + s]` with `d = g.len()`. This is `rho(g) x` for inputs and for
/// equivariant targets such as segmentation masks.
///
/// # Panics
/// If the lengths of `x` and `out` differ or are not a multiple of `g.len()`.
pub fn act_on_sample<T: Copy>(g: &Perm, x: &[T], out: &mut [T]) {
    let d = g.len();
    assert_eq!(
        x.len(),
        out.len(),
        "act_on_sample: input and output lengths differ"
    );
    assert!(
        d > 0 && x.len().is_multiple_of(d),
        "act_on_sample: length {} is not channels x {d}",
        x.len()
    );
    for (xc, oc) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        for (s, &v) in xc.iter().enumerate() {
            oc[g.apply(s)] = v;
        }
    }
}

/// Applies `g^-1` to a sample: `out[c*d + s] = x[c*d + g(s)]`.
///
/// # Panics
/// As [`act_on_sample`].
pub fn act_on_sample_inverse<T: Copy>(g: &Perm, x: &[T], out: &mut [T]) {
    let d = g.len();
    assert_eq!(
        x.len(),
        out.len(),
        "act_on_sample_inverse: input and output lengths differ"
    );
    assert!(
        d > 0 && x.len().is_multiple_of(d),
        "act_on_sample_inverse: length {} is not channels x {d}",
        x.len()
    );
    for (xc, oc) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        for (s, o) in oc.iter_mut().enumerate() {
            *o = xc[g.apply(s)];
        }
    }
}
