//! The G-sets a representation lives on: the base points or a single fixed point.

/// The G-set of a representation: the group's base points, or a single (fixed) point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum Points {
    /// The base points (pixels, adjacency entries, coordinates).
    Base,
    /// One point: the trivial representation.
    Trivial,
}
