//! Hub-signed checkpoints: the hub's key (generated once, kept across restarts), the signed
//! note it serves, checked by the CLI and — against the C2SP signed-note rules — by another
//! implementation (Python's `cryptography` package).

use crate::support::{TestHub, binary, config, pid};
use serde_json::json;
use sorcha_peer::keys::SigningKey;

/// Checks a signed note against the C2SP rules with Python's `cryptography` (not our code):
/// the key id is SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key)[:4], the text ends in a newline and is
/// followed by a blank line, each signature line is `— name base64(key id ‖ signature)`, and the
/// Ed25519 signature is over the text. It also checks that a changed text no longer verifies,
/// and prints the note's text lines.
const C2SP_CHECK: &str = r#"
import base64, hashlib, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.exceptions import InvalidSignature
vkey, note = sys.argv[1], sys.stdin.buffer.read()
name, key_id_hex, key_b64 = vkey.split("+", 2)
key = base64.b64decode(key_b64)
assert key[0] == 1 and len(key) == 33, "type byte 0x01 and a 32-byte key"
key_id = hashlib.sha256(name.encode() + b"\n" + key).digest()[:4]
assert key_id.hex() == key_id_hex, "key id is SHA-256(name, newline, key)[:4]"
text, sep, sigs = note.rpartition(b"\n\n")
assert sep, "a blank line separates text and signatures"
text = text + b"\n"
assert not text.startswith(b"\n") and b"\n\n" not in text, "text has no blank line"
found = False
for line in sigs.split(b"\n"):
    if not line:
        continue
    assert line.startswith("\u2014 ".encode()), "signature lines start with an em dash and a space"
    sig_name, sig_b64 = line[len("\u2014 ".encode()):].split(b" ")
    raw = base64.b64decode(sig_b64)
    if sig_name.decode() == name and raw[:4] == key_id:
        Ed25519PublicKey.from_public_bytes(key[1:]).verify(raw[4:], text)
        try:
            Ed25519PublicKey.from_public_bytes(key[1:]).verify(raw[4:], text.replace(b"\n", b"\n ", 1))
            sys.exit("a changed text verified")
        except InvalidSignature:
            pass
        found = True
assert sigs.endswith(b"\n"), "the note ends in a newline"
assert found, "signed by the key"
print(text.decode(), end="")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_signs_checkpoints_that_another_implementation_verifies() {
    let hub = TestHub::start().await;
    assert_eq!(hub.publish("cp-1", json!({"a": 1})).await.0, 201);
    let (_, node) = hub.get("/api/v1/node").await;
    let vkey = node["checkpointKey"].as_str().unwrap().to_owned();
    assert!(
        vkey.starts_with("test-host+"),
        "named after the node id: {vkey}"
    );
    let response = hub
        .http
        .get(hub.url("/api/v1/system-register/checkpoint"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let note = response.text().await.unwrap();

    let mut python = std::process::Command::new("python3")
        .args(["-c", C2SP_CHECK, &vkey])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    python
        .stdin
        .take()
        .unwrap()
        .write_all(note.as_bytes())
        .unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}\n{note}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (_, register) = hub.get("/api/v1/system-register").await;
    let head_hash = register["headHash"].as_str().unwrap();
    use base64::Engine;
    let raw = hex::decode(head_hash.strip_prefix("sha256:").unwrap()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        &lines[..3],
        &[
            "sorcha.dev/system-register/00000000-0000-0000-0000-000000000000",
            "2",
            base64::engine::general_purpose::STANDARD
                .encode(raw)
                .as_str()
        ],
        "{text}"
    );
    assert!(lines[3].starts_with("timestamp "), "{text}");

    // The CLI verifies it with the hub's key and refuses it with another.
    let cli = |trust: &str| {
        std::process::Command::new(binary())
            .args(["checkpoint", "--server", &hub.url(""), "--trust", trust])
            .output()
            .unwrap()
    };
    let ok = cli(&vkey);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success() && stdout.starts_with("ok: version 2 "),
        "{ok:?}"
    );
    let stranger = SigningKey::generate("test-host").unwrap();
    let refused = cli(&stranger.verifier().to_string());
    let stdout = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("not signed by a trusted key"), "{stdout}");

    // The key is generated once, kept 0600 in the data dir, and the same after a restart.
    let key_file = hub.dir.path().join(sorcha_peer::app::HUB_SIGNING_KEY_FILE);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let cfg = config(hub.dir.path());
    let hub = hub.restart_with(cfg).await;
    let (_, node) = hub.get("/api/v1/node").await;
    assert_eq!(node["checkpointKey"], vkey.as_str());
}

/// Every connect answer and heartbeat acknowledgement carries the hub's signed checkpoint of
/// the head it reports, over the real gRPC port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_answers_and_heartbeat_acks_carry_a_signed_checkpoint() {
    use sorcha_peer::hub_client::HubClient;
    use sorcha_peer::link::HubLink;
    use sorcha_peer::protocol::{ConnectRequest, Heartbeat, PeerDescription};
    use sorcha_peer::register::checkpoint_note;
    let hub = TestHub::start().await;
    let (_, node) = hub.get("/api/v1/node").await;
    let key =
        sorcha_peer::keys::VerifierKey::parse(node["checkpointKey"].as_str().unwrap()).unwrap();
    let client = HubClient::connect(&hub.url(""), crate::support::WAIT)
        .await
        .unwrap();
    let now = || {
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap()
    };
    let grant = client
        .open_session(&ConnectRequest {
            peer_id: pid("cp-peer"),
            peer: PeerDescription::default(),
            last_known_version: 0,
            connection_time: now(),
            insist: false,
            lost_hub: String::new(),
            relay_path: Vec::new(),
        })
        .await
        .unwrap();
    let opened = checkpoint_note::open(
        grant.checkpoint.as_deref().unwrap(),
        std::slice::from_ref(&key),
    )
    .unwrap();
    assert_eq!(
        (
            opened.checkpoint.version,
            opened.checkpoint.chain_hash.as_str()
        ),
        (grant.current_version, grant.head_hash.as_str())
    );
    assert_eq!(hub.publish("cp-2", json!({})).await.0, 201);
    let ack = client
        .heartbeat(&Heartbeat {
            peer_id: pid("cp-peer"),
            session_id: grant.session_id.clone(),
            timestamp: now(),
            sequence_number: 1,
            last_sync_version: 1,
            head_hash: String::new(),
            refusal: String::new(),
            trusted_version: 0,
            downstream: Vec::new(),
        })
        .await
        .unwrap();
    let opened = checkpoint_note::open(ack.checkpoint.as_deref().unwrap(), &[key]).unwrap();
    assert_eq!(
        (
            opened.checkpoint.version,
            opened.checkpoint.chain_hash.as_str()
        ),
        (2, ack.head_hash.as_str())
    );
}

/// Over the real gRPC port, a sync stream carries the hub's checkpoint on the last entry of
/// every page it reads and on the last entry of the stream, each covering exactly its entry;
/// the connect answer names the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_streams_carry_checkpoints_at_every_page_end() {
    use futures::StreamExt;
    use sorcha_peer::hub_client::HubClient;
    use sorcha_peer::link::HubLink;
    use sorcha_peer::protocol::{ConnectRequest, PeerDescription};
    use sorcha_peer::register::checkpoint_note;
    let hub = TestHub::configured(|c| c.limits.max_page_bytes = 64 * 1024).await;
    for i in 0..20 {
        let doc = json!({"i": i, "pad": "x".repeat(8 * 1024)});
        assert_eq!(hub.publish(&format!("page-{i}"), doc).await.0, 201);
    }
    let (_, node) = hub.get("/api/v1/node").await;
    let key =
        sorcha_peer::keys::VerifierKey::parse(node["checkpointKey"].as_str().unwrap()).unwrap();
    let client = HubClient::connect(&hub.url(""), crate::support::WAIT)
        .await
        .unwrap();
    let grant = client
        .open_session(&ConnectRequest {
            peer_id: pid("page-peer"),
            peer: PeerDescription::default(),
            last_known_version: 0,
            connection_time: 0,
            insist: false,
            lost_hub: String::new(),
            relay_path: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(grant.checkpoint_key, Some(key.to_string()));
    for (after, label) in [(None, "full"), (Some(5), "incremental")] {
        let stream = match after {
            None => {
                client
                    .full_sync(&pid("page-peer"), &grant.session_id, None)
                    .await
            }
            Some(a) => {
                client
                    .incremental_sync(&pid("page-peer"), &grant.session_id, a, None)
                    .await
            }
        };
        let synced: Vec<_> = stream.unwrap().map(|e| e.unwrap()).collect().await;
        assert_eq!(synced.last().unwrap().entry.version, 21, "{label}");
        let vouched: Vec<i64> = synced
            .iter()
            .filter_map(|s| {
                let note = s.checkpoint.as_ref()?;
                let opened = checkpoint_note::open(note, std::slice::from_ref(&key)).unwrap();
                assert_eq!(
                    (
                        opened.checkpoint.version,
                        opened.checkpoint.chain_hash.as_str()
                    ),
                    (s.entry.version, s.entry.chain_hash.as_str()),
                    "{label}: a checkpoint covers its own entry"
                );
                Some(s.entry.version)
            })
            .collect();
        assert_eq!(
            vouched.last(),
            Some(&21),
            "{label}: the stream ends vouched"
        );
        assert!(
            vouched.len() >= 3 && vouched.len() < synced.len(),
            "{label}: one per 64 KiB page, not per entry: {vouched:?}"
        );
    }
}
