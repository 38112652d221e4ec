//! Strided matrix views and the one call into the `gemm` crate that every kernel here uses,
//! plus per-thread scratch buffers.
//!
//! A view names a matrix inside a slice by its row and column strides, so a transpose, one
//! image's block of a wider column matrix or a column-major result is read or written in
//! place, with no copy.

/// A read-only matrix view: element `(i, j)` is `data[i·row_stride + j·col_stride]`.
#[derive(Clone, Copy)]
pub(super) struct Mat<'a> {
    data: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    /// A row-major matrix whose rows are `row_stride` apart (`cols` of a dense one, more for a
    /// block of a wider matrix).
    pub(super) fn rows(data: &'a [f32], row_stride: usize) -> Self {
        Self {
            data,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix whose rows are `row_stride` apart.
    pub(super) fn transposed(data: &'a [f32], row_stride: usize) -> Self {
        Self {
            data,
            row_stride: 1,
            col_stride: row_stride,
        }
    }

    fn span(&self, rows: usize, cols: usize) -> usize {
        span(self.row_stride, self.col_stride, rows, cols)
    }
}

/// A writable matrix view: element `(i, j)` is `data[i·row_stride + j·col_stride]`.
pub(super) struct MatMut<'a> {
    data: &'a mut [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatMut<'a> {
    /// A row-major matrix whose rows are `row_stride` apart.
    pub(super) fn rows(data: &'a mut [f32], row_stride: usize) -> Self {
        Self {
            data,
            row_stride,
            col_stride: 1,
        }
    }

    /// A column-major `rows × _` matrix (`data[j·rows + i]` is element `(i, j)`): the layout
    /// the GEMM micro-kernels write natively. For the convolution's weight gradient (few rows,
    /// a long inner dimension) it measured 1.4–2× faster than a row-major result.
    pub(super) fn col_major(data: &'a mut [f32], rows: usize) -> Self {
        Self {
            data,
            row_stride: 1,
            col_stride: rows,
        }
    }
}

/// Offset of element `(rows − 1, cols − 1)` plus one: the values a view reaches.
fn span(row_stride: usize, col_stride: usize, rows: usize, cols: usize) -> usize {
    rows.saturating_sub(1) * row_stride + cols.saturating_sub(1) * col_stride + 1
}

/// Multiply–adds below which [`matmul_parallel`] stays on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 18;

/// `dst (m × n) = [dst +] lhs (m × k) · rhs (k × n)` on the calling thread.
pub(super) fn matmul(dst: MatMut, accumulate: bool, lhs: Mat, rhs: Mat, mnk: [usize; 3]) {
    gemm_into(dst, accumulate, lhs, rhs, mnk, gemm::Parallelism::None);
}

/// [`matmul`] spread over the current rayon pool when it is large enough to gain from it.
pub(super) fn matmul_parallel(dst: MatMut, accumulate: bool, lhs: Mat, rhs: Mat, mnk: [usize; 3]) {
    let [m, n, k] = mnk;
    let parallelism = if m * n * k >= PARALLEL_MIN_MACS && rayon::current_num_threads() > 1 {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    gemm_into(dst, accumulate, lhs, rhs, mnk, parallelism);
}

/// The one call into the `gemm` crate.
fn gemm_into(
    dst: MatMut,
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
    [m, n, k]: [usize; 3],
    parallelism: gemm::Parallelism,
) {
    assert!(
        dst.data.len() >= span(dst.row_stride, dst.col_stride, m, n),
        "matmul: destination too short"
    );
    assert!(lhs.data.len() >= lhs.span(m, k), "matmul: lhs too short");
    assert!(rhs.data.len() >= rhs.span(k, n), "matmul: rhs too short");
    let stride = |s: usize| isize::try_from(s).expect("stride fits isize");
    // SAFETY: the asserts above keep every index the GEMM reads or writes inside the slices;
    // `dst` is borrowed mutably, so it does not alias `lhs` or `rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            stride(dst.col_stride),
            stride(dst.row_stride),
            accumulate,
            lhs.data.as_ptr(),
            stride(lhs.col_stride),
            stride(lhs.row_stride),
            rhs.data.as_ptr(),
            stride(rhs.col_stride),
            stride(rhs.row_stride),
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

thread_local! {
    /// Per-thread work buffers, kept between calls so that a training step neither allocates
    /// nor page-faults them again.
    static SCRATCH: std::cell::RefCell<[Vec<f32>; 2]> = const {
        std::cell::RefCell::new([Vec::new(), Vec::new()])
    };
}

/// Runs `f` with this thread's two scratch buffers of at least `a` and `b` values (contents
/// unspecified); fresh buffers if they are in use (a nested call).
pub(super) fn with_scratch<R>(
    a: usize,
    b: usize,
    f: impl FnOnce(&mut [f32], &mut [f32]) -> R,
) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => {
            let [x, y] = &mut *bufs;
            for (buf, len) in [(&mut *x, a), (&mut *y, b)] {
                if buf.len() < len {
                    buf.resize(len, 0.0);
                }
            }
            f(&mut x[..a], &mut y[..b])
        }
        Err(_) => f(&mut vec![0.0; a], &mut vec![0.0; b]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_read_and_write_blocks_in_place() {
        // lhs 2×3, rhs is the transpose of a 2×3 row-major matrix, dst is column 1..3 of a 2×4
        // row-major buffer.
        let lhs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let rhs_t = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        let mut dst = [9.0; 8];
        matmul(
            MatMut::rows(&mut dst[1..], 4),
            false,
            Mat::rows(&lhs, 3),
            Mat::transposed(&rhs_t, 3),
            [2, 2, 3],
        );
        assert_eq!(dst, [9.0, 4.0, 2.0, 9.0, 9.0, 10.0, 5.0, 9.0]);
        let mut col = [1.0; 4];
        matmul(
            MatMut::col_major(&mut col, 2),
            true,
            Mat::rows(&lhs, 3),
            Mat::transposed(&rhs_t, 3),
            [2, 2, 3],
        );
        assert_eq!(col, [5.0, 11.0, 3.0, 6.0]);
    }
}
