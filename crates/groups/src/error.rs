//! Errors of eqaug-groups.

/// What can go wrong when building groups, enumerating them or projecting layers.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupError {
    /// The group name is not one of the built-in groups.
    #[error("unknown group `{0}`: expected one of perm, sym, trans2d, trans1d, rot, rototrans, swap, trivial")]
    UnknownGroup(String),
    /// The size parameter is out of range for the group.
    #[error("group `{group}`: size {size} is out of range ({reason})")]
    BadSize {
        /// Group name.
        group: String,
        /// The size that was given.
        size: usize,
        /// Why it is not accepted.
        reason: String,
    },
    /// A user-defined generator is not a permutation of 0..points.
    #[error("generator {index} of group `{group}` is not a permutation of 0..{points}: {source}")]
    BadGenerator {
        /// Group name.
        group: String,
        /// Index of the generator in the list.
        index: usize,
        /// Number of points the group acts on.
        points: usize,
        /// What is wrong.
        #[source]
        source: PermError,
    },
    /// Enumerating the group would exceed the element limit.
    #[error("group `{group}` has order {order}, more than the enumeration limit {limit}; use sampling instead of enumeration")]
    TooLargeToEnumerate {
        /// Group name.
        group: String,
        /// Its order (or a lower bound, for user-defined groups).
        order: String,
        /// The limit.
        limit: usize,
    },
    /// The space of equivariant layers is {0}.
    #[error("the space of equivariant layers {what} is empty (dimension 0): no equivariant layer of this shape exists")]
    EmptyEquivariantSpace {
        /// Which layer shape.
        what: String,
    },
    /// A slice has the wrong length for the layer shape (or a permutation acts on the wrong
    /// number of points).
    #[error("{what} of length {got} does not match the layer shape {rows} x {cols} (length {})", rows * cols)]
    ShapeMismatch {
        /// Which argument (`weight`, `output`, ...).
        what: &'static str,
        /// Expected rows.
        rows: usize,
        /// Expected columns.
        cols: usize,
        /// The length that was given.
        got: usize,
    },
    /// A group element permutes another number of points than the layer's positions.
    #[error("the group element permutes {got} points, but the layer's positions are {expected}")]
    PointsMismatch {
        /// Positions of the layer's base-point representation.
        expected: usize,
        /// Points the element permutes.
        got: usize,
    },
}

/// Why a list of images is not a permutation of `0..n`.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PermError {
    /// An image is not a point.
    #[error("image {image} of point {point} is out of range 0..{len}")]
    OutOfRange {
        /// The point.
        point: usize,
        /// Its image.
        image: usize,
        /// Number of points.
        len: usize,
    },
    /// Two points have the same image.
    #[error("point {image} is the image of two points")]
    Repeated {
        /// The repeated image.
        image: usize,
    },
    /// The list has the wrong length.
    #[error("it has {got} images, expected {expected}")]
    Length {
        /// Number of images given.
        got: usize,
        /// Number of points.
        expected: usize,
    },
}
