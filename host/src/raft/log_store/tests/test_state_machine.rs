//! TEST STATE MACHINE — a minimal in-memory `RaftStateMachine`, only so openraft's
//! storage conformance suite has something to drive next to the log store.
//!
//! It records the last applied id and membership, answers every command with
//! `CommandResult::Nothing`, and keeps one snapshot in memory. It runs no plugins and is
//! not Cairn's state machine; the conformance test swaps it out in one line.

use std::io::{self, Cursor};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StoredMembership};

use crate::raft::types::TypeConfig;
use crate::state::CommandResult;

type Snapshot = SnapshotOf<TypeConfig, Cursor<Vec<u8>>>;

/// In-memory test state machine; clones share state (the clone is the snapshot builder).
#[derive(Clone, Default)]
pub(crate) struct TestStateMachine {
    inner: Arc<Mutex<SmState>>,
}

#[derive(Default)]
struct SmState {
    last_applied: Option<LogIdOf<TypeConfig>>,
    membership: StoredMembershipOf<TypeConfig>,
    snapshot: Option<(SnapshotMetaOf<TypeConfig>, Vec<u8>)>,
}

impl TestStateMachine {
    fn state(&self) -> io::Result<std::sync::MutexGuard<'_, SmState>> {
        self.inner
            .lock()
            .map_err(|_| io::Error::other("test state machine poisoned"))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for TestStateMachine {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let mut st = self.state()?;
        let meta = SnapshotMetaOf::<TypeConfig> {
            last_log_id: st.last_applied,
            last_membership: st.membership.clone(),
        };
        let data =
            serde_json::to_vec(&(&st.last_applied, &st.membership)).map_err(io::Error::other)?;
        st.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Cursor::new(data),
        })
    }
}

impl RaftStateMachine<TypeConfig> for TestStateMachine {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = TestStateMachine;

    async fn applied_state(
        &mut self,
    ) -> io::Result<(Option<LogIdOf<TypeConfig>>, StoredMembershipOf<TypeConfig>)> {
        let st = self.state()?;
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: futures_util::Stream<Item = io::Result<EntryResponder<TypeConfig>>>
            + Unpin
            + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            {
                let mut st = self.state()?;
                st.last_applied = Some(entry.log_id);
                if let EntryPayload::Membership(m) = &entry.payload {
                    st.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                }
            }
            if let Some(responder) = responder {
                responder.send(CommandResult::Nothing);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: Cursor<Vec<u8>>,
    ) -> io::Result<()> {
        let mut st = self.state()?;
        st.last_applied = meta.last_log_id;
        st.membership = meta.last_membership.clone();
        st.snapshot = Some((meta.clone(), snapshot.into_inner()));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        let st = self.state()?;
        Ok(st.snapshot.clone().map(|(meta, data)| Snapshot {
            meta,
            snapshot: Cursor::new(data),
        }))
    }
}
