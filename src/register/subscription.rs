//! Subscribing to the register: one filter rule and one subscriber wiring for every live feed
//! (gRPC push streams and SSE alike), over the follower cursor of [`Register::follow`].

use super::Register;
use super::entry::{Entry, EntryType};
use super::recent::{Derived, Form, SharedEntry};
use crate::metrics::{SubscriberGuard, Transport, TransportLabels};
use crate::store::StoreError;
use bytes::Bytes;
use futures::future::{BoxFuture, Either, FutureExt, Ready, ready};
use futures::{Stream, StreamExt};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Which entries a subscriber wants; empty lists match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// Only these blueprints.
    pub blueprint_ids: Vec<String>,
    /// Only these publishers.
    pub publisher_ids: Vec<String>,
    /// Only these entry types.
    pub types: Vec<EntryType>,
    /// Only entries whose metadata has all these pairs.
    pub metadata: BTreeMap<String, String>,
}

impl Filters {
    /// True when `entry` passes every filter.
    pub fn matches(&self, entry: &Entry) -> bool {
        (self.blueprint_ids.is_empty() || self.blueprint_ids.contains(&entry.blueprint_id))
            && (self.publisher_ids.is_empty() || self.publisher_ids.contains(&entry.published_by))
            && (self.types.is_empty() || self.types.contains(&entry.entry_type))
            && self
                .metadata
                .iter()
                .all(|(k, v)| entry.metadata.get(k) == Some(v))
    }
}

/// A derived form of an entry, ready now or once derived (see [`Register::derived_soon`]).
pub type SoonDerived = Either<Ready<Arc<[Bytes]>>, BoxFuture<'static, Arc<[Bytes]>>>;

/// What a subscriber is told of one followed entry.
#[derive(Debug)]
pub enum Followed {
    /// An entry that passes the subscriber's filters (counted as delivered).
    Wanted(Arc<SharedEntry>),
    /// The version of an entry the filters leave out: the subscriber's position still moves
    /// past it (an SSE stream's caught-up marker waits for it).
    Skipped(i64),
}

impl Register {
    /// A subscriber's feed: every entry after `after` and then each new one, as
    /// [`Register::follow`] gives them, sorted by `filters`. For as long as the stream lives it
    /// counts one subscriber of `transport`, each wanted entry as delivered and a store error
    /// (which ends the stream, as it ends the cursor) as a failed notification.
    pub fn subscribe(
        self: &Arc<Self>,
        after: i64,
        filters: Filters,
        transport: Transport,
    ) -> impl Stream<Item = Result<Followed, StoreError>> + Send + use<> {
        let metrics = &self.options.metrics;
        let labels = TransportLabels { transport };
        let subscriber = SubscriberGuard::new(metrics, transport);
        let delivered = metrics
            .notifications_delivered
            .get_or_create(&labels)
            .clone();
        let failed = metrics.notification_failures.get_or_create(&labels).clone();
        self.follow(after).map(move |item| {
            let _counted = &subscriber;
            match item {
                Ok(shared) if filters.matches(&shared.entry) => {
                    delivered.inc();
                    Ok(Followed::Wanted(shared))
                }
                Ok(shared) => Ok(Followed::Skipped(shared.entry.version)),
                Err(e) => {
                    failed.inc();
                    Err(e)
                }
            }
        })
    }

    /// The `form` of `shared` (see [`super::recent::RecentWindow::derived`]) as a future that
    /// stays small while it waits: ready at once when another subscriber derived it already
    /// (the common case: one derives, thousands send), else boxed. A stream holds its pending
    /// future inline, so ten thousand streams each holding a whole derivation's state would
    /// cost memory per subscriber for nothing.
    pub fn derived_soon<F>(
        self: &Arc<Self>,
        shared: &Arc<SharedEntry>,
        form: Form,
        derive: F,
    ) -> SoonDerived
    where
        F: Fn(&Entry) -> Derived + Clone + Send + Sync + 'static,
    {
        if let Some(parts) = shared.derived_now(form) {
            return Either::Left(ready(parts));
        }
        let (register, shared) = (Arc::clone(self), Arc::clone(shared));
        Either::Right(async move { register.recent().derived(&shared, form, derive).await }.boxed())
    }
}
