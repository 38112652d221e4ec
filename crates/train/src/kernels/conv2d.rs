//! 2-D convolution on plain `f32` slices (NCHW), forward and backward, by im2col and GEMM.
//!
//! One image at a time: its input is unfolded into a column matrix `cols` of `K × L` values
//! (`K = c_in·kh·kw` rows in the order of the weight's `[c_in, kh, kw]` axes, `L = out_h·out_w`
//! columns), so that the weight, read as a `c_out × K` row-major matrix, needs no reordering:
//!
//! - forward: `out[n] = W · cols[n] (+ bias)`
//! - weight gradient: `∂W = Σₙ ∂out[n] · cols[n]ᵀ`, accumulated per thread, then summed
//! - input gradient: `∂cols = Wᵀ · ∂out[n]`, folded back onto the image (col2im)
//! - bias gradient: `∂b[c] = Σₙ Σₗ ∂out[n, c, l]`
//!
//! Images are spread over the current rayon pool in small groups whose column matrices are
//! built side by side and fit in the L2 cache; each image's GEMMs read and write its block of
//! them in place ([`super::matmul`]'s strided views) and run on one thread (the `gemm` crate's
//! kernels, AVX2/AVX-512/NEON chosen at run time).
//!
//! ```
//! use stagewise_train::kernels::conv2d::{self, Conv2dShape};
//!
//! // One 1×3×3 image, one 2×2 kernel of ones, stride 1, no padding: sums of 2×2 windows.
//! let shape = Conv2dShape { batch: 1, c_in: 1, height: 3, width: 3, c_out: 1,
//!                           kernel: [2, 2], stride: [1, 1], padding: [0, 0] };
//! let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
//! let mut out = vec![0.0; shape.out_len()];
//! conv2d::forward(&shape, &x, &[1.0; 4], None, &mut out);
//! assert_eq!(out, [12.0, 16.0, 24.0, 28.0]);
//! ```

use rayon::prelude::*;

use super::matmul::{matmul, with_scratch, Mat, MatMut};

/// The sizes of one convolution: input `[batch, c_in, height, width]`, weight
/// `[c_out, c_in, kernel[0], kernel[1]]`, symmetric zero padding, dilation 1, one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dShape {
    /// Images in the batch.
    pub batch: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride along height and width (at least 1).
    pub stride: [usize; 2],
    /// Zero padding on each side along height and width.
    pub padding: [usize; 2],
}

impl Conv2dShape {
    /// Output height: `(height + 2·padding − kernel) / stride + 1`.
    pub fn out_height(&self) -> usize {
        (self.height + 2 * self.padding[0] - self.kernel[0]) / self.stride[0] + 1
    }

    /// Output width.
    pub fn out_width(&self) -> usize {
        (self.width + 2 * self.padding[1] - self.kernel[1]) / self.stride[1] + 1
    }

    /// Whether the sizes describe a convolution these kernels compute: nothing empty, stride
    /// at least 1, and the padded input at least as large as the kernel.
    pub fn is_valid(&self) -> bool {
        let positive = [self.batch, self.c_in, self.height, self.width, self.c_out];
        positive.iter().all(|&v| v > 0)
            && self.kernel.iter().all(|&k| k > 0)
            && self.stride.iter().all(|&s| s > 0)
            && self.height + 2 * self.padding[0] >= self.kernel[0]
            && self.width + 2 * self.padding[1] >= self.kernel[1]
    }

    /// Values per input image (`c_in·height·width`).
    fn image_len(&self) -> usize {
        self.c_in * self.height * self.width
    }

    /// Rows of the column matrix, the weight's values per output channel (`c_in·kh·kw`).
    pub fn col_rows(&self) -> usize {
        self.c_in * self.kernel[0] * self.kernel[1]
    }

    /// Output positions per image (`out_h·out_w`).
    fn out_plane(&self) -> usize {
        self.out_height() * self.out_width()
    }

    /// Length of the input `[batch, c_in, height, width]`.
    pub fn input_len(&self) -> usize {
        self.batch * self.image_len()
    }

    /// Length of the weight `[c_out, c_in, kh, kw]`.
    pub fn weight_len(&self) -> usize {
        self.c_out * self.col_rows()
    }

    /// Length of the output `[batch, c_out, out_h, out_w]`.
    pub fn out_len(&self) -> usize {
        self.batch * self.c_out * self.out_plane()
    }
}

/// Unfolds one image `[c_in, h, w]` into `cols` (`K × L`, rows `row_stride` apart: the image's
/// block of a group's column matrix); padding reads as zero.
fn im2col(s: &Conv2dShape, image: &[f32], cols: &mut [f32], row_stride: usize) {
    let (oh, ow) = (s.out_height(), s.out_width());
    let [kh, kw] = s.kernel;
    let [sh, sw] = s.stride;
    let [ph, pw] = s.padding;
    let plane = s.height * s.width;
    let mut r = 0;
    for c in 0..s.c_in {
        let channel = &image[c * plane..(c + 1) * plane];
        for ky in 0..kh {
            for kx in 0..kw {
                let row = &mut cols[r * row_stride..r * row_stride + oh * ow];
                r += 1;
                for oy in 0..oh {
                    let dst = &mut row[oy * ow..(oy + 1) * ow];
                    let iy = (oy * sh + ky) as isize - ph as isize;
                    if iy < 0 || iy >= s.height as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &channel[iy as usize * s.width..(iy as usize + 1) * s.width];
                    let (lo, hi) = valid_range(ow, sw, kx, pw, s.width);
                    dst[..lo].fill(0.0);
                    dst[hi..].fill(0.0);
                    if sw == 1 {
                        let start = lo + kx - pw;
                        dst[lo..hi].copy_from_slice(&src[start..start + (hi - lo)]);
                    } else {
                        for (ox, d) in dst.iter_mut().enumerate().take(hi).skip(lo) {
                            *d = src[ox * sw + kx - pw];
                        }
                    }
                }
            }
        }
    }
}

/// Adds the column matrix `cols` (rows `row_stride` apart) back onto one image gradient
/// `[c_in, h, w]` (the adjoint of [`im2col`]).
fn col2im_add(s: &Conv2dShape, cols: &[f32], image: &mut [f32], row_stride: usize) {
    let (oh, ow) = (s.out_height(), s.out_width());
    let [kh, kw] = s.kernel;
    let [sh, sw] = s.stride;
    let [ph, pw] = s.padding;
    let plane = s.height * s.width;
    let mut r = 0;
    for c in 0..s.c_in {
        let channel = &mut image[c * plane..(c + 1) * plane];
        for ky in 0..kh {
            for kx in 0..kw {
                let row = &cols[r * row_stride..r * row_stride + oh * ow];
                r += 1;
                let (lo, hi) = valid_range(ow, sw, kx, pw, s.width);
                for oy in 0..oh {
                    let iy = (oy * sh + ky) as isize - ph as isize;
                    if iy < 0 || iy >= s.height as isize {
                        continue;
                    }
                    let dst = &mut channel[iy as usize * s.width..(iy as usize + 1) * s.width];
                    let src = &row[oy * ow..(oy + 1) * ow];
                    if sw == 1 {
                        let start = lo + kx - pw;
                        for (d, &v) in dst[start..start + (hi - lo)].iter_mut().zip(&src[lo..hi]) {
                            *d += v;
                        }
                    } else {
                        for (ox, &v) in src.iter().enumerate().take(hi).skip(lo) {
                            dst[ox * sw + kx - pw] += v;
                        }
                    }
                }
            }
        }
    }
}

/// The output columns `ox` in `lo..hi` whose input column `ox·stride + kx − pad` lies inside
/// `0..width`.
fn valid_range(ow: usize, stride: usize, kx: usize, pad: usize, width: usize) -> (usize, usize) {
    // ox·stride + kx ≥ pad  ⇔  ox ≥ ceil((pad − kx) / stride)
    let lo = pad.saturating_sub(kx).div_ceil(stride).min(ow);
    // ox·stride + kx − pad ≤ width − 1  ⇔  ox ≤ (width − 1 + pad − kx) / stride
    let hi = match (width - 1 + pad).checked_sub(kx) {
        Some(v) => (v / stride + 1).min(ow),
        None => 0,
    };
    (lo, hi.max(lo))
}

/// Values of a group's column matrix (`K × g·L`) that [`group_size`] aims to stay within, so
/// that it is still in the L2 cache when the GEMMs read it: 1 MiB, one core's L2 on the
/// benchmark machine. Measured on the cnn at batch 128 (docs/benchmarks.md): 2 MiB and 4 MiB
/// groups were 5–15% slower per step, 512 KiB and 256 KiB the same.
const TARGET_COLUMN_VALUES: usize = 1 << 18;

/// Images whose column matrices are built together: as many as fit in
/// [`TARGET_COLUMN_VALUES`] (at least one), but at least two groups per thread while the batch
/// allows. Each image still gets its own GEMMs (on its block of the group's matrix), so the
/// group size changes how the work is batched, not the result.
fn group_size(s: &Conv2dShape) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let by_cache = (TARGET_COLUMN_VALUES / (s.col_rows() * s.out_plane())).max(1);
    let by_parallelism = s.batch.div_ceil(2 * threads).max(1);
    by_cache.min(by_parallelism)
}

/// Values a vector copy of the stride-1 [`group_im2col`] moves at once (one AVX-512 register).
const LANES: usize = 16;

/// Scratch lengths for [`group_im2col`] of `count` images: the column matrix (`K × count·L`,
/// plus [`LANES`] of slack) and the zero-padded copies of the images.
fn im2col_scratch(s: &Conv2dShape, count: usize) -> (usize, usize) {
    let padded = (s.height + 2 * s.padding[0]) * (s.width + 2 * s.padding[1]);
    let cols = s.col_rows() * count * s.out_plane() + LANES;
    (cols, count * s.c_in * padded + LANES)
}

/// Fills `cols` (`K × g·L`, then scratch) with the column matrices of `images` side by side;
/// `padded` is scratch of the length [`im2col_scratch`] gives.
///
/// Stride 1 takes a faster path: the images are first copied into zero-padded planes, so that
/// every output row `oy` of a column-matrix row is one run of `out_w` values with no bounds to
/// check; each run is copied as whole [`LANES`]-value vectors, running past its end into values
/// that are written later (runs are written in increasing address order, and the slack
/// absorbs the last). The copies of 10–30 values were a third of the old path's time.
fn group_im2col(s: &Conv2dShape, images: &[f32], cols: &mut [f32], padded: &mut [f32]) {
    let (l, count) = (s.out_plane(), images.len() / s.image_len());
    let n = count * l;
    if s.stride != [1, 1] {
        for (i, image) in images.chunks_exact(s.image_len()).enumerate() {
            im2col(s, image, &mut cols[i * l..], n);
        }
        return;
    }
    let (hp, wp) = (s.height + 2 * s.padding[0], s.width + 2 * s.padding[1]);
    let (oh, ow) = (s.out_height(), s.out_width());
    let plane = hp * wp;
    padded.fill(0.0);
    for (dst, src) in padded
        .chunks_exact_mut(plane)
        .zip(images.chunks_exact(s.height * s.width))
    {
        for (y, row) in src.chunks_exact(s.width).enumerate() {
            let at = (y + s.padding[0]) * wp + s.padding[1];
            dst[at..at + s.width].copy_from_slice(row);
        }
    }
    let [kh, kw] = s.kernel;
    let mut r = 0;
    for c in 0..s.c_in {
        for ky in 0..kh {
            for kx in 0..kw {
                for i in 0..count {
                    let src = (i * s.c_in + c) * plane + ky * wp + kx;
                    let dst = r * n + i * l;
                    for oy in 0..oh {
                        let (src, dst) = (src + oy * wp, dst + oy * ow);
                        for v in (0..ow).step_by(LANES) {
                            cols[dst + v..dst + v + LANES]
                                .copy_from_slice(&padded[src + v..src + v + LANES]);
                        }
                    }
                }
                r += 1;
            }
        }
    }
}

/// Forward convolution: `out` (`[batch, c_out, out_h, out_w]`) from `x`, `weight` and an
/// optional `bias` (`[c_out]`).
///
/// # Panics
///
/// When a slice length does not match `shape` or `shape` is not [valid](Conv2dShape::is_valid)
/// (the burn operation checks both before calling).
pub fn forward(s: &Conv2dShape, x: &[f32], weight: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    check_lengths(s, x, weight, out.len(), s.out_len());
    let (k, l, g) = (s.col_rows(), s.out_plane(), group_size(s));
    out.par_chunks_mut(s.c_out * l * g)
        .zip(x.par_chunks(s.image_len() * g))
        .for_each(|(out, images)| {
            let count = images.len() / s.image_len();
            let n = count * l;
            let (cols_len, padded_len) = im2col_scratch(s, count);
            with_scratch(cols_len, padded_len, |cols, padded| {
                group_im2col(s, images, cols, padded);
                // out[i] (c_out × L) = W (c_out × K) · cols[:, i·L..] (K × L, rows n apart)
                for (i, out) in out.chunks_exact_mut(s.c_out * l).enumerate() {
                    if let Some(b) = bias {
                        for (row, &v) in out.chunks_exact_mut(l).zip(b) {
                            row.fill(v);
                        }
                    }
                    let (w, cols) = (Mat::rows(weight, k), Mat::rows(&cols[i * l..], n));
                    matmul(
                        MatMut::rows(out, l),
                        bias.is_some(),
                        w,
                        cols,
                        [s.c_out, l, k],
                    );
                }
            });
        });
}

/// Which gradients [`backward`] computes; a `None` is skipped.
pub struct Conv2dGrads<'a> {
    /// `∂x`, `[batch, c_in, height, width]` (overwritten).
    pub x: Option<&'a mut [f32]>,
    /// `∂W`, `[c_out, c_in, kh, kw]` (overwritten).
    pub weight: Option<&'a mut [f32]>,
    /// `∂b`, `[c_out]` (overwritten).
    pub bias: Option<&'a mut [f32]>,
}

/// Backward convolution: the gradients asked for in `grads`, from the forward inputs and the
/// output gradient `grad_out` (`[batch, c_out, out_h, out_w]`).
///
/// # Panics
///
/// As [`forward`], when a length does not match `shape`.
pub fn backward(s: &Conv2dShape, x: &[f32], weight: &[f32], grad_out: &[f32], grads: Conv2dGrads) {
    check_lengths(s, x, weight, grad_out.len(), s.out_len());
    let (k, l, g) = (s.col_rows(), s.out_plane(), group_size(s));
    let out_image = s.c_out * l;
    if let Some(grad_b) = grads.bias {
        assert_eq!(grad_b.len(), s.c_out, "conv2d: bias gradient length");
        grad_b.fill(0.0);
        for image in grad_out.chunks_exact(out_image) {
            for (g, plane) in grad_b.iter_mut().zip(image.chunks_exact(l)) {
                *g += plane.iter().map(|&v| f64::from(v)).sum::<f64>() as f32;
            }
        }
    }
    if let Some(grad_x) = grads.x {
        assert_eq!(grad_x.len(), s.input_len(), "conv2d: input gradient length");
        grad_x
            .par_chunks_mut(s.image_len() * g)
            .zip(grad_out.par_chunks(out_image * g))
            .for_each(|(grad_images, grad_out)| {
                let n = (grad_out.len() / out_image) * l;
                with_scratch(k * n, 0, |cols, _| {
                    // ∂cols[:, i·L..] (K × L, rows n apart) = Wᵀ (K × c_out) · ∂out[i] (c_out × L)
                    let wt = Mat::transposed(weight, k);
                    for (i, grad_out) in grad_out.chunks_exact(out_image).enumerate() {
                        let dst = MatMut::rows(&mut cols[i * l..], n);
                        matmul(dst, false, wt, Mat::rows(grad_out, l), [k, l, s.c_out]);
                    }
                    for (i, grad_image) in grad_images.chunks_exact_mut(s.image_len()).enumerate() {
                        grad_image.fill(0.0);
                        col2im_add(s, &cols[i * l..], grad_image, n);
                    }
                });
            });
    }
    if let Some(grad_w) = grads.weight {
        assert_eq!(
            grad_w.len(),
            s.weight_len(),
            "conv2d: weight gradient length"
        );
        // One partial sum per task of consecutive groups, summed in task order (deterministic
        // for a given pool size).
        let threads = rayon::current_num_threads().max(1);
        let per_task = s.batch.div_ceil(g).div_ceil(threads).max(1) * g;
        let partials: Vec<Vec<f32>> = x
            .par_chunks(s.image_len() * per_task)
            .zip(grad_out.par_chunks(out_image * per_task))
            .map(|(images, grad_outs)| {
                let mut acc = vec![0.0f32; s.weight_len()];
                let (cols_len, padded_len) = im2col_scratch(s, g);
                with_scratch(cols_len, padded_len, |cols, padded| {
                    let groups = images
                        .chunks(s.image_len() * g)
                        .zip(grad_outs.chunks(out_image * g));
                    for (j, (images, grad_outs)) in groups.enumerate() {
                        let count = images.len() / s.image_len();
                        let n = count * l;
                        let (cols_len, padded_len) = im2col_scratch(s, count);
                        let (cols, padded) = (&mut cols[..cols_len], &mut padded[..padded_len]);
                        group_im2col(s, images, cols, padded);
                        // ∂W (c_out × K) += ∂out[i] (c_out × L) · cols[:, i·L..]ᵀ (L × K),
                        // kept column-major (as ∂Wᵀ) until the partial sums are added.
                        for (i, grad_out) in grad_outs.chunks_exact(out_image).enumerate() {
                            let (lhs, cols_t) =
                                (Mat::rows(grad_out, l), Mat::transposed(&cols[i * l..], n));
                            let dst = MatMut::col_major(&mut acc, s.c_out);
                            matmul(dst, j + i > 0, lhs, cols_t, [s.c_out, k, l]);
                        }
                    }
                });
                acc
            })
            .collect();
        let mut parts = partials.into_iter();
        let mut sum = parts.next().expect("batch is not empty");
        for part in parts {
            for (g, p) in sum.iter_mut().zip(&part) {
                *g += p;
            }
        }
        // ∂Wᵀ (K × c_out) → ∂W (c_out × K).
        for (kk, row) in sum.chunks_exact(s.c_out).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                grad_w[c * k + kk] = v;
            }
        }
    }
}

fn check_lengths(s: &Conv2dShape, x: &[f32], weight: &[f32], out: usize, expected_out: usize) {
    assert!(s.is_valid(), "conv2d: invalid shape {s:?}");
    assert_eq!(x.len(), s.input_len(), "conv2d: input length");
    assert_eq!(weight.len(), s.weight_len(), "conv2d: weight length");
    assert_eq!(out, expected_out, "conv2d: output length");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct seven-loop convolution in f64, the reference for the im2col path.
    fn naive(s: &Conv2dShape, x: &[f32], w: &[f32]) -> Vec<f64> {
        let (oh, ow) = (s.out_height(), s.out_width());
        let mut out = vec![0.0; s.out_len()];
        for n in 0..s.batch {
            for co in 0..s.c_out {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = 0.0f64;
                        for ci in 0..s.c_in {
                            for ky in 0..s.kernel[0] {
                                for kx in 0..s.kernel[1] {
                                    let iy =
                                        (oy * s.stride[0] + ky) as isize - s.padding[0] as isize;
                                    let ix =
                                        (ox * s.stride[1] + kx) as isize - s.padding[1] as isize;
                                    if iy < 0
                                        || ix < 0
                                        || iy >= s.height as isize
                                        || ix >= s.width as isize
                                    {
                                        continue;
                                    }
                                    let xi = ((n * s.c_in + ci) * s.height + iy as usize) * s.width
                                        + ix as usize;
                                    let wi =
                                        ((co * s.c_in + ci) * s.kernel[0] + ky) * s.kernel[1] + kx;
                                    acc += f64::from(x[xi]) * f64::from(w[wi]);
                                }
                            }
                        }
                        out[((n * s.c_out + co) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32)
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(seed.wrapping_mul(40_503));
                (h % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn forward_matches_the_direct_loop_for_strides_and_paddings() {
        for (stride, padding, kernel, h, w) in [
            (1, 2, 5, 9, 9),
            (2, 1, 3, 9, 8),
            (2, 0, 1, 7, 7),
            (3, 1, 3, 10, 7),
            (1, 0, 3, 3, 3),
        ] {
            let s = Conv2dShape {
                batch: 3,
                c_in: 2,
                height: h,
                width: w,
                c_out: 4,
                kernel: [kernel, kernel],
                stride: [stride, stride],
                padding: [padding, padding],
            };
            let x = values(s.input_len(), 1);
            let wt = values(s.weight_len(), 2);
            let mut out = vec![0.0; s.out_len()];
            forward(&s, &x, &wt, None, &mut out);
            let reference = naive(&s, &x, &wt);
            for (a, b) in out.iter().zip(&reference) {
                assert!(
                    (f64::from(*a) - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{s:?}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), c> = <x, col2im(c)> for any x, c.
        let s = Conv2dShape {
            batch: 1,
            c_in: 3,
            height: 7,
            width: 6,
            c_out: 1,
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1, 1],
        };
        let x = values(s.input_len(), 3);
        let c = values(s.col_rows() * s.out_plane(), 4);
        let mut cols = vec![0.0; c.len()];
        im2col(&s, &x, &mut cols, s.out_plane());
        let mut back = vec![0.0; x.len()];
        col2im_add(&s, &c, &mut back, s.out_plane());
        let lhs: f64 = cols
            .iter()
            .zip(&c)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum();
        let rhs: f64 = x
            .iter()
            .zip(&back)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum();
        assert!((lhs - rhs).abs() < 1e-4, "{lhs} vs {rhs}");
    }

    #[test]
    fn the_stride_one_path_builds_the_same_columns_as_the_general_one() {
        // Runs shorter and longer than a vector, with and without padding, several images.
        for (kernel, padding, h, w) in [(5, 2, 14, 14), (3, 1, 9, 40), (3, 0, 6, 5), (1, 0, 4, 17)]
        {
            let s = Conv2dShape {
                batch: 3,
                c_in: 2,
                height: h,
                width: w,
                c_out: 1,
                kernel: [kernel, kernel],
                stride: [1, 1],
                padding: [padding, padding],
            };
            let (l, n) = (s.out_plane(), 3 * s.out_plane());
            let x = values(s.input_len(), 5);
            let mut expected = vec![0.0; s.col_rows() * n];
            for (i, image) in x.chunks_exact(s.image_len()).enumerate() {
                im2col(&s, image, &mut expected[i * l..], n);
            }
            let (cols_len, padded_len) = im2col_scratch(&s, 3);
            let (mut cols, mut padded) = (vec![f32::NAN; cols_len], vec![f32::NAN; padded_len]);
            group_im2col(&s, &x, &mut cols, &mut padded);
            assert_eq!(&cols[..expected.len()], &expected[..], "{s:?}");
        }
    }
}
