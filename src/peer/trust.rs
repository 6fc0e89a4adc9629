//! Which hub keys a peer trusts, and what they vouched for.
//!
//! With `peer.trustedHubKeys` configured, every checkpoint a hub sends must verify under one
//! of them, and a sync applies only up to entries covered by such a checkpoint (a hub that
//! sends none is not followed). With none configured the peer trusts on first use: the first
//! checkpoint key a hub URL offers is pinned (in `known-hub-keys` in the data directory) and
//! that URL is refused from then on when it offers another; a hub that offers no key is
//! followed as before checkpoints existed.
//!
//! Equivocation — two valid checkpoints for one version with different hashes, or a key
//! vouching for a smaller head after a larger one — is kept as evidence (both notes) and the
//! hub is not followed. The last checkpoint that covered what the replica applied is kept (in
//! `last-checkpoint.note`), so an isolated peer shows who vouched for its replica and when.

use crate::keys::VerifierKey;
use crate::register::checkpoint_note::{self, CheckpointError};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// File in the data directory holding the keys pinned on first use (`<hub url> <key>` lines).
pub const KNOWN_HUB_KEYS_FILE: &str = "known-hub-keys";
/// File in the data directory holding the last checkpoint that covered the replica's head.
pub const LAST_CHECKPOINT_FILE: &str = "last-checkpoint.note";
/// Checkpoints remembered to compare new ones with (by version).
const REMEMBERED: usize = 64;
/// Equivocation evidence kept (oldest dropped first).
const EVIDENCE_KEPT: usize = 16;

/// A checkpoint that verified under a trusted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vouched {
    /// The head version it covers.
    pub version: i64,
    /// The head's chain hash, `sha256:<hex>`.
    pub chain_hash: String,
    /// The signer's verifier key (`name+keyid+base64`).
    pub key: String,
    /// The hub's time when it signed, Unix ms.
    pub timestamp_ms: i64,
    /// The signed note itself.
    pub note: String,
}

/// What kind of equivocation was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EquivocationKind {
    /// Two checkpoints for one version with different hashes.
    Fork,
    /// A key vouched for a smaller head after a larger one.
    Rollback,
}

/// Evidence of equivocation: both notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Equivocation {
    /// Fork or rollback.
    pub kind: EquivocationKind,
    /// The hub URL that sent the second note.
    pub hub: String,
    /// The note held before.
    pub first: String,
    /// The note that contradicts it.
    pub second: String,
}

/// What makes two pieces of evidence the same: what they prove (kind, hub, key, the two
/// versions and hashes), not the notes' bytes, whose timestamps differ at every signing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EvidenceId {
    kind: EquivocationKind,
    hub: String,
    key: String,
    first: (i64, String),
    second: (i64, String),
}

/// Why a hub's checkpoint (or its lack) is not followed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TrustError {
    /// Keys are required and the hub sent no checkpoint where one was due.
    #[error("the hub sent no checkpoint {0} (peer.trustedHubKeys needs one)")]
    NoCheckpoint(String),
    /// The checkpoint is not signed by a trusted (or pinned) key, or is not a checkpoint.
    #[error("checkpoint not trusted: {0}")]
    Untrusted(CheckpointError),
    /// The hub offers another key than the one pinned for its URL on first use.
    #[error(
        "the hub's checkpoint key {offered} is not the key {pinned} pinned for it on first use"
    )]
    KeyChanged {
        /// The pinned key.
        pinned: String,
        /// The key offered now.
        offered: String,
    },
    /// The checkpoint does not cover the entry it came with.
    #[error(
        "the checkpoint covers version {claimed} {claimed_hash}, not the entry it came with (version {version} {hash})"
    )]
    Mismatch {
        /// What the note says.
        claimed: i64,
        /// Its hash.
        claimed_hash: String,
        /// The entry's version.
        version: i64,
        /// The entry's hash.
        hash: String,
    },
    /// The checkpoint contradicts one seen before.
    #[error("equivocation ({:?}): two checkpoints contradict each other", .evidence.kind)]
    Equivocation {
        /// Both notes.
        evidence: Box<Equivocation>,
        /// True the first time this evidence is seen (a hub retried repeats it).
        new: bool,
    },
}

/// How the peer decides which hub keys to trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustMode {
    /// `peer.trustedHubKeys`.
    Configured,
    /// Trust on first use: a key is pinned per hub URL.
    FirstUse,
}

/// The peer's trust, as `GET /api/v1/connection` shows it.
#[derive(Debug, Clone)]
pub struct TrustView {
    /// Configured keys or trust on first use.
    pub mode: TrustMode,
    /// The configured keys (`Configured`).
    pub trusted_keys: Vec<String>,
    /// Keys pinned on first use, by hub URL (`FirstUse`).
    pub pinned_keys: BTreeMap<String, String>,
    /// The last checkpoint that covered what the replica applied.
    pub last_checkpoint: Option<Vouched>,
    /// Equivocation evidence, oldest first (at most 16).
    pub equivocations: Vec<Equivocation>,
}

#[derive(Default)]
struct State {
    pins: BTreeMap<String, VerifierKey>,
    /// Recently vouched checkpoints by version, to find forks.
    seen: BTreeMap<i64, Vouched>,
    /// Per key, the largest head it vouched for (rollback check).
    heads: BTreeMap<String, Vouched>,
    last_applied: Option<Vouched>,
    /// Evidence with what identifies it (see [`EvidenceId`]).
    evidence: VecDeque<(EvidenceId, Equivocation)>,
}

/// A peer's hub-key trust.
pub struct HubTrust {
    configured: Vec<VerifierKey>,
    pins_file: PathBuf,
    last_file: PathBuf,
    state: Mutex<State>,
}

impl std::fmt::Debug for HubTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubTrust")
            .field("configured", &self.configured)
            .finish_non_exhaustive()
    }
}

impl HubTrust {
    /// The trust of a peer with `configured` keys (empty: trust on first use) and its data
    /// directory, where pins and the last checkpoint are kept. A stored pin or note that no
    /// longer parses or verifies is dropped with a warning.
    pub fn open(configured: Vec<VerifierKey>, data_dir: &Path) -> Self {
        let pins_file = data_dir.join(KNOWN_HUB_KEYS_FILE);
        let last_file = data_dir.join(LAST_CHECKPOINT_FILE);
        let mut state = State::default();
        if configured.is_empty() {
            state.pins = read_pins(&pins_file);
        }
        let trust = HubTrust {
            configured,
            pins_file,
            last_file,
            state: Mutex::new(State::default()),
        };
        if let Ok(note) = std::fs::read_to_string(&trust.last_file) {
            let keys: Vec<VerifierKey> = if trust.configured.is_empty() {
                state.pins.values().cloned().collect()
            } else {
                trust.configured.clone()
            };
            match checkpoint_note::open(&note, &keys) {
                Ok(v) => state.last_applied = Some(vouched(v)),
                Err(e) => {
                    tracing::warn!(error = %e, file = %trust.last_file.display(), "the stored last checkpoint no longer verifies; dropped")
                }
            }
        }
        *trust.lock() = state;
        trust
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when checkpoints from the hub at `url` are checked (keys configured, or a key
    /// pinned for it).
    pub fn checks(&self, url: &str) -> bool {
        !self.configured.is_empty() || self.lock().pins.contains_key(url)
    }

    fn keys_for(&self, url: &str) -> Vec<VerifierKey> {
        if self.configured.is_empty() {
            self.lock().pins.get(url).cloned().into_iter().collect()
        } else {
            self.configured.clone()
        }
    }

    /// A new session with the hub at `url`, which offers `key` and `note` (its head's
    /// checkpoint), if any, at head `version`. Pins the key on first use.
    pub fn admit(
        &self,
        url: &str,
        key: Option<&str>,
        note: Option<&str>,
        version: i64,
    ) -> Result<Option<Vouched>, TrustError> {
        if let Some(key) = key
            && self.configured.is_empty()
        {
            self.pin(url, key)?;
        }
        if !self.checks(url) {
            return Ok(None);
        }
        match note {
            Some(note) => self.vouch_head(url, note).map(Some),
            None if version == 0 => Ok(None),
            None => Err(TrustError::NoCheckpoint("with its connect answer".into())),
        }
    }

    fn pin(&self, url: &str, offered: &str) -> Result<(), TrustError> {
        let key = VerifierKey::parse(offered).map_err(|e| {
            TrustError::Untrusted(CheckpointError::Malformed(format!(
                "the hub's checkpoint key: {e}"
            )))
        })?;
        let mut state = self.lock();
        match state.pins.get(url) {
            Some(pinned) if *pinned == key => Ok(()),
            Some(pinned) => Err(TrustError::KeyChanged {
                pinned: pinned.to_string(),
                offered: key.to_string(),
            }),
            None => {
                tracing::warn!(hub = %url, key = %key, "pinned the hub's checkpoint key on first use (set peer.trustedHubKeys to choose keys instead)");
                state.pins.insert(url.to_owned(), key);
                if let Err(e) = write_pins(&self.pins_file, &state.pins) {
                    tracing::error!(error = %e, file = %self.pins_file.display(), "could not store the pinned hub key; it holds until restart");
                }
                Ok(())
            }
        }
    }

    /// A checkpoint of the hub's head (connect, heartbeat): verified, checked against what
    /// was seen, remembered.
    pub fn vouch_head(&self, url: &str, note: &str) -> Result<Vouched, TrustError> {
        let v = self.verify(url, note)?;
        let mut state = self.lock();
        if let Some(before) = state.heads.get(&v.key)
            && v.version < before.version
            && v.timestamp_ms > before.timestamp_ms
        {
            let first = before.clone();
            return Err(self.evidence(&mut state, EquivocationKind::Rollback, url, &first, &v));
        }
        self.remember(&mut state, url, &v)?;
        if state
            .heads
            .get(&v.key)
            .is_none_or(|b| b.version <= v.version)
        {
            state.heads.insert(v.key.clone(), v.clone());
        }
        Ok(v)
    }

    /// A checkpoint that came with the sync stream's entry at `version` / `chain_hash`: it
    /// must cover exactly that entry.
    pub fn vouch_entry(
        &self,
        url: &str,
        note: &str,
        version: i64,
        chain_hash: &str,
    ) -> Result<Vouched, TrustError> {
        let v = self.verify(url, note)?;
        if v.version != version || v.chain_hash != chain_hash {
            return Err(TrustError::Mismatch {
                claimed: v.version,
                claimed_hash: v.chain_hash,
                version,
                hash: chain_hash.to_owned(),
            });
        }
        let mut state = self.lock();
        self.remember(&mut state, url, &v)?;
        Ok(v)
    }

    fn verify(&self, url: &str, note: &str) -> Result<Vouched, TrustError> {
        checkpoint_note::open(note, &self.keys_for(url))
            .map(vouched)
            .map_err(TrustError::Untrusted)
    }

    /// Finds a fork with a remembered checkpoint, else remembers `v`.
    fn remember(&self, state: &mut State, url: &str, v: &Vouched) -> Result<(), TrustError> {
        let held = state.seen.get(&v.version).or(state
            .last_applied
            .as_ref()
            .filter(|l| l.version == v.version));
        if let Some(before) = held
            && before.chain_hash != v.chain_hash
        {
            let first = before.clone();
            return Err(self.evidence(state, EquivocationKind::Fork, url, &first, v));
        }
        state.seen.insert(v.version, v.clone());
        while state.seen.len() > REMEMBERED {
            state.seen.pop_first();
        }
        Ok(())
    }

    fn evidence(
        &self,
        state: &mut State,
        kind: EquivocationKind,
        url: &str,
        first: &Vouched,
        second: &Vouched,
    ) -> TrustError {
        let found = Equivocation {
            kind,
            hub: url.to_owned(),
            first: first.note.clone(),
            second: second.note.clone(),
        };
        // The same contradiction seen again — a hub retried re-signs its head with a new
        // timestamp — is the same evidence, not new evidence.
        let id = EvidenceId {
            kind,
            hub: url.to_owned(),
            key: second.key.clone(),
            first: (first.version, first.chain_hash.clone()),
            second: (second.version, second.chain_hash.clone()),
        };
        let new = !state.evidence.iter().any(|(seen, _)| *seen == id);
        if new {
            state.evidence.push_back((id, found.clone()));
            if state.evidence.len() > EVIDENCE_KEPT {
                state.evidence.pop_front();
            }
        }
        TrustError::Equivocation {
            evidence: Box::new(found),
            new,
        }
    }

    /// The replica now holds what `v` covers: it is the checkpoint the peer serves.
    pub fn applied(&self, v: Vouched) {
        let mut state = self.lock();
        if state.last_applied.as_ref() == Some(&v) {
            return;
        }
        if let Err(e) = write_atomically(&self.last_file, v.note.as_bytes()) {
            tracing::warn!(error = %e, file = %self.last_file.display(), "could not store the last checkpoint");
        }
        state.last_applied = Some(v);
    }

    /// The last checkpoint that covered what the replica applied.
    pub fn last_checkpoint(&self) -> Option<Vouched> {
        self.lock().last_applied.clone()
    }

    /// The trust as shown in `GET /api/v1/connection`.
    pub fn view(&self) -> TrustView {
        let state = self.lock();
        TrustView {
            mode: if self.configured.is_empty() {
                TrustMode::FirstUse
            } else {
                TrustMode::Configured
            },
            trusted_keys: self.configured.iter().map(ToString::to_string).collect(),
            pinned_keys: state
                .pins
                .iter()
                .map(|(url, key)| (url.clone(), key.to_string()))
                .collect(),
            last_checkpoint: state.last_applied.clone(),
            equivocations: state.evidence.iter().map(|(_, e)| e.clone()).collect(),
        }
    }
}

fn vouched(v: checkpoint_note::VerifiedCheckpoint) -> Vouched {
    Vouched {
        version: v.checkpoint.version,
        chain_hash: v.checkpoint.chain_hash,
        key: v.signer.to_string(),
        timestamp_ms: v.checkpoint.timestamp_ms,
        note: v.note,
    }
}

fn read_pins(file: &Path) -> BTreeMap<String, VerifierKey> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return BTreeMap::new();
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let parsed = line
                .split_once(' ')
                .and_then(|(url, key)| Some((url.to_owned(), VerifierKey::parse(key).ok()?)));
            if parsed.is_none() {
                tracing::warn!(file = %file.display(), %line, "ignored a malformed pinned hub key");
            }
            parsed
        })
        .collect()
}

fn write_pins(file: &Path, pins: &BTreeMap<String, VerifierKey>) -> std::io::Result<()> {
    let mut text = String::from(
        "# Hub checkpoint keys pinned on first use: <hub url> <verifier key>.\n\
         # Delete a line to accept a hub's new key (after checking it).\n",
    );
    for (url, key) in pins {
        text.push_str(&format!("{url} {key}\n"));
    }
    write_durably(file, text.as_bytes())
}

/// Writes `file` whole or not at all (a crash leaves the old one). Not synced: the last
/// checkpoint is rewritten with every applied page, and losing the newest after a crash only
/// means an older (still verified) one is served until the next.
fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, file)
}

/// [`write_atomically`], and on disk before it returns: a pin lost in a crash would be
/// pinned again, on first use, from whatever answers next.
fn write_durably(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = file.with_extension("tmp");
    let mut out = std::fs::File::create(&tmp)?;
    std::io::Write::write_all(&mut out, bytes)?;
    out.sync_all()?;
    std::fs::rename(&tmp, file)?;
    // The rename is durable once the directory is synced.
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
    std::fs::File::open(dir.unwrap_or(Path::new(".")))?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests;
