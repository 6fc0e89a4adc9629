//! The rules of an intact chain: every checksum, the links, contiguous versions and the
//! register id ([`ChainVerifier`], one entry at a time). Used at start-up, by `GET /api/v1/system-register/verify` and by
//! `sorcha-peer verify`, and by a peer on every synced entry.

use super::chain;
use super::entry::{Entry, SYSTEM_REGISTER_ID};
use serde::Serialize;

/// Why an entry failed verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Defect {
    /// A version is missing or out of order.
    #[error("expected version {expected}, found version {found}")]
    VersionGap {
        /// The version that should have come next.
        expected: i64,
        /// The version that came instead.
        found: i64,
    },
    /// The entry belongs to another register.
    #[error("register id is {0:?}, not the system register")]
    RegisterId(String),
    /// The document does not hash to the stored checksum.
    #[error("checksum mismatch: stored {stored}, document hashes to {computed}")]
    Checksum {
        /// Checksum stored with the entry.
        stored: String,
        /// Checksum of the stored document.
        computed: String,
    },
    /// The stored row cannot be read back as an entry.
    #[error("entry is unreadable: {0}")]
    Unreadable(String),
    /// The chain hash does not follow from its predecessor and fields.
    #[error("chain hash mismatch: stored {stored}, expected {computed}")]
    Chain {
        /// Chain hash stored with the entry.
        stored: String,
        /// Chain hash computed from the predecessor and fields.
        computed: String,
    },
    /// The publisher's signature does not verify against the known publisher keys (or the
    /// entry is unsigned where signatures are required).
    #[error("publisher signature: {reason}")]
    Signature {
        /// What is wrong with it.
        reason: String,
    },
}

impl Defect {
    /// The defect's name as documented in `docs/hash-chain.md` (`versionGap`, `registerId`,
    /// `checksum`, `unreadable`, `chain`, `signature`).
    pub fn kind(&self) -> &'static str {
        match self {
            Defect::VersionGap { .. } => "versionGap",
            Defect::RegisterId(_) => "registerId",
            Defect::Checksum { .. } => "checksum",
            Defect::Unreadable(_) => "unreadable",
            Defect::Chain { .. } => "chain",
            Defect::Signature { .. } => "signature",
        }
    }
}

impl From<super::signature::SignatureDefect> for IntegrityFailure {
    fn from(d: super::signature::SignatureDefect) -> Self {
        IntegrityFailure {
            version: d.version,
            defect: Defect::Signature {
                reason: d.error.to_string(),
            },
        }
    }
}

/// The first entry that failed, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "camelCase")]
#[error("register integrity check failed at version {version}: {defect}")]
pub struct IntegrityFailure {
    /// The first bad version (for a gap: the missing version).
    pub version: i64,
    /// What is wrong with it.
    pub defect: Defect,
}

/// Incremental verifier: feed entries in version order, starting at version 1 or after a
/// known-good head.
#[derive(Clone, Debug)]
pub struct ChainVerifier {
    next_version: i64,
    prev_raw: [u8; 32],
    checked: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVerifier {
    /// Verifier for a whole register from version 1.
    pub fn new() -> Self {
        Self {
            next_version: 1,
            prev_raw: [0u8; 32],
            checked: 0,
        }
    }

    /// Verifier that continues after a trusted head (version, chain hash); `None` if the hash is
    /// malformed.
    pub fn after(version: i64, chain_hash: &str) -> Option<Self> {
        Some(Self {
            next_version: version + 1,
            prev_raw: chain::parse_hash(chain_hash)?,
            checked: 0,
        })
    }

    /// Number of entries accepted so far.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// The version the next entry must have.
    pub fn next_version(&self) -> i64 {
        self.next_version
    }

    /// Checks the next entry and advances past it.
    pub fn check(&mut self, entry: &Entry) -> Result<(), IntegrityFailure> {
        let fail = |version, defect| Err(IntegrityFailure { version, defect });
        if entry.version != self.next_version {
            // A gap names the first missing version.
            return fail(
                self.next_version,
                Defect::VersionGap {
                    expected: self.next_version,
                    found: entry.version,
                },
            );
        }
        if entry.register_id != SYSTEM_REGISTER_ID {
            return fail(entry.version, Defect::RegisterId(entry.register_id.clone()));
        }
        let computed = chain::checksum(&entry.document);
        if computed != entry.checksum {
            return fail(
                entry.version,
                Defect::Checksum {
                    stored: entry.checksum.clone(),
                    computed,
                },
            );
        }
        let raw = chain::link_raw(&self.prev_raw, entry);
        if chain::parse_hash(&entry.chain_hash) != Some(raw) {
            return fail(
                entry.version,
                Defect::Chain {
                    stored: entry.chain_hash.clone(),
                    computed: chain::format_hash(&raw),
                },
            );
        }
        self.prev_raw = raw;
        self.next_version += 1;
        self.checked += 1;
        Ok(())
    }
}
