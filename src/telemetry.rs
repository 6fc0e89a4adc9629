//! Logging and OpenTelemetry: structured `tracing` output (text or JSON, filtered by
//! `RUST_LOG`), plus OTLP export of spans and metrics when `OTEL_EXPORTER_OTLP_ENDPOINT` is set
//! (nothing is exported otherwise). W3C trace context travels on gRPC calls from peer to hub,
//! so one sync is one trace across both nodes.

use crate::metrics::{Metrics, Outcome, OutcomeLabels, Transport, TransportLabels};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, global};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::io::IsTerminal;
use std::sync::Arc;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installed telemetry; [`Telemetry::shutdown`] flushes what is still buffered.
#[derive(Debug, Default)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

fn otlp_enabled() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|k| std::env::var(k).is_ok_and(|v| !v.trim().is_empty()))
}

fn resource(node_id: &str) -> Resource {
    Resource::builder()
        .with_service_name("sorcha-peer")
        .with_attribute(KeyValue::new("service.instance.id", node_id.to_owned()))
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Installs the global subscriber. Must run inside the Tokio runtime (the OTLP exporter uses
/// it). `node_id` names this process in exported telemetry.
pub fn init(format: LogFormat, node_id: &str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal: a log redirected to a file or collected by a
    // supervisor must not carry escape codes (https://no-color.org is honoured too).
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    let mut telemetry = Telemetry::default();
    let otel_layer = if otlp_enabled() {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
        {
            Ok(exporter) => {
                let provider = SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource(node_id))
                    .build();
                global::set_text_map_propagator(TraceContextPropagator::new());
                let layer = tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("sorcha-peer"))
                    .boxed();
                global::set_tracer_provider(provider.clone());
                telemetry.tracer = Some(provider);
                Some(layer)
            }
            Err(e) => {
                eprintln!("OTLP trace export disabled: {e}");
                None
            }
        }
    } else {
        None
    };
    if otlp_enabled() {
        match opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .build()
        {
            Ok(exporter) => {
                let provider = SdkMeterProvider::builder()
                    .with_periodic_exporter(exporter)
                    .with_resource(resource(node_id))
                    .build();
                global::set_meter_provider(provider.clone());
                telemetry.meter = Some(provider);
            }
            Err(e) => eprintln!("OTLP metric export disabled: {e}"),
        }
    }
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel_layer)
        .init();
    telemetry
}

impl Telemetry {
    /// Exports the node's key metrics over OTLP (when enabled), read from its registry at each
    /// export.
    pub fn export_metrics(&self, metrics: &Arc<Metrics>) {
        if self.meter.is_none() {
            return;
        }
        let meter = global::meter("sorcha-peer");
        let m = Arc::clone(metrics);
        let _ = meter
            .i64_observable_gauge("sorcha_peer.register.head_version")
            .with_description("Version of the register's newest entry")
            .with_callback(move |o| o.observe(m.head_version.get(), &[]))
            .build();
        let m = Arc::clone(metrics);
        let _ = meter
            .u64_observable_counter("sorcha_peer.publishes")
            .with_description("Durable publishes by outcome")
            .with_callback(move |o| {
                for (outcome, label) in [(Outcome::Ok, "ok"), (Outcome::Failed, "failed")] {
                    let v = m.publishes.get_or_create(&OutcomeLabels { outcome }).get();
                    o.observe(v, &[KeyValue::new("outcome", label)]);
                }
            })
            .build();
        let m = Arc::clone(metrics);
        let _ = meter
            .u64_observable_counter("sorcha_peer.sync.entries")
            .with_description("Entries applied by sync")
            .with_callback(move |o| o.observe(m.sync_entries.get(), &[]))
            .build();
        let m = Arc::clone(metrics);
        let _ = meter
            .u64_observable_counter("sorcha_peer.notifications.delivered")
            .with_description("Notifications sent to subscribers")
            .with_callback(move |o| {
                for (transport, label) in [(Transport::Sse, "sse"), (Transport::Grpc, "grpc")] {
                    let v = m
                        .notifications_delivered
                        .get_or_create(&TransportLabels { transport })
                        .get();
                    o.observe(v, &[KeyValue::new("transport", label)]);
                }
            })
            .build();
        let m = Arc::clone(metrics);
        let _ = meter
            .u64_observable_counter("sorcha_peer.failovers")
            .with_description("Failovers of a peer to another hub")
            .with_callback(move |o| o.observe(m.failovers.get(), &[]))
            .build();
    }

    /// Flushes and stops the exporters.
    pub fn shutdown(self) {
        if let Some(t) = self.tracer {
            let _ = t.shutdown();
        }
        if let Some(m) = self.meter {
            let _ = m.shutdown();
        }
    }
}

/// Writes the current span's trace context into gRPC request metadata.
pub fn inject_context(metadata: &mut tonic::metadata::MetadataMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = tracing::Span::current().context();
    global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut MetadataInjector(metadata))
    });
}

/// Makes `span` a child of the trace context carried by `headers` (if any).
pub fn adopt_context(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let parent = global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    let _ = span.set_parent(parent);
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct HeaderExtractor<'a>(&'a axum::http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}
