//! A stable 64-bit hash for seeds and fingerprints.

/// FNV-1a, 64 bit, of `bytes`: the same on every platform and in every version, unlike
/// `std::hash` (used for random stream numbers and config fingerprints, which must not change
/// between releases). Public for the workspace's runner; not part of the stable API.
///
/// ```
/// assert_eq!(eqaug_dynamics::fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
/// assert_eq!(eqaug_dynamics::fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
/// ```
#[doc(hidden)]
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
