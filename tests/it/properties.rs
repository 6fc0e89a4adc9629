//! Property-based fuzzing (proptest) of the input surfaces: document and id validation, chain
//! verification, and the SSE resume/filter parsing over a real socket. Each property first
//! replays the hand-kept corpus in `tests/corpus/` (hostile inputs found or written so far),
//! then a bounded number of generated cases: `SORCHA_FUZZ_CASES` (default 256) per property.
//! A failing case is shrunk and appended to `tests/corpus/proptest-*.txt` so it replays first
//! next time.

use crate::support::{PUBLISHER, TestHub};
use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use sorcha_peer::register::chain;
use sorcha_peer::register::chain_check::ChainVerifier;
use sorcha_peer::register::entry::{Entry, EntryType, NewEntry};
use sorcha_peer::register::validation::{self, ValidationError};
use std::collections::BTreeMap;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus");

/// A runner whose failures are written under the build's scratch directory, never into the
/// source tree. Seeds committed as `tests/corpus/proptest-<name>.txt` (a failure worth
/// keeping, copied there by hand) are replayed first.
fn runner(name: &'static str) -> TestRunner {
    let cases = std::env::var("SORCHA_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    let file = format!("proptest-{name}.txt");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(&file);
    if let Ok(committed) = std::fs::read_to_string(format!("{CORPUS}/{file}")) {
        let found = std::fs::read_to_string(&path).unwrap_or_default();
        if !found.contains(&committed) {
            std::fs::write(&path, committed + &found).unwrap();
        }
    }
    let path: &'static str = Box::leak(path.to_string_lossy().into_owned().into_boxed_str());
    TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(path))),
        ..Config::default()
    })
}

/// The lines of a corpus file (`#` starts a comment line), with `\n`, `\r`, `\t`, `\\` and
/// `\xNN` escapes decoded to bytes.
fn corpus(file: &str) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(format!("{CORPUS}/{file}")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(unescape)
        .collect()
}

fn unescape(line: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'\\' => out.push(b'\\'),
                b'x' if i + 3 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                other => out.extend([b'\\', other]),
            }
            i += 2;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Any bytes: either a valid canonical object within the limit comes out, whose
/// canonicalization is a fixed point, or a `Document*` error — never a panic.
fn check_document(bytes: &[u8]) -> Result<(), TestCaseError> {
    const LIMIT: usize = 4096;
    match validation::parse_document(bytes, LIMIT) {
        Ok(canonical) => {
            prop_assert!(canonical.len() <= LIMIT);
            let value: serde_json::Value = serde_json::from_slice(&canonical)
                .map_err(|e| TestCaseError::fail(format!("canonical output is not JSON: {e}")))?;
            prop_assert!(value.is_object());
            let again = validation::parse_document(&canonical, LIMIT).unwrap();
            prop_assert_eq!(again, canonical, "canonicalization is not idempotent");
        }
        Err(
            ValidationError::DocumentJson(_)
            | ValidationError::DocumentNotObject(_)
            | ValidationError::DocumentTooLarge { .. },
        ) => {}
        Err(other) => return Err(TestCaseError::fail(format!("unexpected error {other}"))),
    }
    Ok(())
}

#[test]
fn documents_canonicalize_or_fail_cleanly() {
    for bytes in corpus("documents.txt") {
        check_document(&bytes).unwrap();
    }
    let json_like = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        "\\{[ -~]{0,120}\\}".prop_map(String::into_bytes),
        json_object().prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ];
    runner("documents")
        .run(&json_like, |bytes| check_document(&bytes))
        .unwrap();
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| serde_json::json!(f)),
        ".{0,16}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(".{0,8}", inner, 0..8)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = serde_json::Value> {
    proptest::collection::btree_map(".{0,8}", json_value(), 0..8)
        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect()))
}

#[test]
fn equal_documents_have_one_canonical_form_whatever_the_key_order() {
    runner("canonical")
        .run(&json_object(), |value| {
            let canonical = validation::canonical_document(&value, usize::MAX).unwrap();
            // Re-serialize with keys in reverse order and pretty-printed: same canonical bytes.
            let reordered = reverse_keys(&value);
            let pretty = serde_json::to_vec_pretty(&reordered).unwrap();
            prop_assert_eq!(
                validation::parse_document(&pretty, usize::MAX).unwrap(),
                canonical
            );
            Ok(())
        })
        .unwrap();
}

fn reverse_keys(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map.iter().rev() {
                out.insert(k.clone(), reverse_keys(v));
            }
            serde_json::Value::Object(out)
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(reverse_keys).collect())
        }
        other => other.clone(),
    }
}

/// The reference rule for blueprint ids, written independently of the implementation.
fn id_is_valid(id: &str) -> bool {
    (1..=255).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[test]
fn blueprint_ids_follow_the_rule_exactly() {
    for line in corpus("ids.txt") {
        let id = String::from_utf8_lossy(&line);
        assert_eq!(
            validation::blueprint_id(&id).is_ok(),
            id_is_valid(&id),
            "{id:?}"
        );
    }
    let ids = prop_oneof!["[A-Za-z0-9_-]{0,300}", ".{0,40}", "[a-z./\\\\%]{0,20}"];
    runner("ids")
        .run(&ids, |id| {
            prop_assert_eq!(validation::blueprint_id(&id).is_ok(), id_is_valid(&id));
            Ok(())
        })
        .unwrap();
}

fn chain_of(documents: &[Vec<u8>]) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    for (i, doc) in documents.iter().enumerate() {
        let document = Bytes::from(doc.clone());
        let new = NewEntry {
            blueprint_id: format!("bp-{i}"),
            checksum: chain::checksum(&document),
            document,
            published_at: 1_700_000_000_000 + i as i64,
            published_by: "alice".into(),
            is_active: true,
            publication_transaction_id: None,
            metadata: BTreeMap::new(),
            entry_type: EntryType::Published,
            signature: None,
        };
        let prev = entries.last().map(|e| e.chain_hash.clone());
        entries.push(new.into_entry(i as i64 + 1, prev.as_deref()));
    }
    entries
}

fn verify(entries: &[Entry]) -> Result<(), i64> {
    let mut verifier = ChainVerifier::new();
    for e in entries {
        verifier.check(e).map_err(|f| f.version)?;
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Tamper {
    FlipDocumentByte(usize, u8),
    ChangeVersion(usize, i64),
    ChangeChainHash(usize),
    ChangePublisher(usize),
    FlipActive(usize),
    Drop(usize),
    Swap(usize),
}

#[test]
fn any_single_tampering_of_a_chain_is_detected_at_or_before_it() {
    let docs = proptest::collection::vec(
        json_object().prop_map(|v| validation::canonical_document(&v, usize::MAX).unwrap()),
        2..12,
    );
    let tamper = prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, x)| Tamper::FlipDocumentByte(i, x)),
        (
            any::<usize>(),
            prop_oneof![Just(-1i64), Just(0), Just(i64::MAX), 1..1000i64]
        )
            .prop_map(|(i, v)| Tamper::ChangeVersion(i, v)),
        any::<usize>().prop_map(Tamper::ChangeChainHash),
        any::<usize>().prop_map(Tamper::ChangePublisher),
        any::<usize>().prop_map(Tamper::FlipActive),
        any::<usize>().prop_map(Tamper::Drop),
        any::<usize>().prop_map(Tamper::Swap),
    ];
    runner("chain")
        .run(&(docs, tamper), |(docs, tamper)| {
            let mut entries = chain_of(&docs);
            prop_assert_eq!(verify(&entries), Ok(()));
            let n = entries.len();
            let at = match tamper {
                Tamper::FlipDocumentByte(i, x) => {
                    let i = i % n;
                    let mut doc = entries[i].document.to_vec();
                    let j = x as usize % doc.len();
                    doc[j] ^= x;
                    entries[i].document = Bytes::from(doc);
                    i
                }
                Tamper::ChangeVersion(i, v) => {
                    let i = i % n;
                    if v == entries[i].version {
                        return Ok(());
                    }
                    entries[i].version = v;
                    i
                }
                Tamper::ChangeChainHash(i) => {
                    let i = i % n;
                    entries[i].chain_hash = chain::format_hash(&[7u8; 32]);
                    i
                }
                Tamper::ChangePublisher(i) => {
                    let i = i % n;
                    entries[i].published_by.push('!');
                    i
                }
                Tamper::FlipActive(i) => {
                    let i = i % n;
                    entries[i].is_active = !entries[i].is_active;
                    i
                }
                Tamper::Drop(i) => {
                    // Dropping the last entry leaves a valid shorter chain; drop another.
                    let i = i % (n - 1);
                    entries.remove(i);
                    i
                }
                Tamper::Swap(i) => {
                    let i = i % (n - 1);
                    entries.swap(i, i + 1);
                    i
                }
            };
            let failed_at = verify(&entries).expect_err("tampering went unnoticed");
            prop_assert!(
                failed_at <= at as i64 + 1,
                "detected at version {} but tampered at index {}",
                failed_at,
                at
            );
            Ok(())
        })
        .unwrap();
}

/// What the SSE endpoint must answer for a `Last-Event-ID`: a version ≥ 0 (spaces around
/// allowed) resumes; anything else is a 400.
fn resume_is_valid(value: &[u8]) -> bool {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .is_some_and(|v| v >= 0)
}

#[test]
fn sse_resume_points_and_filters_never_fail_the_server() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hub = rt.block_on(async {
        let hub = TestHub::start().await;
        let (status, _) = crate::support::publish(
            &hub.http,
            hub.addr(),
            PUBLISHER,
            "bp-fuzz",
            serde_json::json!({"title": "Fuzz"}),
        )
        .await;
        assert_eq!(status, 201);
        hub
    });
    let url = hub.url("/api/v1/system-register/events");
    let http = crate::support::http_client();
    let status_of = |request: reqwest::RequestBuilder| -> Result<u16, TestCaseError> {
        rt.block_on(async {
            let response = request
                .send()
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let status = response.status().as_u16();
            if status == 400 {
                let kind = response.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                prop_assert_eq!(kind, "application/problem+json");
            }
            Ok(status)
        })
    };

    let check_resume = |value: &[u8]| -> Result<(), TestCaseError> {
        let Ok(header) = reqwest::header::HeaderValue::from_bytes(value) else {
            return Ok(()); // not sendable as a header at all
        };
        let status = status_of(http.get(&url).header("Last-Event-ID", header))?;
        let expected = if resume_is_valid(value) { 200 } else { 400 };
        prop_assert_eq!(
            status,
            expected,
            "Last-Event-ID {:?}",
            String::from_utf8_lossy(value)
        );
        Ok(())
    };
    for value in corpus("last-event-ids.txt") {
        check_resume(&value).unwrap();
    }
    let ids = prop_oneof![
        any::<i64>().prop_map(|v| v.to_string().into_bytes()),
        "[ 0-9+-]{0,24}".prop_map(String::into_bytes),
        proptest::collection::vec(0x20u8..0x7f, 0..32),
        proptest::collection::vec(any::<u8>(), 0..16),
    ];
    runner("last-event-id")
        .run(&ids, |value| check_resume(&value))
        .unwrap();

    let check_filter = |(key, value): (String, String)| -> Result<(), TestCaseError> {
        let status = status_of(http.get(&url).query(&[(key.as_str(), value.as_str())]))?;
        prop_assert!(
            status == 200 || status == 400,
            "{key}={value:?} answered {status}"
        );
        if key == "blueprintId" {
            prop_assert_eq!(
                status == 200,
                id_is_valid(&value),
                "blueprintId={:?}",
                value
            );
        }
        Ok(())
    };
    for line in corpus("sse-filters.txt") {
        let line = String::from_utf8(line).unwrap();
        let (key, value) = line.split_once('=').unwrap();
        check_filter((key.to_owned(), value.to_owned())).unwrap();
    }
    let filters = (
        prop_oneof![
            Just("blueprintId"),
            Just("publishedBy"),
            Just("type"),
            Just("since"),
            Just("include"),
        ]
        .prop_map(str::to_owned),
        prop_oneof![".{0,40}", "[a-z0-9\r\n:-]{0,20}", "-?[0-9]{1,25}"],
    );
    runner("sse-filters").run(&filters, check_filter).unwrap();
    rt.block_on(async move { hub.node.stop().await.unwrap() });
}
