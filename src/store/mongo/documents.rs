//! How entries are stored as MongoDB documents, and which driver errors mean what.

use crate::register::entry::{Entry, EntryType};
use crate::register::signature::PublisherSignature;
use crate::store::StoreError;
use bytes::Bytes;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Bson, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use std::collections::BTreeMap;

pub(super) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    // Driver errors carry whole topology dumps; keep the first, telling part.
    let mut text = e.to_string();
    if let Some(cut) = text.find(", labels:") {
        text.truncate(cut);
    }
    if text.len() > 300 {
        let mut end = 300;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    StoreError::Unavailable(format!("MongoDB: {text}"))
}

pub(super) fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::InsertMany(im) => im.write_errors.iter().flatten().any(|w| w.code == 11000),
        ErrorKind::Command(c) => c.code == 11000,
        _ => e.to_string().contains("E11000"),
    }
}

/// MongoDB refused a document over its 16 MiB BSON limit: in the BSON encoder or the driver
/// (before sending) or on the server (`BSONObjectTooLarge`, 10334). Permanent: retrying
/// cannot help.
pub(super) fn is_too_large(e: &mongodb::error::Error) -> bool {
    const BSON_OBJECT_TOO_LARGE: i32 = 10334;
    match e.kind.as_ref() {
        ErrorKind::BsonSerialization(_) => e.to_string().contains("exceeded maximum size"),
        ErrorKind::InvalidArgument { message, .. } => message.contains("must be within"),
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == BSON_OBJECT_TOO_LARGE,
        ErrorKind::InsertMany(im) => im
            .write_errors
            .iter()
            .flatten()
            .any(|w| w.code == BSON_OBJECT_TOO_LARGE),
        ErrorKind::Command(c) => c.code == BSON_OBJECT_TOO_LARGE,
        _ => false,
    }
}

pub(super) fn too_large(e: &mongodb::error::Error) -> StoreError {
    StoreError::TooLarge(format!("MongoDB: {e}"))
}

/// A write that lost to a concurrent one and may simply be retried.
pub(super) fn is_conflict(e: &mongodb::error::Error) -> bool {
    e.contains_label("TransientTransactionError")
        || matches!(e.kind.as_ref(), ErrorKind::Command(c) if c.code == 112)
}

pub(super) fn to_doc(e: &Entry) -> Document {
    let metadata: Document = e
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), Bson::String(v.clone())))
        .collect();
    let mut d = doc! {
        "_id": e.version,
        "version": e.version,
        "blueprintId": &e.blueprint_id,
        "registerId": &e.register_id,
        "document": Binary { subtype: BinarySubtype::Generic, bytes: e.document.to_vec() },
        "publishedAt": e.published_at,
        "publishedBy": &e.published_by,
        "isActive": e.is_active,
        "publicationTransactionId": e.publication_transaction_id.clone().map_or(Bson::Null, Bson::String),
        "checksum": &e.checksum,
        "metadata": metadata,
        "chainHash": &e.chain_hash,
        "type": e.entry_type.as_str(),
    };
    // Absent when unsigned, as in every document of the releases before signatures.
    if let Some(signature) = &e.signature {
        d.insert("signature", signature.to_text());
    }
    d
}

/// Reads a stored entry, taking its document bytes without a copy. A listing projects the
/// document away (`listing`), and gets an empty one.
pub(super) fn from_doc(mut d: Document, listing: bool) -> Result<Entry, StoreError> {
    let version = d.get_i64("version").unwrap_or(0);
    let corrupt = |reason: String| StoreError::Corrupt { version, reason };
    let document = match d.remove("document") {
        Some(Bson::Binary(b)) => Bytes::from(b.bytes),
        None if listing => Bytes::new(),
        _ => return Err(corrupt("document is not binary".into())),
    };
    let text = |key: &str| {
        d.get_str(key)
            .map(str::to_owned)
            .map_err(|e| corrupt(format!("{key}: {e}")))
    };
    let mut metadata = BTreeMap::new();
    if let Ok(m) = d.get_document("metadata") {
        for (k, v) in m {
            let v = v
                .as_str()
                .ok_or_else(|| corrupt(format!("metadata {k} is not a string")))?;
            metadata.insert(k.clone(), v.to_owned());
        }
    }
    let type_name = text("type")?;
    let signature = match d.get("signature") {
        None | Some(Bson::Null) => None,
        Some(Bson::String(text)) => Some(
            PublisherSignature::parse_text(text)
                .map(Box::new)
                .map_err(|e| corrupt(format!("signature: {e}")))?,
        ),
        Some(other) => return Err(corrupt(format!("signature is not a string: {other}"))),
    };
    Ok(Entry {
        version,
        blueprint_id: text("blueprintId")?,
        register_id: text("registerId")?,
        document,
        published_at: d
            .get_i64("publishedAt")
            .map_err(|e| corrupt(format!("publishedAt: {e}")))?,
        published_by: text("publishedBy")?,
        is_active: d
            .get_bool("isActive")
            .map_err(|e| corrupt(format!("isActive: {e}")))?,
        publication_transaction_id: d
            .get_str("publicationTransactionId")
            .ok()
            .map(str::to_owned),
        checksum: text("checksum")?,
        metadata,
        chain_hash: text("chainHash")?,
        entry_type: EntryType::parse(&type_name)
            .ok_or_else(|| corrupt(format!("unknown entry type {type_name:?}")))?,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::register::validation::{
        BSON_DOCUMENT_LIMIT, MAX_DOCUMENT_BYTES, MAX_METADATA_BYTES,
    };

    /// The largest entry the rules allow, with every field at its worst: it must fit one
    /// MongoDB document, and the fields beside the document must stay inside the margin the
    /// limit's documentation states (48 KiB of the 64 KiB).
    #[test]
    fn the_largest_valid_entry_fits_one_bson_document() {
        // Metadata of the most elements: every one-byte key (BSON keys cannot hold NUL), then
        // two-byte keys, all with empty values, just under the 4 KiB total.
        let mut metadata = BTreeMap::new();
        let mut total = 0;
        for b in 1u8..128 {
            metadata.insert(char::from(b).to_string(), String::new());
            total += 1;
        }
        'outer: for a in b'a'..=b'z' {
            for b in 0u8..128 {
                if total + 2 >= MAX_METADATA_BYTES {
                    break 'outer;
                }
                if b == 0 {
                    continue;
                }
                metadata.insert(format!("{}{}", char::from(a), char::from(b)), String::new());
                total += 2;
            }
        }
        crate::register::validation::metadata(&metadata).expect("valid metadata");
        let wide = "𝄞".repeat(255); // 255 characters of 4 UTF-8 bytes
        let entry = Entry {
            version: i64::MAX,
            blueprint_id: "b".repeat(255),
            register_id: crate::register::entry::SYSTEM_REGISTER_ID.to_owned(),
            document: Bytes::from(vec![b' '; MAX_DOCUMENT_BYTES]),
            published_at: i64::MAX,
            published_by: wide.clone(),
            is_active: true,
            publication_transaction_id: Some(wide),
            checksum: format!("sha256:{}", "0".repeat(64)),
            metadata,
            chain_hash: format!("sha256:{}", "0".repeat(64)),
            entry_type: EntryType::Deprecated,
            signature: Some(Box::new(PublisherSignature {
                previous_version: i64::MAX,
                key_name: "𝄞".repeat(crate::keys::MAX_KEY_NAME_CHARS),
                key_id: u32::MAX,
                signature: [0xff; 64],
            })),
        };
        let size = mongodb::bson::to_vec(&to_doc(&entry)).unwrap().len();
        assert!(size <= BSON_DOCUMENT_LIMIT, "{size}");
        let beside_document = size - MAX_DOCUMENT_BYTES;
        assert!(beside_document < 48 * 1024, "{beside_document}");
    }
}
