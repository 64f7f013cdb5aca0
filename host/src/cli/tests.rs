//! Unit tests of `cli`.

use clap::{CommandFactory, Parser};

use super::*;

#[test]
fn cli_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn deploy_limits_become_query_parameters() {
    assert_eq!(deploy_path("kv", None, None), "/v1/plugins/kv");
    assert_eq!(
        deploy_path("kv", Some(5), None),
        "/v1/plugins/kv?fuel_per_call=5"
    );
    assert_eq!(
        deploy_path("kv", Some(5), Some(65536)),
        "/v1/plugins/kv?fuel_per_call=5&memory_limit_bytes=65536"
    );
}

#[test]
fn parses_issue_examples() {
    let cli = Cli::try_parse_from([
        "cairn",
        "serve",
        "--id",
        "2",
        "--listen",
        "127.0.0.1:7071",
        "--join",
        "http://127.0.0.1:7070",
    ])
    .unwrap();
    let Commands::Serve(args) = cli.command else {
        panic!("not serve")
    };
    let cfg = args.to_config().unwrap();
    assert_eq!(
        (cfg.node_id, cfg.advertise_addr.as_str()),
        (2, "127.0.0.1:7071")
    );
    assert_eq!(cfg.join_url.as_deref(), Some("http://127.0.0.1:7070"));

    let cli = Cli::try_parse_from([
        "cairn",
        "query",
        "counter",
        "{}",
        "--stale",
        "--min-index",
        "9",
        "--json",
    ])
    .unwrap();
    assert!(cli.json);
    assert!(matches!(
        cli.command,
        Commands::Query {
            stale: true,
            min_index: Some(9),
            ..
        }
    ));
    assert!(Cli::try_parse_from(["cairn", "members", "add", "4", "127.0.0.1:7073"]).is_ok());
    assert!(Cli::try_parse_from(["cairn", "members", "remove", "x"]).is_err());
}

#[test]
fn serve_flags_set_deadlines_and_caps() {
    let cli = Cli::try_parse_from([
        "cairn",
        "serve",
        "--request-timeout-ms",
        "7000",
        "--deploy-timeout-ms",
        "60000",
        "--body-read-timeout-ms",
        "9000",
        "--max-connections",
        "10",
        "--apply-reserved-instances",
        "3",
    ])
    .unwrap();
    let Commands::Serve(args) = cli.command else {
        panic!("not serve")
    };
    let cfg = args.to_config().unwrap();
    assert_eq!(
        (
            cfg.request_timeout_ms,
            cfg.deploy_timeout_ms,
            cfg.body_read_timeout_ms,
            cfg.max_connections,
            cfg.apply_reserved_instances
        ),
        (7000, 60000, 9000, 10, 3)
    );
    // A deadline shorter than an election is refused.
    let cli = Cli::try_parse_from(["cairn", "serve", "--request-timeout-ms", "1500"]).unwrap();
    let Commands::Serve(args) = cli.command else {
        panic!("not serve")
    };
    assert!(args.to_config().is_err());
}

#[test]
fn parses_plugin_limit_changes_and_deploy_keys() {
    let cli = Cli::try_parse_from([
        "cairn",
        "plugins",
        "set-limits",
        "kv",
        "--fuel-per-call",
        "5000",
    ])
    .unwrap();
    assert!(matches!(
        cli.command,
        Commands::Plugins {
            action: Some(PluginsCommand::SetLimits {
                fuel_per_call: Some(5000),
                memory_limit_bytes: None,
                ..
            })
        }
    ));
    // No limit at all is refused before anything is sent.
    assert!(Cli::try_parse_from(["cairn", "plugins", "set-limits", "kv"]).is_err());
    assert!(matches!(
        Cli::try_parse_from(["cairn", "plugins"]).unwrap().command,
        Commands::Plugins { action: None }
    ));
    let cli = Cli::try_parse_from(["cairn", "deploy", "kv", "--idempotency-key", "d1"]).unwrap();
    assert!(matches!(
        cli.command,
        Commands::Deploy { idempotency_key: Some(k), .. } if k == "d1"
    ));
}

#[test]
fn error_lines_use_the_node_code() {
    let body = br#"{"error":{"code":"plugin-not-found","message":"plugin \"x\" is not deployed"}}"#;
    assert_eq!(
        describe_failure(StatusCode::NOT_FOUND, body),
        r#"plugin-not-found: plugin "x" is not deployed"#
    );
    assert_eq!(
        describe_failure(StatusCode::BAD_GATEWAY, b"oops"),
        "HTTP 502 Bad Gateway: oops"
    );
}

#[test]
fn disk_alarm_flags_reach_the_config() {
    let serve = |extra: &[&str]| {
        let mut argv = vec!["cairn", "serve"];
        argv.extend_from_slice(extra);
        let Commands::Serve(args) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not serve")
        };
        args.to_config()
    };
    let cfg = serve(&[]).unwrap();
    assert_eq!(
        cfg.min_free_disk_bytes,
        crate::config::Config::default().min_free_disk_bytes
    );
    let cfg = serve(&[
        "--min-free-disk-bytes",
        "0",
        "--disk-check-interval-ms",
        "250",
    ])
    .unwrap();
    assert_eq!(
        (cfg.min_free_disk_bytes, cfg.disk_check_interval_ms),
        (0, 250)
    );
    assert!(serve(&["--disk-check-interval-ms", "0"]).is_err());
}

#[test]
fn new_and_dry_run_flags_parse() {
    let cli = Cli::try_parse_from(["cairn", "new", "hello", "--lang", "rust", "--dir", "/tmp/x"])
        .unwrap();
    assert!(matches!(
        cli.command,
        Commands::New { ref name, ref lang, dir: Some(_) } if name == "hello" && lang == "rust"
    ));
    let cli = Cli::try_parse_from([
        "cairn",
        "deploy",
        "c",
        "c.wasm",
        "--dry-run",
        "--sample-query",
        r#"{"get":{}}"#,
    ])
    .unwrap();
    assert!(matches!(
        cli.command,
        Commands::Deploy { dry_run: true, ref sample_queries, .. } if sample_queries.len() == 1
    ));
    // Sample queries only mean something in a dry run.
    assert!(
        Cli::try_parse_from(["cairn", "deploy", "c", "c.wasm", "--sample-query", "{}"]).is_err()
    );
}
