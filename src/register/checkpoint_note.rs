//! Hub-signed checkpoints: a hub vouches for its head in a C2SP signed note
//! (<https://c2sp.org/signed-note>) whose text has the shape of a C2SP tlog checkpoint
//! (<https://c2sp.org/tlog-checkpoint>):
//!
//! ```text
//! sorcha.dev/system-register/00000000-0000-0000-0000-000000000000
//! 42
//! <base64 of the head's raw 32-byte chain hash>
//! timestamp 1796281398191
//!
//! — hub-0 <base64 of key id ‖ Ed25519 signature>
//! ```
//!
//! The origin line names the register, then come the head version, the head chain hash and
//! an extension line with the hub's time (Unix ms). The signature covers the text, its final
//! newline included. Parsing and signing of the note envelope are the `signed_note` crate's.

use super::chain;
use super::entry::{Head, SYSTEM_REGISTER_ID};
use crate::keys::{SigningKey, VerifierKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use signed_note::{Note, Verifier, VerifierList};

/// What an origin line starts with; the register id follows.
pub const ORIGIN_PREFIX: &str = "sorcha.dev/system-register/";

/// The origin line of the system register's checkpoints.
pub fn system_origin() -> String {
    format!("{ORIGIN_PREFIX}{SYSTEM_REGISTER_ID}")
}

/// A register head as a hub vouches for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadCheckpoint {
    /// The register it names (the origin line).
    pub origin: String,
    /// The head version.
    pub version: i64,
    /// The head's chain hash, `sha256:<hex>`.
    pub chain_hash: String,
    /// The hub's time when it signed, Unix ms.
    pub timestamp_ms: i64,
}

/// Why a checkpoint note was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Not a signed note, or its text is not a checkpoint; says what is wrong.
    #[error("not a checkpoint: {0}")]
    Malformed(String),
    /// No trusted key signed it; names the keys that did.
    #[error("not signed by a trusted key (signed by {})", .0.join(", "))]
    Untrusted(Vec<String>),
    /// A trusted key's signature does not verify.
    #[error("the signature by {0} does not verify")]
    BadSignature(String),
    /// It names another register.
    #[error("the checkpoint is for {0:?}, not the system register")]
    OtherRegister(String),
}

impl HeadCheckpoint {
    /// The checkpoint of `head` at `timestamp_ms`; `None` when the head hash is malformed.
    pub fn of_head(head: &Head, timestamp_ms: i64) -> Option<Self> {
        chain::parse_hash(&head.chain_hash)?;
        Some(HeadCheckpoint {
            origin: system_origin(),
            version: head.version,
            chain_hash: head.chain_hash.clone(),
            timestamp_ms,
        })
    }

    /// The note text: origin, version, base64 hash, timestamp line, each ending in `\n`.
    pub fn text(&self) -> String {
        let raw = chain::parse_hash(&self.chain_hash).unwrap_or([0; 32]);
        format!(
            "{}\n{}\n{}\ntimestamp {}\n",
            self.origin,
            self.version,
            BASE64.encode(raw),
            self.timestamp_ms
        )
    }

    /// Parses [`HeadCheckpoint::text`]; unknown extension lines after the hash are ignored,
    /// as the checkpoint format asks.
    pub fn parse_text(text: &str) -> Result<Self, CheckpointError> {
        let bad = |m: &str| CheckpointError::Malformed(m.to_owned());
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("the text must end in a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| bad("no origin line"))?;
        let version = lines
            .next()
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|v| *v >= 1)
            .ok_or_else(|| bad("the second line must be the head version"))?;
        let raw = lines
            .next()
            .and_then(|h| BASE64.decode(h).ok())
            .and_then(|h| <[u8; 32]>::try_from(h).ok())
            .ok_or_else(|| bad("the third line must be the base64 of a 32-byte hash"))?;
        let timestamp_ms = lines
            .find_map(|l| l.strip_prefix("timestamp "))
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| bad("no `timestamp <unix ms>` line"))?;
        Ok(HeadCheckpoint {
            origin: origin.to_owned(),
            version,
            chain_hash: chain::format_hash(&raw),
            timestamp_ms,
        })
    }

    /// The signed note of this checkpoint by `key`.
    pub fn sign(&self, key: &SigningKey) -> String {
        let text = self.text();
        // The text is ours and well-formed, and the key parsed: signing cannot fail.
        let mut note = Note::new(text.as_bytes(), &[]).expect("a checkpoint text is a note text");
        note.add_sigs(&[key.note_signer()])
            .expect("a parsed key signs");
        String::from_utf8(note.to_bytes()).expect("a note of UTF-8 text is UTF-8")
    }
}

/// A checkpoint whose note verified under a trusted key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// What it says.
    pub checkpoint: HeadCheckpoint,
    /// The trusted key that signed it.
    pub signer: VerifierKey,
    /// The note itself, as received (evidence).
    pub note: String,
}

/// `name+keyid` of every signature line of `note`, verified or not (to say who signed a note
/// that is not trusted).
pub fn signature_lines(note: &str) -> Vec<String> {
    let Some((_, sigs)) = note.rsplit_once("\n\n") else {
        return Vec::new();
    };
    sigs.lines()
        .filter_map(|l| l.strip_prefix("\u{2014} "))
        .filter_map(|l| {
            let (name, b64) = l.split_once(' ')?;
            let raw = BASE64.decode(b64).ok()?;
            let id = u32::from_be_bytes(raw.get(..4)?.try_into().ok()?);
            Some(format!("{name}+{id:08x}"))
        })
        .collect()
}

/// Opens `note` with the `trusted` keys: the note verifies under one of them and its text is
/// a checkpoint of the system register.
pub fn open(note: &str, trusted: &[VerifierKey]) -> Result<VerifiedCheckpoint, CheckpointError> {
    let parsed = Note::from_bytes(note.as_bytes())
        .map_err(|e| CheckpointError::Malformed(format!("not a signed note: {e}")))?;
    let verifiers: Vec<Box<dyn Verifier>> = trusted
        .iter()
        .map(|k| Box::new(k.note_verifier()) as Box<dyn Verifier>)
        .collect();
    let (verified, _) = parsed
        .verify(&VerifierList::new(verifiers))
        .map_err(|e| match e {
            signed_note::NoteError::InvalidSignature { name, id } => {
                CheckpointError::BadSignature(format!("{name}+{id:08x}"))
            }
            signed_note::NoteError::UnverifiedNote => {
                CheckpointError::Untrusted(signature_lines(note))
            }
            other => CheckpointError::Malformed(other.to_string()),
        })?;
    let first = verified
        .first()
        .ok_or_else(|| CheckpointError::Untrusted(signature_lines(note)))?;
    let signer = trusted
        .iter()
        .find(|k| k.name() == first.name() && k.id() == first.id())
        .cloned()
        .ok_or_else(|| CheckpointError::Untrusted(signature_lines(note)))?;
    let text = std::str::from_utf8(parsed.text())
        .map_err(|_| CheckpointError::Malformed("the text is not UTF-8".into()))?;
    let checkpoint = HeadCheckpoint::parse_text(text)?;
    if checkpoint.origin != system_origin() {
        return Err(CheckpointError::OtherRegister(checkpoint.origin));
    }
    Ok(VerifiedCheckpoint {
        checkpoint,
        signer,
        note: note.to_owned(),
    })
}

/// How a register stands to a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Coverage {
    /// The register holds the checkpoint's version with its chain hash: everything up to it
    /// is what the signer vouched for.
    Holds,
    /// The register's entry at that version has another chain hash: its history is not the
    /// one the signer vouched for.
    Differs {
        /// The register's chain hash at that version.
        ours: String,
    },
    /// The register ends before the checkpoint's version.
    Behind {
        /// The register's head version.
        head: i64,
    },
}

/// Whether `store` holds what `checkpoint` vouches for.
pub async fn coverage(
    store: &dyn crate::store::RegisterStore,
    checkpoint: &HeadCheckpoint,
) -> Result<Coverage, crate::store::StoreError> {
    match store.entry(checkpoint.version).await? {
        Some(e) if e.chain_hash == checkpoint.chain_hash => Ok(Coverage::Holds),
        Some(e) => Ok(Coverage::Differs { ours: e.chain_hash }),
        None => Ok(Coverage::Behind {
            head: store.head().await?.map_or(0, |h| h.version),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> Head {
        Head {
            version: 42,
            chain_hash: chain::format_hash(&[7u8; 32]),
        }
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_key_only() {
        let key = SigningKey::generate("hub-0").unwrap();
        let other = SigningKey::generate("hub-0").unwrap();
        let cp = HeadCheckpoint::of_head(&head(), 1_796_281_398_191).unwrap();
        let note = cp.sign(&key);
        assert!(
            note.starts_with(&format!("{}\n42\n", system_origin())),
            "{note}"
        );
        assert!(
            note.contains("\ntimestamp 1796281398191\n\n\u{2014} hub-0 "),
            "{note}"
        );
        let opened = open(&note, &[key.verifier().clone()]).unwrap();
        assert_eq!(opened.checkpoint, cp);
        assert_eq!(&opened.signer, key.verifier());
        let untrusted = open(&note, &[other.verifier().clone()]).unwrap_err();
        assert_eq!(
            untrusted,
            CheckpointError::Untrusted(vec![format!("hub-0+{:08x}", key.verifier().id())])
        );
        let tampered = note.replacen("\n42\n", "\n43\n", 1);
        assert!(matches!(
            open(&tampered, &[key.verifier().clone()]),
            Err(CheckpointError::BadSignature(_))
        ));
    }

    #[test]
    fn checkpoint_texts_parse_strictly() {
        let cp = HeadCheckpoint::of_head(&head(), 5).unwrap();
        assert_eq!(HeadCheckpoint::parse_text(&cp.text()), Ok(cp.clone()));
        for bad in [
            cp.text().trim_end().to_owned(),
            cp.text().replacen("\n42\n", "\nforty\n", 1),
            cp.text().replace("timestamp 5\n", ""),
        ] {
            assert!(HeadCheckpoint::parse_text(&bad).is_err(), "{bad}");
        }
    }
}
