//! Publisher signatures through the real interfaces: keys made by `sorcha-peer keygen`,
//! publications signed by the CLI, checked by the hub, replicated to and checked by peers over
//! gRPC, reported by online and offline verification.

use crate::support::{
    PUBLISHER, TestHub, binary, checkpoint_refused, config, peer_config, wait_for,
};
use r2d2_sqlite::rusqlite::{Connection, params};
use serde_json::{Value, json};
use sorcha_peer::config::PublisherConfig;
use sorcha_peer::keys::{SigningKey, VerifierKey};
use sorcha_peer::register::chain;
use sorcha_peer::register::entry::{Entry, EntryType, SYSTEM_REGISTER_ID};
use sorcha_peer::register::signature::{PublisherKeys, PublisherSignature, SignedFields};
use sorcha_peer::register::verify_store;
use sorcha_peer::store::RegisterStore;
use sorcha_peer::store::embedded::{DB_FILE, EmbeddedStore};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

/// Runs the CLI with `args` against nothing but its arguments.
fn cli(args: &[&str]) -> Output {
    std::process::Command::new(binary())
        .args(args)
        .output()
        .unwrap()
}

/// `keygen --name NAME --out DIR/NAME.key` in a child process; the key and its printed
/// verifier key.
fn keygen(dir: &Path, name: &str) -> (std::path::PathBuf, VerifierKey) {
    let out = dir.join(format!("{name}.key"));
    let done = cli(&["keygen", "--name", name, "--out", out.to_str().unwrap()]);
    assert!(done.status.success(), "{done:?}");
    let printed = String::from_utf8(done.stdout).unwrap();
    let vkey = VerifierKey::parse(printed.trim()).unwrap();
    (out, vkey)
}

/// A hub whose publisher `alice` (the publisher token) signs with `vkey`.
fn signing_hub_config(
    dir: &Path,
    vkey: &VerifierKey,
    require: bool,
) -> sorcha_peer::config::Config {
    let mut cfg = config(dir);
    cfg.publishers.push(PublisherConfig {
        identity: "alice".into(),
        keys: vec![vkey.clone()],
        retired_keys: Vec::new(),
    });
    cfg.signatures.require = require;
    cfg
}

/// `publish FILE --id ID [--update] --sign-key KEY` against `hub` in a child process.
fn cli_publish(
    hub: &TestHub,
    dir: &Path,
    id: &str,
    document: &Value,
    update: bool,
    key: &Path,
) -> Output {
    let file = dir.join(format!(
        "{id}-{}.json",
        if update { "update" } else { "new" }
    ));
    std::fs::write(&file, document.to_string()).unwrap();
    let server = hub.url("");
    let mut args = vec![
        "publish",
        file.to_str().unwrap(),
        "--id",
        id,
        "--server",
        &server,
        "--token",
        PUBLISHER,
        "--output",
        "json",
        "--sign-key",
        key.to_str().unwrap(),
        "--metadata",
        "team=ops",
    ];
    if update {
        args.push("--update");
    }
    cli(&args)
}

async fn post(hub: &TestHub, path: &str, body: &Value) -> (u16, Value) {
    let r = hub
        .http
        .request(
            if path.ends_with("/blueprints") {
                reqwest::Method::POST
            } else {
                reqwest::Method::PUT
            },
            hub.url(path),
        )
        .bearer_auth(PUBLISHER)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The `signature` field a client sends for `fields`, signed by `key`.
fn signature_field(key: &SigningKey, fields: &SignedFields<'_>) -> Value {
    let s = PublisherSignature::sign(key, fields);
    json!({"previousVersion": s.previous_version, "keyName": s.key_name, "value": s.value()})
}

fn fields<'a>(
    id: &'a str,
    entry_type: EntryType,
    previous_version: i64,
    checksum: &'a str,
    metadata: &'a BTreeMap<String, String>,
) -> SignedFields<'a> {
    SignedFields {
        register_id: SYSTEM_REGISTER_ID,
        blueprint_id: id,
        entry_type,
        is_active: true,
        previous_version,
        checksum,
        metadata,
        transaction_id: None,
    }
}

/// A signed publish replicates to two peers that require signatures, each of which verifies
/// it; REST and SSE carry the signature; a signed deprecation too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_publish_replicates_and_verifies_on_two_peers() {
    let keys = tempfile::tempdir().unwrap();
    let (alice, vkey) = keygen(keys.path(), "alice");
    let dir = tempfile::tempdir().unwrap();
    let cfg = signing_hub_config(dir.path(), &vkey, true);
    let hub = TestHub::start_with(dir, cfg).await;
    let document = json!({"title": "Loan approval", "steps": [{"id": 1}]});
    let done = cli_publish(&hub, keys.path(), "loan", &document, false, &alice);
    assert!(done.status.success(), "{done:?}");
    let entry: Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(entry["signature"]["keyName"], "alice", "{entry}");
    assert_eq!(entry["signature"]["previousVersion"], 0, "{entry}");
    let update = cli_publish(
        &hub,
        keys.path(),
        "loan",
        &json!({"title": "v2"}),
        true,
        &alice,
    );
    assert!(update.status.success(), "{update:?}");
    let deprecate = cli(&[
        "deprecate",
        "loan",
        "--server",
        &hub.url(""),
        "--token",
        PUBLISHER,
        "--sign-key",
        alice.to_str().unwrap(),
    ]);
    assert!(deprecate.status.success(), "{deprecate:?}");
    let (_, head) = hub.get("/api/v1/system-register").await;
    assert_eq!(head["headVersion"], 4, "{head}");

    let mut peers = Vec::new();
    for name in ["peer-a", "peer-b"] {
        peers.push(
            TestHub::peer_of(vec![hub.url("")], |c| {
                c.node_id = Some(name.into());
                c.peer.publisher_keys = vec![vkey.clone()];
                c.peer.require_signatures = true;
            })
            .await,
        );
    }
    for peer in &peers {
        wait_for("the peer to replicate the signed entries", || async {
            let (_, v) = peer.get("/api/v1/system-register").await;
            (v["headVersion"] == 4).then_some(())
        })
        .await;
        let (_, verify) = peer.get("/api/v1/system-register/verify").await;
        assert_eq!(
            (verify["ok"].as_bool(), verify["signed"].as_u64()),
            (Some(true), Some(3)),
            "{verify}"
        );
        let (_, history) = peer
            .get("/api/v1/system-register/blueprints/loan/history")
            .await;
        let signed: Vec<_> = history["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["version"].as_i64(),
                    e["signature"]["previousVersion"].as_i64(),
                )
            })
            .collect();
        assert_eq!(signed.len(), 3, "{history}");
        assert!(
            signed.contains(&(Some(3), Some(2))) && signed.contains(&(Some(4), Some(3))),
            "{signed:?}"
        );
    }
    // The SSE event carries the signature too.
    let mut events = crate::support::sse(peers[0].addr(), "?since=1", None).await;
    let first = crate::support::take_events(&mut events, 1).await;
    let data: Value = serde_json::from_str(&first[0].data).unwrap();
    assert_eq!(data["signature"]["keyName"], "alice", "{data}");
}

/// What the hub refuses: a signature that does not verify, a signed update replayed later or
/// for another blueprint, an unsigned publication where signatures are required, a key the
/// identity may not sign with. Nothing is written by any of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_refuses_bad_replayed_and_missing_signatures() {
    let alice = SigningKey::generate("alice").unwrap();
    let mallory = SigningKey::generate("alice").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = signing_hub_config(dir.path(), alice.verifier(), true);
    let hub = TestHub::start_with(dir, cfg).await;
    let metadata = BTreeMap::new();
    let doc = json!({"title": "t"});
    let sum = chain::checksum(br#"{"title":"t"}"#);

    let good = signature_field(
        &alice,
        &fields("a", EntryType::Published, 0, &sum, &metadata),
    );
    let (status, a1) = post(
        &hub,
        "/api/v1/system-register/blueprints",
        &json!({"blueprintId": "a", "document": doc, "signature": good}),
    )
    .await;
    assert_eq!(status, 201, "{a1}");
    let a1_version = a1["version"].as_i64().unwrap();

    let refused = |status: u16, problem: &Value, word: &str| {
        assert_eq!(status, 422, "{problem}");
        assert_eq!(
            problem["type"], "urn:sorcha:problem:signature-refused",
            "{problem}"
        );
        assert!(
            problem["detail"].as_str().unwrap().contains(word),
            "{problem}"
        );
    };
    // Flipped bit.
    let mut bad = signature_field(
        &alice,
        &fields("b", EntryType::Published, 0, &sum, &metadata),
    );
    let mut raw = base64_decode(bad["value"].as_str().unwrap());
    raw[10] ^= 1;
    bad["value"] = json!(base64_encode(&raw));
    let (status, p) = post(
        &hub,
        "/api/v1/system-register/blueprints",
        &json!({"blueprintId": "b", "document": doc, "signature": bad}),
    )
    .await;
    refused(status, &p, "does not verify");
    // Signed by a key of the same name that the hub does not know.
    let foreign = signature_field(
        &mallory,
        &fields("b", EntryType::Published, 0, &sum, &metadata),
    );
    let (status, p) = post(
        &hub,
        "/api/v1/system-register/blueprints",
        &json!({"blueprintId": "b", "document": doc, "signature": foreign}),
    )
    .await;
    refused(status, &p, "not a known publisher key");
    // Unsigned.
    let (status, p) = post(
        &hub,
        "/api/v1/system-register/blueprints",
        &json!({"blueprintId": "b", "document": doc}),
    )
    .await;
    refused(status, &p, "not signed");

    // A signed update of "a" after version a1, applied once; replayed after a later version it
    // is refused, and so it is for another blueprint.
    let doc2 = json!({"title": "t2"});
    let sum2 = chain::checksum(br#"{"title":"t2"}"#);
    let update = signature_field(
        &alice,
        &fields("a", EntryType::Updated, a1_version, &sum2, &metadata),
    );
    let (status, a2) = post(
        &hub,
        "/api/v1/system-register/blueprints/a",
        &json!({"document": doc2, "signature": update}),
    )
    .await;
    assert_eq!(status, 200, "{a2}");
    let (status, p) = post(
        &hub,
        "/api/v1/system-register/blueprints/a",
        &json!({"document": doc2, "signature": update}),
    )
    .await;
    refused(status, &p, &format!("after version {a1_version}"));
    let b = signature_field(
        &alice,
        &fields("b", EntryType::Published, 0, &sum, &metadata),
    );
    let (status, _) = post(
        &hub,
        "/api/v1/system-register/blueprints",
        &json!({"blueprintId": "b", "document": doc, "signature": b}),
    )
    .await;
    assert_eq!(status, 201);
    let mut moved = update.clone();
    moved["previousVersion"] = json!(a2["version"].as_i64().unwrap() + 1);
    let (status, p) = post(
        &hub,
        "/api/v1/system-register/blueprints/b",
        &json!({"document": doc2, "signature": moved}),
    )
    .await;
    refused(status, &p, "does not verify");
    // A malformed signature is a 400.
    let (status, p) = post(&hub, "/api/v1/system-register/blueprints", &json!({"blueprintId": "c", "document": doc, "signature": {"previousVersion": 0, "keyName": "alice", "value": "AAAA"}})).await;
    assert_eq!(
        (status, p["type"].as_str()),
        (400, Some("urn:sorcha:problem:invalid-request")),
        "{p}"
    );

    let (_, head) = hub.get("/api/v1/system-register").await;
    assert_eq!(
        head["headVersion"], 4,
        "only a, its update and b were written: {head}"
    );
    let (_, verify) = hub.get("/api/v1/system-register/verify").await;
    assert_eq!(
        (verify["ok"].as_bool(), verify["signed"].as_u64()),
        (Some(true), Some(3)),
        "{verify}"
    );
}

/// A hub's SQLite file edited to swap a signed document and re-chain every later entry: the
/// chain and checksums verify, only the signature gives it away — to a peer that requires
/// signatures (which applies nothing and says why), to offline `verify --publisher-keys`
/// (the `signature` defect and its version), and to the hub's own start-up check when it
/// knows the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_history_is_refused_by_signatures() {
    let alice = SigningKey::generate("alice").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = signing_hub_config(dir.path(), alice.verifier(), true);
    let hub = TestHub::start_with(dir, cfg.clone()).await;
    let metadata = BTreeMap::new();
    for (i, id) in ["x", "y", "z"].iter().enumerate() {
        let doc = json!({"n": i});
        let sum = chain::checksum(format!("{{\"n\":{i}}}").as_bytes());
        let sig = signature_field(
            &alice,
            &fields(id, EntryType::Published, 0, &sum, &metadata),
        );
        let (status, e) = post(
            &hub,
            "/api/v1/system-register/blueprints",
            &json!({"blueprintId": id, "document": doc, "signature": sig}),
        )
        .await;
        assert_eq!(status, 201, "{e}");
    }
    let (_, node) = hub.get("/api/v1/node").await;
    let hub_key = VerifierKey::parse(node["checkpointKey"].as_str().unwrap()).unwrap();
    let note = hub
        .http
        .get(hub.url("/api/v1/system-register/checkpoint"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dir = hub.stop().await;
    forge(dir.path(), 3, br#"{"n":"forged"}"#).await;

    // Offline, against the checkpoint the hub signed before the edit: the head differs.
    let note_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(note_file.path(), &note).unwrap();
    let out = cli(&[
        "verify",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--checkpoint",
        note_file.path().to_str().unwrap(),
        "--trust",
        &hub_key.to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAILED (checkpoint): the checkpoint of version 4"),
        "{stdout}"
    );

    // Offline, with the publisher's key: the signature defect at version 3.
    let keys_file = dir.path().join("publishers.txt");
    std::fs::write(&keys_file, format!("# alice\n{}\n", alice.verifier())).unwrap();
    let out = cli(&[
        "verify",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--publisher-keys",
        keys_file.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("(signature)") && stdout.contains("version 3"),
        "{stdout}"
    );
    // Without keys the forgery passes: only signatures can tell.
    let out = cli(&["verify", "--data-dir", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // The signature itself is covered by the chain: stripping one is found without keys.
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join(DB_FILE), copy.path().join(DB_FILE)).unwrap();
    let conn = Connection::open(copy.path().join(DB_FILE)).unwrap();
    conn.execute(
        "UPDATE entries SET signature = NULL WHERE version = 2",
        params![],
    )
    .unwrap();
    drop(conn);
    let out = cli(&["verify", "--data-dir", copy.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("(chain)") && stdout.contains("version 2"),
        "{stdout}"
    );

    // A rogue hub serving the forged file, without publisher keys of its own — nor the hub's
    // signing key: it signs with its own.
    std::fs::remove_file(dir.path().join(sorcha_peer::app::HUB_SIGNING_KEY_FILE)).unwrap();
    let mut rogue_cfg = config(dir.path());
    rogue_cfg.node_id = Some("rogue".into());
    let rogue = TestHub::start_with(dir, rogue_cfg).await;
    let (_, verify) = rogue.get("/api/v1/system-register/verify").await;
    assert_eq!(verify["ok"], true, "{verify}");
    let peer = TestHub::peer_of(vec![rogue.url("")], |c| {
        c.peer.publisher_keys = vec![alice.verifier().clone()];
        c.peer.require_signatures = true;
    })
    .await;
    let connection = wait_for("the peer to refuse the forged entries", || async {
        let (_, c) = peer.get("/api/v1/connection").await;
        (c["hubs"][0]["signatureRefused"] == true).then_some(c)
    })
    .await;
    assert!(
        connection["hubs"][0]["lastError"]
            .as_str()
            .unwrap()
            .contains("version 3"),
        "{connection}"
    );
    let (_, register) = peer.get("/api/v1/system-register").await;
    assert_eq!(register["headVersion"], 0, "nothing applied: {register}");
    assert!(
        peer.metrics()
            .await
            .contains("sorcha_peer_signature_defects_total"),
        "metric"
    );
    // Without publisher keys, a peer trusting only the real hub's key refuses it too: the
    // forged head is not signed by that key.
    let trusting = TestHub::peer_of(vec![rogue.url("")], |c| {
        c.peer.trusted_hub_keys = vec![hub_key.clone()];
    })
    .await;
    checkpoint_refused(&trusting, 0, "not signed by a trusted key").await;
    let (_, register) = trusting.get("/api/v1/system-register").await;
    assert_eq!(register["headVersion"], 0, "nothing applied: {register}");
    trusting.stop().await;
    let dir = rogue.stop().await;

    // The hub that knows the key finds it at start-up and refuses writes.
    let mut cfg = cfg;
    cfg.data_dir = dir.path().to_owned();
    let hub = TestHub::start_with(dir, cfg).await;
    let (_, verify) = hub.get("/api/v1/system-register/verify").await;
    assert_eq!(
        (
            verify["ok"].as_bool(),
            verify["firstBadVersion"].as_i64(),
            verify["defect"].as_str()
        ),
        (Some(false), Some(3), Some("signature")),
        "{verify}"
    );
}

/// Replaces the document of entry `version` (keeping its signature), fixes its checksum and
/// re-chains it and every later entry, as someone with write access to the file could.
pub async fn forge(dir: &Path, version: i64, document: &[u8]) {
    let entries: Vec<Entry> = {
        let store = EmbeddedStore::open(dir).unwrap();
        let entries = store.entries_after(0, 100_000).await.unwrap();
        store.close().await.unwrap();
        entries
    };
    let conn = Connection::open(dir.join(DB_FILE)).unwrap();
    let mut prev: Option<String> = None;
    for mut e in entries {
        if e.version == version {
            e.document = bytes::Bytes::copy_from_slice(document);
            e.checksum = chain::checksum(document);
        }
        if e.version >= version {
            e.chain_hash = chain::link(prev.as_deref(), &e);
            let changed = conn
                .execute(
                    "UPDATE entries SET document = ?1, checksum = ?2, chain_hash = ?3 WHERE version = ?4",
                    params![&e.document[..], e.checksum, e.chain_hash, e.version],
                )
                .unwrap();
            assert_eq!(changed, 1);
        }
        prev = Some(e.chain_hash.clone());
    }
}

/// Offline verification of a signed register of many pages (their signatures checked a page
/// per core while later pages are hashed) names the first forged signature, also when a later
/// page is broken outright; a clean one counts every signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_over_many_pages_names_the_first_forged_signature() {
    const N: i64 = 6000;
    let key = SigningKey::generate("alice").unwrap();
    let keys = || Some(PublisherKeys::new([key.verifier().clone()]));
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        sorcha_peer::store::synthetic::fill(&store, N, 64, Some(&key))
            .await
            .unwrap();
        let report = verify_store(&store, keys()).await.unwrap();
        assert_eq!(
            (report.ok, report.checked, report.signed),
            (true, N as u64 + 1, N as u64)
        );
        store.close().await.unwrap();
    }
    forge(dir.path(), 2500, br#"{"forged":2500}"#).await;
    forge(dir.path(), 5500, br#"{"forged":5500}"#).await;
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let report = verify_store(&store, keys()).await.unwrap();
    let failure = report.failure.expect("a forged signature");
    assert_eq!(
        (failure.version, failure.defect.kind()),
        (2500, "signature")
    );
    // Counted up to the end of the forged entry's page: all but genesis and the forgery.
    assert_eq!((report.checked, report.signed), (3072, 3070));
    // Without the key the forgery is invisible: chain and checksums hold.
    assert!(verify_store(&store, None).await.unwrap().ok);
    store.close().await.unwrap();
    drop(store);
    // A later page broken outright (a chain hash overwritten): the earlier forged signature
    // is still the first failure.
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.execute(
        "UPDATE entries SET chain_hash = ?1 WHERE version = 4100",
        params!["0".repeat(64)],
    )
    .unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let failure = verify_store(&store, keys()).await.unwrap().failure.unwrap();
    assert_eq!(
        (failure.version, failure.defect.kind()),
        (2500, "signature")
    );
    let failure = verify_store(&store, None).await.unwrap().failure.unwrap();
    assert_eq!((failure.version, failure.defect.kind()), (4100, "chain"));
    store.close().await.unwrap();
}

/// A data dir written by the release before signatures (6646446) opens, gains the
/// `signature` column, verifies, and takes signed publications; opening it again changes
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_the_release_before_signatures_upgrades() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/release-6646446/register.sqlite"
        ),
        dir.path().join(DB_FILE),
    )
    .unwrap();
    let alice = SigningKey::generate("alice").unwrap();
    let cfg = signing_hub_config(dir.path(), alice.verifier(), false);
    let hub = TestHub::start_with(dir, cfg.clone()).await;
    let (_, verify) = hub.get("/api/v1/system-register/verify").await;
    assert_eq!(
        (
            verify["ok"].as_bool(),
            verify["headVersion"].as_i64(),
            verify["headHash"].as_str()
        ),
        (
            Some(true),
            Some(5),
            Some("sha256:4c3bc95d45d8497a43a4ba3c6d4d3d5d62ace67aa2140ef8221a67f5bdc8e92c")
        ),
        "{verify}"
    );
    let (_, old) = hub
        .get("/api/v1/system-register/blueprints/loan-approval")
        .await;
    assert!(old.get("signature").is_none(), "{old}");
    let metadata = BTreeMap::new();
    let sum = chain::checksum(b"{}");
    let sig = signature_field(
        &alice,
        &fields("after-upgrade", EntryType::Published, 0, &sum, &metadata),
    );
    let (status, e) = post(
        &hub,
        "/api/v1/system-register/blueprints",
        &json!({"blueprintId": "after-upgrade", "document": {}, "signature": sig}),
    )
    .await;
    assert_eq!(status, 201, "{e}");
    let hub = hub.restart_with(cfg).await;
    let (_, verify) = hub.get("/api/v1/system-register/verify").await;
    assert_eq!(
        (
            verify["ok"].as_bool(),
            verify["headVersion"].as_i64(),
            verify["signed"].as_u64()
        ),
        (Some(true), Some(6), Some(1)),
        "{verify}"
    );
    let dir = hub.stop().await;
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let columns: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM pragma_table_info('entries') WHERE name = 'signature'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(columns, 1);
}

/// `keygen` writes a 0600 private key and its `.pub`, prints the verifier key, never
/// overwrites; configurations that cannot work are refused at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_writes_keys_safely_and_bad_signature_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, vkey) = keygen(dir.path(), "hub-one");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let public = std::fs::read_to_string(dir.path().join("hub-one.key.pub")).unwrap();
    assert_eq!(public.trim(), vkey.to_string());
    let secret = std::fs::read_to_string(&path).unwrap();
    assert!(
        secret.starts_with("PRIVATE+KEY+hub-one+"),
        "the C2SP signer key format"
    );
    let again = cli(&[
        "keygen",
        "--name",
        "hub-one",
        "--out",
        path.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        secret,
        "not overwritten"
    );
    let bad_name = cli(&[
        "keygen",
        "--name",
        "two words",
        "--out",
        dir.path().join("x").to_str().unwrap(),
    ]);
    assert!(
        !bad_name.status.success()
            && String::from_utf8_lossy(&bad_name.stderr).contains("key name")
    );

    let peer_dir = tempfile::tempdir().unwrap();
    let mut peer = peer_config(peer_dir.path(), vec!["http://127.0.0.1:1".into()]);
    peer.peer.require_signatures = true;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = sorcha_peer::app::start(peer, listener).await.err().unwrap();
    assert!(
        format!("{refused:#}").contains("peer.publisherKeys is empty"),
        "{refused:#}"
    );

    let hub_dir = tempfile::tempdir().unwrap();
    let mut hub = config(hub_dir.path());
    hub.publishers.push(PublisherConfig {
        identity: "nobody".into(),
        keys: vec![vkey],
        retired_keys: vec![],
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = sorcha_peer::app::start(hub, listener).await.err().unwrap();
    assert!(
        format!("{refused:#}").contains("no token's identity"),
        "{refused:#}"
    );
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The dashboard in Chromium checks signatures itself with WebCrypto Ed25519: "signed by
/// alice" for a good one (with metadata and a transaction id), "unsigned" without one,
/// "signature invalid" for a document swapped in the store file; and the hub's checkpoint
/// events, verified with its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_verifies_signatures_and_checkpoints_in_the_browser() {
    use crate::dashboard::{browser, screenshot, wait_element};
    let alice = SigningKey::generate("alice").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = signing_hub_config(dir.path(), alice.verifier(), false);
    let hub = TestHub::start_with(dir, cfg.clone()).await;
    let metadata: BTreeMap<String, String> = [("zeta", "last"), ("alpha", "ünï"), ("Beta", "b")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let none = BTreeMap::new();
    // v2 signed with metadata and a transaction id, v3 signed, v4 unsigned.
    let good = json!({"n": 1});
    let sum = chain::checksum(br#"{"n":1}"#);
    let mut signed = fields("good", EntryType::Published, 0, &sum, &metadata);
    signed.transaction_id = Some("tx-42");
    let body = json!({"blueprintId": "good", "document": good, "metadata": metadata,
        "publicationTransactionId": "tx-42", "signature": signature_field(&alice, &signed)});
    assert_eq!(
        post(&hub, "/api/v1/system-register/blueprints", &body)
            .await
            .0,
        201
    );
    let sum = chain::checksum(br#"{"n":2}"#);
    let body = json!({"blueprintId": "swapped", "document": {"n": 2},
        "signature": signature_field(&alice, &fields("swapped", EntryType::Published, 0, &sum, &none))});
    assert_eq!(
        post(&hub, "/api/v1/system-register/blueprints", &body)
            .await
            .0,
        201
    );
    assert_eq!(hub.publish("plain", json!({"n": 3})).await.0, 201);

    let (client, _driver) = browser().await;
    client.goto(&hub.url("/")).await.unwrap();
    let status = |id: &'static str| {
        let client = client.clone();
        async move {
            let css = format!("#blueprints tr[data-id='{id}'] td:last-child .badge");
            wait_for("the signature check", || async {
                let text = client
                    .find(fantoccini::Locator::Css(&css))
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                (!text.is_empty()).then_some(text)
            })
            .await
        }
    };
    assert_eq!(status("good").await, "signed by alice");
    assert_eq!(status("swapped").await, "signed by alice");
    assert_eq!(status("plain").await, "unsigned");
    // The feed checks the events' signatures too, and the hub's checkpoint events.
    let feed = wait_element(&client, "#feed li[data-version='2'] .badge").await;
    wait_for("the feed's signature check", || async {
        (feed.text().await.ok()? == "signed by alice").then_some(())
    })
    .await;
    let checkpoint = wait_element(&client, "#checkpoint").await;
    wait_for("a verified checkpoint", || async {
        (checkpoint.text().await.ok()? == "v4 signed by test-host").then_some(())
    })
    .await;
    screenshot(&client, "dashboard-signatures.png").await;

    // The document of v3 swapped in the store file (and the chain re-linked): the page finds
    // the signature no longer matches.
    let dir = hub.stop().await;
    forge(dir.path(), 3, br#"{"n":"forged"}"#).await;
    let mut cfg = cfg;
    cfg.data_dir = dir.path().to_owned();
    let hub = TestHub::start_with(dir, cfg).await;
    client.goto(&hub.url("/")).await.unwrap();
    assert_eq!(status("swapped").await, "signature invalid");
    assert_eq!(status("good").await, "signed by alice");
    client.close().await.unwrap();
}
