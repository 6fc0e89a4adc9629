//! Signed publications for `publish --signed`: a publisher key, the signature field of each
//! publication, and the configuration of a hub that requires them.

use serde_json::{Value, json};

/// A publisher key signing new blueprints of one document.
pub(crate) struct Signer {
    key: sorcha_peer::keys::SigningKey,
    checksum: String,
}

impl Signer {
    pub(crate) fn new(doc: &Value) -> anyhow::Result<Self> {
        let canonical = sorcha_peer::register::validation::canonical_document(
            doc,
            sorcha_peer::register::validation::MAX_DOCUMENT_BYTES,
        )?;
        Ok(Signer {
            key: sorcha_peer::keys::SigningKey::generate("bench-publisher")?,
            checksum: sorcha_peer::register::chain::checksum(&canonical),
        })
    }

    /// The `signature` field of a new blueprint `id`.
    pub(crate) fn sign(&self, id: &str) -> Value {
        use sorcha_peer::register::signature::{PublisherSignature, SignedFields};
        let metadata = std::collections::BTreeMap::new();
        let s = PublisherSignature::sign(
            &self.key,
            &SignedFields {
                register_id: sorcha_peer::register::entry::SYSTEM_REGISTER_ID,
                blueprint_id: id,
                entry_type: sorcha_peer::register::entry::EntryType::Published,
                is_active: true,
                previous_version: 0,
                checksum: &self.checksum,
                metadata: &metadata,
                transaction_id: None,
            },
        );
        json!({"previousVersion": 0, "keyName": s.key_name, "value": s.value()})
    }

    /// A hub configuration file requiring signatures by this key from the admin identity.
    pub(crate) fn hub_config(&self, dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
        let path = dir.join("signed-hub.toml");
        std::fs::write(
            &path,
            format!(
                "[signatures]\nrequire = true\n\n[[publishers]]\nidentity = \"admin\"\nkeys = [\"{}\"]\n",
                self.key.verifier()
            ),
        )?;
        Ok(path)
    }
}
