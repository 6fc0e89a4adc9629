//! The client subcommands. Each returns the process exit code.

use super::client::{ApiClient, WriteAnswer};
use super::signing;
use super::{BlueprintsCommand, DeprecateArgs, Output, PublishArgs, VerifyArgs, WatchArgs};
use crate::register::checkpoint_note::Coverage;
use crate::register::entry::EntryType;
use crate::register::{VerifyReport, verify_store_with_progress};
use crate::store::embedded::EmbeddedStore;
use anyhow::Context;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

fn read_document(path: &std::path::Path) -> anyhow::Result<Value> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the document from stdin")?;
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// `publish FILE --id ID [--update]`.
pub async fn publish(args: PublishArgs) -> anyhow::Result<i32> {
    let document = read_document(&args.file)?;
    let client = ApiClient::from_args(&args.client)?;
    let metadata: BTreeMap<_, _> = args.metadata.into_iter().collect();
    let (method, path, mut body) = if args.update {
        (
            Method::PUT,
            format!("/api/v1/system-register/blueprints/{}", args.id),
            json!({"document": document, "metadata": metadata,
                   "publicationTransactionId": args.transaction_id}),
        )
    } else {
        (
            Method::POST,
            "/api/v1/system-register/blueprints".to_owned(),
            json!({"blueprintId": args.id, "document": document, "metadata": metadata,
                   "publicationTransactionId": args.transaction_id}),
        )
    };
    if let Some(key_file) = &args.sign_key {
        let kind = if args.update {
            EntryType::Updated
        } else {
            EntryType::Published
        };
        let publication = signing::Unsigned {
            blueprint_id: &args.id,
            entry_type: kind,
            document: Some(&document),
            metadata: &metadata,
            transaction_id: args.transaction_id.as_deref(),
        };
        body["signature"] = signing::sign(&client, key_file, &publication).await?;
    }
    let answer = client
        .write(method, &path, &body, args.retry.retries)
        .await?;
    let entry = &answer.entry;
    if args.client.output == Output::Text {
        println!(
            "{} {} at version {} ({}){}",
            entry["type"].as_str().unwrap_or("published"),
            entry["blueprintId"].as_str().unwrap_or_default(),
            entry["version"],
            entry["checksum"].as_str().unwrap_or_default(),
            replayed_note(&answer)
        );
    }
    finish_write(&client, entry, &args.wait, args.client.output).await
}

/// After a write: waits for the fleet when `--wait` asks (see [`super::fleet::await_share`]),
/// prints the entry for `--output json` (with `propagation`, when waited), and returns the
/// exit code.
async fn finish_write(
    client: &ApiClient,
    entry: &Value,
    wait: &super::WaitArgs,
    output: Output,
) -> anyhow::Result<i32> {
    let version = entry["version"].as_i64().unwrap_or(0);
    let waited = super::fleet::await_share(client, version, wait).await?;
    let code = match (&waited, wait.wait) {
        (Some(w), Some(share)) => super::fleet::report(w, share, output),
        _ => 0,
    };
    if output == Output::Json {
        let mut shown = entry.clone();
        if let Some(w) = waited {
            shown["propagation"] = w.answer;
        }
        print_json(&shown);
    }
    Ok(code)
}

/// Says when the answer came from an earlier attempt whose answer was lost.
fn replayed_note(answer: &WriteAnswer) -> &'static str {
    if answer.replayed {
        " - written by an earlier attempt"
    } else {
        ""
    }
}

/// `deprecate ID`.
pub async fn deprecate(args: DeprecateArgs) -> anyhow::Result<i32> {
    let client = ApiClient::from_args(&args.client)?;
    let metadata: BTreeMap<_, _> = args.metadata.into_iter().collect();
    let path = format!("/api/v1/system-register/blueprints/{}/deprecate", args.id);
    let mut body = json!({ "metadata": metadata });
    if let Some(key_file) = &args.sign_key {
        let publication = signing::Unsigned {
            blueprint_id: &args.id,
            entry_type: EntryType::Deprecated,
            document: None,
            metadata: &metadata,
            transaction_id: None,
        };
        body["signature"] = signing::sign(&client, key_file, &publication).await?;
    }
    let answer = client
        .write(Method::POST, &path, &body, args.retry.retries)
        .await?;
    let entry = &answer.entry;
    if args.client.output == Output::Text {
        println!(
            "deprecated {} at version {}{}",
            entry["blueprintId"].as_str().unwrap_or_default(),
            entry["version"],
            replayed_note(&answer)
        );
    }
    finish_write(&client, entry, &args.wait, args.client.output).await
}

/// `blueprints list|get`.
pub async fn blueprints(command: BlueprintsCommand) -> anyhow::Result<i32> {
    match command {
        BlueprintsCommand::List {
            active,
            json,
            client,
        } => {
            let json = json || client.output == Output::Json;
            let client = ApiClient::from_args(&client)?;
            let mut cursor: Option<String> = None;
            let mut all = Vec::new();
            loop {
                let mut query: Vec<(&str, String)> = vec![("limit", "1000".into())];
                if let Some(a) = active {
                    query.push(("active", a.to_string()));
                }
                if let Some(c) = &cursor {
                    query.push(("cursor", c.clone()));
                }
                let page = client
                    .json(
                        client
                            .request(Method::GET, "/api/v1/system-register/blueprints")
                            .query(&query),
                    )
                    .await?;
                all.extend(page["items"].as_array().cloned().unwrap_or_default());
                match page["next"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => break,
                }
            }
            if json {
                print_json(&Value::Array(all));
            } else {
                println!(
                    "{:<40} {:>8} {:<10} {:<7} PUBLISHED BY",
                    "BLUEPRINT", "VERSION", "TYPE", "ACTIVE"
                );
                for b in &all {
                    // Plain strings: a JSON value ignores the column width.
                    println!(
                        "{:<40} {:>8} {:<10} {:<7} {}",
                        b["blueprintId"].as_str().unwrap_or_default(),
                        b["version"].as_i64().unwrap_or_default().to_string(),
                        b["type"].as_str().unwrap_or_default(),
                        if b["isActive"].as_bool() == Some(true) {
                            "yes"
                        } else {
                            "no"
                        },
                        b["publishedBy"].as_str().unwrap_or_default()
                    );
                }
                println!("{} blueprint(s)", all.len());
            }
            Ok(0)
        }
        BlueprintsCommand::Get {
            id,
            history,
            client,
        } => {
            let client = ApiClient::from_args(&client)?;
            if !history {
                print_json(
                    &client
                        .get(&format!("/api/v1/system-register/blueprints/{id}"))
                        .await?,
                );
                return Ok(0);
            }
            // One `{"items": [...]}` document of every entry, printed page by page as the node
            // sends them (a page ends by entries or by bytes; `next` says where the following
            // one starts), so a long history is never held whole.
            let mut since = "0".to_owned();
            let mut first = true;
            println!("{{\"items\": [");
            loop {
                let path = format!(
                    "/api/v1/system-register/blueprints/{id}/history?limit=1000&since={since}"
                );
                let page = client.get(&path).await?;
                for item in page["items"].as_array().into_iter().flatten() {
                    if !first {
                        println!(",");
                    }
                    first = false;
                    print!(
                        "{}",
                        serde_json::to_string_pretty(item).unwrap_or_else(|_| item.to_string())
                    );
                }
                match page["next"].as_str() {
                    Some(next) => since = next.to_owned(),
                    None => break,
                }
            }
            println!("\n]}}");
            Ok(0)
        }
    }
}

/// `status`.
pub async fn status(args: super::ClientArgs) -> anyhow::Result<i32> {
    let client = ApiClient::from_args(&args)?;
    let node = client.get("/api/v1/node").await?;
    if args.output == Output::Json {
        print_json(&node);
        return Ok(if node["integrityOk"].as_bool() == Some(false) {
            1
        } else {
            0
        });
    }
    let reg = &node["register"];
    println!(
        "node        {} ({})",
        node["nodeId"].as_str().unwrap_or("?"),
        node["role"].as_str().unwrap_or("?")
    );
    println!("version     {}", node["version"].as_str().unwrap_or("?"));
    println!("uptime      {}s", node["uptimeSeconds"]);
    println!(
        "head        version {} {}",
        reg["headVersion"],
        reg["headHash"].as_str().unwrap_or("-")
    );
    println!(
        "blueprints  {} ({} active), {} entries",
        reg["blueprints"], reg["activeBlueprints"], reg["entries"]
    );
    if let Some(state) = node["connectionState"].as_str() {
        println!(
            "connection  {state} {}",
            node["currentHub"].as_str().unwrap_or("(no hub)")
        );
    }
    if node["integrityOk"].as_bool() == Some(false) {
        println!("integrity   FAILED: {}", node["integrityFailure"]);
        return Ok(1);
    }
    println!("integrity   ok");
    Ok(0)
}

/// `watch`: prints events until interrupted (or `--count` events), reconnecting with
/// `Last-Event-ID` when the stream drops.
pub async fn watch(args: WatchArgs) -> anyhow::Result<i32> {
    let client = ApiClient::from_args(&args.client)?;
    let mut last_id: Option<String> = None;
    let mut seen = 0u64;
    loop {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(s) = args.since {
            query.push(("since", s.to_string()));
        }
        if let Some(b) = &args.blueprint_id {
            query.push(("blueprintId", b.clone()));
        }
        if let Some(t) = &args.entry_type {
            query.push(("type", t.clone()));
        }
        let mut request = client
            .request(Method::GET, crate::api::sse::EVENTS_PATH)
            .query(&query);
        if let Some(id) = &last_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = client.send(request).await?;
        let mut events = response.bytes_stream().eventsource();
        while let Some(event) = events.next().await {
            let Ok(event) = event else { break };
            if event.data.is_empty() {
                continue;
            }
            if event.event == crate::api::sse::CAUGHT_UP {
                // The replay is done; said on stderr so stdout keeps one line per entry.
                let data: Value = serde_json::from_str(&event.data).unwrap_or_default();
                eprintln!(
                    "caught up with the node's head at version {}{}",
                    data["headVersion"],
                    if data["ahead"] == Value::Bool(true) {
                        " (the resume position is ahead of this node)"
                    } else {
                        ""
                    }
                );
                continue;
            }
            if event.event == crate::api::sse::CHECKPOINT {
                // Not an entry (its id is the last entry's, as SSE keeps it): stderr too.
                let data: Value = serde_json::from_str(&event.data).unwrap_or_default();
                eprintln!("signed checkpoint of version {}", data["version"]);
                continue;
            }
            last_id = Some(event.id.clone());
            if args.json || args.client.output == Output::Json {
                println!("{}", event.data);
            } else {
                let data: Value = serde_json::from_str(&event.data).unwrap_or_default();
                println!(
                    "{:>8}  {:<22} {:<40} by {}",
                    event.id,
                    event.event,
                    data["blueprintId"].as_str().unwrap_or_default(),
                    data["publishedBy"].as_str().unwrap_or_default()
                );
            }
            seen += 1;
            if args.count.is_some_and(|c| seen >= c) {
                return Ok(0);
            }
        }
        eprintln!("stream ended; reconnecting");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn print_report(report: &VerifyReport) -> i32 {
    match &report.failure {
        None => {
            println!(
                "ok: {} entries verified in {} ms ({} signatures); head version {} {}",
                report.checked,
                report.duration_ms,
                report.signed,
                report.head_version,
                report.head_hash.as_deref().unwrap_or("-")
            );
            0
        }
        Some(f) => {
            println!("FAILED ({}): {f}", f.defect.kind());
            1
        }
    }
}

/// `verify`: offline over a data dir, else through the server.
pub async fn verify(args: VerifyArgs) -> anyhow::Result<i32> {
    if let Some(dir) = args.data_dir {
        let store = EmbeddedStore::open(&dir).context("cannot open the data dir")?;
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template(
                "verifying {bar:40} {pos}/{len} entries ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let keys = match &args.publisher_keys {
            Some(file) => Some(signing::read_publisher_keys(file)?),
            None => None,
        };
        let report = verify_store_with_progress(&store, keys, &|checked, head| {
            bar.set_length(u64::try_from(head).unwrap_or(0));
            bar.set_position(checked);
        })
        .await?;
        bar.finish_and_clear();
        let checkpoint = match &args.checkpoint {
            Some(file) => Some(signing::check_checkpoint(&store, file, &args.trust).await?),
            None => None,
        };
        let held = checkpoint
            .as_ref()
            .is_none_or(|c| c.coverage == Coverage::Holds);
        if args.client.output == Output::Json {
            let mut value = serde_json::to_value(&report)?;
            if let Some(c) = &checkpoint {
                value["checkpoint"] = serde_json::to_value(c)?;
            }
            print_json(&value);
            return Ok(if report.failure.is_none() && held {
                0
            } else {
                1
            });
        }
        let code = print_report(&report);
        if let Some(c) = &checkpoint {
            println!("{}", c.describe());
        }
        return Ok(if held { code } else { 1 });
    }
    let client = ApiClient::from_args(&args.client)?;
    let v = client.get("/api/v1/system-register/verify").await?;
    if args.client.output == Output::Json {
        print_json(&v);
        return Ok(if v["ok"].as_bool() == Some(true) {
            0
        } else {
            1
        });
    }
    if v["ok"].as_bool() == Some(true) {
        println!(
            "ok: {} entries verified in {} ms; head version {} {}",
            v["checked"],
            v["durationMs"],
            v["headVersion"],
            v["headHash"].as_str().unwrap_or("-")
        );
        Ok(0)
    } else {
        println!(
            "FAILED at version {}: {}",
            v["firstBadVersion"],
            v["error"].as_str().unwrap_or("?")
        );
        Ok(1)
    }
}
