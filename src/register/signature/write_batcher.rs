//! The hub's check of signed writes, batched: the signatures of concurrent publications are
//! verified together, in one Ed25519 batch equation on a thread of their own, while the runtime
//! threads go on parsing and storing. Under load a batch is every write that arrived while
//! the previous one was verified; alone, a write is verified at once by itself.

use ed25519_zebra::batch::Item;
use std::sync::{OnceLock, mpsc};
use tokio::sync::oneshot;

/// Signatures verified in one batch at most (a batch takes about 7 µs a signature).
const MAX_BATCH: usize = 256;

/// A signature to verify and where its answer goes.
struct Request {
    item: Item,
    reply: oneshot::Sender<bool>,
}

/// Verifies the signatures of concurrent writes in batches, on a thread of its own (started
/// with the first signed write, ended with the register): one hop there and one back per
/// write, and no runtime thread blocked by the curve arithmetic.
#[derive(Default)]
pub(crate) struct SignatureBatcher {
    queue: OnceLock<Option<mpsc::Sender<Request>>>,
}

impl std::fmt::Debug for SignatureBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignatureBatcher")
            .field("started", &self.queue.get().is_some())
            .finish()
    }
}

impl SignatureBatcher {
    /// True when `item`'s signature verifies (ZIP 215 rules, as every batch check here).
    pub(crate) async fn verifies(&self, item: Item) -> bool {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel();
            std::thread::Builder::new()
                .name("signature-batch".into())
                .spawn(move || work(&rx))
                .ok()
                .map(|_| tx)
        });
        let (reply, answer) = oneshot::channel();
        let request = Request {
            item: item.clone(),
            reply,
        };
        let sent = queue.as_ref().is_some_and(|q| q.send(request).is_ok());
        match sent {
            true => match answer.await {
                Ok(verified) => verified,
                // The thread went away (it panicked): check here instead.
                Err(_) => item.verify_single().is_ok(),
            },
            // No thread could be started: check here.
            false => item.verify_single().is_ok(),
        }
    }
}

/// Takes every request waiting (up to [`MAX_BATCH`]), verifies them together, answers each;
/// until every sender is gone.
fn work(rx: &mpsc::Receiver<Request>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        batch = answer(batch);
    }
}

/// Verifies `batch` and answers every request in it; the emptied vector back for reuse.
fn answer(mut batch: Vec<Request>) -> Vec<Request> {
    let verdicts = super::in_order::verdicts(&batch, |r| &r.item);
    for (request, verified) in batch.drain(..).zip(verdicts) {
        // A caller that gave up (its request was cancelled) needs no answer.
        let _ = request.reply.send(verified);
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    fn item(key: &SigningKey, signed: &[u8], message: &[u8]) -> Item {
        Item::from((
            ed25519_zebra::VerificationKeyBytes::from(key.verifier().key().to_bytes()),
            ed25519_zebra::Signature::from_bytes(&key.sign(signed)),
            message,
        ))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_checks_are_answered_each_by_its_own_signature() {
        let batcher = std::sync::Arc::new(SignatureBatcher::default());
        let key = SigningKey::generate("alice").unwrap();
        let checks = (0..200u32).map(|i| {
            let batcher = batcher.clone();
            let message = i.to_be_bytes();
            // Every seventh is signed over other bytes.
            let signed = if i % 7 == 3 { [9; 4] } else { message };
            let item = item(&key, &signed, &message);
            tokio::spawn(async move { (i, batcher.verifies(item).await) })
        });
        for check in checks {
            let (i, verified) = check.await.unwrap();
            assert_eq!(verified, i % 7 != 3, "signature {i}");
        }
        // Alone, too.
        assert!(batcher.verifies(item(&key, b"m", b"m")).await);
        assert!(!batcher.verifies(item(&key, b"m", b"n")).await);
    }
}
