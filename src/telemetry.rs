//! Logging and tracing setup: human-readable logs by default, JSON with
//! `LOG_FORMAT=json`, levels from `RUST_LOG`, and spans exported with OTLP
//! (gRPC) when an endpoint is configured. The OpenTelemetry SDK itself reads
//! the standard `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_TRACES_SAMPLER*` variables.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Span export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Otlp {
    Disabled,
    Enabled {
        endpoint: String,
        service_name: String,
    },
}

/// Flushes and stops span export when dropped (at process exit).
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("parloir: span export did not shut down cleanly: {e}");
        }
    }
}

/// Builds an OTLP/gRPC tracer provider exporting in batches to `endpoint`.
pub fn otlp_provider(endpoint: &str, service_name: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build())
}

/// Crates that log what clients send at debug and trace level — the
/// handshake's `auth` object and raw packets (socketioxide), request heads
/// (engineioxide) — and so tokens. Never more than info, whatever `RUST_LOG`
/// asks: a token in a log is a credential anyone with the logs can use.
const TOKEN_BEARING_TARGETS: [&str; 2] = ["socketioxide", "engineioxide"];

/// A filter that caps [`TOKEN_BEARING_TARGETS`] at info and lets the rest
/// through (the `RUST_LOG` filter still applies beside it).
pub fn token_safe_filter() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(TOKEN_BEARING_TARGETS.map(|t| (t, LevelFilter::INFO)))
}

/// Installs the global subscriber and, with OTLP enabled, the exporter.
/// Call once, from `main`, inside the runtime; keep the guard alive.
pub fn init(format: LogFormat, otlp: &Otlp) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_target(false).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    };
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let (provider, spans) = match otlp {
        Otlp::Disabled => (None, None),
        Otlp::Enabled {
            endpoint,
            service_name,
        } => {
            let provider = otlp_provider(endpoint, service_name)?;
            let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("parloir"));
            (Some(provider), Some(layer))
        }
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(token_safe_filter())
        .with(logs)
        .with(spans)
        .try_init()?;
    Ok(TelemetryGuard { provider })
}

/// Makes `span` a child of the W3C `traceparent` in `headers`, if any.
pub fn continue_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    use opentelemetry_http::HeaderExtractor;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if headers.contains_key("traceparent") {
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(headers))
        });
        // Fails only when the span is disabled; nothing to continue then.
        let _ = span.set_parent(parent);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn socket_io_internals_never_log_below_info_even_with_rust_log_trace() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry()
            .with(EnvFilter::new("trace"))
            .with(token_safe_filter())
            .with(tracing_subscriber::fmt::layer().with_writer(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            // What socketioxide 0.18 logs at connect, and engineioxide for a bad request.
            tracing::debug!(target: "socketioxide::client", "auth: Some(token=SECRET-1)");
            tracing::trace!(target: "engineioxide::service::parser", "invalid request: SECRET-2");
            tracing::info!(target: "socketioxide::ns", "still logged at info");
            tracing::debug!(target: "parloir::gateway", "our own debug logs stay");
        });
        let logs = String::from_utf8(captured.0.lock().expect("not poisoned").clone())
            .expect("utf-8 logs");
        assert!(!logs.contains("SECRET"), "{logs}");
        assert!(logs.contains("still logged at info"), "{logs}");
        assert!(logs.contains("our own debug logs stay"), "{logs}");
    }
}
