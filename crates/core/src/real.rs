//! The floating-point element types the slice kernels are generic over.

/// A floating-point element type of parameter and gradient buffers (`f32` or `f64`).
///
/// Hyperparameters are always given as `f64` and converted once per step with [`Real::from_f64`].
pub trait Real:
    num_traits::Float + Send + Sync + std::fmt::Debug + std::iter::Sum + Default + 'static
{
    /// Converts a hyperparameter (always `f64`) to the element type.
    fn from_f64(x: f64) -> Self;
    /// Converts the element to `f64` (for diagnostics and reductions).
    fn to_f64(self) -> f64;
}

impl Real for f32 {
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
}
