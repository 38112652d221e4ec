//! How many threads the compute kernels use: one rayon pool per process.
//!
//! burn-flex's kernels (matrix products, element-wise operations), this crate's convolution
//! kernels ([`crate::kernels`]) and the optimizers of `stagewise-core` all run on the rayon pool
//! of the calling thread: the process's global pool, unless a caller installs another one
//! (the in-process ASGD workers do, see [`KernelSplit`]). [`init_global_pool`] sizes the global
//! pool once, at start-up; by default it takes every core the process may use.
//!
//! ```
//! let threads = stagewise_train::threads::resolve(None).unwrap();
//! assert!(threads >= 1);
//! assert!(stagewise_train::threads::resolve(Some(0)).is_err());
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The largest thread count accepted.
pub const MAX_THREADS: usize = 1024;

/// Help text of the `--threads` option, shared by every command that trains.
pub const THREADS_HELP: &str = "Threads for the compute kernels (one rayon pool for the process) \
     [default: every core the process may use]";

/// Error of [`resolve`] and [`init_global_pool`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThreadsError {
    /// The requested count is outside `1..=MAX_THREADS`.
    #[error("threads {0} is out of range; allowed: 1 ..= {MAX_THREADS}")]
    OutOfRange(usize),
    /// The global pool was already built with another size.
    #[error("the thread pool was already started with {running} threads; {requested} requested")]
    AlreadyStarted {
        /// Threads of the running pool.
        running: usize,
        /// Threads asked for.
        requested: usize,
    },
}

/// Cores this process may use (1 when the system does not say).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The thread count for a request: `None` means [`available_cores`].
///
/// # Errors
///
/// [`ThreadsError::OutOfRange`] for 0 or more than [`MAX_THREADS`].
pub fn resolve(requested: Option<usize>) -> Result<usize, ThreadsError> {
    match requested {
        None => Ok(available_cores()),
        Some(n) if (1..=MAX_THREADS).contains(&n) => Ok(n),
        Some(n) => Err(ThreadsError::OutOfRange(n)),
    }
}

/// Builds the process's global rayon pool with [`resolve`]`(requested)` threads and returns
/// that count. Calling it again with the same count is harmless.
///
/// # Errors
///
/// [`ThreadsError::OutOfRange`] as in [`resolve`]; [`ThreadsError::AlreadyStarted`] when the
/// global pool already runs with another size (it is built on first use, by this function or by
/// the first parallel operation).
pub fn init_global_pool(requested: Option<usize>) -> Result<usize, ThreadsError> {
    let threads = resolve(requested)?;
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("stagewise-compute-{i}"))
        .build_global();
    match built {
        Ok(()) => Ok(threads),
        Err(_) if rayon::current_num_threads() == threads => Ok(threads),
        Err(_) => Err(ThreadsError::AlreadyStarted {
            running: rayon::current_num_threads(),
            requested: threads,
        }),
    }
}

/// Runs `f` on a thread of the current rayon pool (the global one, unless called inside
/// another pool's `install`) and waits for it.
///
/// A parallel call from a thread outside the pool is injected into the pool, and the calling
/// thread sleeps until a pool thread has finished it; a training step makes dozens of such
/// calls. Called from a pool thread, they are split within the pool instead (10–15% of an mlp
/// step at batch 128, see docs/benchmarks.md). Training loops run their steps through this.
///
/// ```
/// let index = stagewise_train::threads::on_pool(rayon::current_thread_index);
/// assert!(index.is_some());
/// ```
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}

/// How in-process ASGD workers share the cores between worker threads and kernel threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KernelSplit {
    /// Each of the M workers gets its own pool of `max(1, T / M)` threads (the default: it was
    /// the fastest or tied at every M in `stagewise bench asgd-split`, see docs/asgd.md).
    #[default]
    PerWorker,
    /// All workers submit their kernels to the one global pool of T threads.
    Shared,
    /// Each worker computes on its own thread only (kernels single-threaded).
    Single,
}

impl KernelSplit {
    /// Every split, in the order of their names in error messages.
    pub const ALL: [KernelSplit; 3] = [
        KernelSplit::PerWorker,
        KernelSplit::Shared,
        KernelSplit::Single,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            KernelSplit::PerWorker => "per-worker",
            KernelSplit::Shared => "shared",
            KernelSplit::Single => "single",
        }
    }

    /// The pool each of `workers` workers computes in, given `threads` in all; `None` means
    /// the global pool.
    ///
    /// ```
    /// use stagewise_train::threads::KernelSplit;
    ///
    /// let pools = KernelSplit::PerWorker.pools(4, 2).unwrap();
    /// assert_eq!(pools.len(), 2);
    /// assert_eq!(pools[0].as_ref().unwrap().current_num_threads(), 2);
    /// assert!(KernelSplit::Shared.pools(4, 2).unwrap().iter().all(Option::is_none));
    /// ```
    ///
    /// # Errors
    ///
    /// When the operating system refuses to start the threads.
    pub fn pools(
        self,
        threads: usize,
        workers: usize,
    ) -> Result<Vec<Option<Arc<rayon::ThreadPool>>>, rayon::ThreadPoolBuildError> {
        let per_worker = match self {
            KernelSplit::Shared => return Ok(vec![None; workers]),
            KernelSplit::PerWorker => (threads / workers.max(1)).max(1),
            KernelSplit::Single => 1,
        };
        (0..workers)
            .map(|w| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(per_worker)
                    .thread_name(move |i| format!("stagewise-worker{w}-compute-{i}"))
                    .build()
                    .map(|pool| Some(Arc::new(pool)))
            })
            .collect()
    }
}

impl fmt::Display for KernelSplit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error of [`KernelSplit::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown kernel split `{0}`: expected one of per-worker, shared, single")]
pub struct UnknownSplitError(pub String);

impl FromStr for KernelSplit {
    type Err = UnknownSplitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KernelSplit::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownSplitError(s.to_owned()))
    }
}
