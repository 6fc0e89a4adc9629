//! TLS end to end: a hub with a certificate signed by a test CA (made here with rcgen) serves
//! REST, SSE and gRPC over TLS on its one port; a peer trusting that CA replicates over
//! `https://`; a peer trusting another CA fails with a clear error.

use crate::support::{ADMIN, PUBLISHER, TestHub, WAIT, config, peer_config, wait_for};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A CA and a server certificate for localhost / 127.0.0.1 it signed, as PEM files in `dir`.
struct TestPki {
    ca_pem: String,
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn make_pki(dir: &Path, name: &str) -> TestPki {
    let ca = ca(name);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let write = |file: &str, pem: String| {
        let path = dir.join(file);
        std::fs::write(&path, pem).unwrap();
        path
    };
    TestPki {
        ca_pem: ca.pem(),
        ca_file: write(&format!("{name}-ca.pem"), ca.pem()),
        cert_file: write(&format!("{name}-cert.pem"), cert.pem()),
        key_file: write(&format!("{name}-key.pem"), key.serialize_pem()),
    }
}

fn https_client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .tls_built_in_native_certs(false)
        .timeout(WAIT)
        .build()
        .unwrap()
}

#[tokio::test]
async fn hub_serves_rest_sse_and_grpc_over_tls_and_a_peer_replicates_over_https() {
    let certs = tempfile::tempdir().unwrap();
    let pki = make_pki(certs.path(), "sorcha-test");
    let hub = TestHub::configured(|cfg| {
        cfg.tls.cert_file = Some(pki.cert_file.clone());
        cfg.tls.key_file = Some(pki.key_file.clone());
    })
    .await;
    let base = format!("https://localhost:{}", hub.addr().port());
    let http = https_client(&pki.ca_pem);

    // Plain HTTP on the TLS port is refused (the handshake never completes).
    let plain = reqwest::Client::builder().timeout(WAIT).build().unwrap();
    assert!(plain.get(hub.url("/health")).send().await.is_err());

    // REST over TLS, negotiated as h2 by ALPN and as HTTP/1.1 when the client asks only that.
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.version(), reqwest::Version::HTTP_2);
    let h1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .http1_only()
        .timeout(WAIT)
        .build()
        .unwrap();
    let health = h1.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.version(), reqwest::Version::HTTP_11);

    // SSE over TLS — over h2 and over HTTP/1.1 (the lean event-stream path) — sees a
    // publication made over TLS.
    let mut streams = Vec::new();
    for client in [&http, &h1] {
        let events = client
            .get(format!("{base}/api/v1/system-register/events"))
            .send()
            .await
            .unwrap();
        assert_eq!(events.status(), 200);
        let mut events = Box::pin(
            events
                .bytes_stream()
                .eventsource()
                .filter_map(|e| async move { e.ok().filter(|e| !e.data.is_empty()) }),
        );
        // Nothing to replay: the stream says so at once.
        let first = tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.event, "caught-up");
        streams.push(events);
    }
    let published = http
        .post(format!("{base}/api/v1/system-register/blueprints"))
        .bearer_auth(PUBLISHER)
        .json(&json!({"blueprintId": "bp-tls", "document": {"title": "Over TLS"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 201, "{:?}", published.text().await);
    for events in &mut streams {
        // The stream's checkpoints (of the head it started at) may come first.
        let event = tokio::time::timeout(WAIT, async {
            loop {
                let event = events.next().await.unwrap();
                if event.event != "checkpoint" {
                    return event;
                }
            }
        })
        .await
        .unwrap();
        let data: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(data["blueprintId"], "bp-tls");
    }

    // A peer trusting the CA replicates over https:// (gRPC over TLS).
    let peer_dir = tempfile::tempdir().unwrap();
    let mut peer_cfg = peer_config(peer_dir.path(), vec![base.clone()]);
    peer_cfg.peer.ca_cert = Some(pki.ca_file.clone());
    let peer = TestHub::start_with(peer_dir, peer_cfg).await;
    wait_for("the peer to replicate over TLS", || async {
        let (status, _) = peer.get("/api/v1/system-register/blueprints/bp-tls").await;
        (status == 200).then_some(())
    })
    .await;
    let (_, view) = peer.get("/api/v1/connection").await;
    assert_eq!(view["state"], "Connected", "{view}");

    // A peer trusting another CA is refused by its own TLS check and says so.
    let other = make_pki(certs.path(), "other");
    let stranger_dir = tempfile::tempdir().unwrap();
    let mut stranger_cfg = peer_config(stranger_dir.path(), vec![base.clone()]);
    stranger_cfg.node_id = Some("stranger".into());
    stranger_cfg.peer.ca_cert = Some(other.ca_file.clone());
    let stranger = TestHub::start_with(stranger_dir, stranger_cfg).await;
    let error = wait_for("the stranger to report a certificate error", || async {
        let (_, view) = stranger.get("/api/v1/connection").await;
        view["hubs"][0]["lastError"].as_str().map(str::to_owned)
    })
    .await;
    assert!(
        error.to_lowercase().contains("certificate"),
        "the error should name the certificate problem: {error}"
    );
    let (status, _) = stranger
        .get("/api/v1/system-register/blueprints/bp-tls")
        .await;
    assert_eq!(status, 404);

    // The CLI reaches the TLS hub when told which CA to trust, and says why it cannot
    // otherwise.
    let cli = |extra: Vec<String>| {
        let base = base.clone();
        async move {
            // Async: the hub runs on this test's runtime and must keep serving meanwhile.
            let output = tokio::process::Command::new(crate::support::binary())
                .args(["blueprints", "get", "bp-tls", "--server", &base])
                .args(extra)
                .env_remove("SORCHA_CA_CERT")
                .output();
            tokio::time::timeout(WAIT, output).await.unwrap().unwrap()
        }
    };
    let ok = cli(vec![
        "--ca-cert".into(),
        pki.ca_file.to_str().unwrap().into(),
    ])
    .await;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("Over TLS"));
    let refused = cli(Vec::new()).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(stderr.contains("certificate"), "{stderr}");

    // Admin calls work over TLS too.
    let node = http
        .get(format!("{base}/api/v1/node"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(node.status(), 200);
}

#[tokio::test]
async fn unusable_certificate_files_stop_start_up_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").unwrap();
    let mut cfg = config(dir.path());
    cfg.tls.cert_file = Some(bogus.clone());
    cfg.tls.key_file = Some(bogus.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = sorcha_peer::app::start_with_hostname(cfg, listener, "test-host")
        .await
        .expect_err("start-up fails");
    let message = format!("{error:#}");
    assert!(message.contains("bogus.pem"), "{message}");
    assert!(message.contains("TLS"), "{message}");
}
