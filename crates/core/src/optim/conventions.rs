//! Familiar optimizers written as QHM (docs/theory.md §1, "Special cases").
//!
//! QHM uses the *normalized* convention: its learning rate α relates to an unnormalized
//! learning rate η (PyTorch's) by α = η/(1−β). Each function below returns the [`QhmHyper`]
//! whose run equals the named method's run, step for step, from a zero state:
//!
//! | method | α | β | ν |
//! |---|---|---|---|
//! | plain SGD, lr η | η | any (0 here) | 0 |
//! | normalized heavy ball, lr α, momentum m | α | m | 1 |
//! | PyTorch `SGD(lr=η, momentum=m)` | η/(1−m) | m | 1 |
//! | PyTorch `SGD(lr=η, momentum=m, nesterov=True)` | η/(1−m) | m | m |
//! | Sutskever NAG (ε, μ), on φ = θ + μv | ε/(1−μ) | μ | μ |
//!
//! PyTorch's dampening δ ≠ 0 has no exact QHM form, because PyTorch skips dampening on the
//! first step; [`Sgd`](super::Sgd) implements it exactly instead.
//!
//! ```
//! use stagewise_core::optim::conventions::from_pytorch_sgd;
//! let h = from_pytorch_sgd(0.1, 0.9, false).unwrap();
//! assert!((h.qhm.lr - 1.0).abs() < 1e-12 && h.qhm.beta == 0.9 && h.qhm.nu == 1.0);
//! ```

use super::{check_range, OptimError, QhmHyper};

/// Plain SGD with learning rate `lr`: QHM with ν = 0.
pub fn plain_sgd(lr: f64) -> Result<QhmHyper, OptimError> {
    QhmHyper::checked(lr, 0.0, 0.0)
}

/// Normalized heavy ball (`d = m·d + (1−m)·g; θ −= α·d`): QHM with ν = 1, β = m, the same α.
pub fn heavy_ball(lr: f64, momentum: f64) -> Result<QhmHyper, OptimError> {
    QhmHyper::checked(lr, momentum, 1.0)
}

/// PyTorch `SGD(lr, momentum, dampening=0, nesterov)`: α = lr/(1−m), β = m, ν = 1 or m.
pub fn from_pytorch_sgd(lr: f64, momentum: f64, nesterov: bool) -> Result<QhmHyper, OptimError> {
    check_range(
        "momentum",
        momentum,
        0.0,
        true,
        1.0,
        false,
        "0 <= momentum < 1",
    )?;
    let nu = if nesterov { momentum } else { 1.0 };
    QhmHyper::checked(lr / (1.0 - momentum), momentum, nu)
}

/// Sutskever's NAG (`v ← μv − ε∇f(θ+μv); θ ← θ + v`), tracked on φ = θ + μv:
/// QHM with α = ε/(1−μ), β = μ, ν = μ.
pub fn from_sutskever_nag(eps: f64, mu: f64) -> Result<QhmHyper, OptimError> {
    from_pytorch_sgd(eps, mu, true)
}

/// The PyTorch SGD settings a QHM setting corresponds to, when one exists:
/// ν = 1 is momentum, ν = β is Nesterov (lr = α(1−β)); ν = 0 is plain SGD (lr = α, momentum 0).
///
/// Returns `(lr, momentum, nesterov)`.
pub fn to_pytorch_sgd(h: &QhmHyper) -> Option<(f64, f64, bool)> {
    const TOL: f64 = 1e-12;
    if h.qhm.nu.abs() < TOL || h.qhm.beta == 0.0 {
        Some((h.qhm.lr, 0.0, false))
    } else if (h.qhm.nu - 1.0).abs() < TOL {
        Some((h.qhm.lr * (1.0 - h.qhm.beta), h.qhm.beta, false))
    } else if (h.qhm.nu - h.qhm.beta).abs() < TOL {
        Some((h.qhm.lr * (1.0 - h.qhm.beta), h.qhm.beta, true))
    } else {
        None
    }
}

/// qhoptim's rule of thumb for moving from momentum `m` with lr `lr` to QHM:
/// ν = max(0, 3m − 2), β = max(0.999, m), α = lr/(1−m).
pub fn rule_of_thumb(lr: f64, momentum: f64) -> Result<QhmHyper, OptimError> {
    check_range(
        "momentum",
        momentum,
        0.0,
        true,
        1.0,
        false,
        "0 <= momentum < 1",
    )?;
    QhmHyper::checked(
        lr / (1.0 - momentum),
        momentum.max(0.999),
        (3.0 * momentum - 2.0).max(0.0),
    )
}
