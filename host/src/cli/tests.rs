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
        "127.0.0.1:7072",
        "--join",
        "127.0.0.1:7071",
        "--join-token",
        "cairn-join-1.5.0011223344556677.00.127.0.0.1:7071",
    ])
    .unwrap();
    let Commands::Serve(args) = &cli.command else {
        panic!("not serve")
    };
    let cfg = args.to_config(&cli.data_dir, None).unwrap();
    assert_eq!(
        (cfg.node_id, cfg.advertise_addr.as_str()),
        (2, "127.0.0.1:7072")
    );
    // The peer port defaults to the next one, advertised on the same host.
    assert_eq!(cfg.peer_listen_addr, "127.0.0.1:7073".parse().unwrap());
    assert_eq!(cfg.peer_advertise_addr, "127.0.0.1:7073");
    assert_eq!(cfg.join_url.as_deref(), Some("127.0.0.1:7071"));
    assert!(cfg.join_token.is_some());
    // --join alone is refused: joining needs a token.
    assert!(Cli::try_parse_from(["cairn", "serve", "--join", "127.0.0.1:7071"]).is_err());

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
    assert!(
        Cli::try_parse_from([
            "cairn",
            "members",
            "add",
            "4",
            "127.0.0.1:7073",
            "127.0.0.1:7074"
        ])
        .is_ok()
    );
    assert!(Cli::try_parse_from(["cairn", "members", "add", "4", "127.0.0.1:7073"]).is_err());
    let cli = Cli::try_parse_from(["cairn", "join-token", "--ttl-secs", "60"]).unwrap();
    assert!(matches!(
        cli.command,
        Commands::JoinToken { ttl_secs: Some(60) }
    ));
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
    let cfg = args.to_config(&cli.data_dir, None).unwrap();
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
    assert!(args.to_config(&cli.data_dir, None).is_err());
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
        let cli = Cli::try_parse_from(argv).unwrap();
        let Commands::Serve(args) = &cli.command else {
            panic!("not serve")
        };
        args.to_config(&cli.data_dir, None)
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
fn tokens_commands_parse() {
    let cli = Cli::try_parse_from([
        "cairn", "tokens", "create", "--role", "writer", "--plugin", "kv", "--plugin", "bank",
        "--name", "ci",
    ])
    .unwrap();
    let Commands::Tokens {
        action:
            TokensCommand::Create {
                role,
                plugins,
                name,
            },
    } = cli.command
    else {
        panic!("not tokens create")
    };
    assert_eq!(role, crate::state::Role::Writer);
    assert_eq!(plugins, ["kv", "bank"]);
    assert_eq!(name.as_deref(), Some("ci"));
    assert!(Cli::try_parse_from(["cairn", "tokens", "create", "--role", "root"]).is_err());
    assert!(Cli::try_parse_from(["cairn", "tokens", "list"]).is_ok());
    assert!(Cli::try_parse_from(["cairn", "tokens", "revoke", "t7"]).is_ok());
}

#[test]
fn the_token_comes_from_the_flag_else_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let parse = |extra: &[&str]| {
        let mut argv = vec!["cairn", "status", "--data-dir", data_dir];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap()
    };
    // No flag, no file: no token.
    assert_eq!(client_token(&parse(&[])), None);
    std::fs::write(dir.path().join("admin.token"), "cairn_t3_abc\n").unwrap();
    assert_eq!(client_token(&parse(&[])).as_deref(), Some("cairn_t3_abc"));
    // The flag wins over the file.
    assert_eq!(
        client_token(&parse(&["--token", "cairn_t9_def"])).as_deref(),
        Some("cairn_t9_def")
    );
    // `serve` takes the data dir from the global flag.
    let cli = Cli::try_parse_from(["cairn", "serve", "--data-dir", data_dir]).unwrap();
    let Commands::Serve(args) = &cli.command else {
        panic!("not serve")
    };
    let cfg = args.to_config(&cli.data_dir, None).unwrap();
    assert_eq!(cfg.data_dir, dir.path());
}

#[test]
fn serve_flags_set_the_peer_listener_tls_and_insecure() {
    let parse = |args: &[&str]| {
        let cli = Cli::try_parse_from(args).unwrap();
        let Commands::Serve(serve) = cli.command else {
            panic!("not serve")
        };
        serve.to_config(&cli.data_dir, cli.cacert)
    };
    let cfg = parse(&[
        "cairn",
        "serve",
        "--listen",
        "127.0.0.1:9000",
        "--advertise",
        "n1.example:9000",
        "--peer-listen",
        "127.0.0.1:9500",
        "--tls-cert",
        "c.pem",
        "--tls-key",
        "k.pem",
        "--cacert",
        "ca.pem",
    ])
    .unwrap();
    // With TLS, advertised addresses are https.
    assert_eq!(cfg.advertise_addr, "https://n1.example:9000");
    assert_eq!(cfg.peer_advertise_addr, "https://n1.example:9500");
    assert_eq!(
        cfg.ca_cert_path.as_deref(),
        Some(std::path::Path::new("ca.pem"))
    );
    // Plain HTTP off loopback is refused, unless --insecure.
    let err = parse(&["cairn", "serve", "--listen", "0.0.0.0:9000"]).unwrap_err();
    assert!(format!("{err:#}").contains("--insecure"), "{err:#}");
    let cfg = parse(&[
        "cairn",
        "serve",
        "--listen",
        "0.0.0.0:9000",
        "--advertise",
        "10.0.0.5:9000",
        "--insecure",
    ])
    .unwrap();
    assert_eq!(cfg.peer_listen_addr, "0.0.0.0:9001".parse().unwrap());
    assert_eq!(cfg.peer_advertise_addr, "10.0.0.5:9001");
    // A key without a certificate is a usage error.
    assert!(Cli::try_parse_from(["cairn", "serve", "--tls-key", "k.pem"]).is_err());
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
