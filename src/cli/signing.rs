//! Keys and signatures on the command line: `keygen`, `publish`/`deprecate --sign-key`, and
//! the publisher-keys file of an offline `verify`.

use super::client::ApiClient;
use super::{CheckpointArgs, KeygenArgs, Output};
use crate::keys::{SigningKey, VerifierKey, public_path};
use crate::register::chain;
use crate::register::checkpoint_note::{self, Coverage, HeadCheckpoint};
use crate::register::entry::{EntryType, SYSTEM_REGISTER_ID};
use crate::register::signature::{PublisherKeys, PublisherSignature, SignedFields};
use crate::register::validation;
use crate::store::RegisterStore;
use anyhow::Context;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// `keygen --name NAME --out FILE`: writes the private key (0600) and `FILE.pub`, prints the
/// verifier key. The private key is never printed.
pub fn keygen(args: &KeygenArgs) -> anyhow::Result<i32> {
    let key = SigningKey::generate(&args.name)?;
    key.write(&args.out)?;
    eprintln!(
        "wrote the private key to {} (keep it secret) and the verifier key to {}",
        args.out.display(),
        public_path(&args.out).display()
    );
    println!("{}", key.verifier());
    Ok(0)
}

/// `checkpoint --server URL [--trust VKEY]...`: fetches the node's signed checkpoint and
/// verifies it; exit 1 when it does not verify under a trusted key.
pub async fn checkpoint(args: CheckpointArgs) -> anyhow::Result<i32> {
    let client = ApiClient::from_args(&args.client)?;
    let note = client
        .get_text("/api/v1/system-register/checkpoint")
        .await?;
    if args.trust.is_empty() {
        let text = note.split("\n\n").next().unwrap_or_default();
        let checkpoint = HeadCheckpoint::parse_text(&format!("{text}\n"))?;
        println!(
            "UNVERIFIED (no --trust key): version {} {} at {}, signed by {}",
            checkpoint.version,
            checkpoint.chain_hash,
            checkpoint.timestamp_ms,
            checkpoint_note::signature_lines(&note).join(", ")
        );
        return Ok(0);
    }
    match checkpoint_note::open(&note, &args.trust) {
        Ok(verified) => {
            if args.client.output == Output::Json {
                println!(
                    "{}",
                    json!({"version": verified.checkpoint.version,
                           "chainHash": verified.checkpoint.chain_hash,
                           "timestamp": verified.checkpoint.timestamp_ms,
                           "signer": verified.signer.to_string(),
                           "note": verified.note})
                );
            } else {
                println!(
                    "ok: version {} {} at {}, signed by {}",
                    verified.checkpoint.version,
                    verified.checkpoint.chain_hash,
                    verified.checkpoint.timestamp_ms,
                    verified.signer
                );
            }
            Ok(0)
        }
        Err(e) => {
            println!("FAILED: {e}");
            Ok(1)
        }
    }
}

/// A write about to be signed: what the register will store, but for what the node decides.
#[derive(Debug, Clone, Copy)]
pub struct Unsigned<'a> {
    /// The blueprint.
    pub blueprint_id: &'a str,
    /// Published, updated or deprecated.
    pub entry_type: EntryType,
    /// The document (none for a deprecation, which carries the blueprint's current one).
    pub document: Option<&'a Value>,
    /// Metadata.
    pub metadata: &'a BTreeMap<String, String>,
    /// Publication transaction id.
    pub transaction_id: Option<&'a str>,
}

/// Signs `publication` with the key in `key_file` for its place in the register of the node
/// `client` talks to (the blueprint's current version, read from it for an update or a
/// deprecation), and returns the request's `signature` field.
pub async fn sign(
    client: &ApiClient,
    key_file: &Path,
    publication: &Unsigned<'_>,
) -> anyhow::Result<Value> {
    let key = SigningKey::load(key_file)?;
    let current = if publication.entry_type == EntryType::Published {
        None
    } else {
        let path = format!(
            "/api/v1/system-register/blueprints/{}",
            publication.blueprint_id
        );
        Some(client.get(&path).await.with_context(|| {
            format!(
                "cannot sign: reading blueprint {:?} for its current version",
                publication.blueprint_id
            )
        })?)
    };
    let previous_version = current.as_ref().map_or(Some(0), |c| c["version"].as_i64());
    let previous_version = previous_version.context("the node's answer has no version")?;
    let checksum = match (publication.document, &current) {
        (Some(document), _) => {
            // The node stores (and signs) the canonical bytes: the same rule as its own.
            let canonical =
                validation::canonical_document(document, validation::MAX_DOCUMENT_BYTES)?;
            chain::checksum(&canonical)
        }
        (None, Some(current)) => current["checksum"]
            .as_str()
            .context("the node's answer has no checksum")?
            .to_owned(),
        (None, None) => anyhow::bail!("a publication to sign needs its document"),
    };
    let fields = SignedFields {
        register_id: SYSTEM_REGISTER_ID,
        blueprint_id: publication.blueprint_id,
        entry_type: publication.entry_type,
        is_active: publication.entry_type != EntryType::Deprecated,
        previous_version,
        checksum: &checksum,
        metadata: publication.metadata,
        transaction_id: publication.transaction_id.filter(|t| !t.is_empty()),
    };
    let signature = PublisherSignature::sign(&key, &fields);
    Ok(json!({
        "previousVersion": signature.previous_version,
        "keyName": signature.key_name,
        "value": signature.value(),
    }))
}

/// Reads a file of verifier keys, one per line; blank lines and `#` comments are skipped.
pub fn read_publisher_keys(file: &Path) -> anyhow::Result<PublisherKeys> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read publisher keys from {}", file.display()))?;
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        keys.push(
            VerifierKey::parse(line)
                .with_context(|| format!("{} line {}", file.display(), n + 1))?,
        );
    }
    anyhow::ensure!(!keys.is_empty(), "{} holds no verifier key", file.display());
    Ok(PublisherKeys::new(keys))
}

/// What `verify --checkpoint` found: who signed the checkpoint, what it covers, and whether the
/// replica holds it.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointFinding {
    /// The key that signed it.
    pub key: String,
    /// The version it covers.
    pub version: i64,
    /// The chain hash it covers.
    pub chain_hash: String,
    /// The signer's time, Unix ms.
    pub timestamp_ms: i64,
    /// How the replica stands to it.
    pub coverage: Coverage,
}

impl CheckpointFinding {
    /// One line for people.
    pub fn describe(&self) -> String {
        let what = format!(
            "checkpoint of version {} by {} (timestamp {})",
            self.version, self.key, self.timestamp_ms
        );
        match &self.coverage {
            Coverage::Holds => format!("ok: the replica holds the {what}"),
            Coverage::Differs { ours } => format!(
                "FAILED (checkpoint): the {what} says {}, the replica has {ours}",
                self.chain_hash
            ),
            Coverage::Behind { head } => format!(
                "FAILED (checkpoint): the replica ends at version {head}, before the {what}"
            ),
        }
    }
}

/// Opens the checkpoint note in `file` with the `trust`ed keys and checks the replica in
/// `store` against it. A note that does not verify is an error.
pub async fn check_checkpoint(
    store: &dyn RegisterStore,
    file: &Path,
    trust: &[String],
) -> anyhow::Result<CheckpointFinding> {
    let keys = trust
        .iter()
        .map(|k| VerifierKey::parse(k).with_context(|| format!("--trust {k}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let note = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the checkpoint {}", file.display()))?;
    let opened = checkpoint_note::open(&note, &keys)
        .with_context(|| format!("the checkpoint {} does not verify", file.display()))?;
    let coverage = checkpoint_note::coverage(store, &opened.checkpoint).await?;
    Ok(CheckpointFinding {
        key: opened.signer.to_string(),
        version: opened.checkpoint.version,
        chain_hash: opened.checkpoint.chain_hash,
        timestamp_ms: opened.checkpoint.timestamp_ms,
        coverage,
    })
}
