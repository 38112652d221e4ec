//! Errors of the optimizers.

/// Why an optimizer refused a step, a hyperparameter or a state.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptimError {
    /// `params` or `grads` do not have the optimizer's length.
    #[error("length mismatch: optimizer has {expected} parameters, got params of {params} and grads of {grads}")]
    LengthMismatch {
        /// The optimizer's length.
        expected: usize,
        /// Length of the parameter slice given.
        params: usize,
        /// Length of the gradient slice given.
        grads: usize,
    },
    /// A gradient element is NaN or infinite; nothing was applied.
    #[error("gradient element {index} is not finite ({value}); the step was not applied")]
    NonFiniteGradient {
        /// Index of the first offending element.
        index: usize,
        /// Its value.
        value: f64,
    },
    /// A hyperparameter is outside its allowed range.
    #[error("hyperparameter '{field}' = {value} is out of range; allowed: {allowed}")]
    InvalidHyper {
        /// The field name.
        field: &'static str,
        /// The value given.
        value: f64,
        /// The allowed range, in words.
        allowed: String,
    },
    /// A combination of settings that the convention does not allow.
    #[error("invalid settings: {0}")]
    InvalidSettings(String),
    /// A state given to `load_state` does not fit this optimizer.
    #[error("optimizer state does not fit: {0}")]
    BadState(String),
}
