//! Publisher signatures: an Ed25519 signature by a publisher's key over the bytes that bind a
//! publication to its place in the register, stored with the entry and covered by its chain
//! hash (see `docs/hash-chain.md`, "Publisher signatures").
//!
//! The signed bytes are `"sorcha-publication-v1\n"` followed by, in this order, with the
//! chain's encodings (`str` = u32 big-endian length + UTF-8):
//!
//! | field | encoding |
//! |---|---|
//! | registerId | str |
//! | blueprintId | str |
//! | type | u8: 1 published, 2 updated, 3 deprecated |
//! | isActive | u8: 0 or 1 |
//! | previousVersion | i64 big-endian: the version of the blueprint's entry before this one, 0 for a new blueprint |
//! | checksum | str |
//! | metadata | u32 pair count, then str key, str value in ascending byte order of the key |
//! | publicationTransactionId | u8 0 (absent) or u8 1 followed by str |
//!
//! The previous version makes a signed update good for one place only: replayed later (the
//! blueprint has moved on) or for another blueprint, it no longer verifies. The hub's time
//! and `publishedBy` are not signed: the hub assigns them, and `[[publishers]]` ties a token's
//! identity to the keys it may sign with.
//!
//! Checking many entries at once is in `in_order.rs`; concurrent signed writes are batched
//! in `write_batcher.rs`.

use super::entry::{Entry, EntryType};
use crate::keys::{SigningKey, VerifierKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::collections::{BTreeMap, HashMap};

mod in_order;
pub(super) mod write_batcher;

pub use in_order::{PendingSignatures, SignatureCheck, SignatureDefect, VerifiedSignatures};

/// What every signed byte string starts with, so a publication signature can never be taken
/// for a signature of anything else (a checkpoint note, another version of this layout).
pub const SIGNED_PREFIX: &[u8] = b"sorcha-publication-v1\n";

/// A publisher's signature of one entry: the place it was signed for (the blueprint's
/// previous version), the key's name and the signed-note signature (key id ‖ Ed25519
/// signature). Stored as `<previousVersion> <keyName> <base64>`.
///
/// The previous version is carried, not only derived, so that a client holding one entry
/// (a browser reading an event) can check the signature alone; nodes also check that it
/// is the blueprint's actual previous version.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PublisherSignature {
    /// The version of the blueprint's entry before this one that the publisher signed
    /// for; 0 for a new blueprint.
    pub previous_version: i64,
    /// Name of the key that signed.
    pub key_name: String,
    /// Its key id.
    pub key_id: u32,
    /// The Ed25519 signature.
    pub signature: [u8; 64],
}

impl PublisherSignature {
    /// `base64(key id ‖ signature)`, the value a client sends.
    pub fn value(&self) -> String {
        let mut raw = Vec::with_capacity(68);
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.signature);
        BASE64.encode(raw)
    }

    /// From the previous version, a key name and `base64(key id ‖ signature)`; says what is
    /// wrong otherwise.
    pub fn from_parts(previous_version: i64, key_name: &str, value: &str) -> Result<Self, String> {
        if previous_version < 0 {
            return Err(format!(
                "signature previousVersion {previous_version} is negative (0 for a new blueprint)"
            ));
        }
        crate::keys::check_name(key_name).map_err(|e| e.to_string())?;
        let raw = BASE64
            .decode(value.trim())
            .map_err(|e| format!("signature value is not base64: {e}"))?;
        if raw.len() != 68 {
            return Err(format!(
                "signature value is {} bytes; expected 68 (a 4-byte key id and a 64-byte Ed25519 signature)",
                raw.len()
            ));
        }
        let (id, sig) = raw.split_at(4);
        Ok(PublisherSignature {
            previous_version,
            key_name: key_name.to_owned(),
            key_id: u32::from_be_bytes(id.try_into().unwrap_or_default()),
            signature: sig.try_into().unwrap_or([0; 64]),
        })
    }

    /// The stored form, `<previousVersion> <keyName> <base64>`.
    pub fn to_text(&self) -> String {
        format!(
            "{} {} {}",
            self.previous_version,
            self.key_name,
            self.value()
        )
    }

    /// Parses [`PublisherSignature::to_text`].
    pub fn parse_text(text: &str) -> Result<Self, String> {
        let mut parts = text.splitn(3, ' ');
        let (Some(previous), Some(name), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("a stored signature is `<previousVersion> <keyName> <base64>`".to_owned());
        };
        let previous = previous
            .parse()
            .map_err(|e| format!("signature previous version {previous:?}: {e}"))?;
        PublisherSignature::from_parts(previous, name, value)
    }

    /// Signs `fields` with `key`.
    pub fn sign(key: &SigningKey, fields: &SignedFields<'_>) -> Self {
        PublisherSignature {
            previous_version: fields.previous_version,
            key_name: key.name().to_owned(),
            key_id: key.verifier().id(),
            signature: key.sign(&fields.bytes()),
        }
    }
}

/// The fields a publisher signs (see the module documentation).
#[derive(Clone, Copy, Debug)]
pub struct SignedFields<'a> {
    /// The register.
    pub register_id: &'a str,
    /// The blueprint.
    pub blueprint_id: &'a str,
    /// What the entry does.
    pub entry_type: EntryType,
    /// Its active flag.
    pub is_active: bool,
    /// The version of the blueprint's entry before this one; 0 for a new blueprint.
    pub previous_version: i64,
    /// Checksum of the canonical document.
    pub checksum: &'a str,
    /// Metadata.
    pub metadata: &'a BTreeMap<String, String>,
    /// Publication transaction id.
    pub transaction_id: Option<&'a str>,
}

impl<'a> SignedFields<'a> {
    /// The fields of a stored `entry` signed for after the blueprint's entry
    /// `previous_version`.
    pub fn of_entry(entry: &'a Entry, previous_version: i64) -> Self {
        SignedFields {
            register_id: &entry.register_id,
            blueprint_id: &entry.blueprint_id,
            entry_type: entry.entry_type,
            is_active: entry.is_active,
            previous_version,
            checksum: &entry.checksum,
            metadata: &entry.metadata,
            transaction_id: entry.publication_transaction_id.as_deref(),
        }
    }

    /// The signed byte string.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(SIGNED_PREFIX);
        put_str(&mut out, self.register_id);
        put_str(&mut out, self.blueprint_id);
        out.push(self.entry_type.code());
        out.push(u8::from(self.is_active));
        out.extend_from_slice(&self.previous_version.to_be_bytes());
        put_str(&mut out, self.checksum);
        out.extend_from_slice(&len_u32(self.metadata.len()).to_be_bytes());
        for (key, value) in self.metadata {
            put_str(&mut out, key);
            put_str(&mut out, value);
        }
        match self.transaction_id {
            None => out.push(0),
            Some(tx) => {
                out.push(1);
                put_str(&mut out, tx);
            }
        }
        out
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&len_u32(s.len()).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Why a signature was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The entry carries no signature and one is required.
    #[error("the entry is not signed")]
    Unsigned,
    /// No known key has this name and key id.
    #[error("signed by key {name}+{id:08x}, which is not a known publisher key")]
    UnknownKey {
        /// Key name.
        name: String,
        /// Key id.
        id: u32,
    },
    /// The caller's identity has no publisher keys (`[[publishers]]`), so it cannot sign.
    #[error("identity {identity:?} has no publisher keys ([[publishers]]) to sign with")]
    NotAPublisher {
        /// The token identity.
        identity: String,
    },
    /// The signature was made for another place: after another version of the blueprint
    /// than its actual previous one (a signed write replayed later or elsewhere).
    #[error(
        "the signature is for the blueprint after version {signed_for}, but its previous version is {actual}"
    )]
    WrongPlace {
        /// The previous version the signature states (and covers).
        signed_for: i64,
        /// The blueprint's actual previous version.
        actual: i64,
    },
    /// The key is known but the signature does not verify over the entry at its place.
    #[error(
        "the signature by {name}+{id:08x} does not verify over this entry (previous version {previous_version})"
    )]
    Invalid {
        /// Key name.
        name: String,
        /// Key id.
        id: u32,
        /// The previous version the check assumed.
        previous_version: i64,
    },
}

/// A set of publisher verifier keys, looked up by name and key id.
#[derive(Clone, Debug, Default)]
pub struct PublisherKeys {
    // Shared: every check and verify run holds the node's one set.
    keys: std::sync::Arc<HashMap<(String, u32), VerifierKey>>,
}

impl PublisherKeys {
    /// The set of `keys`.
    pub fn new(keys: impl IntoIterator<Item = VerifierKey>) -> Self {
        PublisherKeys {
            keys: std::sync::Arc::new(
                keys.into_iter()
                    .map(|k| ((k.name().to_owned(), k.id()), k))
                    .collect(),
            ),
        }
    }

    /// Every key as text (`name+keyid+base64`), sorted.
    pub fn texts(&self) -> Vec<String> {
        let mut texts: Vec<String> = self.keys.values().map(ToString::to_string).collect();
        texts.sort();
        texts
    }

    /// True when no key is known.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key a signature names, if known.
    pub fn get(&self, signature: &PublisherSignature) -> Option<&VerifierKey> {
        self.keys
            .get(&(signature.key_name.clone(), signature.key_id))
    }

    /// Finds `signature` over `fields` in its place and by a known key; what is left is the
    /// Ed25519 check of the [`SignedWrite`].
    pub fn locate(
        &self,
        signature: &PublisherSignature,
        fields: &SignedFields<'_>,
    ) -> Result<SignedWrite, SignatureError> {
        if signature.previous_version != fields.previous_version {
            return Err(SignatureError::WrongPlace {
                signed_for: signature.previous_version,
                actual: fields.previous_version,
            });
        }
        let key = self
            .get(signature)
            .ok_or_else(|| SignatureError::UnknownKey {
                name: signature.key_name.clone(),
                id: signature.key_id,
            })?;
        Ok(SignedWrite {
            item: ed25519_zebra::batch::Item::from((
                ed25519_zebra::VerificationKeyBytes::from(key.key().to_bytes()),
                ed25519_zebra::Signature::from_bytes(&signature.signature),
                &fields.bytes(),
            )),
            invalid: SignatureError::Invalid {
                name: signature.key_name.clone(),
                id: signature.key_id,
                previous_version: fields.previous_version,
            },
        })
    }
}

/// A write's signature in its place and by a known key, waiting for its Ed25519 check
/// (alone, or on a hub in a batch with concurrent writes' signatures).
#[derive(Debug)]
pub struct SignedWrite {
    /// The key, the signature and the hash of the signed bytes.
    pub item: ed25519_zebra::batch::Item,
    /// The error when it does not verify.
    pub invalid: SignatureError,
}

/// What a node demands of publisher signatures.
#[derive(Clone, Debug, Default)]
pub struct SignaturePolicy {
    /// Keys each publisher identity may sign new publications with (a hub's
    /// `[[publishers]] keys`).
    pub signers: HashMap<String, PublisherKeys>,
    /// Every key stored entries are checked against: a hub's publishers' `keys` and
    /// `retiredKeys`; a peer's `peer.publisherKeys`.
    pub known: PublisherKeys,
    /// Refuse what is not signed by a known key: on a hub, client writes without a valid
    /// signature (`signatures.require`); on a peer, synced entries (`peer.requireSignatures`).
    pub require: bool,
}

impl SignaturePolicy {
    /// True when stored or synced entries are checked at all (some key is known, or
    /// signatures are required).
    pub fn checks_entries(&self) -> bool {
        self.require || !self.known.is_empty()
    }

    /// The check of a client write by `identity` with `signature` over `fields`, but for
    /// the Ed25519 check of the signature (if there is one) that it hands on.
    pub fn check_write(
        &self,
        identity: &str,
        signature: Option<&PublisherSignature>,
        fields: &SignedFields<'_>,
    ) -> Result<Option<SignedWrite>, SignatureError> {
        let Some(signature) = signature else {
            return if self.require {
                Err(SignatureError::Unsigned)
            } else {
                Ok(None)
            };
        };
        match self.signers.get(identity) {
            Some(keys) => keys.locate(signature, fields).map(Some),
            None => Err(SignatureError::NotAPublisher {
                identity: identity.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests;
