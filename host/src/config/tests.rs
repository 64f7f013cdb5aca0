//! Tests of the node configuration: defaults, validation, derived limits.

use super::*;
use crate::state::{ENTRY_OVERHEAD_BYTES, MAX_ENTRY_BYTES_CEILING};

#[test]
fn plain_http_is_refused_off_loopback_unless_insecure() {
    let cfg = Config {
        listen_addr: "0.0.0.0:7070".parse().unwrap(),
        ..Config::default()
    };
    assert!(matches!(
        cfg.validate(),
        Err(ConfigError::PlaintextNonLoopback { .. })
    ));
    // The peer port counts too.
    let cfg = Config {
        peer_listen_addr: "0.0.0.0:7071".parse().unwrap(),
        ..Config::default()
    };
    let err = cfg.validate().unwrap_err().to_string();
    assert!(
        err.contains("0.0.0.0:7071") && err.contains("--insecure"),
        "{err}"
    );
    Config {
        peer_listen_addr: "0.0.0.0:7071".parse().unwrap(),
        insecure: true,
        ..Config::default()
    }
    .validate()
    .unwrap();
    // Any 127/8 address is loopback; TLS lifts the rule.
    Config {
        listen_addr: "127.0.0.2:7070".parse().unwrap(),
        ..Config::default()
    }
    .validate()
    .unwrap();
    Config {
        listen_addr: "0.0.0.0:7070".parse().unwrap(),
        tls_cert_path: Some("c.pem".into()),
        tls_key_path: Some("k.pem".into()),
        ..Config::default()
    }
    .validate()
    .unwrap();
}

#[test]
fn read_lease_is_shorter_than_the_election_timeout_by_the_margin() {
    let cfg = Config::default();
    assert_eq!(cfg.read_lease(), Some(Duration::from_millis(900)));
    let off = Config {
        lease_reads: false,
        ..Config::default()
    };
    assert_eq!(off.read_lease(), None);
    // A margin that leaves no room for a heartbeat to renew the lease is refused…
    let cfg = Config {
        read_lease_margin_ms: 900,
        ..Config::default()
    };
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("read_lease_margin_ms"), "{err}");
    // …unless lease reads are off.
    Config {
        read_lease_margin_ms: 900,
        lease_reads: false,
        ..Config::default()
    }
    .validate()
    .unwrap();
}

#[test]
fn network_settings_are_checked() {
    let cfg = Config {
        tls_cert_path: Some("c.pem".into()),
        ..Config::default()
    };
    assert_eq!(cfg.validate(), Err(ConfigError::TlsPair));
    let cfg = Config {
        peer_listen_addr: Config::default().listen_addr,
        ..Config::default()
    };
    assert!(matches!(cfg.validate(), Err(ConfigError::SamePorts(_))));
    let cfg = Config {
        join_url: Some("127.0.0.1:7071".into()),
        ..Config::default()
    };
    assert_eq!(cfg.validate(), Err(ConfigError::JoinWithoutToken));
    let cfg = Config {
        join_token_ttl_secs: 10,
        max_join_token_ttl_secs: 5,
        ..Config::default()
    };
    assert!(matches!(cfg.validate(), Err(ConfigError::Order { .. })));
    assert_eq!(
        default_peer_listen("127.0.0.1:7070".parse().unwrap()),
        Some("127.0.0.1:7071".parse().unwrap())
    );
    assert_eq!(
        default_peer_listen("127.0.0.1:0".parse().unwrap()),
        Some("127.0.0.1:0".parse().unwrap())
    );
    assert_eq!(
        default_peer_listen("127.0.0.1:65535".parse().unwrap()),
        None
    );
    assert_eq!(advertised("h:1", true), "https://h:1");
    assert_eq!(advertised("http://h:1", true), "http://h:1");
    assert_eq!(advertised("h:1", false), "h:1");
}

#[test]
fn defaults_are_valid_and_map_to_openraft() {
    let cfg = Config::default();
    cfg.validate().unwrap();
    let raft = cfg.openraft_config().unwrap();
    assert_eq!(raft.heartbeat_interval, 150);
    assert_eq!(
        raft.install_snapshot_timeout,
        cfg.install_snapshot_timeout_ms
    );
    assert_eq!(raft.snapshot_max_chunk_size, cfg.snapshot_chunk_bytes);
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let cfg = Config {
        join_token: Some(Secret::new("cairn-join-1.abcdef")),
        ..Config::default()
    };
    let dump = format!("{cfg:?}");
    assert!(!dump.contains("abcdef"), "{dump}");
    assert_eq!(cfg.join_token.unwrap().expose(), "cairn-join-1.abcdef");
}

#[test]
fn rejects_bad_relations() {
    let cfg = Config {
        election_timeout_min_ms: 100,
        ..Config::default()
    };
    assert!(matches!(
        cfg.validate(),
        Err(ConfigError::ElectionTimeouts { .. })
    ));
    let cfg = Config {
        node_id: 0,
        ..Config::default()
    };
    assert_eq!(cfg.validate(), Err(ConfigError::ZeroNodeId));
    let cfg = Config {
        snapshot_chunk_bytes: 64 * 1024 * 1024,
        max_snapshot_bytes: 32 * 1024 * 1024,
        ..Config::default()
    };
    assert!(matches!(cfg.validate(), Err(ConfigError::Order { .. })));
    let cfg = Config {
        rpc_timeout_ms: 0,
        ..Config::default()
    };
    assert_eq!(
        cfg.validate(),
        Err(ConfigError::Zero {
            field: "rpc_timeout_ms"
        })
    );
}

#[test]
fn request_deadline_and_query_reserve_are_checked() {
    let cfg = Config {
        request_timeout_ms: 2000,
        ..Config::default()
    };
    assert!(matches!(
        cfg.validate(),
        Err(ConfigError::Order {
            small: "election_timeout_max_ms",
            ..
        })
    ));
    let mut cfg = Config::default();
    cfg.runtime.pooled_instances = 4;
    cfg.apply_reserved_instances = 4;
    assert!(matches!(
        cfg.validate(),
        Err(ConfigError::Order {
            small: "apply_reserved_instances",
            ..
        })
    ));
    cfg.apply_reserved_instances = 3;
    cfg.validate().unwrap();
    assert_eq!(cfg.query_instances(), 1);
    cfg.apply_reserved_instances = 0;
    assert_eq!(
        cfg.validate(),
        Err(ConfigError::Zero {
            field: "apply_reserved_instances"
        })
    );
}

/// The `small` name of an `Order` refusal (panics on any other outcome).
fn refused_order(cfg: Config) -> &'static str {
    match cfg.validate() {
        Err(ConfigError::Order { small, .. }) => small,
        other => panic!("expected an Order refusal, got {other:?}"),
    }
}

#[test]
fn peer_limits_are_derived_from_what_a_cluster_can_commit() {
    // Any single entry any cluster may commit fits a follower's append cap,
    // and so does a full batch of the default target.
    let settings = crate::state::ClusterSettings::default();
    assert!(settings.max_entry_bytes <= MAX_ENTRY_BYTES_CEILING);
    let cfg = Config::default();
    assert!(cfg.max_append_bytes + APPEND_FRAMING_ALLOWANCE_BYTES <= PEER_RPC_MAX_BODY_BYTES);
    assert!(
        cfg.snapshot_chunk_bytes + SNAPSHOT_CHUNK_HEADER_ALLOWANCE_BYTES
            <= SNAPSHOT_RPC_MAX_BODY_BYTES
    );
    // The snapshot chunk no longer has to fit the client body cap.
    Config {
        max_body_bytes: 1024 * 1024,
        ..Config::default()
    }
    .validate()
    .unwrap();
}

#[test]
fn an_append_target_over_the_peer_limit_is_refused() {
    let cfg = Config {
        max_append_bytes: PEER_RPC_MAX_BODY_BYTES,
        ..Config::default()
    };
    assert_eq!(refused_order(cfg), "max_append_bytes + framing allowance");
    // Right at the ceiling is still fine: framing has its own allowance.
    Config {
        max_append_bytes: MAX_ENTRY_BYTES_CEILING,
        ..Config::default()
    }
    .validate()
    .unwrap();
    let cfg = Config {
        max_append_bytes: 0,
        ..Config::default()
    };
    assert_eq!(
        cfg.validate(),
        Err(ConfigError::Zero {
            field: "max_append_bytes"
        })
    );
}

#[test]
fn a_snapshot_chunk_over_the_peer_limit_is_refused() {
    let cfg = Config {
        snapshot_chunk_bytes: MAX_SNAPSHOT_CHUNK_BYTES + 1,
        ..Config::default()
    };
    assert_eq!(
        refused_order(cfg),
        "snapshot_chunk_bytes + header allowance"
    );
    Config {
        snapshot_chunk_bytes: MAX_SNAPSHOT_CHUNK_BYTES,
        ..Config::default()
    }
    .validate()
    .unwrap();
}

#[test]
fn a_client_body_cap_above_the_entry_ceiling_is_refused() {
    let cfg = Config {
        max_body_bytes: MAX_ENTRY_BYTES_CEILING,
        ..Config::default()
    };
    assert_eq!(refused_order(cfg), "max_body_bytes + entry overhead");
    let err = Config {
        max_body_bytes: MAX_ENTRY_BYTES_CEILING,
        ..Config::default()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("max_body_bytes") && err.contains("entry ceiling"),
        "{err}"
    );
    Config {
        max_body_bytes: MAX_ENTRY_BYTES_CEILING - ENTRY_OVERHEAD_BYTES,
        ..Config::default()
    }
    .validate()
    .unwrap();
}
