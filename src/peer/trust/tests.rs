use super::*;
use crate::keys::SigningKey;
use crate::register::checkpoint_note::HeadCheckpoint;
use crate::register::entry::Head;

fn note(key: &SigningKey, version: i64, fill: u8, at: i64) -> String {
    let head = Head {
        version,
        chain_hash: crate::register::chain::format_hash(&[fill; 32]),
    };
    HeadCheckpoint::of_head(&head, at).unwrap().sign(key)
}

#[test]
fn first_use_pins_per_url_and_refuses_another_key_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        SigningKey::generate("hub-a").unwrap(),
        SigningKey::generate("hub-a").unwrap(),
    );
    let trust = HubTrust::open(Vec::new(), dir.path());
    assert!(!trust.checks("http://h1"));
    let key_a = a.verifier().to_string();
    trust
        .admit("http://h1", Some(&key_a), Some(&note(&a, 3, 1, 10)), 3)
        .unwrap();
    assert!(trust.checks("http://h1"));
    // Pinned across a restart: the same URL with another key is refused.
    let trust = HubTrust::open(Vec::new(), dir.path());
    let err = trust
        .admit(
            "http://h1",
            Some(&b.verifier().to_string()),
            Some(&note(&b, 3, 1, 11)),
            3,
        )
        .unwrap_err();
    assert!(matches!(err, TrustError::KeyChanged { .. }), "{err}");
    // A note by another key under the pinned key's URL does not verify.
    assert!(trust.vouch_head("http://h1", &note(&b, 4, 1, 12)).is_err());
    // A hub that offers no key is not checked.
    assert!(trust.admit("http://h2", None, None, 3).unwrap().is_none());
}

#[test]
fn forks_and_rollbacks_are_kept_as_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        SigningKey::generate("hub-a").unwrap(),
        SigningKey::generate("hub-b").unwrap(),
    );
    let trust = HubTrust::open(vec![a.verifier().clone(), b.verifier().clone()], dir.path());
    let first = note(&a, 5, 1, 10);
    trust.vouch_head("u1", &first).unwrap();
    // Another hub, same version, another hash: a fork.
    let second = note(&b, 5, 2, 11);
    let TrustError::Equivocation { evidence: e, new } =
        trust.vouch_head("u2", &second).unwrap_err()
    else {
        panic!("not equivocation");
    };
    assert!(new);
    // Seen again (the hub retried), even re-signed at another time: the same evidence,
    // not new.
    for again in [second.clone(), note(&b, 5, 2, 12), note(&b, 5, 2, 13)] {
        assert!(matches!(
            trust.vouch_head("u2", &again),
            Err(TrustError::Equivocation { new: false, .. })
        ));
    }
    assert_eq!(
        (e.kind, e.first.as_str(), e.second.as_str()),
        (EquivocationKind::Fork, first.as_str(), second.as_str())
    );
    // The same key vouching for a smaller head later: a rollback.
    let TrustError::Equivocation { evidence: e, .. } =
        trust.vouch_head("u1", &note(&a, 4, 1, 20)).unwrap_err()
    else {
        panic!("not equivocation");
    };
    assert_eq!(e.kind, EquivocationKind::Rollback);
    assert!(matches!(
        trust.vouch_head("u1", &note(&a, 4, 1, 21)),
        Err(TrustError::Equivocation { new: false, .. })
    ));
    assert_eq!(trust.view().equivocations.len(), 2, "one of each");
    // A page note at a smaller version (inside a stream) is not a rollback.
    trust
        .vouch_entry(
            "u1",
            &note(&a, 3, 3, 30),
            3,
            &crate::register::chain::format_hash(&[3; 32]),
        )
        .unwrap();
    assert_eq!(trust.view().equivocations.len(), 2);
    // An untrusted key is refused.
    let c = SigningKey::generate("hub-c").unwrap();
    assert!(matches!(
        trust.vouch_head("u1", &note(&c, 9, 1, 40)),
        Err(TrustError::Untrusted(_))
    ));
}

#[test]
fn the_last_applied_checkpoint_survives_a_restart_while_it_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let a = SigningKey::generate("hub-a").unwrap();
    let trust = HubTrust::open(vec![a.verifier().clone()], dir.path());
    let v = trust.vouch_head("u", &note(&a, 7, 1, 10)).unwrap();
    trust.applied(v.clone());
    let again = HubTrust::open(vec![a.verifier().clone()], dir.path());
    assert_eq!(again.last_checkpoint(), Some(v));
    let other = SigningKey::generate("hub-b").unwrap();
    let distrusting = HubTrust::open(vec![other.verifier().clone()], dir.path());
    assert_eq!(distrusting.last_checkpoint(), None);
}
