//! Ed25519 keys in the C2SP signed-note encodings (<https://c2sp.org/signed-note>), used for
//! publisher signatures and hub checkpoints alike.
//!
//! - A **verifier key** (public) is `<name>+<key id, 8 hex>+<base64 of 0x01 ‖ 32-byte key>`;
//!   the key id is the first 4 bytes of `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key)`, so a name with
//!   several keys (a rotation) still names each one exactly.
//! - A **signing key** (private) is `PRIVATE+KEY+<name>+<key id>+<base64 of 0x01 ‖ seed>`,
//!   the format Go's `sumdb/note` and the `signed_note` crate read and write.
//!
//! Parsing and the key id are the `signed_note` crate's; this module adds files (the private
//! key written 0600, never logged: `Debug` redacts it) and the raw verifying key that batch
//! verification needs.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::Signer as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use signed_note::{StandardSigner, StandardVerifier, Verifier as _};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The signature type byte of Ed25519 in the signed-note encodings.
const ALG_ED25519: u8 = 0x01;

/// A key that could not be read, parsed or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text is not a key of the expected kind; says which part is wrong.
    #[error("{0}")]
    Malformed(String),
    /// A key file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// A public Ed25519 key with its name and key id.
#[derive(Clone)]
pub struct VerifierKey {
    name: String,
    id: u32,
    key: ed25519_dalek::VerifyingKey,
    text: String,
}

impl VerifierKey {
    /// Parses `<name>+<key id>+<base64>`.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let verifier = StandardVerifier::new(text).map_err(|e| {
            KeyError::Malformed(format!(
                "not a verifier key (name+keyid+base64 of an Ed25519 key): {e}"
            ))
        })?;
        check_name(verifier.name())?;
        // The crate checked the name, the id and the type byte; the raw key is the rest
        // (`name+id+base64`: base64 may hold `+` itself, names and ids do not).
        let bytes = key_bytes(text.splitn(3, '+').nth(2), "verifier key")?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|e| KeyError::Malformed(format!("verifier key: {e}")))?;
        if key.is_weak() {
            // A small-order key: signatures by it prove nothing (and the strict and batch
            // checks could disagree on them).
            return Err(KeyError::Malformed(
                "verifier key is a weak (small-order) Ed25519 point".into(),
            ));
        }
        Ok(VerifierKey {
            name: verifier.name().to_owned(),
            id: verifier.key_id(),
            key,
            text: text.to_owned(),
        })
    }

    /// The verifier key of `key` under `name`.
    pub fn of(name: &str, key: ed25519_dalek::VerifyingKey) -> Self {
        let text = signed_note::new_ed25519_verifier_key(name, &key);
        let id = signed_note::key_id(name, &[&[ALG_ED25519], key.as_bytes().as_slice()].concat());
        VerifierKey {
            name: name.to_owned(),
            id,
            key,
            text,
        }
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id (first 4 bytes of the key hash).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The raw Ed25519 key.
    pub fn key(&self) -> &ed25519_dalek::VerifyingKey {
        &self.key
    }

    /// True when `signature` is a valid Ed25519 signature of `message` by this key, under
    /// the ZIP 215 rules that every signature check of the register follows (batch and single
    /// checks agree on them; they accept every signature valid under RFC 8032).
    pub fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        ed25519_zebra::VerificationKey::try_from(self.key.to_bytes()).is_ok_and(|key| {
            key.verify(&ed25519_zebra::Signature::from_bytes(signature), message)
                .is_ok()
        })
    }

    /// The key as a `signed_note` verifier, for notes.
    pub fn note_verifier(&self) -> StandardVerifier {
        // Parsed from this very text before, so it parses again.
        StandardVerifier::new(&self.text).expect("a parsed verifier key parses again")
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({})", self.text)
    }
}

impl PartialEq for VerifierKey {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for VerifierKey {}

impl FromStr for VerifierKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VerifierKey::parse(s)
    }
}

impl Serialize for VerifierKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for VerifierKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        VerifierKey::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A private Ed25519 key with its name; `Debug` shows only the public half.
#[derive(Clone)]
pub struct SigningKey {
    signer: StandardSigner,
    key: ed25519_dalek::SigningKey,
    verifier: VerifierKey,
    text: String,
}

impl SigningKey {
    /// A new random key named `name` (a key name: non-empty, no spaces, no `+`).
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        check_name(name)?;
        let (skey, _) = signed_note::generate_key(&mut rand_core::OsRng, name);
        SigningKey::parse(&skey)
    }

    /// The key named `name` whose Ed25519 secret is `seed`: for reproducible simulations and
    /// fixtures; real keys come from [`SigningKey::generate`].
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, KeyError> {
        check_name(name)?;
        let secret = ed25519_dalek::SigningKey::from_bytes(seed);
        let public = [&[ALG_ED25519], secret.verifying_key().as_bytes().as_slice()].concat();
        let private = [&[ALG_ED25519], seed.as_slice()].concat();
        let id = signed_note::key_id(name, &public);
        SigningKey::parse(&format!(
            "PRIVATE+KEY+{name}+{id:08x}+{}",
            BASE64.encode(private)
        ))
    }

    /// Parses `PRIVATE+KEY+<name>+<key id>+<base64>`.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        // The crate's error never contains the key; ours says only which kind was expected.
        let signer = StandardSigner::new(text).map_err(|e| {
            KeyError::Malformed(format!(
                "not a signing key (PRIVATE+KEY+name+keyid+base64): {e}"
            ))
        })?;
        check_name(signed_note::Signer::name(&signer))?;
        // `PRIVATE+KEY+name+id+base64`.
        let seed = key_bytes(text.splitn(5, '+').nth(4), "signing key")?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let verifier = VerifierKey::of(signed_note::Signer::name(&signer), key.verifying_key());
        Ok(SigningKey {
            signer,
            key,
            verifier,
            text: text.to_owned(),
        })
    }

    /// Reads a signing key file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::File {
            path: path.to_owned(),
            source,
        })?;
        SigningKey::parse(&text)
            .map_err(|e| KeyError::Malformed(format!("{}: {e}", path.display())))
    }

    /// Reads the key at `path`, or when there is no file there generates one named `name`
    /// and writes it (0600) with its `.pub` beside it. The bool is true when it was generated.
    pub fn load_or_generate(path: &Path, name: &str) -> Result<(Self, bool), KeyError> {
        match std::fs::metadata(path) {
            Ok(_) => Ok((SigningKey::load(path)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SigningKey::generate(name)?;
                key.write(path)?;
                Ok((key, true))
            }
            Err(source) => Err(KeyError::File {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Writes the private key to `path` (created new, mode 0600: an existing file is never
    /// overwritten) and the verifier key to `path.pub`.
    pub fn write(&self, path: &Path) -> Result<(), KeyError> {
        let file_err = |path: &Path| {
            let path = path.to_owned();
            move |source| KeyError::File { path, source }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(file_err(dir))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(file_err(path))?;
        file.write_all(format!("{}\n", self.text).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(file_err(path))?;
        let public = public_path(path);
        std::fs::write(&public, format!("{}\n", self.verifier)).map_err(file_err(&public))?;
        Ok(())
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        self.verifier.name()
    }

    /// The public half.
    pub fn verifier(&self) -> &VerifierKey {
        &self.verifier
    }

    /// The Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// The key as a `signed_note` signer, for notes.
    pub fn note_signer(&self) -> &StandardSigner {
        &self.signer
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, private half redacted)", self.verifier)
    }
}

/// The 32 key bytes of an encoded key's last part (`base64` of the type byte and the key),
/// which the `signed_note` parser has already checked; `what` names the key in errors (never
/// its bytes).
fn key_bytes(encoded: Option<&str>, what: &str) -> Result<[u8; 32], KeyError> {
    BASE64
        .decode(encoded.unwrap_or_default())
        .ok()
        .and_then(|raw| raw.get(1..).and_then(|k| <[u8; 32]>::try_from(k).ok()))
        .ok_or_else(|| KeyError::Malformed(format!("{what}: not base64 of a 32-byte key")))
}

/// Where the verifier key of the signing key file `path` is written: `path` + `.pub`.
pub fn public_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Longest key name accepted, in characters: a name travels with every signed entry and note.
pub const MAX_KEY_NAME_CHARS: usize = 255;

/// Checks a key name against the signed-note rule (non-empty, no whitespace, no `+`) and
/// [`MAX_KEY_NAME_CHARS`].
pub fn check_name(name: &str) -> Result<(), KeyError> {
    let chars = name.chars().count();
    if chars > MAX_KEY_NAME_CHARS {
        return Err(KeyError::Malformed(format!(
            "key name is {chars} characters long; at most {MAX_KEY_NAME_CHARS}"
        )));
    }
    if signed_note::is_key_name_valid(name) {
        Ok(())
    } else {
        Err(KeyError::Malformed(format!(
            "key name {name:?} is not valid: it must be non-empty, with no spaces and no '+'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_reads_back_and_signs_for_its_verifier() {
        let key = SigningKey::generate("alice").unwrap();
        let again = SigningKey::parse(&key.text).unwrap();
        assert_eq!(again.verifier(), key.verifier());
        let vkey = VerifierKey::parse(&key.verifier().to_string()).unwrap();
        assert_eq!((vkey.name(), vkey.id()), ("alice", key.verifier().id()));
        let sig = key.sign(b"message");
        assert!(vkey.verifies(b"message", &sig));
        assert!(!vkey.verifies(b"massage", &sig));
        assert!(!format!("{key:?}").contains(&key.text[12..]), "{key:?}");
    }

    #[test]
    fn a_seeded_key_is_the_one_its_seed_gives_and_verifies_its_notes() {
        let key = SigningKey::from_seed("hub-0", &[7; 32]).unwrap();
        let again = SigningKey::from_seed("hub-0", &[7; 32]).unwrap();
        assert_eq!(key.verifier(), again.verifier());
        assert_ne!(
            key.verifier(),
            SigningKey::from_seed("hub-0", &[8; 32]).unwrap().verifier()
        );
        // The key id is the crate's, so its own verifier accepts what we sign.
        let vkey = VerifierKey::parse(&key.verifier().to_string()).unwrap();
        let signature = key.sign(b"message");
        assert!(vkey.verifies(b"message", &signature));
        assert!(SigningKey::from_seed("bad name", &[7; 32]).is_err());
    }

    #[test]
    fn keys_of_the_go_note_examples_parse_with_their_ids() {
        // From golang.org/x/mod/sumdb/note's documentation.
        let vkey = VerifierKey::parse(
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        )
        .unwrap();
        assert_eq!((vkey.name(), vkey.id()), ("PeterNeumann", 0xc74f20a3));
        let skey = SigningKey::parse(
            "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        )
        .unwrap();
        assert_eq!(skey.verifier(), &vkey);
        for bad in [
            "",
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "a b+00000000+AA==",
        ] {
            assert!(VerifierKey::parse(bad).is_err(), "{bad}");
        }
        assert!(
            SigningKey::parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
                .is_err()
        );
    }

    #[test]
    fn a_weak_verifier_key_is_refused() {
        // The identity point: small order, so any "signature" by it is meaningless.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = ed25519_dalek::VerifyingKey::from_bytes(&identity).unwrap();
        let text = VerifierKey::of("mallory", weak).to_string();
        let error = VerifierKey::parse(&text).unwrap_err().to_string();
        assert!(error.contains("weak"), "{error}");
    }
}
