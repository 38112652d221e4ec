//! Linear layer `y = x·W + b` on plain `f32` slices (row-major, burn's layout: `W` is
//! `[d_in, d_out]`), forward and backward, each a single GEMM spread over the current rayon
//! pool. Transposed operands are read through strides, except `Wᵀ` for the input gradient:
//! the GEMM ran that layout at under half its rate (0.88 against 0.33 ms for 128×512×512 on
//! 2 threads), so `Wᵀ` is copied out first (the `transpose` crate; 0.08 ms for 512×512).
//!
//! ```
//! use stagewise_train::kernels::linear::{self, LinearShape};
//!
//! let shape = LinearShape { batch: 1, d_in: 2, d_out: 2 };
//! let mut y = vec![0.0; 2];
//! linear::forward(&shape, &[1.0, 2.0], &[1.0, 0.0, 0.0, 1.0], Some(&[0.5, 0.5]), &mut y);
//! assert_eq!(y, [1.5, 2.5]);
//! ```

use super::matmul::{matmul_parallel, with_scratch, Mat, MatMut};

/// The sizes of one linear layer: input `[batch, d_in]`, weight `[d_in, d_out]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearShape {
    /// Rows of the input.
    pub batch: usize,
    /// Input features.
    pub d_in: usize,
    /// Output features.
    pub d_out: usize,
}

/// Forward pass: `y = x·W (+ b)`.
///
/// # Panics
///
/// When a length does not match `shape`.
pub fn forward(s: &LinearShape, x: &[f32], weight: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    check(s, x, weight, y.len());
    let accumulate = match bias {
        Some(b) => {
            assert_eq!(b.len(), s.d_out, "linear: bias length");
            for row in y.chunks_exact_mut(s.d_out) {
                row.copy_from_slice(b);
            }
            true
        }
        None => false,
    };
    let (x, w) = (Mat::rows(x, s.d_in), Mat::rows(weight, s.d_out));
    matmul_parallel(
        MatMut::rows(y, s.d_out),
        accumulate,
        x,
        w,
        [s.batch, s.d_out, s.d_in],
    );
}

/// Which gradients [`backward`] computes; a `None` is skipped. Each is overwritten.
pub struct LinearGrads<'a> {
    /// `∂x`, `[batch, d_in]`.
    pub x: Option<&'a mut [f32]>,
    /// `∂W`, `[d_in, d_out]`.
    pub weight: Option<&'a mut [f32]>,
    /// `∂b`, `[d_out]`.
    pub bias: Option<&'a mut [f32]>,
}

/// Backward pass from the output gradient `grad_y` (`[batch, d_out]`):
/// `∂x = ∂y·Wᵀ`, `∂W = xᵀ·∂y`, `∂b = Σ_rows ∂y`.
///
/// # Panics
///
/// When a length does not match `shape`.
pub fn backward(s: &LinearShape, x: &[f32], weight: &[f32], grad_y: &[f32], grads: LinearGrads) {
    check(s, x, weight, grad_y.len());
    let g = Mat::rows(grad_y, s.d_out);
    if let Some(grad_x) = grads.x {
        assert_eq!(
            grad_x.len(),
            s.batch * s.d_in,
            "linear: input gradient length"
        );
        with_scratch(s.d_in * s.d_out, 0, |wt, _| {
            transpose::transpose(weight, wt, s.d_out, s.d_in);
            let wt = Mat::rows(wt, s.d_in);
            matmul_parallel(
                MatMut::rows(grad_x, s.d_in),
                false,
                g,
                wt,
                [s.batch, s.d_in, s.d_out],
            );
        });
    }
    if let Some(grad_w) = grads.weight {
        assert_eq!(
            grad_w.len(),
            s.d_in * s.d_out,
            "linear: weight gradient length"
        );
        let xt = Mat::transposed(x, s.d_in);
        matmul_parallel(
            MatMut::rows(grad_w, s.d_out),
            false,
            xt,
            g,
            [s.d_in, s.d_out, s.batch],
        );
    }
    if let Some(grad_b) = grads.bias {
        assert_eq!(grad_b.len(), s.d_out, "linear: bias gradient length");
        grad_b.fill(0.0);
        for row in grad_y.chunks_exact(s.d_out) {
            for (b, &v) in grad_b.iter_mut().zip(row) {
                *b += v;
            }
        }
    }
}

fn check(s: &LinearShape, x: &[f32], weight: &[f32], y: usize) {
    assert!(
        s.batch > 0 && s.d_in > 0 && s.d_out > 0,
        "linear: empty shape {s:?}"
    );
    assert_eq!(x.len(), s.batch * s.d_in, "linear: input length");
    assert_eq!(weight.len(), s.d_in * s.d_out, "linear: weight length");
    assert_eq!(y, s.batch * s.d_out, "linear: output length");
}
