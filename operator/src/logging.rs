//! Process-wide logging: installs the tracing subscriber, with one JSON object per line (for log
//! collectors) or a human-readable text format, filtered by `RUST_LOG`.

use std::fmt;
use std::str::FromStr;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter used when `RUST_LOG` is unset or empty: our own logs at info, and only warnings
/// from the chatty client libraries.
pub const DEFAULT_FILTER: &str = "info,kube=warn,sqlx=warn,hyper=warn";

/// How log lines are written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line: timestamp, level, target, message and the event's fields.
    #[default]
    Json,
    /// Human-readable lines.
    Text,
}

impl LogFormat {
    /// The name `FromStr` accepts: `json` or `text`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Text => "text",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for LogFormat {
    type Err = LoggingError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            other => Err(LoggingError::UnknownFormat {
                format: other.to_owned(),
            }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("parse log format {format:?}: expected json or text")]
    UnknownFormat { format: String },
    #[error("parse RUST_LOG filter {directives:?}")]
    InvalidFilter {
        directives: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("install the global tracing subscriber")]
    Install(#[source] tracing_subscriber::util::TryInitError),
}

/// The JSON layer `init` installs, writing to `writer`; public so tests can capture its lines.
/// Event fields are flattened next to `timestamp`, `level`, `target` and `message`; the current
/// span (with its fields) is under `span`.
pub fn json_layer_for<S, W>(writer: W) -> impl Layer<S> + Send + Sync + 'static
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        // The span list repeats every enclosing span on every line; the current one is enough.
        .with_span_list(false)
        .with_writer(writer)
}

/// The filter from `RUST_LOG`, or `DEFAULT_FILTER` when it is unset or empty.
pub fn filter_from_environment() -> Result<EnvFilter, LoggingError> {
    let directives = std::env::var(EnvFilter::DEFAULT_ENV)
        .ok()
        .filter(|directives| !directives.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_FILTER.to_owned());
    EnvFilter::try_new(&directives)
        .map_err(|source| LoggingError::InvalidFilter { directives, source })
}

/// Installs the process-wide subscriber writing to stdout in `format`. Call once, first thing:
/// a second call fails with `LoggingError::Install`.
pub fn init(format: LogFormat) -> Result<(), LoggingError> {
    let filter = filter_from_environment()?;
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry.with(json_layer_for(std::io::stdout)).try_init(),
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stdout))
            .try_init(),
    }
    .map_err(LoggingError::Install)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use serde_json::Value;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_are_flat_objects() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber =
            tracing_subscriber::registry().with(json_layer_for(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("reconcile", namespace = "apps", name = "db");
            let _entered = span.enter();
            tracing::info!(target: "keyturn::rotation", step = "Verify", attempt = 2, "step finished");
            tracing::warn!("second line");
        });
        let output = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines.len(), 2, "{output}");
        let first: Value = serde_json::from_str(lines[0]).unwrap();
        assert!(first["timestamp"].is_string(), "{first}");
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["target"], "keyturn::rotation");
        assert_eq!(first["message"], "step finished");
        assert_eq!(first["step"], "Verify");
        assert_eq!(first["attempt"], 2);
        assert!(
            first.get("fields").is_none(),
            "fields are flattened: {first}"
        );
        assert_eq!(first["span"]["name"], "reconcile");
        assert_eq!(first["span"]["namespace"], "apps");
        let second: Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(second["level"], "WARN");
        assert_eq!(second["message"], "second line");
    }

    #[test]
    fn formats_parse_and_default_filter_is_valid() {
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!("text".parse::<LogFormat>().unwrap(), LogFormat::Text);
        let error = "yaml".parse::<LogFormat>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "parse log format \"yaml\": expected json or text"
        );
        assert_eq!(LogFormat::Text.to_string(), "text");
        EnvFilter::try_new(DEFAULT_FILTER).unwrap();
    }
}
