//! What the benchmarks share: a median of timed runs, after a few warm-up runs.

use std::time::{Duration, Instant};

pub fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

/// The median time of `runs` calls of `f`, after three warm-up calls.
pub fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    for _ in 0..3 {
        std::hint::black_box(f());
    }
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed()
            })
            .collect(),
    )
}
