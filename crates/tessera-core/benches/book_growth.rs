//! The seat book under a burst of grants, each for a new device (the grants-only mode of the
//! throughput bench, without HTTP and storage): how long each grant takes as the book grows, and
//! above all the slowest ones, where an index that grows all at once would stall every request
//! waiting on the writer (docs/performance.md, "the book's indexes split").
//!
//! ```text
//! cargo bench -p tessera-core --bench book_growth                  # 1,000,000 grants
//! TESSERA_BENCH_GRANTS=200000 cargo bench -p tessera-core --bench book_growth
//! ```

// a bench times itself with the machine's clock, which the core's own code never reads
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use tessera_core::feature::{Count, Feature};
use tessera_core::seats::{Outcome, SeatBook, Want};
use time::{Duration, OffsetDateTime};

fn main() {
    let n: u64 = std::env::var("TESSERA_BENCH_GRANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let feature = Feature::new(
        "modeler",
        "2.0".parse().expect("a version"),
        Count::Counted(u32::try_from(n).unwrap_or(u32::MAX)),
    );
    let mut book = SeatBook::new(vec![feature]).with_id_key(&[7; 32]);
    let wants = [Want {
        name: "modeler".into(),
        version: "2.0".parse().expect("a version"),
        count: 1,
    }];
    let now = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
    let lease = Duration::minutes(5);
    let mut times: Vec<(u64, u64)> = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    let started = Instant::now();
    for i in 0..n {
        let device = format!("string=bench-{i}");
        let request = format!("r-{i}");
        let t = Instant::now();
        let out = book.request(&device, &request, &wants, now, lease, None);
        let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        assert!(
            matches!(out.first(), Some(Outcome::Granted(_))),
            "grant {i} refused"
        );
        times.push((ns, i));
    }
    let total = started.elapsed();
    let mut sorted: Vec<u64> = times.iter().map(|t| t.0).collect();
    sorted.sort_unstable();
    let at = |q: f64| sorted[((sorted.len() as f64 - 1.0) * q) as usize] as f64 / 1000.0;
    println!(
        "{n} grants into one book in {:.2} s: per grant mean {:.2} µs, p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs, max {:.1} µs",
        total.as_secs_f64(),
        total.as_secs_f64() * 1e6 / n as f64,
        at(0.5),
        at(0.99),
        at(0.999),
        at(1.0)
    );
    times.sort_unstable_by(|a, b| b.cmp(a));
    let slowest: Vec<String> = times
        .iter()
        .take(5)
        .map(|(ns, i)| format!("#{i} {:.1} µs", *ns as f64 / 1000.0))
        .collect();
    println!("slowest grants: {}", slowest.join(", "));
}
