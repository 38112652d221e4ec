//! Splitting the flat parameter vector over several servers by index range (ps-lite style).
//!
//! Shard `i` of `n` over `P` parameters holds a contiguous range; the first `P mod n` shards
//! hold one parameter more than the others. Each shard has its own version counter and
//! optimizer state: a worker pulls every shard, computes one gradient on the assembled
//! parameters and pushes each shard its slice with the version it pulled from that shard.

use serde::{Deserialize, Serialize};

/// A contiguous range of parameter indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRange {
    /// First index.
    pub start: usize,
    /// Number of parameters.
    pub len: usize,
}

impl ShardRange {
    /// The range of shard `index` of `count` over `total` parameters (`count ≥ 1`,
    /// `index < count`).
    pub fn of(total: usize, index: usize, count: usize) -> Self {
        let count = count.max(1);
        let (base, extra) = (total / count, total % count);
        let start = index * base + index.min(extra);
        let len = base + usize::from(index < extra);
        Self { start, len }
    }

    /// The whole vector as one shard.
    pub fn whole(total: usize) -> Self {
        Self {
            start: 0,
            len: total,
        }
    }

    /// One past the last index.
    pub fn end(&self) -> usize {
        self.start + self.len
    }

    /// `start..end`.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.end()
    }
}

/// Checks that `ranges` (any order) tile `0..total` exactly; returns them sorted by start.
pub fn check_cover(total: usize, ranges: &[ShardRange]) -> Result<Vec<ShardRange>, String> {
    let mut sorted = ranges.to_vec();
    sorted.sort_by_key(|r| r.start);
    let mut next = 0usize;
    for r in &sorted {
        if r.start != next {
            return Err(format!(
                "shards do not tile the parameters: expected a shard starting at {next}, found {}",
                r.start
            ));
        }
        next = r.end();
    }
    if next != total {
        return Err(format!("shards cover {next} of {total} parameters"));
    }
    Ok(sorted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_tile_the_vector() {
        for (total, n) in [(10, 3), (7, 7), (1_000_003, 4), (5, 1)] {
            let ranges: Vec<_> = (0..n).map(|i| ShardRange::of(total, i, n)).collect();
            assert_eq!(check_cover(total, &ranges).unwrap().len(), n);
            let max = ranges.iter().map(|r| r.len).max().unwrap();
            let min = ranges.iter().map(|r| r.len).min().unwrap();
            assert!(max - min <= 1);
        }
        let bad = [ShardRange::of(10, 0, 3), ShardRange::of(10, 2, 3)];
        assert!(check_cover(10, &bad).is_err());
    }
}
