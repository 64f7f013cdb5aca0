//! The openraft type configuration, declared once; everything else uses these aliases.

use crate::state::{Command, CommandResult};

openraft::declare_raft_types!(
    /// Cairn's Raft types: commands in, command results out, u64 node ids,
    /// nodes addressed by one HTTP address.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = openraft::BasicNode,
);

/// A node's id.
pub type NodeId = u64;
/// A node's address record.
pub type Node = openraft::BasicNode;
/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig, crate::raft::state_machine::StateMachine>;
