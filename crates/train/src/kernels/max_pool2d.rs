//! 2-D max-pooling on plain `f32` slices (NCHW), no padding, dilation 1, floor mode.
//!
//! The forward pass also records, for every output, where its maximum lies in the input plane;
//! the backward pass adds each output gradient there. Ties go to the first maximum in
//! row-major window order and a NaN wins over any number (the last NaN of a window), as in
//! PyTorch's CPU kernel.
//!
//! ```
//! use stagewise_train::kernels::max_pool2d::{self, PoolShape};
//!
//! let shape = PoolShape { planes: 1, height: 2, width: 4, kernel: [2, 2], stride: [2, 2] };
//! let x = [1.0, 5.0, 2.0, 2.0,
//!          3.0, 4.0, 2.0, 0.0];
//! let (mut out, mut at) = (vec![0.0; 2], vec![0; 2]);
//! max_pool2d::forward(&shape, &x, &mut out, &mut at);
//! assert_eq!(out, [5.0, 2.0]);
//! assert_eq!(at, [1, 2]); // the tie 2, 2 goes to the first
//! let mut grad_x = vec![0.0; 8];
//! max_pool2d::backward(&shape, &[10.0, 20.0], &at, &mut grad_x);
//! assert_eq!(grad_x, [0.0, 10.0, 20.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
//! ```

use rayon::prelude::*;

/// Planes per rayon task (a plane is one image's channel).
const PLANES_PER_TASK: usize = 16;

/// The sizes of one max-pool: `planes` (batch × channels) planes of `height × width`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolShape {
    /// Planes: batch size × channels.
    pub planes: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Window height and width.
    pub kernel: [usize; 2],
    /// Stride along height and width.
    pub stride: [usize; 2],
}

impl PoolShape {
    /// Output height: `(height − kernel) / stride + 1`.
    pub fn out_height(&self) -> usize {
        (self.height - self.kernel[0]) / self.stride[0] + 1
    }

    /// Output width.
    pub fn out_width(&self) -> usize {
        (self.width - self.kernel[1]) / self.stride[1] + 1
    }

    /// Whether these kernels compute this pool: nothing empty, the window fits the plane and
    /// plane indices fit in `u32`.
    pub fn is_valid(&self) -> bool {
        self.planes > 0
            && self.kernel.iter().all(|&k| k > 0)
            && self.stride.iter().all(|&s| s > 0)
            && self.height >= self.kernel[0]
            && self.width >= self.kernel[1]
            && u32::try_from(self.height * self.width).is_ok()
    }

    /// Values per input plane.
    fn plane(&self) -> usize {
        self.height * self.width
    }

    /// Values per output plane.
    fn out_plane(&self) -> usize {
        self.out_height() * self.out_width()
    }

    /// Length of the input.
    pub fn input_len(&self) -> usize {
        self.planes * self.plane()
    }

    /// Length of the output (and of the argmax indices).
    pub fn out_len(&self) -> usize {
        self.planes * self.out_plane()
    }
}

/// Forward pass: `out` holds each window's maximum and `argmax` its index in the input plane.
///
/// # Panics
///
/// When a length does not match `shape` or `shape` is not [valid](PoolShape::is_valid).
pub fn forward(s: &PoolShape, x: &[f32], out: &mut [f32], argmax: &mut [u32]) {
    assert!(s.is_valid(), "max_pool2d: invalid shape {s:?}");
    assert_eq!(x.len(), s.input_len(), "max_pool2d: input length");
    assert_eq!(out.len(), s.out_len(), "max_pool2d: output length");
    assert_eq!(argmax.len(), s.out_len(), "max_pool2d: index length");
    let (plane, out_plane) = (s.plane(), s.out_plane());
    let (ow, [kh, kw], [sh, sw]) = (s.out_width(), s.kernel, s.stride);
    if s.kernel == [2, 2] && s.stride == [2, 2] {
        return forward_2x2(s, x, out, argmax);
    }
    out.par_chunks_mut(out_plane * PLANES_PER_TASK)
        .zip(argmax.par_chunks_mut(out_plane * PLANES_PER_TASK))
        .zip(x.par_chunks(plane * PLANES_PER_TASK))
        .for_each(|((out, argmax), x)| {
            for ((out, argmax), x) in out
                .chunks_exact_mut(out_plane)
                .zip(argmax.chunks_exact_mut(out_plane))
                .zip(x.chunks_exact(plane))
            {
                let rows = out.chunks_exact_mut(ow).zip(argmax.chunks_exact_mut(ow));
                for (oy, (out, argmax)) in rows.enumerate() {
                    for (ox, (best_out, best_at)) in out.iter_mut().zip(argmax).enumerate() {
                        let first = oy * sh * s.width + ox * sw;
                        let (mut best, mut at) = (f32::NEG_INFINITY, first);
                        for ky in 0..kh {
                            let row = first + ky * s.width;
                            for (i, &v) in (row..row + kw).zip(&x[row..row + kw]) {
                                // Branch-free: on random data a branch here mispredicts half
                                // the time, which more than doubled the pass.
                                let take = v > best || v.is_nan();
                                best = if take { v } else { best };
                                at = if take { i } else { at };
                            }
                        }
                        *best_out = best;
                        // `is_valid` keeps plane indices within u32.
                        *best_at = at as u32;
                    }
                }
            }
        });
}

/// The running maximum after `v` at index `i`: `v` wins if it is greater or NaN (branch-free).
#[inline(always)]
fn take(best: (f32, u32), v: f32, i: u32) -> (f32, u32) {
    let wins = v > best.0 || v.is_nan();
    (if wins { v } else { best.0 }, if wins { i } else { best.1 })
}

/// [`forward`] for the common 2×2 window with stride 2: two input rows per output row, the
/// four candidates in PyTorch's order (top-left, top-right, bottom-left, bottom-right).
fn forward_2x2(s: &PoolShape, x: &[f32], out: &mut [f32], argmax: &mut [u32]) {
    let (w, ow, oh) = (s.width, s.out_width(), s.out_height());
    let (plane, out_plane) = (s.plane(), s.out_plane());
    out.par_chunks_mut(out_plane * PLANES_PER_TASK)
        .zip(argmax.par_chunks_mut(out_plane * PLANES_PER_TASK))
        .zip(x.par_chunks(plane * PLANES_PER_TASK))
        .for_each(|((out, argmax), x)| {
            for ((out, argmax), x) in out
                .chunks_exact_mut(out_plane)
                .zip(argmax.chunks_exact_mut(out_plane))
                .zip(x.chunks_exact(plane))
            {
                for oy in 0..oh {
                    let top = 2 * oy * w;
                    let (r0, r1) = (&x[top..top + w], &x[top + w..top + 2 * w]);
                    let out = &mut out[oy * ow..(oy + 1) * ow];
                    let argmax = &mut argmax[oy * ow..(oy + 1) * ow];
                    for (ox, ((o, a), (p0, p1))) in out
                        .iter_mut()
                        .zip(argmax.iter_mut())
                        .zip(r0.chunks_exact(2).zip(r1.chunks_exact(2)))
                        .enumerate()
                    {
                        // `is_valid` keeps plane indices within u32.
                        let i = (top + 2 * ox) as u32;
                        let best = (p0[0], i);
                        let best = take(best, p0[1], i + 1);
                        let best = take(best, p1[0], i + w as u32);
                        let best = take(best, p1[1], i + w as u32 + 1);
                        *o = best.0;
                        *a = best.1;
                    }
                }
            }
        });
}

/// Backward pass: `grad_x` (overwritten) gets each output gradient at its window's maximum.
///
/// # Panics
///
/// When a length does not match `shape` or an index lies outside its plane.
pub fn backward(s: &PoolShape, grad_out: &[f32], argmax: &[u32], grad_x: &mut [f32]) {
    assert!(s.is_valid(), "max_pool2d: invalid shape {s:?}");
    assert_eq!(
        grad_out.len(),
        s.out_len(),
        "max_pool2d: output gradient length"
    );
    assert_eq!(argmax.len(), s.out_len(), "max_pool2d: index length");
    assert_eq!(
        grad_x.len(),
        s.input_len(),
        "max_pool2d: input gradient length"
    );
    let (plane, out_plane) = (s.plane(), s.out_plane());
    grad_x
        .par_chunks_mut(plane * PLANES_PER_TASK)
        .zip(grad_out.par_chunks(out_plane * PLANES_PER_TASK))
        .zip(argmax.par_chunks(out_plane * PLANES_PER_TASK))
        .for_each(|((grad_x, grad_out), argmax)| {
            grad_x.fill(0.0);
            for ((grad_x, grad_out), argmax) in grad_x
                .chunks_exact_mut(plane)
                .zip(grad_out.chunks_exact(out_plane))
                .zip(argmax.chunks_exact(out_plane))
            {
                for (&g, &at) in grad_out.iter().zip(argmax) {
                    grad_x[at as usize] += g;
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_windows_add_their_gradients() {
        // 3×3 windows with stride 1 on a 4×4 plane whose maximum (9) is in every window.
        let s = PoolShape {
            planes: 1,
            height: 4,
            width: 4,
            kernel: [3, 3],
            stride: [1, 1],
        };
        let mut x = vec![0.0f32; 16];
        x[5] = 9.0;
        let (mut out, mut at) = (vec![0.0; 4], vec![0; 4]);
        forward(&s, &x, &mut out, &mut at);
        assert_eq!(out, [9.0; 4]);
        assert_eq!(at, [5; 4]);
        let mut grad = vec![0.0; 16];
        backward(&s, &[1.0, 2.0, 3.0, 4.0], &at, &mut grad);
        assert_eq!(grad[5], 10.0);
        assert_eq!(grad.iter().sum::<f32>(), 10.0);
    }

    #[test]
    fn nan_wins_and_odd_sizes_drop_the_last_row_and_column() {
        let s = PoolShape {
            planes: 2,
            height: 3,
            width: 5,
            kernel: [2, 2],
            stride: [2, 2],
        };
        let mut x: Vec<f32> = (0..30).map(|v| v as f32).collect();
        x[1] = f32::NAN;
        let (mut out, mut at) = (vec![0.0; 4], vec![0; 4]);
        forward(&s, &x, &mut out, &mut at);
        assert!(out[0].is_nan());
        assert_eq!(at, [1, 8, 6, 8]);
        assert_eq!(&out[1..], [8.0, 21.0, 23.0]);
    }
}
