//! Reconstructible random streams.
//!
//! Every random decision in this crate comes from a ChaCha8 generator keyed
//! by `(seed, epoch, purpose)`, so a resumed run can rebuild the exact
//! generator of any epoch without replaying earlier ones.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What a stream is used for; distinct purposes give independent streams
/// for the same `(seed, epoch)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum Purpose {
    /// The order in which an epoch visits the items.
    Shuffle = 1,
    /// Crop offsets and flips of an epoch.
    Augment = 2,
    /// Choice of a stratified subset.
    Subset = 3,
    /// Prototypes of the synthetic dataset.
    SyntheticPrototypes = 4,
    /// Items of the synthetic training split.
    SyntheticTrain = 5,
    /// Items of the synthetic test split.
    SyntheticTest = 6,
}

/// The generator for `(seed, epoch, purpose)`.
pub(crate) fn stream_rng(seed: u64, epoch: u64, purpose: Purpose) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&epoch.to_le_bytes());
    key[16..24].copy_from_slice(&(purpose as u64).to_le_bytes());
    key[24..32].copy_from_slice(b"stgwise1");
    ChaCha8Rng::from_seed(key)
}
