//! `docs/api.md` stays true: every example runs, in order, against a real hub and its peer,
//! and gets the answer the guide shows. curl commands go through an HTTP client; grpcurl
//! commands send the same request JSON, mapped to protobuf by the services' descriptors as
//! grpcurl maps it, through a gRPC client; browser snippets run in headless Chromium on a page
//! of another origin. `"…"` in an answer matches any value; otherwise answers match exactly
//! (same keys, same values).

use crate::dashboard::browser;
use crate::support::{ADMIN, PUBLISHER, TestHub, WAIT, config, peer_config, wait_for};
use bytes::{Buf, BufMut, Bytes};
use futures::StreamExt;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};
use serde_json::Value;
use std::time::Duration;

const DOC_HUB: &str = "http://127.0.0.1:5000";
const DOC_PEER: &str = "http://127.0.0.1:5001";
/// A hub with `validation.blueprintSchema = "sorcha"`.
const DOC_CHECKED: &str = "http://127.0.0.1:5002";
const ANY: &str = "…";

/// A fenced block of the guide: its info string and its text.
#[derive(Debug, Clone)]
struct Block {
    info: String,
    text: String,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let mut text = String::new();
        for inner in lines.by_ref() {
            if inner.starts_with("```") {
                break;
            }
            text.push_str(inner);
            text.push('\n');
        }
        out.push(Block {
            info: info.trim().to_owned(),
            text,
        });
    }
    out
}

/// Shell words of one command line: quotes, `$TOKEN` and `$(date +%s%3N)` as a shell reads them.
fn shell_words(line: &str, token: &str) -> Vec<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let expand = |s: &str| s.replace("$(date +%s%3N)", &now).replace("$TOKEN", token);
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    w.push(q);
                }
            }
            '"' => {
                let mut quoted = String::new();
                for q in chars.by_ref() {
                    if q == '"' {
                        break;
                    }
                    quoted.push(q);
                }
                word.get_or_insert_with(String::new)
                    .push_str(&expand(&quoted));
            }
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '$' => {
                let mut raw = String::from('$');
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || n == '\'' || n == '"' {
                        break;
                    }
                    raw.push(n);
                    chars.next();
                }
                // `$(date +%s%3N)` holds a space.
                if raw == "$(date" {
                    for n in chars.by_ref() {
                        raw.push(n);
                        if n == ')' {
                            break;
                        }
                    }
                }
                word.get_or_insert_with(String::new).push_str(&expand(&raw));
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// The commands of a `sh` block (backslash continuations joined).
fn commands(text: &str) -> Vec<String> {
    text.replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Checks `actual` against the guide's `expected`, `"…"` matching anything.
fn matches(expected: &Value, actual: &Value, at: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::String(s), _) if s == ANY => Ok(()),
        (Value::Object(e), Value::Object(a)) => {
            // A value that differs from run to run may be absent: proto3 JSON leaves zeros out.
            let (mut ek, mut ak): (Vec<_>, Vec<_>) = (
                e.iter()
                    .filter(|(k, v)| a.contains_key(*k) || *v != ANY)
                    .map(|(k, _)| k)
                    .collect(),
                a.keys().collect(),
            );
            ek.sort();
            ak.sort();
            if ek != ak {
                return Err(format!("{at}: keys {ek:?} in the guide, {ak:?} answered"));
            }
            e.iter()
                .filter(|(k, _)| a.contains_key(*k))
                .try_for_each(|(k, v)| matches(v, &a[k], &format!("{at}.{k}")))
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => e
            .iter()
            .zip(a)
            .enumerate()
            .try_for_each(|(i, (e, a))| matches(e, a, &format!("{at}[{i}]"))),
        (e, a) if e == a => Ok(()),
        (e, a) => Err(format!("{at}: {e} in the guide, {a} answered")),
    }
}

/// Every JSON value of a block, one after another (grpcurl prints streams so).
fn json_values(text: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .map(|v| v.unwrap_or_else(|e| panic!("bad JSON in the guide: {e}\n{text}")))
        .collect()
}

struct Nodes {
    hub: TestHub,
    peer: TestHub,
    token: &'static str,
    session_id: Option<String>,
    checked: TestHub,
}

impl Nodes {
    fn substitute(&self, text: &str) -> String {
        text.replace(DOC_HUB, &self.hub.url(""))
            .replace(DOC_PEER, &self.peer.url(""))
            .replace(DOC_CHECKED, &self.checked.url(""))
    }

    /// The peer holds the hub's head (examples read both).
    async fn converged(&self) {
        let head = self.hub.node.state.register.head_version();
        let hub = self.hub.node.state.hub.as_ref().unwrap();
        let peer = self.peer.node.state.peer.as_ref().unwrap();
        wait_for("the peer connected and holding the hub's head", || async {
            let connected = peer.state().state
                == sorcha_peer::peer::state::ConnectionState::Connected
                && hub
                    .session("peer-1")
                    .is_some_and(|s| s.status == sorcha_peer::protocol::SessionStatus::Connected);
            (connected && self.peer.node.state.register.head_version() == head).then_some(())
        })
        .await;
    }
}

async fn run_curl(nodes: &Nodes, command: &str, answer: Option<&Block>) -> Result<(), String> {
    let words = shell_words(&nodes.substitute(command), nodes.token);
    assert_eq!(words[0], "curl", "{command}");
    let (mut method, mut url, mut body, mut headers) = (None, None, None, Vec::new());
    let mut args = words[1..].iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-s" | "-N" | "-i" => {}
            "-X" => method = args.next().cloned(),
            "-H" => {
                let (k, v) = args.next().unwrap().split_once(':').unwrap();
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            "-d" => body = args.next().cloned(),
            other if other.starts_with("http") => url = Some(other.to_owned()),
            other => panic!("unknown curl argument {other} in {command}"),
        }
    }
    let method = method.unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.into());
    let mut request = nodes
        .hub
        .http
        .request(method.parse().unwrap(), url.unwrap());
    for (k, v) in headers {
        request = request.header(k, v);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    let Some(answer) = answer else {
        return Ok(());
    };
    let status = response.status().as_u16();
    let is_stream = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if is_stream {
        return event_stream(response, &nodes.substitute(&answer.text)).await;
    }
    let expected_status: Option<u16> = answer.info.split(' ').nth(1).map(|s| s.parse().unwrap());
    if let Some(expected) = expected_status
        && expected != status
    {
        return Err(format!(
            "status {status}, the guide says {expected}: {}",
            response.text().await.unwrap_or_default()
        ));
    }
    let text = response.text().await.map_err(|e| e.to_string())?;
    if answer.info.starts_with("json") {
        let actual: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        let expected: Value = serde_json::from_str(&nodes.substitute(&answer.text)).unwrap();
        matches(&expected, &actual, "answer").map_err(|e| format!("{e}\nanswered: {actual:#}"))
    } else if text.trim() != answer.text.trim() {
        Err(format!(
            "answered {text:?}, the guide says {:?}",
            answer.text
        ))
    } else {
        Ok(())
    }
}

/// The stream's first frames against the guide's: field by field, `data:` as JSON.
/// `checkpoint` events come on the node's own once-a-second timer, anywhere in a stream that
/// has passed what they cover; unless the guide shows one, they are passed over.
async fn event_stream(response: reqwest::Response, expected: &str) -> Result<(), String> {
    let frames: Vec<&str> = expected.trim().split("\n\n").collect();
    let timed = |frame: &&str| {
        frame.starts_with("event: checkpoint\n") && !expected.contains("event: checkpoint\n")
    };
    let mut read = String::new();
    let mut body = response.bytes_stream();
    tokio::time::timeout(WAIT, async {
        while read
            .split_inclusive("\n\n")
            .filter(|f| f.ends_with("\n\n") && !timed(f))
            .count()
            < frames.len()
        {
            let chunk = body.next().await.expect("the stream goes on").unwrap();
            read.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await
    .map_err(|_| format!("the stream sent only {read:?}"))?;
    let got: Vec<&str> = read.split("\n\n").filter(|f| !timed(f)).collect();
    for (e, a) in frames.iter().zip(&got) {
        let (e_lines, a_lines): (Vec<&str>, Vec<&str>) = (e.lines().collect(), a.lines().collect());
        if e_lines.len() != a_lines.len() {
            return Err(format!("frame {a:?}, the guide shows {e:?}"));
        }
        for (el, al) in e_lines.iter().zip(&a_lines) {
            match (el.strip_prefix("data: "), al.strip_prefix("data: ")) {
                (Some(ed), Some(ad)) => matches(
                    &serde_json::from_str(ed).unwrap(),
                    &serde_json::from_str(ad).unwrap(),
                    "data",
                )?,
                _ if el == al => {}
                _ => return Err(format!("line {al:?}, the guide shows {el:?}")),
            }
        }
    }
    Ok(())
}

/// Protobuf messages as bytes: the descriptors, not generated types, give them meaning.
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct RawCoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCoder;
    type Decoder = RawCoder;
    fn encoder(&mut self) -> RawCoder {
        RawCoder
    }
    fn decoder(&mut self) -> RawCoder {
        RawCoder
    }
}

impl tonic::codec::Encoder for RawCoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

fn method(pool: &DescriptorPool, full: &str) -> MethodDescriptor {
    let (service, name) = full.split_once('/').unwrap();
    pool.get_service_by_name(service)
        .unwrap_or_else(|| panic!("no service {service}"))
        .methods()
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("no method {full}"))
}

async fn run_grpcurl(
    nodes: &mut Nodes,
    pool: &DescriptorPool,
    command: &str,
    answer: &Block,
) -> Result<(), String> {
    let words = shell_words(command, nodes.token);
    assert_eq!(words[0], "grpcurl", "{command}");
    let (mut data, mut positional) = (String::new(), Vec::new());
    let mut args = words[1..].iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-plaintext" => {}
            "-d" => data = args.next().unwrap().clone(),
            other => positional.push(other.to_owned()),
        }
    }
    assert_eq!(positional[0], "127.0.0.1:5000", "{command}");
    let method = method(pool, &positional[1]);
    let data = data.replace("SESSION_ID", nodes.session_id.as_deref().unwrap_or("none"));
    let requests: Vec<Bytes> = serde_json::Deserializer::from_str(&data)
        .into_iter::<Value>()
        .map(|v| {
            DynamicMessage::deserialize(method.input(), v.unwrap())
                .map(|m| Bytes::from(m.encode_to_vec()))
                .map_err(|e| format!("request JSON: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let expected = json_values(&answer.text);
    // Every call is bounded; streams are read with their own timeouts below.
    let channel = tonic::transport::Endpoint::from_shared(nodes.hub.url(""))
        .unwrap()
        .connect_timeout(WAIT)
        .timeout(WAIT)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| e.to_string())?;
    let path: http::uri::PathAndQuery = format!("/{}", positional[1]).parse().unwrap();
    let answers: Vec<Bytes> = match (method.is_client_streaming(), method.is_server_streaming()) {
        (false, false) => vec![
            grpc.unary(tonic::Request::new(requests[0].clone()), path, RawCodec)
                .await
                .map_err(|s| format!("{s:?}"))?
                .into_inner(),
        ],
        (client_streams, _) => {
            let response = if client_streams {
                grpc.streaming(
                    tonic::Request::new(futures::stream::iter(requests)),
                    path,
                    RawCodec,
                )
                .await
            } else {
                grpc.server_streaming(tonic::Request::new(requests[0].clone()), path, RawCodec)
                    .await
            };
            let mut stream = response.map_err(|s| format!("{s:?}"))?.into_inner();
            let mut out = Vec::new();
            // A subscription never ends: read what the guide shows, then one more briefly.
            while out.len() <= expected.len() {
                let wait = if out.len() == expected.len() {
                    Duration::from_millis(300)
                } else {
                    WAIT
                };
                match tokio::time::timeout(wait, stream.next()).await {
                    Ok(Some(item)) => out.push(item.map_err(|s| format!("{s:?}"))?),
                    Ok(None) | Err(_) => break,
                }
            }
            out
        }
    };
    let actual: Vec<Value> = answers
        .into_iter()
        .map(|bytes| {
            let message = DynamicMessage::decode(method.output(), bytes).unwrap();
            serde_json::to_value(&message).unwrap()
        })
        .collect();
    if method.name() == "ConnectToCentralNode" {
        nodes.session_id = actual[0]["sessionId"].as_str().map(str::to_owned);
    }
    if actual.len() != expected.len() {
        return Err(format!(
            "{} messages answered, the guide shows {}: {actual:#?}",
            actual.len(),
            expected.len()
        ));
    }
    for (i, (e, a)) in expected.iter().zip(&actual).enumerate() {
        matches(e, a, &format!("message {i}")).map_err(|err| format!("{err}\nanswered: {a:#}"))?;
    }
    Ok(())
}

/// A blank page on another origin, for the snippets.
async fn page_origin() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { axum::response::Html("<!doctype html><title>page</title>") }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn run_snippet(
    client: &fantoccini::Client,
    origin: &str,
    nodes: &Nodes,
    token: &str,
    code: &str,
    answer: &Block,
) -> Result<(), String> {
    client.goto(origin).await.map_err(|e| e.to_string())?;
    let code = nodes.substitute(code);
    client
        .execute(
            "window.logs = [];
             const log = console.log;
             console.log = (...a) => { window.logs.push(a.join(' ')); log(...a); };
             window.addEventListener('error', (e) => window.logs.push(`ERROR ${e.message}`));
             window.addEventListener('unhandledrejection', (e) => window.logs.push(`ERROR ${e.reason}`));
             sessionStorage.setItem('sorcha-token', arguments[1]);
             const s = document.createElement('script');
             s.type = 'module';
             s.textContent = arguments[0];
             document.body.append(s);",
            vec![Value::String(code), Value::String(token.to_owned())],
        )
        .await
        .map_err(|e| e.to_string())?;
    let expected: Vec<&str> = answer.text.lines().filter(|l| !l.is_empty()).collect();
    let logs = tokio::time::timeout(WAIT, async {
        loop {
            let logs = client.execute("return window.logs;", vec![]).await.unwrap();
            let logs: Vec<String> = serde_json::from_value(logs).unwrap();
            if logs.len() >= expected.len() || logs.iter().any(|l| l.starts_with("ERROR")) {
                return logs;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .map_err(|_| "the snippet logged too little".to_owned())?;
    if logs != expected {
        return Err(format!("logged {logs:#?}, the guide shows {expected:#?}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_of_the_api_guide_gets_its_answer() {
    let guide =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).unwrap();
    let origin = page_origin().await;
    let hub_dir = tempfile::tempdir().unwrap();
    let mut hub_cfg = config(hub_dir.path());
    hub_cfg.node_id = Some("hub-0".into());
    hub_cfg.cors.allowed_origins = vec![origin.clone()];
    let hub = TestHub::start_with(hub_dir, hub_cfg.clone()).await;
    let peer_dir = tempfile::tempdir().unwrap();
    let peer_cfg = peer_config(peer_dir.path(), vec![hub.url("")]);
    let peer = TestHub::start_with(peer_dir, peer_cfg).await;
    let checked = TestHub::configured(|c| c.validation.blueprint_schema = "sorcha".into()).await;
    let mut nodes = Nodes {
        hub,
        peer,
        checked,
        token: ADMIN,
        session_id: None,
    };
    let pool = DescriptorPool::decode(sorcha_peer::wire::proto::FILE_DESCRIPTOR_SET).unwrap();
    let (client, _driver) = browser().await;

    let all = blocks(&guide);
    let mut ran = (0, 0, 0);
    let mut failures = Vec::new();
    let mut i = 0;
    while i < all.len() {
        let block = &all[i];
        let answer = all.get(i + 1);
        i += 1;
        let outcome = if block.info == "sh" {
            i += 1;
            let answer = answer.expect("every command has an answer");
            nodes.converged().await;
            let commands = commands(&block.text);
            let mut outcome = Ok(());
            for (n, command) in commands.iter().enumerate() {
                let last = n + 1 == commands.len();
                outcome = if command.starts_with("grpcurl") {
                    ran.1 += 1;
                    run_grpcurl(&mut nodes, &pool, command, answer).await
                } else {
                    ran.0 += 1;
                    run_curl(&nodes, command, last.then_some(answer)).await
                };
                if outcome.is_err() {
                    break;
                }
            }
            outcome.map_err(|e| format!("{}\n  {e}", block.text.trim()))
        } else if block.info.starts_with("js browser") {
            i += 1;
            ran.2 += 1;
            let answer = answer.expect("every snippet has its console lines");
            if block.info.ends_with("closed-reads") {
                // The same hub, restarted with reads closed.
                let mut cfg = hub_cfg.clone();
                cfg.auth.public_reads = false;
                let Nodes {
                    hub,
                    peer,
                    checked,
                    token,
                    session_id,
                } = nodes;
                let hub = hub.restart_with(cfg).await;
                nodes = Nodes {
                    hub,
                    peer,
                    checked,
                    token,
                    session_id,
                };
            }
            nodes.converged().await;
            run_snippet(&client, &origin, &nodes, PUBLISHER, &block.text, answer)
                .await
                .map_err(|e| format!("{}\n  {e}", block.text.trim()))
        } else {
            Ok(())
        };
        if let Err(e) = outcome {
            failures.push(e);
        }
    }
    client.close().await.unwrap();
    assert!(
        failures.is_empty(),
        "{} examples of docs/api.md failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // Every REST operation and every RPC has an example.
    assert!(ran.0 >= 20 && ran.1 >= 10 && ran.2 >= 4, "{ran:?}");
    let doc = serde_json::to_value(sorcha_peer::api::openapi()).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for op in item.as_object().unwrap().keys() {
            let shown = path
                .replace("{id}", "expense-approval")
                .replace("{peerId}", "peer-1")
                .replace("{version}", "2");
            assert!(
                guide.contains(&shown) || guide.contains(&path.replace("{id}", "travel-request")),
                "{op} {path} has no example"
            );
        }
    }
    for service in pool
        .services()
        .filter(|s| s.package_name() == "sorcha.peer.v1")
    {
        for m in service.methods() {
            let name = format!("sorcha.peer.v1.{}/{}", service.name(), m.name());
            assert!(guide.contains(&name), "{name} has no example");
        }
    }
}
