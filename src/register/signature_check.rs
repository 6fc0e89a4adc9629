//! Checking the publisher signatures of many entries in version order (verification of a
//! whole register, a peer's synced batches): the previous version each one binds, and one
//! Ed25519 batch equation per batch. The signed bytes and the single checks are in
//! [`super::signature`].

use super::entry::Entry;
use super::signature::{PublisherKeys, SignatureError, SignedFields};
use std::collections::HashMap;

/// The indices of the signatures that do not verify: one batch equation for all (Ed25519
/// batch verification); a batch that fails, or a single signature, is verified one by one
/// (strictly) to name the bad ones. (Splitting big batches over both cores was tried once,
/// on a noisy 2-core machine whose other core reads the next page: the offline check of
/// 1 000 000 signatures took 35 s instead of 28 s, so it was not kept.)
fn failing_signatures(
    messages: &[&[u8]],
    signatures: &[ed25519_dalek::Signature],
    keys: &[ed25519_dalek::VerifyingKey],
) -> Vec<usize> {
    if messages.len() > 1 && ed25519_dalek::verify_batch(messages, signatures, keys).is_ok() {
        return Vec::new();
    }
    (0..messages.len())
        .filter(|&i| keys[i].verify_strict(messages[i], &signatures[i]).is_err())
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
        let mut defects = Vec::new();
        let mut messages: Vec<Vec<u8>> = Vec::new();
        let mut signatures = Vec::new();
        let mut keys = Vec::new();
        let mut places = Vec::new();
        for entry in entries {
            let previous = self
                .newest
                .insert(entry.blueprint_id.clone(), entry.version)
                .unwrap_or(0);
            let Some(signature) = &entry.signature else {
                if self.require && entry.version > 1 {
                    defects.push(SignatureDefect {
                        version: entry.version,
                        error: SignatureError::Unsigned,
                    });
                }
                continue;
            };
            if signature.previous_version != previous {
                defects.push(SignatureDefect {
                    version: entry.version,
                    error: SignatureError::WrongPlace {
                        signed_for: signature.previous_version,
                        actual: previous,
                    },
                });
                continue;
            }
            let Some(key) = self.keys.get(signature) else {
                defects.push(SignatureDefect {
                    version: entry.version,
                    error: SignatureError::UnknownKey {
                        name: signature.key_name.clone(),
                        id: signature.key_id,
                    },
                });
                continue;
            };
            messages.push(SignedFields::of_entry(entry, previous).bytes());
            signatures.push(ed25519_dalek::Signature::from_bytes(&signature.signature));
            keys.push(*key.key());
            places.push((entry.version, previous, signature));
        }
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let failing = failing_signatures(&refs, &signatures, &keys);
        self.signed += (refs.len() - failing.len()) as u64;
        for i in failing {
            let (version, previous_version, signature) = places[i];
            defects.push(SignatureDefect {
                version,
                error: SignatureError::Invalid {
                    name: signature.key_name.clone(),
                    id: signature.key_id,
                    previous_version,
                },
            });
        }
        defects.sort_by_key(|d| d.version);
        defects
    }
}
