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

impl std::fmt::Display for Points {
    /// `base points` or `a fixed point`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Points::Base => "base points",
            Points::Trivial => "a fixed point",
        })
    }
}
