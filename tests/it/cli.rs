//! The CLI against a running node: publish → get → update → deprecate → list → status →
//! watch → verify; configuration from environment and TOML.

use crate::support::{ADMIN, TestHub, binary, spawn_node_env};
use std::process::Output;

fn run(hub: &TestHub, args: &[&str]) -> Output {
    std::process::Command::new(binary())
        .args(args)
        .env("SORCHA_SERVER", hub.url(""))
        .env("SORCHA_TOKEN", ADMIN)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "stdout {stdout} stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_round_trip_against_a_running_hub() {
    let hub = TestHub::start().await;
    let doc = hub.dir.path().join("doc.json");
    std::fs::write(&doc, r#"{"title": "Onboarding", "actions": [{"id": 1}]}"#).unwrap();
    let doc = doc.to_str().unwrap().to_owned();

    let out = ok(&run(
        &hub,
        &[
            "publish",
            &doc,
            "--id",
            "onboarding",
            "--metadata",
            "team=ops",
        ],
    ));
    assert!(out.contains("published onboarding at version 2"), "{out}");
    let got: serde_json::Value =
        serde_json::from_str(&ok(&run(&hub, &["blueprints", "get", "onboarding"]))).unwrap();
    assert_eq!(got["document"]["title"], "Onboarding");
    assert_eq!(got["metadata"]["team"], "ops");

    let out = ok(&run(
        &hub,
        &["publish", &doc, "--id", "onboarding", "--update"],
    ));
    assert!(out.contains("updated onboarding at version 3"), "{out}");
    let out = ok(&run(&hub, &["deprecate", "onboarding"]));
    assert!(out.contains("deprecated onboarding at version 4"), "{out}");
    let history: serde_json::Value = serde_json::from_str(&ok(&run(
        &hub,
        &["blueprints", "get", "onboarding", "--history"],
    )))
    .unwrap();
    assert_eq!(history["items"].as_array().unwrap().len(), 3);

    let list = ok(&run(&hub, &["blueprints", "list"]));
    assert!(
        list.contains("onboarding") && list.contains("register-creation-v1"),
        "{list}"
    );
    assert!(list.contains("2 blueprint(s)"), "{list}");
    let status = ok(&run(&hub, &["status"]));
    assert!(
        status.contains("version 4") && status.contains("integrity   ok"),
        "{status}"
    );
    let watch = ok(&run(&hub, &["watch", "--since", "1", "--count", "3"]));
    let lines: Vec<_> = watch.lines().collect();
    assert_eq!(lines.len(), 3, "{watch}");
    assert!(
        lines[0].contains("blueprint.published") && lines[2].contains("blueprint.deprecated"),
        "{watch}"
    );
    let verify = ok(&run(&hub, &["verify"]));
    assert!(verify.starts_with("ok: 4 entries"), "{verify}");

    // A duplicate publish fails with the server's reason and exit code 2.
    let dup = run(&hub, &["publish", &doc, "--id", "onboarding"]);
    assert_eq!(dup.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    // Without a token: 401 explained.
    let no_token = std::process::Command::new(binary())
        .args(["deprecate", "onboarding", "--server", &hub.url("")])
        .env_remove("SORCHA_TOKEN")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("401"));

    let dir = hub.stop().await;
    let offline = std::process::Command::new(binary())
        .args(["verify", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(ok(&offline).starts_with("ok: 4 entries"));
}

/// `serve 2>log`: a log written to a file or a pipe carries no terminal escape codes, even
/// with `NO_COLOR` set but empty (which asks for nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirected_log_has_no_escape_codes() {
    let dir = tempfile::tempdir().unwrap();
    let node = spawn_node_env(dir.path(), &[], &[("RUST_LOG", "info"), ("NO_COLOR", "")]).await;
    let log = node.log();
    assert!(log.contains("INFO"), "an info line was logged:\n{log}");
    assert!(!log.contains('\u{1b}'), "escape codes in the log:\n{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_json_for_scripts_and_aligned_columns_for_people() {
    let hub = TestHub::start().await;
    let doc = hub.dir.path().join("doc.json");
    std::fs::write(&doc, r#"{"title": "Scripted"}"#).unwrap();
    let doc = doc.to_str().unwrap().to_owned();
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let out = ok(&run(&hub, &all));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    };
    let published = json(&["publish", &doc, "--id", "scripted"]);
    assert_eq!(
        (published["version"].as_i64(), published["type"].as_str()),
        (Some(2), Some("published"))
    );
    let list = json(&["blueprints", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let status = json(&["status"]);
    assert_eq!(status["register"]["headVersion"], 2);
    let verify = json(&["verify"]);
    assert_eq!(verify["ok"], true);
    let deprecated = json(&["deprecate", "scripted"]);
    assert_eq!(deprecated["isActive"], false);
    let watch = ok(&run(
        &hub,
        &["watch", "--since", "0", "--count", "2", "--output", "json"],
    ));
    for line in watch.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(event["version"].is_i64(), "{line}");
    }
    // SORCHA_OUTPUT works as the flag does.
    let out = std::process::Command::new(binary())
        .args(["status"])
        .env("SORCHA_SERVER", hub.url(""))
        .env("SORCHA_OUTPUT", "json")
        .output()
        .unwrap();
    assert!(serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok());

    // The table: every value starts under its column's header.
    let table = ok(&run(&hub, &["blueprints", "list"]));
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    let column = |name: &str| header.find(name).unwrap();
    for row in lines.filter(|l| l.contains("scripted") || l.contains("register-creation-v1")) {
        let at = |col: usize| row[col..].chars().next().unwrap();
        assert_ne!(
            at(column("TYPE")),
            ' ',
            "TYPE under its header: {row:?}\n{table}"
        );
        assert_ne!(
            at(column("ACTIVE")),
            ' ',
            "ACTIVE under its header: {row:?}\n{table}"
        );
        assert_ne!(at(column("PUBLISHED BY")), ' ', "{row:?}\n{table}");
        // VERSION is right-aligned: its last digit ends where the header ends.
        let end = column("VERSION") + "VERSION".len();
        assert!(row[..end].ends_with(char::is_numeric), "{row:?}\n{table}");
    }
}

#[tokio::test]
async fn configuration_layers_file_env_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        r#"
listen = "127.0.0.1:1"
[[tokens]]
token = "file-publisher-token-123456"
identity = "from-file"
role = "publisher"
"#,
    )
    .unwrap();
    // The flag --listen (127.0.0.1:0 from spawn_node) beats the file; the file's token works;
    // SORCHA_NODE_ID from the environment names the node.
    let node = spawn_node_env(
        dir.path(),
        &["--config", config.to_str().unwrap()],
        &[
            ("SORCHA_NODE_ID", "env-node"),
            ("SORCHA_HUB__HOSTNAME_PATTERN", "^never$"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let health: serde_json::Value = http
        .get(format!("http://{}/health", node.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["nodeId"], "env-node");
    let (status, entry) = crate::support::publish(
        &http,
        node.addr,
        "file-publisher-token-123456",
        "cfg",
        serde_json::json!({}),
    )
    .await;
    assert_eq!(status, 201, "{entry}");
    assert_eq!(entry["publishedBy"], "from-file");
    // A token was configured, so no admin-token file was generated.
    assert!(!dir.path().join("admin-token").exists());
}

/// Runs the CLI with `args` against `server` off the runtime's threads (an in-process server
/// must keep serving while it runs).
async fn run_against(server: String, args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(binary())
            .args(&args)
            .env("SORCHA_SERVER", server)
            .env("SORCHA_TOKEN", ADMIN)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// The `Idempotency-Key` of every request `server` received.
async fn keys_received(server: &wiremock::MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            r.headers
                .get("idempotency-key")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_retry_transient_failures_under_one_idempotency_key() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    let path_ = "/api/v1/system-register/blueprints";
    let busy = ResponseTemplate::new(503)
        .insert_header("retry-after", "0")
        .set_body_json(serde_json::json!({"detail": "the register store is unavailable"}));
    Mock::given(method("POST"))
        .and(path(path_))
        .respond_with(busy)
        .up_to_n_times(2)
        .mount(&server)
        .await;
    let entry = serde_json::json!({"type": "published", "blueprintId": "r", "version": 7,
                                   "checksum": "sha256:00"});
    Mock::given(method("POST"))
        .and(path(path_))
        .respond_with(
            ResponseTemplate::new(201)
                .insert_header("idempotent-replayed", "true")
                .set_body_json(entry),
        )
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("doc.json");
    std::fs::write(&doc, "{}").unwrap();
    let doc = doc.to_str().unwrap().to_owned();
    let out = run_against(server.uri(), &["publish", &doc, "--id", "r"]).await;
    let stdout = ok(&out);
    assert!(
        stdout.contains("published r at version 7") && stdout.contains("earlier attempt"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("retrying in").count(), 2, "{stderr}");
    let keys = keys_received(&server).await;
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k == &keys[0]), "one key: {keys:?}");
    let uuid = keys[0].trim_matches('"');
    assert!(
        keys[0].starts_with('"') && uuid::Uuid::parse_str(uuid).is_ok(),
        "{keys:?}"
    );

    // A refusal is final; a node that stays unavailable is given up on after --retries.
    server.reset().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(409).set_body_json(serde_json::json!({"detail": "exists"})),
        )
        .mount(&server)
        .await;
    let out = run_against(server.uri(), &["publish", &doc, "--id", "r"]).await;
    assert!(!out.status.success());
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    server.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let out = run_against(server.uri(), &["deprecate", "r", "--retries", "1"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("gave up after 1 retries"), "{stderr}");
    let keys = keys_received(&server).await;
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1]);
    // Each command has its own key.
    let out = run_against(server.uri(), &["deprecate", "r", "--retries", "0"]).await;
    assert!(!out.status.success());
    let keys = keys_received(&server).await;
    assert_ne!(keys[2], keys[0]);
}

/// A publish started while the hub is down is written once the hub is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_started_before_the_hub_lands_once_it_is_up() {
    use std::io::BufRead;
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("doc.json");
    std::fs::write(&doc, r#"{"title": "late"}"#).unwrap();
    let mut child = std::process::Command::new(binary())
        .args([
            "publish",
            doc.to_str().unwrap(),
            "--id",
            "late",
            "--retries",
            "20",
        ])
        .env("SORCHA_SERVER", format!("http://{addr}"))
        .env("SORCHA_TOKEN", ADMIN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Start the hub only after the CLI has failed to reach it once.
    let stderr = child.stderr.take().unwrap();
    let first = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stderr)
            .read_line(&mut line)
            .unwrap();
        line
    });
    let first = tokio::time::timeout(crate::support::WAIT, first)
        .await
        .unwrap()
        .unwrap();
    assert!(
        first.contains("cannot reach") && first.contains("retrying"),
        "{first}"
    );
    let hub_dir = tempfile::tempdir().unwrap();
    let cfg = crate::support::config(hub_dir.path());
    let hub = TestHub::start_at(hub_dir, cfg, addr).await;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
    let out = tokio::time::timeout(crate::support::WAIT, out)
        .await
        .unwrap()
        .unwrap();
    let stdout = ok(&out);
    assert!(stdout.contains("published late at version 2"), "{stdout}");
    let (_, register) = hub.get("/api/v1/system-register").await;
    assert_eq!(register["headVersion"], 2);
}

/// A node that accepts the connection and never answers: the command fails after its read
/// timeout instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_fails_a_client_command_after_its_read_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let started = std::time::Instant::now();
    let run = tokio::process::Command::new(binary())
        .args(["status", "--read-timeout", "1s"])
        .env("SORCHA_SERVER", format!("http://{addr}"))
        .output();
    let out = tokio::time::timeout(crate::support::WAIT, run)
        .await
        .expect("the command ends by itself")
        .unwrap();
    held.abort();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("cannot reach"), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
