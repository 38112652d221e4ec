//! Errors of the theory calculators.

/// Invalid input to a theory calculator.
///
/// Every variant names the offending field and, where relevant, the allowed range, so that the
/// message can be shown to a user as is. No function of [`crate::theory`] panics on user input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TheoryError {
    /// A number is outside its allowed range (or is NaN / infinite).
    #[error("invalid {field} = {value}: must be {allowed}")]
    OutOfRange {
        /// Name of the field, e.g. `"beta"` or `"spectrum.h[3]"`.
        field: String,
        /// The value that was given.
        value: f64,
        /// Human-readable allowed range, e.g. `"in [0, 1)"`.
        allowed: &'static str,
    },
    /// A list that must have at least one entry is empty.
    #[error("{field} must not be empty")]
    Empty {
        /// Name of the list.
        field: &'static str,
    },
    /// Two lists that must have the same length do not.
    #[error(
        "{field_a} has {len_a} entries but {field_b} has {len_b}; they must have the same length"
    )]
    LengthMismatch {
        /// Name of the first list.
        field_a: &'static str,
        /// Its length.
        len_a: usize,
        /// Name of the second list.
        field_b: &'static str,
        /// Its length.
        len_b: usize,
    },
    /// The requested quantity does not exist because the iteration is unstable
    /// (e.g. the stationary variance above the divergence threshold).
    #[error("{what}: lr = {lr} is not below the stability limit {limit}")]
    Unstable {
        /// What was being computed.
        what: &'static str,
        /// The learning rate (step size) that was given.
        lr: f64,
        /// The largest stable learning rate for this setting.
        limit: f64,
    },
}

/// Result alias of the theory module.
pub type Result<T> = std::result::Result<T, TheoryError>;

/// An [`TheoryError::OutOfRange`] naming `field`.
pub(crate) fn out_of_range(
    field: impl Into<String>,
    value: f64,
    allowed: &'static str,
) -> TheoryError {
    TheoryError::OutOfRange {
        field: field.into(),
        value,
        allowed,
    }
}

/// `value > 0` and finite.
pub(crate) fn positive(field: &str, value: f64) -> Result<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(out_of_range(field, value, "finite and > 0"))
    }
}

/// `value >= 0` and finite.
pub(crate) fn non_negative(field: &str, value: f64) -> Result<f64> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(out_of_range(field, value, "finite and >= 0"))
    }
}

/// Momentum `beta` in `[0, 1)`.
pub(crate) fn momentum(field: &str, value: f64) -> Result<f64> {
    if (0.0..1.0).contains(&value) {
        Ok(value)
    } else {
        Err(out_of_range(field, value, "in [0, 1)"))
    }
}

/// A fraction in `[0, 1]` (e.g. the QHM discount `nu`).
pub(crate) fn unit_closed(field: &str, value: f64) -> Result<f64> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(out_of_range(field, value, "in [0, 1]"))
    }
}

/// A probability in the open interval `(0, 1)`.
pub(crate) fn unit_open(field: &str, value: f64) -> Result<f64> {
    if value > 0.0 && value < 1.0 {
        Ok(value)
    } else {
        Err(out_of_range(field, value, "in (0, 1)"))
    }
}
