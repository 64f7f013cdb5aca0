//! How the CLI prints what a node answered: errors on one line, and the
//! human forms of status, deploys, tokens and plugin lists.

use http::StatusCode;

use crate::api::auth::TokenList;
use crate::api::error::ErrorEnvelope;
use crate::api::service::{ClusterStatus, DeployResponse, PluginList};

/// One line from an error response: the node's `code: message` when it sent one.
pub(super) fn describe_failure(status: StatusCode, body: &[u8]) -> String {
    match ErrorEnvelope::parse(body) {
        Some(e) => format!("{}: {}", e.code, e.message),
        None => {
            let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
            format!("HTTP {status}: {}", text.trim())
        }
    }
}

pub(super) fn format_status(s: &ClusterStatus) -> String {
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |n| n.to_string());
    let mut out = format!(
        "node {} ({}), term {}, leader {}\napplied {}, committed {}\nmembers:",
        s.id,
        s.state,
        s.term,
        opt(s.leader_id),
        opt(s.last_applied),
        opt(s.committed)
    );
    for m in &s.members {
        let role = serde_json::to_value(m.role)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        out.push_str(&format!(
            "\n  {:<4} {:<8} {} (peer {})",
            m.id, role, m.addr, m.peer_addr
        ));
    }
    out
}

pub(super) fn format_deployed(d: &DeployResponse) -> String {
    let what = if d.changed { "deployed" } else { "unchanged:" };
    format!(
        "{what} {} v{} (sha256 {}) at log index {}",
        d.name, d.version, d.sha256, d.log_index
    )
}

pub(super) fn format_tokens(list: &TokenList) -> String {
    let mut out = format!(
        "{:<10} {:<9} {:<24} {:>11}  NAME",
        "ID", "ROLE", "PLUGINS", "CREATED AT"
    );
    for t in &list.tokens {
        let plugins = t.plugins.as_ref().map_or("*".to_string(), |p| p.join(","));
        out.push_str(&format!(
            "\n{:<10} {:<9} {:<24} {:>11}  {}",
            t.id,
            t.role,
            plugins,
            t.created_index,
            t.name.as_deref().unwrap_or("")
        ));
    }
    out
}

pub(super) fn format_plugins(list: &PluginList) -> String {
    if list.plugins.is_empty() {
        return "no plugins deployed".to_string();
    }
    let mut out = format!(
        "{:<20} {:>7} {:<14} {:>10} {:>12}",
        "NAME", "VERSION", "SHA256", "BYTES", "DEPLOYED AT"
    );
    for p in &list.plugins {
        let sha: String = p.sha256.chars().take(12).collect();
        out.push_str(&format!(
            "\n{:<20} {:>7} {:<14} {:>10} {:>12}",
            p.name, p.version, sha, p.size_bytes, p.deployed_at_index
        ));
    }
    out
}
