//! The fleet from the command line: `fleet` lists it, and `publish`/`deprecate --wait` follow
//! a write until a share of it holds the version (the hub's propagation endpoint).

use super::client::ApiClient;
use super::{FleetArgs, Output, WaitArgs};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Exit code of a write whose `--wait` timed out (the write itself succeeded).
pub const EXIT_NOT_PROPAGATED: i32 = 3;
/// One propagation request waits at most this long (the hub allows 5 min); the command
/// repeats it until `--wait-timeout`, so the progress bar moves.
const LONG_POLL: Duration = Duration::from_secs(2);
/// Beyond its wait, a request may take this long to answer.
const ANSWER_MARGIN: Duration = Duration::from_secs(10);

/// Where a wait ended.
#[derive(Debug)]
pub struct Waited {
    /// The hub's last answer (`PropagationView`).
    pub answer: Value,
    /// The share was reached.
    pub reached: bool,
    /// How long it took.
    pub took: Duration,
}

/// Follows `version` until `wait.wait` of the fleet holds it or `wait.wait_timeout` passes,
/// drawing a progress bar on a terminal.
pub async fn await_share(
    client: &ApiClient,
    version: i64,
    wait: &WaitArgs,
) -> anyhow::Result<Option<Waited>> {
    let Some(share) = wait.wait else {
        return Ok(None);
    };
    let started = Instant::now();
    let deadline = started + wait.wait_timeout;
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("v{prefix} {bar:40} {pos}/{len} peers hold it {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(version.to_string());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let poll = left.min(LONG_POLL);
        let path = format!(
            "/api/v1/system-register/entries/{version}/propagation?waitFor={share}&timeout={}ms",
            poll.as_millis()
        );
        let answer = client
            .json(
                client
                    .request(reqwest::Method::GET, &path)
                    .timeout(poll + ANSWER_MARGIN),
            )
            .await
            .context("cannot follow the publication's propagation (--wait needs a hub)")?;
        let (peers, applied) = (
            answer["peers"].as_u64().unwrap_or(0),
            answer["applied"].as_u64().unwrap_or(0),
        );
        bar.set_length(peers);
        bar.set_position(applied);
        let reached = answer["ratio"].as_f64().unwrap_or(0.0) >= share;
        if reached || Instant::now() >= deadline {
            bar.finish_and_clear();
            return Ok(Some(Waited {
                answer,
                reached,
                took: started.elapsed(),
            }));
        }
    }
}

/// Prints where a wait ended (to stdout when reached, stderr when not) and returns the exit
/// code: 0, or [`EXIT_NOT_PROPAGATED`].
pub fn report(waited: &Waited, share: f64, output: Output) -> i32 {
    let a = &waited.answer;
    let code = if waited.reached {
        0
    } else {
        EXIT_NOT_PROPAGATED
    };
    if output == Output::Json {
        return code;
    }
    let line = format!(
        "v{} held by {}/{} peers ({:.1} %) after {:.1} s",
        a["version"],
        a["applied"],
        a["peers"],
        a["ratio"].as_f64().unwrap_or(0.0) * 100.0,
        waited.took.as_secs_f64()
    );
    if waited.reached {
        println!("{line}");
    } else {
        let pending: Vec<&str> = a["pending"]
            .as_array()
            .map(|p| p.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        eprintln!(
            "timed out waiting for {:.0} % of the fleet: {line}; pending: {}",
            share * 100.0,
            if pending.is_empty() {
                "(none named)".to_owned()
            } else {
                pending.join(", ")
            }
        );
    }
    code
}

/// `fleet`: every page of `GET /api/v1/fleet`, as a table or one JSON document.
pub async fn list(args: FleetArgs) -> anyhow::Result<i32> {
    let client = ApiClient::from_args(&args.client)?;
    let mut filters = String::new();
    if let Some(state) = &args.state {
        filters.push_str(&format!("&state={}", urlencoding(state)));
    }
    if let Some(hub) = &args.hub {
        filters.push_str(&format!("&hub={}", urlencoding(hub)));
    }
    let mut first: Option<Value> = None;
    let mut peers: Vec<Value> = Vec::new();
    let mut after: Option<String> = None;
    // Bounded: a fleet of up to 1000 pages of 1000 peers.
    for _ in 0..1000 {
        let cursor = after
            .as_deref()
            .map(|a| format!("&after={}", urlencoding(a)))
            .unwrap_or_default();
        let page = client
            .get(&format!("/api/v1/fleet?limit=1000{filters}{cursor}"))
            .await?;
        peers.extend(page["peers"].as_array().cloned().unwrap_or_default());
        after = page["next"].as_str().map(str::to_owned);
        first.get_or_insert(page);
        if after.is_none() {
            break;
        }
    }
    let first = first.unwrap_or_default();
    if args.client.output == Output::Json {
        let all = json!({
            "hubId": first["hubId"],
            "headVersion": first["headVersion"],
            "generatedAt": first["generatedAt"],
            "summary": first["summary"],
            "hubs": first["hubs"],
            "peers": peers,
        });
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(0);
    }
    let s = &first["summary"];
    println!(
        "{} peers on {} hub(s), head v{}: {} synced, {} behind, {} stale, {} refused, {} disconnected; SC-011 {:.1} % hold v{}",
        s["peers"],
        first["hubs"].as_array().map_or(0, Vec::len),
        first["headVersion"],
        s["synced"],
        s["behind"],
        s["stale"],
        s["refused"],
        s["disconnected"],
        s["currentRatio"].as_f64().unwrap_or(0.0) * 100.0,
        s["settledVersion"]
    );
    if peers.is_empty() {
        return Ok(0);
    }
    println!(
        "{:<24} {:<12} {:<12} {:>8} {:>6} {:>9}  NOTE",
        "PEER", "HUB", "STATE", "APPLIED", "LAG", "LAG(S)"
    );
    for p in &peers {
        let note = p["refusal"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| p["softwareVersion"].as_str().unwrap_or("").to_owned());
        // A peer below relays shows its way: `hub → relay → …`.
        let mut hub = p["hubId"].as_str().unwrap_or("?").to_owned();
        for relay in p["via"].as_array().into_iter().flatten() {
            hub.push_str(" → ");
            hub.push_str(relay.as_str().unwrap_or("?"));
        }
        println!(
            "{:<24} {:<12} {:<12} {:>8} {:>6} {:>9.1}  {}",
            p["peerId"].as_str().unwrap_or("?"),
            hub,
            p["state"].as_str().unwrap_or("?"),
            p["appliedVersion"],
            p["versionLag"],
            p["lagSeconds"].as_f64().unwrap_or(0.0),
            note
        );
    }
    Ok(0)
}

/// Percent-encodes a query value (ids are plain, but a filter typed by hand may not be).
fn urlencoding(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
