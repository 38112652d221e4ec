//! Named momentum methods, the parameters each takes, and their conversion to QHM: the one
//! dispatch behind `stagewise plan convert` (the formulas are in [`conventions`](super::conventions)
//! and [`convert`](super::convert)).
//!
//! Parameters are passed by name, as a map, so that a front end (the CLI, a config file) can
//! hand over what its user gave and get back a typed error naming the parameter that is
//! missing, foreign or out of range.
//!
//! ```
//! use std::collections::BTreeMap;
//! use stagewise_core::optim::method::Method;
//!
//! let method: Method = "pytorch-sgd".parse().unwrap();
//! let given = BTreeMap::from([("lr", 0.1), ("momentum", 0.9)]);
//! let h = method.to_qhm(&given).unwrap();
//! assert!((h.qhm.lr - 1.0).abs() < 1e-12 && h.qhm.beta == 0.9 && h.qhm.nu == 1.0);
//!
//! // A parameter the method does not take is refused, by name.
//! let err = Method::Pid.to_qhm(&given).unwrap_err();
//! assert!(err.to_string().contains("lr is not a parameter of pid"));
//! ```

use std::collections::BTreeMap;

use crate::choice::Choice;

use super::conventions::{from_pytorch_sgd, from_sutskever_nag, heavy_ball, plain_sgd};
use super::convert::{
    from_accsgd, from_pid, from_robust_momentum, from_snv, from_triple_momentum, from_tso,
};
use super::{OptimError, QhmHyper};

/// AccSGD's ε when none is given: 0.7, as in the reference code.
pub const ACCSGD_DEFAULT_EPS: f64 = 0.7;

/// A momentum method with a known QHM form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// PyTorch `SGD(lr, momentum[, nesterov])`.
    PytorchSgd,
    /// Plain SGD with learning rate `lr`.
    PlainSgd,
    /// Normalized heavy ball (d = m·d + (1−m)·g; θ −= α·d).
    HeavyBall,
    /// Sutskever's NAG (v ← μv − ε∇f(θ+μv)), `lr` = ε and `momentum` = μ.
    Nag,
    /// PID control (Recht 2018) with gains `kp`, `ki`, `kd`.
    Pid,
    /// Synthesized Nesterov variants with `alpha-s`, `beta1`, `beta2`.
    Snv,
    /// AccSGD with `delta`, `kappa`, `xi` and optionally `eps` ([`ACCSGD_DEFAULT_EPS`]).
    Accsgd,
    /// Robust Momentum with `smoothness` (L), `kappa`, `rho`.
    Robust,
    /// Triple Momentum with `smoothness` (L), `kappa`.
    Triple,
    /// Two-state optimization with `tso-h`, `tso-k`, `tso-l`, `tso-m`, `tso-q`, `tso-z`.
    Tso,
    /// QHM itself: `lr` (α), `beta`, `nu`.
    Qhm,
}

impl Method {
    /// The parameters the method needs.
    pub fn needs(self) -> &'static [&'static str] {
        match self {
            Method::PytorchSgd | Method::HeavyBall | Method::Nag => &["lr", "momentum"],
            Method::PlainSgd => &["lr"],
            Method::Pid => &["kp", "ki", "kd"],
            Method::Snv => &["alpha-s", "beta1", "beta2"],
            Method::Accsgd => &["delta", "kappa", "xi"],
            Method::Robust => &["smoothness", "kappa", "rho"],
            Method::Triple => &["smoothness", "kappa"],
            Method::Tso => &["tso-h", "tso-k", "tso-l", "tso-m", "tso-q", "tso-z"],
            Method::Qhm => &["lr", "beta", "nu"],
        }
    }

    /// The parameters the method may take: `nesterov` (a switch: any value but 0 turns it on)
    /// for PyTorch SGD, `eps` for AccSGD.
    pub fn optional(self) -> &'static [&'static str] {
        match self {
            Method::PytorchSgd => &["nesterov"],
            Method::Accsgd => &["eps"],
            _ => &[],
        }
    }

    /// Whether QHM's α, β, ν are derived by formulas that can leave QHM's range for inputs
    /// that are themselves in range (PID, SNV, AccSGD, Robust, Triple, TSO), rather than
    /// being a change of convention.
    pub fn is_derived(self) -> bool {
        !matches!(
            self,
            Method::PytorchSgd | Method::PlainSgd | Method::HeavyBall | Method::Nag | Method::Qhm
        )
    }

    /// Checks `given` against the method's parameters: every needed one present, no foreign one.
    ///
    /// # Errors
    /// [`ConvertError::UnknownParameter`] or [`ConvertError::MissingParameter`].
    pub fn check(self, given: &BTreeMap<&str, f64>) -> Result<(), ConvertError> {
        if let Some(k) = given
            .keys()
            .find(|k| !self.needs().contains(k) && !self.optional().contains(k))
        {
            return Err(ConvertError::UnknownParameter {
                method: self,
                parameter: (*k).to_string(),
            });
        }
        if let Some(k) = self.needs().iter().find(|k| !given.contains_key(*k)) {
            return Err(ConvertError::MissingParameter {
                method: self,
                parameter: k,
            });
        }
        Ok(())
    }

    /// The QHM setting equal to this method with the parameters `given` (by name).
    ///
    /// # Errors
    /// When a parameter is missing or foreign ([`Method::check`]), or the inputs or the result
    /// are outside their ranges ([`ConvertError::Invalid`]).
    pub fn to_qhm(self, given: &BTreeMap<&str, f64>) -> Result<QhmHyper, ConvertError> {
        self.check(given)?;
        // Every needed parameter is present after `check`.
        let g = |k: &str| given.get(k).copied().unwrap_or(f64::NAN);
        let result = match self {
            Method::PytorchSgd => from_pytorch_sgd(
                g("lr"),
                g("momentum"),
                given.get("nesterov").is_some_and(|v| *v != 0.0),
            ),
            Method::PlainSgd => plain_sgd(g("lr")),
            Method::HeavyBall => heavy_ball(g("lr"), g("momentum")),
            Method::Nag => from_sutskever_nag(g("lr"), g("momentum")),
            Method::Pid => from_pid(g("kp"), g("ki"), g("kd")),
            Method::Snv => from_snv(g("alpha-s"), g("beta1"), g("beta2")),
            Method::Accsgd => from_accsgd(
                g("delta"),
                g("kappa"),
                g("xi"),
                given.get("eps").copied().unwrap_or(ACCSGD_DEFAULT_EPS),
            ),
            Method::Robust => from_robust_momentum(g("smoothness"), g("kappa"), g("rho")),
            Method::Triple => from_triple_momentum(g("smoothness"), g("kappa")),
            Method::Tso => from_tso(
                g("tso-h"),
                g("tso-k"),
                g("tso-l"),
                g("tso-m"),
                g("tso-q"),
                g("tso-z"),
            ),
            Method::Qhm => QhmHyper::checked(g("lr"), g("beta"), g("nu")),
        };
        result.map_err(|source| {
            // A derived method's inputs can be in range and still give an α, β or ν outside
            // QHM's range: the error names the QHM field, and says that it is an output.
            let output_out_of_range = self.is_derived()
                && matches!(&source, OptimError::InvalidHyper { field, .. }
                    if ["lr", "beta", "nu"].contains(field));
            ConvertError::Invalid {
                method: self,
                output_out_of_range,
                source,
            }
        })
    }
}

impl Choice for Method {
    const WHAT: &'static str = "method";
    const ALL: &'static [Self] = &[
        Method::PytorchSgd,
        Method::PlainSgd,
        Method::HeavyBall,
        Method::Nag,
        Method::Pid,
        Method::Snv,
        Method::Accsgd,
        Method::Robust,
        Method::Triple,
        Method::Tso,
        Method::Qhm,
    ];

    fn name(self) -> &'static str {
        match self {
            Method::PytorchSgd => "pytorch-sgd",
            Method::PlainSgd => "plain-sgd",
            Method::HeavyBall => "heavy-ball",
            Method::Nag => "nag",
            Method::Pid => "pid",
            Method::Snv => "snv",
            Method::Accsgd => "accsgd",
            Method::Robust => "robust",
            Method::Triple => "triple",
            Method::Tso => "tso",
            Method::Qhm => "qhm",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Method::PytorchSgd => "PyTorch SGD(lr, momentum[, nesterov])",
            Method::PlainSgd => "plain SGD",
            Method::HeavyBall => "normalized heavy ball (d = m·d + (1−m)·g; θ −= α·d)",
            Method::Nag => "Sutskever's NAG (v ← μv − ε∇f(θ+μv)); lr is ε, momentum is μ",
            Method::Pid => "PID control (Recht 2018)",
            Method::Snv => "synthesized Nesterov variants",
            Method::Accsgd => "AccSGD (eps defaults to the reference code's)",
            Method::Robust => "Robust Momentum; smoothness is L",
            Method::Triple => "Triple Momentum; smoothness is L",
            Method::Tso => "two-state optimization",
            Method::Qhm => "QHM itself; lr is α",
        }
    }
}

crate::display_and_parse_by_choice!(Method);

/// Why [`Method::to_qhm`] refused its parameters.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// A parameter the method does not take.
    #[error("{parameter} is not a parameter of {method}; it takes {}", takes(*method))]
    UnknownParameter {
        /// The method.
        method: Method,
        /// The foreign parameter.
        parameter: String,
    },
    /// A parameter the method needs was not given.
    #[error("{method} needs {parameter} (it takes {})", takes(*method))]
    MissingParameter {
        /// The method.
        method: Method,
        /// The missing parameter.
        parameter: &'static str,
    },
    /// An input is out of range, or the QHM setting it gives is.
    #[error("converting {method} to QHM{}", if *output_out_of_range {
        ": these parameters give a QHM value outside QHM's range"
    } else {
        ""
    })]
    Invalid {
        /// The method.
        method: Method,
        /// Whether the out-of-range value is a QHM output rather than an input.
        output_out_of_range: bool,
        /// The field and its range.
        #[source]
        source: OptimError,
    },
}

/// "a, b, c (optional: d)" for a method's parameters.
fn takes(method: Method) -> String {
    let mut s = method.needs().join(", ");
    if !method.optional().is_empty() {
        s.push_str(&format!(" (optional: {})", method.optional().join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for &m in Method::ALL {
            assert_eq!(m.name().parse::<Method>().unwrap(), m);
        }
        let err = "sgd".parse::<Method>().unwrap_err();
        assert!(err.contains("allowed: pytorch-sgd, plain-sgd"), "{err}");
    }

    #[test]
    fn every_method_converts_with_its_needed_parameters() {
        // Values in range for all methods that take them.
        let value = |k: &str| match k {
            "momentum" | "beta" | "beta1" | "rho" => 0.5,
            "kp" => -0.1,
            "kappa" => 100.0,
            "tso-h" => 0.9,
            "tso-m" => 0.1,
            "tso-k" | "tso-q" => 0.2,
            "tso-l" => 0.3,
            "tso-z" => 0.05,
            "beta2" => 0.2,
            "xi" => 10.0,
            _ => 0.1,
        };
        for &m in Method::ALL {
            let given: BTreeMap<&str, f64> = m.needs().iter().map(|k| (*k, value(k))).collect();
            match m.to_qhm(&given) {
                Ok(h) => assert!(h.qhm.lr.is_finite(), "{m}"),
                // Some derived formulas leave QHM's range for these values: that must be the
                // typed output error, never a missing or foreign parameter.
                Err(ConvertError::Invalid { .. }) => assert!(m.is_derived(), "{m}"),
                Err(e) => panic!("{m}: {e}"),
            }
        }
    }

    #[test]
    fn the_dispatch_matches_the_formulas() {
        let given = BTreeMap::from([("lr", 0.1), ("momentum", 0.9), ("nesterov", 1.0)]);
        assert_eq!(
            Method::PytorchSgd.to_qhm(&given).unwrap(),
            from_pytorch_sgd(0.1, 0.9, true).unwrap()
        );
        let given = BTreeMap::from([("delta", 0.1), ("kappa", 1000.0), ("xi", 10.0)]);
        assert_eq!(
            Method::Accsgd.to_qhm(&given).unwrap(),
            from_accsgd(0.1, 1000.0, 10.0, ACCSGD_DEFAULT_EPS).unwrap()
        );
    }

    #[test]
    fn missing_foreign_and_out_of_range_parameters_are_typed() {
        let err = Method::Pid
            .to_qhm(&BTreeMap::from([("kp", -0.1), ("ki", 0.1)]))
            .unwrap_err();
        assert!(matches!(
            err,
            ConvertError::MissingParameter {
                parameter: "kd",
                ..
            }
        ));
        let err = Method::PlainSgd
            .to_qhm(&BTreeMap::from([("lr", 0.1), ("eps", 0.7)]))
            .unwrap_err();
        assert!(
            matches!(&err, ConvertError::UnknownParameter { parameter, .. } if parameter == "eps")
        );
        // PID with 0 < k_P < k_D gives β ≥ 1: an output out of range.
        let err = Method::Pid
            .to_qhm(&BTreeMap::from([("kp", 0.5), ("ki", 0.1), ("kd", 1.0)]))
            .unwrap_err();
        assert!(matches!(
            err,
            ConvertError::Invalid {
                output_out_of_range: true,
                ..
            }
        ));
        // An input out of range is not called an output.
        let err = Method::PytorchSgd
            .to_qhm(&BTreeMap::from([("lr", 0.1), ("momentum", 1.5)]))
            .unwrap_err();
        assert!(matches!(
            err,
            ConvertError::Invalid {
                output_out_of_range: false,
                ..
            }
        ));
    }
}
