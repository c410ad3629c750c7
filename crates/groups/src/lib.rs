//! eqaug-groups
