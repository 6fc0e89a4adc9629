//! Collecting and printing figures: delivery receipts, latency histograms, the JSON line.

use crate::Hub;
use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// What a fan-out's subscribers received, against the publishes' acknowledgements.
pub(crate) struct Receipts {
    /// Acknowledgement-to-receipt latency (µs) of every receipt.
    latency: Histogram<u64>,
    delivered: usize,
    /// Every subscriber saw consecutive versions (sequence numbers), none skipped or repeated.
    in_order: bool,
    /// Receipts by the transport that delivered them.
    by_transport: std::collections::BTreeMap<&'static str, usize>,
}

/// One subscriber's task: the `(version, arrival)` of everything it received.
pub(crate) type Receiver = tokio::task::JoinHandle<Vec<(i64, Instant)>>;

impl Receipts {
    /// No receipts yet.
    pub(crate) fn new() -> Self {
        Receipts {
            latency: histogram(),
            delivered: 0,
            in_order: true,
            by_transport: Default::default(),
        }
    }

    /// Waits (bounded) for every `transport` subscriber task's list and counts it.
    pub(crate) async fn add(
        &mut self,
        transport: &'static str,
        receivers: Vec<Receiver>,
        ack_of: impl Fn(i64) -> Option<Instant>,
    ) -> anyhow::Result<()> {
        for r in receivers {
            let got = tokio::time::timeout(Duration::from_secs(120), r)
                .await
                .context("subscribers did not finish")??;
            self.in_order &= got.windows(2).all(|w| w[1].0 == w[0].0 + 1);
            self.delivered += got.len();
            *self.by_transport.entry(transport).or_default() += got.len();
            for (v, at) in got {
                if let Some(ack) = ack_of(v) {
                    let us = at.saturating_duration_since(ack).as_micros().max(1);
                    self.latency.record(us as u64)?;
                }
            }
        }
        Ok(())
    }

    /// Fails unless every subscriber got every publish, in order.
    pub(crate) fn check(&self, expected: usize) -> anyhow::Result<()> {
        if self.delivered != expected || !self.in_order {
            bail!(
                "delivered {} of {expected} (in order: {})",
                self.delivered,
                self.in_order
            );
        }
        Ok(())
    }

    /// The report's delivery figures: latency percentiles, delivered/expected, in order.
    pub(crate) fn figures(&self, expected: usize) -> Value {
        let mut figures = latency_fields(&self.latency);
        figures["delivered"] = json!(self.delivered);
        figures["expected"] = json!(expected);
        figures["in_order"] = json!(self.in_order);
        figures["delivered_by"] = json!(self.by_transport);
        figures
    }
}

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

pub(crate) fn latency_fields(h: &Histogram<u64>) -> Value {
    let ms = |us: u64| us as f64 / 1000.0;
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.5)),
        "p90_ms": ms(h.value_at_quantile(0.9)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
    })
}

pub(crate) fn report(workload: &str, params: Value, mut figures: Value, hub: Option<&Hub>) {
    if let Some(hub) = hub {
        figures["hub_rss_mib"] = json!(hub.rss_kib() as f64 / 1024.0);
        figures["hub_cpu_s"] = json!(hub.cpu_seconds());
    }
    let line = json!({ "workload": workload, "params": params, "figures": figures });
    println!("{line}");
}
