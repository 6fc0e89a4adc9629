use super::*;
use crate::register::entry::NewEntry;

fn signed_entry(
    key: &SigningKey,
    head: Option<&crate::register::entry::Head>,
    id: &str,
    entry_type: EntryType,
    previous_version: i64,
) -> Entry {
    let document = bytes::Bytes::from(format!("{{\"id\":\"{id}\"}}"));
    let checksum = crate::register::chain::checksum(&document);
    let metadata = BTreeMap::from([("team".to_owned(), "ops".to_owned())]);
    let fields = SignedFields {
        register_id: super::super::entry::SYSTEM_REGISTER_ID,
        blueprint_id: id,
        entry_type,
        is_active: true,
        previous_version,
        checksum: &checksum,
        metadata: &metadata,
        transaction_id: None,
    };
    let signature = PublisherSignature::sign(key, &fields);
    NewEntry {
        blueprint_id: id.to_owned(),
        document,
        checksum,
        published_at: 1,
        published_by: "alice".into(),
        is_active: true,
        publication_transaction_id: None,
        metadata,
        entry_type,
        signature: Some(Box::new(signature)),
    }
    .into_entry_after(head)
}

fn head_of(e: &Entry) -> crate::register::entry::Head {
    crate::register::entry::Head {
        version: e.version,
        chain_hash: e.chain_hash.clone(),
    }
}

#[test]
fn signed_entries_verify_in_place_and_nowhere_else() {
    let key = SigningKey::generate("alice").unwrap();
    let keys = PublisherKeys::new([key.verifier().clone()]);
    let genesis = crate::register::genesis::genesis_entry();
    let a1 = signed_entry(&key, Some(&head_of(&genesis)), "a", EntryType::Published, 0);
    let b1 = signed_entry(&key, Some(&head_of(&a1)), "b", EntryType::Published, 0);
    let a2 = signed_entry(&key, Some(&head_of(&b1)), "a", EntryType::Updated, 2);
    let log = vec![genesis.clone(), a1.clone(), b1.clone(), a2.clone()];
    let mut check = SignatureCheck::new(keys.clone(), true);
    assert_eq!(check.check_all(&log), vec![]);
    assert_eq!(check.signed(), 3);

    // The update of "a" signed after version 2, replayed after a later version of "a".
    let a3 = signed_entry(&key, Some(&head_of(&a2)), "a", EntryType::Updated, 4);
    let mut replayed = a2.clone();
    replayed.version = 6;
    let mut check = SignatureCheck::new(keys.clone(), true);
    let defects = check.check_all(&[log.clone(), vec![a3, replayed]].concat());
    assert_eq!(
        defects,
        vec![SignatureDefect {
            version: 6,
            error: SignatureError::WrongPlace {
                signed_for: 2,
                actual: 5
            }
        }]
    );

    // The same signature moved to another blueprint no longer verifies.
    let mut moved = a2.clone();
    moved.blueprint_id = "b".into();
    moved.signature.as_mut().unwrap().previous_version = 3;
    let mut check = SignatureCheck::new(keys.clone(), false);
    let defects = check.check_all(&[genesis.clone(), a1.clone(), b1.clone(), moved]);
    assert!(
        matches!(
            defects.as_slice(),
            [SignatureDefect {
                version: 4,
                error: SignatureError::Invalid {
                    previous_version: 3,
                    ..
                }
            }]
        ),
        "{defects:?}"
    );

    // Unsigned entries fail only where signatures are required; genesis never does.
    let mut unsigned = b1.clone();
    unsigned.signature = None;
    for (require, expected) in [(false, 0), (true, 1)] {
        let mut check = SignatureCheck::new(keys.clone(), require);
        let found = check.check_all(&[genesis.clone(), a1.clone(), unsigned.clone()]);
        assert_eq!(found.len(), expected, "{found:?}");
    }

    // A key nobody trusts.
    let other = SigningKey::generate("alice").unwrap();
    let forged = signed_entry(
        &other,
        Some(&head_of(&genesis)),
        "a",
        EntryType::Published,
        0,
    );
    let mut check = SignatureCheck::new(keys, false);
    assert!(matches!(
        check.check_all(&[genesis, forged]).as_slice(),
        [SignatureDefect {
            version: 2,
            error: SignatureError::UnknownKey { .. }
        }]
    ));
}

#[test]
fn a_batch_with_one_bad_signature_names_it() {
    // 600 signatures in one batch, two of them bad.
    let key = SigningKey::generate("alice").unwrap();
    let keys = PublisherKeys::new([key.verifier().clone()]);
    let mut log = vec![crate::register::genesis::genesis_entry()];
    for i in 0..600 {
        let head = head_of(log.last().unwrap());
        log.push(signed_entry(
            &key,
            Some(&head),
            &format!("b{i}"),
            EntryType::Published,
            0,
        ));
    }
    log[17].signature.as_mut().unwrap().signature[5] ^= 1;
    log[590].signature.as_mut().unwrap().signature[9] ^= 1;
    let versions = |d: Vec<SignatureDefect>| d.iter().map(|d| d.version).collect::<Vec<_>>();
    let mut check = SignatureCheck::new(keys.clone(), false);
    assert_eq!(versions(check.check_all(&log)), vec![18, 591]);
    assert_eq!(check.signed(), 598);
    // A small batch (one batch equation) names its bad one too.
    let mut check = SignatureCheck::new(keys, false);
    assert_eq!(versions(check.check_all(&log[..40])), vec![18]);
    assert_eq!(check.signed(), 38);
}

#[test]
fn signatures_round_trip_as_text_and_refuse_malformed_values() {
    let key = SigningKey::generate("alice").unwrap();
    let metadata = BTreeMap::new();
    let fields = SignedFields {
        register_id: "r",
        blueprint_id: "b",
        entry_type: EntryType::Published,
        is_active: true,
        previous_version: 7,
        checksum: "sha256:00",
        metadata: &metadata,
        transaction_id: Some("tx"),
    };
    let s = PublisherSignature::sign(&key, &fields);
    assert_eq!(PublisherSignature::parse_text(&s.to_text()), Ok(s.clone()));
    assert!(PublisherSignature::from_parts(0, "alice", "AAAA").is_err());
    assert!(PublisherSignature::from_parts(-1, "alice", &s.value()).is_err());
    assert!(PublisherSignature::from_parts(0, "al ice", &s.value()).is_err());
    // The signed bytes start with the domain prefix and change with every field.
    let bytes = fields.bytes();
    assert!(bytes.starts_with(SIGNED_PREFIX));
    let other = SignedFields {
        transaction_id: None,
        ..fields
    };
    assert_ne!(other.bytes(), bytes);
}
