//! Splitting element-wise kernels across the rayon pool for large buffers.

use rayon::prelude::*;

/// Buffers shorter than this run on the calling thread (splitting costs more than it saves).
pub(crate) const PARALLEL_MIN_LEN: usize = 1 << 16;

/// Elements per parallel task: large enough to amortize scheduling, small enough to balance.
pub(crate) const CHUNK: usize = 1 << 15;

/// Runs `kernel` on matching chunks of `params`, `grads` and one state buffer.
#[inline]
pub(crate) fn zip1<T: Send + Sync, K>(params: &mut [T], grads: &[T], a: &mut [T], kernel: K)
where
    K: Fn(&mut [T], &[T], &mut [T]) + Sync + Send,
{
    if params.len() < PARALLEL_MIN_LEN {
        kernel(params, grads, a);
        return;
    }
    params
        .par_chunks_mut(CHUNK)
        .zip(grads.par_chunks(CHUNK))
        .zip(a.par_chunks_mut(CHUNK))
        .for_each(|((p, g), a)| kernel(p, g, a));
}

/// Runs `kernel` on matching chunks of `params`, `grads` and two state buffers.
#[inline]
pub(crate) fn zip2<T: Send + Sync, K>(
    params: &mut [T],
    grads: &[T],
    a: &mut [T],
    b: &mut [T],
    kernel: K,
) where
    K: Fn(&mut [T], &[T], &mut [T], &mut [T]) + Sync + Send,
{
    if params.len() < PARALLEL_MIN_LEN {
        kernel(params, grads, a, b);
        return;
    }
    params
        .par_chunks_mut(CHUNK)
        .zip(grads.par_chunks(CHUNK))
        .zip(a.par_chunks_mut(CHUNK))
        .zip(b.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), a), b)| kernel(p, g, a, b));
}

/// Runs `kernel` on matching chunks of `params` and `grads` (stateless updates).
#[inline]
pub(crate) fn zip0<T: Send + Sync, K>(params: &mut [T], grads: &[T], kernel: K)
where
    K: Fn(&mut [T], &[T]) + Sync + Send,
{
    if params.len() < PARALLEL_MIN_LEN {
        kernel(params, grads);
        return;
    }
    params
        .par_chunks_mut(CHUNK)
        .zip(grads.par_chunks(CHUNK))
        .for_each(|(p, g)| kernel(p, g));
}

/// Runs `kernel` on matching chunks of `params`, `grads` and three state buffers.
#[inline]
pub(crate) fn zip3<T: Send + Sync, K>(
    params: &mut [T],
    grads: &[T],
    a: &mut [T],
    b: &mut [T],
    c: &mut [T],
    kernel: K,
) where
    K: Fn(&mut [T], &[T], &mut [T], &mut [T], &mut [T]) + Sync + Send,
{
    if params.len() < PARALLEL_MIN_LEN {
        kernel(params, grads, a, b, c);
        return;
    }
    params
        .par_chunks_mut(CHUNK)
        .zip(grads.par_chunks(CHUNK))
        .zip(a.par_chunks_mut(CHUNK))
        .zip(b.par_chunks_mut(CHUNK))
        .zip(c.par_chunks_mut(CHUNK))
        .for_each(|((((p, g), a), b), c)| kernel(p, g, a, b, c));
}
