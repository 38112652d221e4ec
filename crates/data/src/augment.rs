//! Data augmentation: random crop with zero padding and horizontal flip.

use serde::{Deserialize, Serialize};

/// Which augmentations to apply to training images.
///
/// A random crop with padding `p` pads the image with `p` background
/// (zero) pixels on every side and cuts a window of the original size at a
/// uniformly random offset — equivalently, it shifts the image by `dy, dx ∈
/// [-p, p]`, filling with zeros. A horizontal flip mirrors the result with
/// probability 1/2.
///
/// ```
/// use stagewise_data::Augment;
///
/// let aug = Augment::crop_flip(2);
/// assert_eq!(aug.crop_padding, 2);
/// assert!(aug.horizontal_flip);
/// assert!(Augment::NONE.is_none());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Augment {
    /// Padding of the random crop in pixels (typically 2 or 4); 0 disables
    /// cropping.
    pub crop_padding: usize,
    /// Whether to flip horizontally with probability 1/2.
    pub horizontal_flip: bool,
}

impl Augment {
    /// No augmentation.
    pub const NONE: Self = Self {
        crop_padding: 0,
        horizontal_flip: false,
    };

    /// Random crop with the given padding, plus horizontal flip.
    pub const fn crop_flip(padding: usize) -> Self {
        Self {
            crop_padding: padding,
            horizontal_flip: true,
        }
    }

    /// Whether this leaves every image unchanged.
    pub fn is_none(&self) -> bool {
        self.crop_padding == 0 && !self.horizontal_flip
    }

    /// The transform selected by 64 random bits: bits 0..16 choose the
    /// vertical shift, bits 16..32 the horizontal one, bit 63 the flip.
    pub fn draw(&self, bits: u64) -> Transform {
        let p = self.crop_padding.min(u16::MAX as usize / 2);
        let span = 2 * p as u64 + 1;
        let shift = |b: u64| ((b & 0xffff) % span) as isize - p as isize;
        Transform {
            dy: shift(bits),
            dx: shift(bits >> 16),
            flip: self.horizontal_flip && bits >> 63 == 1,
        }
    }
}

/// One concrete augmentation: a shift with zero fill, then an optional
/// horizontal flip.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transform {
    /// Vertical shift: output row `y` shows input row `y + dy`.
    pub dy: isize,
    /// Horizontal shift: output column `x` shows input column `x + dx`
    /// (before the flip).
    pub dx: isize,
    /// Mirror left-right after shifting.
    pub flip: bool,
}

impl Transform {
    /// The transform that changes nothing.
    pub const IDENTITY: Self = Self {
        dy: 0,
        dx: 0,
        flip: false,
    };

    /// Writes the transformed `rows × cols` image `src` into `dst`, mapping
    /// each byte through `table` (see [`crate::Normalization::table`]);
    /// pixels shifted in from outside get `table[0]`.
    ///
    /// # Panics
    /// If `src` or `dst` is shorter than `rows * cols`.
    pub fn apply(&self, src: &[u8], rows: usize, cols: usize, table: &[f32; 256], dst: &mut [f32]) {
        let (src, dst) = (&src[..rows * cols], &mut dst[..rows * cols]);
        if *self == Self::IDENTITY {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = table[usize::from(s)];
            }
            return;
        }
        let background = table[0];
        for (y, out_row) in dst.chunks_exact_mut(cols).enumerate() {
            let sy = y as isize + self.dy;
            if sy < 0 || sy >= rows as isize {
                out_row.fill(background);
                continue;
            }
            let in_row = &src[sy as usize * cols..(sy as usize + 1) * cols];
            for (x, out) in out_row.iter_mut().enumerate() {
                let x = if self.flip { cols - 1 - x } else { x };
                let sx = x as isize + self.dx;
                *out = if sx < 0 || sx >= cols as isize {
                    background
                } else {
                    table[usize::from(in_row[sx as usize])]
                };
            }
        }
    }
}
