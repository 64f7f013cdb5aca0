//! Unit tests of `bench`.

use clap::Parser;

use super::*;
use crate::cli::{Cli, Commands};

#[test]
fn nearest_rank_percentiles() {
    assert_eq!(percentile(&[], 50.0), None);
    assert_eq!(percentile(&[7], 0.0), Some(7));
    assert_eq!(percentile(&[7], 99.0), Some(7));
    let v: Vec<u64> = (1..=100).collect();
    assert_eq!(percentile(&v, 50.0), Some(50));
    assert_eq!(percentile(&v, 99.0), Some(99));
    assert_eq!(percentile(&v, 100.0), Some(100));
    // Fewer than 100 samples: p99 is the maximum.
    assert_eq!(percentile(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 99.0), Some(10));
    assert_eq!(percentile(&[1, 2, 3, 4], 50.0), Some(2));
}

#[test]
fn summary_sorts_and_converts_to_ms() {
    let lat = vec![3_000, 1_000, 2_000, 10_000];
    let s = Summary::from_samples(
        Workload::Apply,
        4,
        lat,
        2,
        Some("HTTP 503 no-leader".into()),
        Duration::from_secs(2),
    );
    assert_eq!((s.ok, s.errors), (4, 2));
    assert_eq!(s.throughput_rps, 2.0);
    assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (2.0, 10.0, 10.0));
    assert!(
        s.line().contains("(first: HTTP 503 no-leader)"),
        "{}",
        s.line()
    );
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["workload"], "apply");
}

#[test]
fn summary_of_nothing_is_zero() {
    let s = Summary::from_samples(Workload::QueryStale, 1, vec![], 0, None, Duration::ZERO);
    assert_eq!((s.throughput_rps, s.p50_ms, s.max_ms), (0.0, 0.0, 0.0));
}

#[test]
fn all_expands_apply_first() {
    assert_eq!(
        Workload::All.expand(),
        [
            Workload::Apply,
            Workload::QueryLinearizable,
            Workload::QueryStale
        ]
    );
    assert_eq!(Workload::QueryStale.expand(), [Workload::QueryStale]);
}

#[test]
fn parses_bench_flags_and_several_urls() {
    let cli = Cli::try_parse_from([
        "cairn",
        "bench",
        "--url",
        "127.0.0.1:7071,127.0.0.1:7072",
        "--url",
        "127.0.0.1:7073",
        "--clients",
        "64",
        "--workload",
        "query-stale",
        "--requests",
        "100",
    ])
    .unwrap();
    assert_eq!(cli.url.len(), 3);
    let Commands::Bench(args) = cli.command else {
        panic!("not bench")
    };
    assert_eq!(
        (args.clients, args.workload, args.requests),
        (64, Workload::QueryStale, Some(100))
    );
    assert!(Cli::try_parse_from(["cairn", "bench", "--clients", "0"]).is_err());
    assert!(
        Cli::try_parse_from(["cairn", "bench", "--requests", "5", "--duration-secs", "3"]).is_err()
    );
}

#[test]
fn error_description_uses_status_and_code() {
    let body = br#"{"error":{"code":"no-leader","message":"x"}}"#;
    assert_eq!(
        describe(StatusCode::SERVICE_UNAVAILABLE, body),
        "HTTP 503 no-leader"
    );
    assert_eq!(describe(StatusCode::BAD_GATEWAY, b"oops"), "HTTP 502");
}
