//! Backups: a consistent copy of the applied state in the snapshot format,
//! and a checked backup written as the snapshot that seeds a new cluster.

use std::io;
use std::path::Path;

use openraft::alias::{LogIdOf, StoredMembershipOf};

use super::snapshot_file::{encode, write_snapshot_file};
use super::{Applied, Meta, StateMachine, io_err};
use crate::raft::types::TypeConfig;
use crate::state::{State, snapshot};

/// A backup: the applied state in the snapshot file format, with the index
/// and hash it was taken at.
pub struct BackupImage {
    /// Snapshot-format bytes (versioned, checksummed).
    pub bytes: Vec<u8>,
    /// Last log index reflected in the state.
    pub applied_index: u64,
    /// Hex state hash of that state.
    pub state_hash: String,
}

impl StateMachine {
    /// Encodes a consistent copy of the applied state as a backup. The copy is
    /// O(1) under a short read lock; encoding is CPU work proportional to the
    /// state, so call this on a blocking thread.
    pub fn backup(&self) -> io::Result<BackupImage> {
        let applied = self.applied();
        let meta = Meta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership.clone(),
        };
        Ok(BackupImage {
            bytes: encode(&applied, &meta)?,
            applied_index: applied.state.applied_index(),
            state_hash: applied.state.hash_hex(),
        })
    }
}

/// A backup that decoded and passed its checksum, ready to seed a new cluster.
pub struct ValidBackup {
    state: State,
}

impl ValidBackup {
    /// Checks the whole backup (magic, version, checksum, body) without
    /// touching any disk. Blocking: hashes and decodes all of it.
    pub fn check(bytes: &[u8]) -> Result<Self, snapshot::SnapshotError> {
        let (state, _meta) = snapshot::decode(bytes)?;
        Ok(Self { state })
    }

    /// Last log index the backed-up state reflects.
    pub fn applied_index(&self) -> u64 {
        self.state.applied_index()
    }

    /// Hex state hash of the backed-up state.
    pub fn state_hash(&self) -> String {
        self.state.hash_hex()
    }

    /// Writes the backup as the snapshot of a new one-node cluster whose only
    /// voter is `node_id` at `addr`. Blocking.
    ///
    /// The snapshot is placed at the backup's applied index `N` under term 0
    /// (the term a fresh `initialize` writes at), with that one-node
    /// membership. The log store is empty, so openraft's startup purges the log
    /// up to `N`, treats the node as initialised, and the node elects itself
    /// (term 1) and continues the log at `N + 1`. The state itself, including
    /// its applied index, is written unchanged, so its hash stays the backup's;
    /// nodes that join receive this snapshot like any other.
    pub fn seed(
        self,
        snapshot_dir: &Path,
        node_id: u64,
        node: crate::raft::types::Node,
    ) -> io::Result<()> {
        use openraft::vote::RaftLeaderId;
        std::fs::create_dir_all(snapshot_dir)?;
        let leader = openraft::alias::LeaderIdOf::<TypeConfig>::new(Default::default(), node_id);
        let log_id = LogIdOf::<TypeConfig>::new(leader.to_committed(), self.state.applied_index());
        let membership = openraft::Membership::new(
            vec![std::collections::BTreeSet::from([node_id])],
            std::collections::BTreeMap::from([(node_id, node)]),
        )
        .map_err(io_err)?;
        let meta = Meta {
            last_log_id: Some(log_id),
            last_membership: StoredMembershipOf::<TypeConfig>::new(Some(log_id), membership),
        };
        let applied = Applied {
            state: self.state,
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        let bytes = encode(&applied, &meta)?;
        write_snapshot_file(snapshot_dir, &bytes)?;
        Ok(())
    }
}
