//! Checking the publisher signatures of many entries in version order (verification of a
//! whole register, a peer's synced batches): the previous version each one binds, in order,
//! then one Ed25519 batch equation per batch, on any thread. The signed bytes and the single checks are in
//! [`super`].

use super::{PublisherKeys, SignatureError, SignedFields};
use crate::register::entry::Entry;
use std::collections::HashMap;

/// One signature waiting for verification: where it is, and the batch item (key, signature
/// and the hash of the signed bytes: the bytes themselves are not kept).
#[derive(Debug)]
struct Pending {
    version: i64,
    previous_version: i64,
    key_name: String,
    key_id: u32,
    item: ed25519_zebra::batch::Item,
}

/// The signatures of a run of entries, ready to verify: owned, so the costly part can run on
/// any thread while the next run is prepared ([`SignatureCheck::prepare`]).
#[derive(Debug, Default)]
pub struct PendingSignatures {
    items: Vec<Pending>,
    /// Defects found while preparing (wrong place, unknown key, unsigned).
    defects: Vec<SignatureDefect>,
}

/// What [`PendingSignatures::verify`] found.
#[derive(Debug, Default)]
pub struct VerifiedSignatures {
    /// Every defect of the run, in version order.
    pub defects: Vec<SignatureDefect>,
    /// Signatures that verified.
    pub verified: u64,
}

impl PendingSignatures {
    /// True when there is nothing to verify nor any defect to report.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.defects.is_empty()
    }

    /// Verifies every signature: one batch equation for all (Ed25519 batch verification under
    /// the ZIP 215 rules, with the terms of each key coalesced, so a register signed by a
    /// few keys checks in about a fifth of the time of single checks); only when the batch
    /// fails, one by one to name the bad ones. ZIP 215 accepts every signature that the
    /// strict RFC 8032 check on the write path accepts.
    pub fn verify(self) -> VerifiedSignatures {
        let PendingSignatures { items, mut defects } = self;
        let verdicts = verdicts(&items, |p| &p.item);
        let mut verified = 0;
        for (p, holds) in items.into_iter().zip(verdicts) {
            if holds {
                verified += 1;
                continue;
            }
            defects.push(SignatureDefect {
                version: p.version,
                error: SignatureError::Invalid {
                    name: p.key_name,
                    id: p.key_id,
                    previous_version: p.previous_version,
                },
            });
        }
        defects.sort_by_key(|d| d.version);
        VerifiedSignatures { defects, verified }
    }
}

/// Whether each of `all`'s signatures (`item` of each) verifies: one batch equation for all;
/// only when it fails (or for a single one), one by one. The one rule every check of many
/// signatures follows.
pub(super) fn verdicts<T>(
    all: &[T],
    item: impl Fn(&T) -> &ed25519_zebra::batch::Item,
) -> Vec<bool> {
    let batch_holds = all.len() > 1 && {
        let mut batch = ed25519_zebra::batch::Verifier::new();
        for one in all {
            batch.queue(item(one).clone());
        }
        batch.verify(rand_core::OsRng).is_ok()
    };
    all.iter()
        .map(|one| batch_holds || item(one).clone().verify_single().is_ok())
        .collect()
}

/// Checks the signatures of entries in version order: tracks each blueprint's newest version
/// (the previous version a signature binds), and verifies a batch's signatures at once
/// (Ed25519 batch verification), finding the first bad one only when the batch fails.
#[derive(Debug, Default)]
pub struct SignatureCheck {
    keys: PublisherKeys,
    /// Unsigned entries after genesis are defects.
    require: bool,
    newest: HashMap<String, i64>,
    /// `newest` knows every blueprint so far (the check began at version 1).
    complete: bool,
    signed: u64,
}

/// The first entry whose signature failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureDefect {
    /// Its version.
    pub version: i64,
    /// What is wrong.
    pub error: SignatureError,
}

impl SignatureCheck {
    /// A check from version 1 against `keys`; with `require`, unsigned entries (but
    /// genesis) fail too.
    pub fn new(keys: PublisherKeys, require: bool) -> Self {
        SignatureCheck {
            keys,
            require,
            newest: HashMap::new(),
            complete: true,
            signed: 0,
        }
    }

    /// A check that begins after a register's first entries: the blueprints it has not seen
    /// are looked up by the caller ([`SignatureCheck::unknown_blueprints`]).
    pub fn after_start(keys: PublisherKeys, require: bool) -> Self {
        SignatureCheck {
            complete: false,
            ..SignatureCheck::new(keys, require)
        }
    }

    /// True when unsigned entries and signatures that do not verify are refused.
    pub fn required(&self) -> bool {
        self.require
    }

    /// Signed entries that verified so far.
    pub fn signed(&self) -> u64 {
        self.signed
    }

    /// The blueprints of `entries` whose newest earlier version this check does not know yet
    /// (the caller looks them up in the store when the check starts after version 1).
    pub fn unknown_blueprints<'a>(&self, entries: &'a [Entry]) -> Vec<&'a str> {
        if self.complete {
            return Vec::new();
        }
        let mut seen = std::collections::HashSet::new();
        entries
            .iter()
            .filter(|e| e.signature.is_some() || self.require)
            .map(|e| e.blueprint_id.as_str())
            .filter(|id| !self.newest.contains_key(*id) && seen.insert(*id))
            .collect()
    }

    /// Tells the check that `blueprint_id`'s newest entry before the next ones is `version`
    /// (0: none).
    pub fn know(&mut self, blueprint_id: &str, version: i64) {
        self.newest.insert(blueprint_id.to_owned(), version);
    }

    /// Checks `entries`, the next ones in version order; on failure names the first bad one.
    pub fn check(&mut self, entries: &[Entry]) -> Result<(), SignatureDefect> {
        match self.check_all(entries).into_iter().next() {
            Some(defect) => Err(defect),
            None => Ok(()),
        }
    }

    /// Checks `entries`, the next ones in version order, and returns every defect among
    /// them in version order (for a node that logs bad signatures and applies anyway).
    pub fn check_all(&mut self, entries: &[Entry]) -> Vec<SignatureDefect> {
        let checked = self.prepare(entries).verify();
        self.count_verified(checked.verified);
        checked.defects
    }

    /// Adds signatures verified apart ([`PendingSignatures::verify`]) to [`Self::signed`].
    pub fn count_verified(&mut self, verified: u64) {
        self.signed += verified;
    }

    /// The cheap, ordered part of checking `entries`, the next ones in version order: the
    /// previous version each signature binds, its key, its signed bytes hashed. What is left
    /// is independent of other runs, and can be verified on another thread.
    pub fn prepare(&mut self, entries: &[Entry]) -> PendingSignatures {
        let mut pending = PendingSignatures::default();
        for entry in entries {
            let previous = self
                .newest
                .insert(entry.blueprint_id.clone(), entry.version)
                .unwrap_or(0);
            let defect = |error| SignatureDefect {
                version: entry.version,
                error,
            };
            let Some(signature) = &entry.signature else {
                if self.require && entry.version > 1 {
                    pending.defects.push(defect(SignatureError::Unsigned));
                }
                continue;
            };
            if signature.previous_version != previous {
                pending.defects.push(defect(SignatureError::WrongPlace {
                    signed_for: signature.previous_version,
                    actual: previous,
                }));
                continue;
            }
            let Some(key) = self.keys.get(signature) else {
                pending.defects.push(defect(SignatureError::UnknownKey {
                    name: signature.key_name.clone(),
                    id: signature.key_id,
                }));
                continue;
            };
            let message = SignedFields::of_entry(entry, previous).bytes();
            let item = ed25519_zebra::batch::Item::from((
                ed25519_zebra::VerificationKeyBytes::from(key.key().to_bytes()),
                ed25519_zebra::Signature::from_bytes(&signature.signature),
                &message,
            ));
            pending.items.push(Pending {
                version: entry.version,
                previous_version: previous,
                key_name: signature.key_name.clone(),
                key_id: signature.key_id,
                item,
            });
        }
        pending
    }
}
