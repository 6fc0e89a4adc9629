//! Who vouches for the register a hub serves: a hub signs checkpoints of its own heads with
//! its key; a relay — a peer serving downstream peers from its replica — never signs, it hands
//! on the checkpoints its hubs signed, exactly as it received them, so a downstream peer that
//! trusts the hubs' keys checks a relay as it checks a hub.

use super::Hub;
use crate::keys::SigningKey;
use crate::peer::trust::Vouched;
use crate::register::checkpoint_note::HeadCheckpoint;
use std::sync::Arc;
use std::time::Duration;

/// How long a signed checkpoint of an unchanged head is handed out again, by default
/// (`hub.checkpointRefresh`).
pub const CHECKPOINT_REUSE: Duration = Duration::from_secs(1);

/// What a relay's hub learns from the relay's own peer.
pub trait Upstream: Send + Sync {
    /// The newest hub checkpoint that covers the replica's head, if the relay holds one.
    fn head_note(&self) -> Option<Vouched>;

    /// The relay's path to a hub: its own node id, then the relays above it, nearest first
    /// (only its own id while it has no upstream session).
    fn path(&self) -> Vec<String>;

    /// The relay's own state with its hubs.
    fn state(&self) -> crate::peer::state::ConnectionState;
}

/// Who vouches for what a hub serves.
pub enum Voucher {
    /// A hub: it signs its own heads with this key.
    Signs(Arc<SigningKey>),
    /// A relay: the head's checkpoint comes from here, older ones from its store (kept there
    /// as its peer applied them, see `RegisterStore::keep_checkpoints`).
    Forwards(Arc<dyn Upstream>),
}

impl Hub {
    /// True when this hub is a relay: it hands on its hubs' checkpoints and signs none.
    pub fn forwards(&self) -> bool {
        matches!(self.voucher, Voucher::Forwards(_))
    }

    /// The verifier key of the checkpoints this hub hands out (`name+keyid+base64`): its own,
    /// or, on a relay, the key of the hub that signed the newest checkpoint it holds.
    pub fn checkpoint_key(&self) -> Option<String> {
        match &self.voucher {
            Voucher::Signs(key) => Some(key.verifier().to_string()),
            Voucher::Forwards(notes) => notes.head_note().map(|v| v.key),
        }
    }

    /// A relay's own state with its hubs; `None` for a hub.
    pub fn relay_state(&self) -> Option<crate::peer::state::ConnectionState> {
        match &self.voucher {
            Voucher::Signs(_) => None,
            Voucher::Forwards(upstream) => Some(upstream.state()),
        }
    }

    /// This node's path to a hub: empty for a hub, the relay's own for a relay.
    pub fn relay_path(&self) -> Vec<String> {
        match &self.voucher {
            Voucher::Signs(_) => Vec::new(),
            Voucher::Forwards(upstream) => upstream.path(),
        }
    }

    /// Refuses a peer that is on this relay's path to a hub (the relay itself, or a relay
    /// above it): serving it from here would close a loop.
    pub(super) fn refuse_loop(&self, peer_id: &str) -> Result<(), super::HubError> {
        let path = self.relay_path();
        if path.iter().any(|id| id == peer_id) {
            return Err(super::HubError::WrongState(format!(
                "relay loop: {peer_id} is on this relay's path to a hub ({}); it cannot be \
                 served from here",
                path.join(" → ")
            )));
        }
        Ok(())
    }

    /// The checkpoint a connect answer or heartbeat acknowledgement carries with the head
    /// `version` / `chain_hash`: a hub's of that head; a relay's newest, whatever it covers —
    /// the peer checks it against what it is sent, and a relay whose replica no longer matches
    /// the checkpoints it holds (an edited file) is caught with both in hand.
    pub(super) fn vouch_head(&self, version: i64, chain_hash: &str) -> Option<String> {
        match &self.voucher {
            Voucher::Signs(_) => self.vouch(version, chain_hash),
            Voucher::Forwards(upstream) => upstream.head_note().map(|v| v.note),
        }
    }

    /// The checkpoint of the head `version` / `chain_hash` (`None` when there is no head, or a
    /// relay holds none for it). A hub reuses a note of the same head signed within the last
    /// `hub.checkpointRefresh`, so every connect, heartbeat and sync stream carries one without a
    /// signature each; a relay hands on its newest when it covers exactly that head.
    pub(super) fn vouch(&self, version: i64, chain_hash: &str) -> Option<String> {
        let key = match &self.voucher {
            Voucher::Signs(key) => key,
            Voucher::Forwards(notes) => {
                return notes
                    .head_note()
                    .filter(|v| v.version == version && v.chain_hash == chain_hash)
                    .map(|v| v.note);
            }
        };
        let now = self.clock.now_ms();
        let reuse_ms =
            i64::try_from(self.config.checkpoint_refresh.as_millis()).unwrap_or(i64::MAX);
        if let Ok(cached) = self.signed_head.lock()
            && let Some((v, at, note)) = cached.as_ref()
            && *v == version
            && (now - *at) < reuse_ms
        {
            return Some(note.clone());
        }
        let head = crate::register::entry::Head {
            version,
            chain_hash: chain_hash.to_owned(),
        };
        let checkpoint = HeadCheckpoint::of_head(&head, now).filter(|_| version > 0)?;
        let note = checkpoint.sign(key);
        // Sync streams sign older versions (page ends) too; those must not evict the head's.
        if let Ok(mut cached) = self.signed_head.lock()
            && cached.as_ref().is_none_or(|(v, _, _)| *v <= version)
        {
            *cached = Some((version, now, note.clone()));
        }
        Some(note)
    }
}
