//! The openraft type configuration, declared once; everything else uses these aliases.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::state::{Command, CommandResult};

openraft::declare_raft_types!(
    /// Cairn's Raft types: commands in, command results out, u64 node ids,
    /// members known by their client and peer addresses.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = crate::raft::types::Node,
);

/// A node's id.
pub type NodeId = u64;

/// A member as the membership config records it: both of its addresses, so
/// every node knows where to send Raft RPCs (`peer_addr`) and where to
/// forward a client's request (`addr`) from the same replicated record. The
/// two change together (a member is re-added to move), and a snapshot's
/// membership carries both.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The client API: `host:port` (plain HTTP) or `https://host:port`.
    pub addr: String,
    /// The peer listener serving `/raft/…`, in the same forms.
    pub peer_addr: String,
}

impl Node {
    /// A member reachable by clients at `addr` and by peers at `peer_addr`.
    pub fn new(addr: impl Into<String>, peer_addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            peer_addr: peer_addr.into(),
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (peer {})", self.addr, self.peer_addr)
    }
}

/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig, crate::raft::state_machine::StateMachine>;
