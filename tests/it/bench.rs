//! The benchmark harness at smoke-test size: every workload runs and its consistency checks
//! hold (delivery, contiguity, verification). Speed is not asserted here; BENCHMARKS.md has the
//! full-size figures.

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
    let publish = run(&["publish", "--concurrency", "4", "--count", "100"]);
    assert_eq!(publish["figures"]["count"], 100);
    assert!(publish["figures"]["hub_rss_mib"].as_f64().unwrap() > 1.0);
    // Signed: the hub requires signatures, so every one of the 100 was signed and checked.
    let signed = run(&[
        "publish",
        "--concurrency",
        "4",
        "--count",
        "100",
        "--signed",
    ]);
    assert_eq!(
        (
            signed["params"]["signed"].as_bool(),
            signed["figures"]["count"].as_i64()
        ),
        (Some(true), Some(100))
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
    assert_eq!(on_mongo["figures"]["count"], 50);
    let on_mongo = run(&[
        "fullsync",
        "--entries",
        "300",
        "--doc-bytes",
        "256",
        "--hub-store",
        &uri,
    ]);
    assert!(on_mongo["figures"]["peer_replicate_s"].as_f64().unwrap() > 0.0);

    let fullsync = run(&["fullsync", "--entries", "1000", "--doc-bytes", "256"]);
    assert!(fullsync["figures"]["peer_replicate_s"].as_f64().unwrap() > 0.0);
    let signed = run(&[
        "fullsync",
        "--entries",
        "300",
        "--doc-bytes",
        "256",
        "--signed",
    ]);
    assert_eq!(signed["params"]["signed"], true);

    let idle = run(&["idle", "--subscribers", "10"]);
    assert!(idle["figures"]["base_rss_kib"].as_u64().unwrap() > 0);
    let shared = run(&["idle", "--subscribers", "10", "--per-connection", "5"]);
    assert_eq!(shared["params"]["per_connection"], 5);

    let storm = run(&["storm", "--peers", "10", "--behind", "3"]);
    assert_eq!(storm["figures"]["current"], 10);

    // The hub's fan-out (plain; event streams that carry each entry with its document, SSE
    // alone and mixed with gRPC push streams; gRPC push streams alone) and the bare-TCP floor
    // it is read against.
    let shape = ["--subscribers", "20", "--publishes", "10", "--rate", "100"];
    for (workload, extra, sse) in [
        ("fanout", &[][..], 10),
        ("floor", &[], 0),
        ("fanout", &["--transport", "sse", "--include-document"], 20),
        ("fanout", &["--include-document", "--doc-bytes", "1024"], 10),
        ("fanout", &["--transport", "grpc"], 0),
    ] {
        let args = [&[workload][..], &shape, extra].concat();
        let report = run(&args);
        assert_eq!(report["figures"]["delivered"], 200, "{args:?}");
        assert_eq!(report["figures"]["in_order"], true, "{args:?}");
        if workload == "fanout" {
            let document = extra.contains(&"--include-document");
            assert_eq!(report["params"]["include_document"], document, "{args:?}");
            assert_eq!(report["params"]["sse"], sse, "{args:?}");
        }
    }

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
    assert_eq!(bigdocs["figures"]["sse_delivered"], 10);
    assert!(bigdocs["figures"]["peer_peak_rss_mib"].as_f64().unwrap() > 1.0);

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
