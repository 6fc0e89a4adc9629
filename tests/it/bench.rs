//! The benchmark harness at smoke-test size: every workload runs and the figures that say it
//! did what it claims hold (everything delivered, in order, over the transports asked for;
//! versions contiguous; registers that verify, with every signature counted). Speed is not
//! asserted here; BENCHMARKS.md has the full-size figures.

use serde_json::json;
use std::process::Command;

fn run(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_sorcha-bench"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?} failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON line ({e}): {stdout}"))
}

#[test]
fn every_workload_runs_at_small_size() {
    // Every publish answered, at versions 2..=101, and the hub's register verifies.
    let publish = run(&["publish", "--concurrency", "4", "--count", "100"]);
    let f = &publish["figures"];
    assert_eq!(
        (&f["count"], &f["versions"], &f["register_checked"]),
        (&json!(100), &json!([2, 101]), &json!(101)),
        "{publish}"
    );
    assert_eq!(f["register_signatures"], 0, "{publish}");
    // Signed: the hub requires signatures, and its own check counts one on each of the 100.
    let signed = run(&[
        "publish",
        "--concurrency",
        "4",
        "--count",
        "100",
        "--signed",
    ]);
    let f = &signed["figures"];
    assert_eq!(
        (
            &f["count"],
            &f["register_checked"],
            &f["register_signatures"]
        ),
        (&json!(100), &json!(101), &json!(100)),
        "{signed}"
    );

    // The same hub on the test run's MongoDB.
    let uri = crate::support::mongodb_uri();
    let on_mongo = run(&[
        "publish",
        "--concurrency",
        "4",
        "--count",
        "50",
        "--hub-store",
        &uri,
    ]);
    assert_eq!(
        on_mongo["figures"]["versions"],
        json!([2, 51]),
        "{on_mongo}"
    );
    let on_mongo = run(&[
        "fullsync",
        "--entries",
        "300",
        "--doc-bytes",
        "256",
        "--hub-store",
        &uri,
    ]);
    // Streamed whole, and the peer's replica verifies entry by entry.
    let synced = |report: &serde_json::Value| {
        let f = &report["figures"];
        (
            f["streamed"].as_u64(),
            f["replica_checked"].as_u64(),
            f["replica_signatures"].as_u64(),
        )
    };
    assert_eq!(
        synced(&on_mongo),
        (Some(301), Some(301), Some(0)),
        "{on_mongo}"
    );
    let fullsync = run(&["fullsync", "--entries", "1000", "--doc-bytes", "256"]);
    assert_eq!(
        synced(&fullsync),
        (Some(1001), Some(1001), Some(0)),
        "{fullsync}"
    );
    let signed = run(&[
        "fullsync",
        "--entries",
        "300",
        "--doc-bytes",
        "256",
        "--signed",
    ]);
    assert_eq!(
        synced(&signed),
        (Some(301), Some(301), Some(300)),
        "{signed}"
    );

    // The hub holds every stream open, by its own count.
    let open = json!({"grpc": 10.0, "sse": 10.0});
    let idle = run(&["idle", "--subscribers", "10"]);
    assert_eq!(idle["figures"]["open_streams"], open, "{idle}");
    let shared = run(&["idle", "--subscribers", "10", "--per-connection", "5"]);
    assert_eq!(shared["figures"]["open_streams"], open, "{shared}");

    let storm = run(&["storm", "--peers", "10", "--behind", "3"]);
    assert_eq!(storm["figures"]["current"], 10);

    // The hub's fan-out (plain; event streams that carry each entry with its document, SSE
    // alone and mixed with gRPC push streams; gRPC push streams alone) and the bare-TCP floor
    // it is read against.
    let shape = ["--subscribers", "20", "--publishes", "10", "--rate", "100"];
    // Each SSE receipt of a document event counts only when it carries the whole document.
    for (workload, extra, delivered_by) in [
        ("fanout", &[][..], json!({"grpc": 100, "sse": 100})),
        ("floor", &[], json!({"tcp": 200})),
        (
            "fanout",
            &["--transport", "sse", "--include-document"],
            json!({"sse": 200}),
        ),
        (
            "fanout",
            &["--include-document", "--doc-bytes", "1024"],
            json!({"grpc": 100, "sse": 100}),
        ),
        ("fanout", &["--transport", "grpc"], json!({"grpc": 200})),
    ] {
        let args = [&[workload][..], &shape, extra].concat();
        let report = run(&args);
        let f = &report["figures"];
        assert_eq!(
            (&f["delivered_by"], &f["in_order"]),
            (&delivered_by, &json!(true)),
            "{args:?}: {report}"
        );
    }

    // Two tiers: every subscriber of either phase gets every publish, in order.
    let relays = run(&[
        "relays",
        "--relays",
        "2",
        "--subscribers-per-relay",
        "5",
        "--publishes",
        "10",
        "--rate",
        "100",
    ]);
    for phase in ["hub_alone", "through_relays"] {
        let f = &relays["figures"][phase];
        assert_eq!(
            (&f["delivered"], &f["in_order"]),
            (&json!(100), &json!(true)),
            "{phase}: {relays}"
        );
    }
    assert!(
        relays["figures"]["through_relays"]["relays_cpu_s"].is_number(),
        "{relays}"
    );

    let bigdocs = run(&[
        "bigdocs",
        "--publishes",
        "5",
        "--doc-bytes",
        "262144",
        "--sse",
        "2",
        "--readers",
        "2",
    ]);
    assert_eq!(bigdocs["figures"]["sse_delivered"], 10, "{bigdocs}");

    // The fleet on the test run's MongoDB: two hubs, three peer processes, the first hub
    // killed mid-run; every publish answered and delivered to every peer.
    let fleet = run(&[
        "fleet",
        "--mongodb",
        &uri,
        "--hubs",
        "2",
        "--peers",
        "3",
        "--publishes",
        "4",
        "--rate",
        "10",
        "--after-kill",
        "2",
        "--after-kill-rate",
        "4",
    ]);
    let f = &fleet["figures"];
    assert_eq!(
        (f["acknowledged"].as_u64(), f["missing_deliveries"].as_u64()),
        (Some(6), Some(0)),
        "{fleet}"
    );
    assert_eq!(
        f["sessions_per_hub"][1], 3.0,
        "every peer on the survivor: {fleet}"
    );
    assert_eq!(
        f["syncing_after_settle"], 0,
        "no session counted as syncing once its syncs ended: {fleet}"
    );
    assert!(
        f["current_after_kill_100_s"].as_f64().unwrap() > 0.0,
        "{fleet}"
    );

    let verify = run(&["verify", "--entries", "2000"]);
    assert_eq!(verify["figures"]["checked"], 2001);
    let signed = run(&["verify", "--entries", "2000", "--signed"]);
    assert_eq!(
        (
            signed["figures"]["checked"].as_i64(),
            signed["figures"]["signatures"].as_i64()
        ),
        (Some(2001), Some(2000))
    );
}
