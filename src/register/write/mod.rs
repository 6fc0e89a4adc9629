//! Writes by clients (a hub's publish, update and deprecate): the rules, the one
//! optimistic-concurrency loop, idempotency keys and transaction ids, publisher signatures,
//! the append itself. The three writes share these steps here, each once; what idempotency
//! keys add (claims, replays, expiry) is in `keys.rs`.

mod keys;

use super::chain;
use super::entry::{Entry, EntryType, Expectation, NewEntry, SYSTEM_REGISTER_ID};
use super::idempotency;
use super::signature::{PublisherSignature, SignedFields};
use super::validation::{self};
use super::{Register, RegisterError};
use crate::metrics::{Outcome, OutcomeLabels};
use crate::store::{KeyClaim, StoreError};
use std::collections::BTreeMap;
use std::time::Instant;

/// How often an append is retried when a concurrent write to the same blueprint wins.
const MAX_CONFLICT_RETRIES: usize = 16;
/// A publish or update as asked for by a client.
#[derive(Debug, Clone)]
pub struct Publication {
    /// Blueprint id.
    pub blueprint_id: String,
    /// The document (any JSON; must be an object).
    pub document: serde_json::Value,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Optional external transaction reference.
    pub publication_transaction_id: Option<String>,
    /// The publisher's signature over the entry this writes (see [`super::signature`]).
    pub signature: Option<Box<PublisherSignature>>,
}

/// How a client asked for a write: its precondition and idempotency key.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `If-Match`: the version the blueprint's newest entry must be, checked atomically with
    /// the append.
    pub expected: Option<i64>,
    /// `Idempotency-Key`: a retry of the same request with the same key gets the first
    /// write's entry back instead of writing again.
    pub idempotency_key: Option<String>,
}

/// A write's outcome.
#[derive(Debug, Clone)]
pub struct Written {
    /// The entry the request wrote (now or, when `replayed`, the first time).
    pub entry: Entry,
    /// True when an earlier identical request (same idempotency key, or same publication
    /// transaction id) wrote the entry and nothing was appended now.
    pub replayed: bool,
}

impl Register {
    fn ensure_writable(&self) -> Result<(), RegisterError> {
        match self.integrity() {
            Some(failure) => Err(RegisterError::Corrupt(failure)),
            None => Ok(()),
        }
    }

    fn prepare(
        &self,
        publication: Publication,
        published_by: &str,
        entry_type: EntryType,
    ) -> Result<NewEntry, RegisterError> {
        validation::blueprint_id(&publication.blueprint_id)?;
        validation::published_by(published_by)?;
        validation::transaction_id(publication.publication_transaction_id.as_deref())?;
        validation::metadata(&publication.metadata)?;
        let document =
            validation::canonical_document(&publication.document, self.options.max_document_bytes)?;
        if let Some(schema) = &self.options.blueprint_schema {
            schema.check(&publication.document)?;
        }
        Ok(NewEntry {
            blueprint_id: publication.blueprint_id,
            checksum: chain::checksum(&document),
            document: document.into(),
            published_at: self.clock.now_ms(),
            published_by: published_by.to_owned(),
            is_active: true,
            // The wire contract (proto3) cannot tell an empty id from none, and the chain
            // hash can: store "" as absent so every replica hashes the same entry.
            publication_transaction_id: publication
                .publication_transaction_id
                .filter(|tx| !tx.is_empty()),
            metadata: publication.metadata,
            entry_type,
            signature: publication.signature,
        })
    }

    /// Checks the signature policy for `new` written after the blueprint's entry
    /// `previous_version` (0 for a new blueprint): the signature binds that place.
    async fn check_signature(
        &self,
        new: &NewEntry,
        previous_version: i64,
    ) -> Result<(), RegisterError> {
        let fields = SignedFields {
            register_id: SYSTEM_REGISTER_ID,
            blueprint_id: &new.blueprint_id,
            entry_type: new.entry_type,
            is_active: new.is_active,
            previous_version,
            checksum: &new.checksum,
            metadata: &new.metadata,
            transaction_id: new.publication_transaction_id.as_deref(),
        };
        let signed = self.options.signatures.check_write(
            &new.published_by,
            new.signature.as_deref(),
            &fields,
        )?;
        match signed {
            Some(write) => match self.signature_batch.verifies(write.item).await {
                true => Ok(()),
                false => Err(write.invalid.into()),
            },
            None => Ok(()),
        }
    }

    /// A signed write's earlier identical request, if the write claims a key or transaction
    /// id: looked up before the signature is checked, because a retry's signature names the
    /// place the first attempt took, which has moved on since.
    async fn signed_retry(
        &self,
        new: &NewEntry,
        key: Option<&KeyClaim>,
        fingerprint: &str,
    ) -> Result<Option<Written>, RegisterError> {
        let transaction_id = new.publication_transaction_id.as_deref();
        if new.signature.is_none() || (key.is_none() && transaction_id.is_none()) {
            return Ok(None);
        }
        match self.store.prior(key, transaction_id).await? {
            Some(prior) => Ok(Some(
                self.replay(prior, key, transaction_id, fingerprint).await?,
            )),
            None => Ok(None),
        }
    }

    async fn append(
        &self,
        new: NewEntry,
        expect: Expectation,
        key: Option<&KeyClaim>,
    ) -> Result<Entry, RegisterError> {
        let started = Instant::now();
        let result = {
            let _in_flight = self.local_appends.begin();
            self.store.append(new, expect, key).await
        };
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(_) => Outcome::Failed,
        };
        self.options
            .metrics
            .publishes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        let entry = result?;
        self.options
            .metrics
            .publish_duration
            .observe(started.elapsed().as_secs_f64());
        self.recent.push([entry.clone()]);
        self.announce(entry.version);
        tracing::info!(
            version = entry.version,
            blueprint_id = %entry.blueprint_id,
            entry_type = entry.entry_type.as_str(),
            duration_us = started.elapsed().as_micros() as u64,
            "appended entry"
        );
        Ok(entry)
    }

    /// A client write checked and ready for the store: the register is writable, the
    /// publication meets every rule, and the key claim carries the request's fingerprint.
    fn check_write(
        &self,
        publication: Publication,
        published_by: &str,
        entry_type: EntryType,
        options: &WriteOptions,
    ) -> Result<Checked, RegisterError> {
        self.ensure_writable()?;
        let new = self.prepare(publication, published_by, entry_type)?;
        let fingerprint = claimed_fingerprint(&new, options);
        let key = self.key_claim(options, fingerprint.clone())?;
        Ok(Checked {
            new,
            fingerprint,
            key,
        })
    }

    /// Publishes a new blueprint (type *published*); fails if the id exists. A retry of an
    /// earlier request (same idempotency key or transaction id, same request) returns its
    /// entry without writing.
    #[tracing::instrument(name = "publish", skip_all, fields(blueprint_id = %publication.blueprint_id))]
    pub async fn publish(
        &self,
        publication: Publication,
        published_by: &str,
        options: &WriteOptions,
    ) -> Result<Written, RegisterError> {
        let Checked {
            new,
            fingerprint,
            key,
        } = self.check_write(publication, published_by, EntryType::Published, options)?;
        let id = new.blueprint_id.clone();
        if let Some(done) = self.signed_retry(&new, key.as_ref(), &fingerprint).await? {
            return Ok(done);
        }
        self.check_signature(&new, 0).await?;
        // The store checks the key and transaction id before the expectation, in the
        // append's transaction: a retry is answered from there, with no read before.
        match self
            .append_claiming(new, Expectation::Absent, key.as_ref(), &fingerprint)
            .await
        {
            Err(RegisterError::Store(StoreError::ExpectationFailed { .. })) => {
                Err(RegisterError::AlreadyExists(id))
            }
            other => other,
        }
    }

    /// Publishes a new document for an existing blueprint (type *updated*). Updating a
    /// deprecated blueprint makes it active again.
    ///
    /// With `options.expected` (a conditional write, `If-Match`), the blueprint's newest entry
    /// must be that version, checked atomically by the store's append: exactly one of
    /// concurrent writers expecting the same version succeeds, the others get
    /// [`RegisterError::Stale`]. Retries replay as for [`Register::publish`].
    #[tracing::instrument(name = "update", skip_all, fields(blueprint_id = %publication.blueprint_id))]
    pub async fn update(
        &self,
        publication: Publication,
        published_by: &str,
        options: &WriteOptions,
    ) -> Result<Written, RegisterError> {
        let Checked {
            new,
            fingerprint,
            key,
        } = self.check_write(publication, published_by, EntryType::Updated, options)?;
        let id = new.blueprint_id.clone();
        if let Some(done) = self.signed_retry(&new, key.as_ref(), &fingerprint).await? {
            return Ok(done);
        }
        // As for publish, the store answers a retry before it checks `If-Match`.
        if let Some(expected) = options.expected {
            self.check_signature(&new, expected).await?;
            let mut attempt = new;
            attempt.published_at = self.clock.now_ms();
            return match self
                .append_claiming(
                    attempt,
                    Expectation::AtVersion(expected),
                    key.as_ref(),
                    &fingerprint,
                )
                .await
            {
                Err(RegisterError::Store(StoreError::ExpectationFailed { .. })) => {
                    Err(self.stale(&id, expected).await)
                }
                other => other,
            };
        }
        let (new, key, fingerprint) = (&new, key.as_ref(), &fingerprint);
        until_uncontended(&id, || async {
            // Only the version is needed: the newest document is not loaded.
            let current = self
                .store
                .latest_size(&id)
                .await?
                .ok_or_else(|| RegisterError::NotFound(id.clone()))?;
            // A concurrent write in between moves the place, and the next round refuses a
            // signature bound to the old one.
            self.check_signature(new, current.version).await?;
            let mut attempt = new.clone();
            attempt.published_at = self.clock.now_ms();
            self.append_claiming(
                attempt,
                Expectation::AtVersion(current.version),
                key,
                fingerprint,
            )
            .await
        })
        .await
    }

    /// Deprecates a blueprint: appends a *deprecated* entry carrying the current document with
    /// `isActive = false`.
    #[tracing::instrument(name = "deprecate", skip(self, metadata, options))]
    ///
    /// With `options.expected` (`If-Match`), as [`Register::update`]: one attempt, stale →
    /// 412. A retry with the same idempotency key replays the first deprecation.
    pub async fn deprecate(
        &self,
        blueprint_id: &str,
        published_by: &str,
        metadata: BTreeMap<String, String>,
        signature: Option<Box<PublisherSignature>>,
        options: &WriteOptions,
    ) -> Result<Written, RegisterError> {
        self.ensure_writable()?;
        validation::blueprint_id(blueprint_id)?;
        validation::published_by(published_by)?;
        validation::metadata(&metadata)?;
        let template = NewEntry {
            blueprint_id: blueprint_id.to_owned(),
            document: bytes::Bytes::new(),
            checksum: String::new(),
            published_at: 0,
            published_by: published_by.to_owned(),
            is_active: false,
            publication_transaction_id: None,
            metadata,
            entry_type: EntryType::Deprecated,
            signature,
        };
        let fingerprint = claimed_fingerprint(&template, options);
        let key = self.key_claim(options, fingerprint.clone())?;
        // Before the checks below: the blueprint a first attempt deprecated is deprecated now.
        if let Some(k) = &key
            && let Some(prior) = self.store.prior(Some(k), None).await?
        {
            return self.replay(prior, Some(k), None, &fingerprint).await;
        }
        let expected = options.expected;
        let (template, key, fingerprint) = (&template, key.as_ref(), &fingerprint);
        until_uncontended(blueprint_id, || async {
            let current = self
                .store
                .latest(blueprint_id)
                .await?
                .ok_or_else(|| RegisterError::NotFound(blueprint_id.to_owned()))?;
            if let Some(expected) = expected
                && current.version != expected
            {
                return Err(RegisterError::Stale {
                    id: blueprint_id.to_owned(),
                    expected,
                    current: current.version,
                });
            }
            if !current.is_active {
                return Err(RegisterError::AlreadyDeprecated(blueprint_id.to_owned()));
            }
            let new = NewEntry {
                document: current.document.clone(),
                checksum: current.checksum.clone(),
                published_at: self.clock.now_ms(),
                ..template.clone()
            };
            self.check_signature(&new, current.version).await?;
            match self
                .append_claiming(
                    new,
                    Expectation::AtVersion(current.version),
                    key,
                    fingerprint,
                )
                .await
            {
                // A conditional deprecation is not retried: it names the version it replaces.
                Err(RegisterError::Store(StoreError::ExpectationFailed { .. }))
                    if let Some(expected) = expected =>
                {
                    Err(self.stale(blueprint_id, expected).await)
                }
                other => other,
            }
        })
        .await
    }

    /// Why a conditional write expecting `expected` failed: the blueprint's current version
    /// (or that it is gone, or the store's error).
    async fn stale(&self, id: &str, expected: i64) -> RegisterError {
        match self.store.latest_size(id).await {
            Ok(Some(current)) => RegisterError::Stale {
                id: id.to_owned(),
                expected,
                current: current.version,
            },
            Ok(None) => RegisterError::NotFound(id.to_owned()),
            Err(e) => e.into(),
        }
    }
}

/// What [`Register::check_write`] hands on.
struct Checked {
    new: NewEntry,
    fingerprint: String,
    key: Option<KeyClaim>,
}

/// The fingerprint of the request writing `new`, when the write claims anything (an
/// idempotency key or a transaction id) it could be compared against; otherwise nothing is
/// compared, and the publish path skips the hash.
fn claimed_fingerprint(new: &NewEntry, options: &WriteOptions) -> String {
    if options.idempotency_key.is_some() || new.publication_transaction_id.is_some() {
        idempotency::of_new(new)
    } else {
        String::new()
    }
}

/// The one optimistic-concurrency loop: runs `attempt` (read the blueprint's newest version,
/// append expecting it) again while a concurrent writer wins in between, at most
/// `MAX_CONFLICT_RETRIES` times.
async fn until_uncontended<F, Fut>(id: &str, mut attempt: F) -> Result<Written, RegisterError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Written, RegisterError>>,
{
    for _ in 0..MAX_CONFLICT_RETRIES {
        match attempt().await {
            Err(RegisterError::Store(StoreError::ExpectationFailed { .. })) => continue,
            other => return other,
        }
    }
    Err(RegisterError::Contended(id.to_owned()))
}
