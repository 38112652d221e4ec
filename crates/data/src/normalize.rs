//! Pixel normalization.

use serde::{Deserialize, Serialize};

/// Maps a pixel byte `p` to `(p / 255 - mean) / std`.
///
/// ```
/// use stagewise_data::Normalization;
///
/// let n = Normalization::FASHION_MNIST;
/// assert!((n.apply(0) - (-0.2860 / 0.3530)).abs() < 1e-6);
/// assert_eq!(Normalization::UNIT.apply(255), 1.0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Mean of the pixel values scaled to `[0, 1]`.
    pub mean: f32,
    /// Standard deviation of the pixel values scaled to `[0, 1]`.
    pub std: f32,
}

impl Normalization {
    /// Fashion-MNIST training-set statistics: mean 0.2860, std 0.3530.
    pub const FASHION_MNIST: Self = Self {
        mean: 0.2860,
        std: 0.3530,
    };

    /// Only scales to `[0, 1]` (mean 0, std 1).
    pub const UNIT: Self = Self {
        mean: 0.0,
        std: 1.0,
    };

    /// The normalized value of one pixel byte.
    pub fn apply(&self, pixel: u8) -> f32 {
        (f32::from(pixel) / 255.0 - self.mean) / self.std
    }

    /// The normalized value of every possible byte, for table look-up.
    pub fn table(&self) -> [f32; 256] {
        let mut t = [0.0; 256];
        for (p, v) in (0..=255u8).zip(t.iter_mut()) {
            *v = self.apply(p);
        }
        t
    }
}

impl Default for Normalization {
    /// [`Normalization::FASHION_MNIST`].
    fn default() -> Self {
        Self::FASHION_MNIST
    }
}
