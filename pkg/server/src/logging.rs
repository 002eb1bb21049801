//! Logs an operator can ship: the `log` section (`-log.level`, `-log.format`,
//! Pyroscope's names), the two line formats, and one line per HTTP/gRPC request.
//!
//! Lines go to stderr, one event per line, with no ANSI colour codes (they
//! would land in files and in Kubernetes log collectors):
//!
//! ```text
//! logfmt: ts=2026-12-02T14:00:00.123456Z level=info target=ember_ingester msg="replayed write-ahead log" segments=3
//! json:   {"ts":"2026-12-02T14:00:00.123456Z","level":"info","target":"ember_ingester","msg":"replayed write-ahead log","segments":3}
//! ```
//!
//! Request lines follow Loki and Mimir: a request that succeeds (or fails
//! for the client's reasons, 4xx) is logged at debug, a 5xx at warn (but
//! `/ready`'s 503 and a 501), each with tenant, method, path, status and duration.

use std::{fmt, time::Instant};

use axum::{extract::Request, middleware::Next, response::Response};
use ember_config::Documented;
use ember_proto::Tenant;
use serde::{Deserialize, Serialize};
use tracing::{Event, Subscriber, field::Field};
use tracing_log::NormalizeEvent;
use tracing_subscriber::{
    EnvFilter,
    fmt::{
        FmtContext, FormatEvent, FormatFields, FormattedFields,
        format::Writer,
        time::{FormatTime, SystemTime},
    },
    registry::LookupSpan,
};

/// Logging (`log`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Documented)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Least severe level logged: debug, info, warn or error.
    ///
    /// Default info. `debug` applies to Ember's own crates (its libraries stay at
    /// info) and adds one line per request. `RUST_LOG`, when set, adds
    /// `tracing` directives on top (e.g. `ember_wal=debug`).
    pub level: LogLevel,
    /// Format of log lines: logfmt or json.
    ///
    /// Default logfmt. Both write one line per event to stderr, without colour codes.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: LogLevel::Info,
            format: LogFormat::Logfmt,
        }
    }
}

/// How severe an event must be to be logged (`log.level`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, Documented)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Everything, with a line per request.
    Debug,
    /// Lifecycle events: the default.
    #[default]
    Info,
    /// Problems that Ember works around.
    Warn,
    /// Failures only.
    Error,
}

/// The shape of a log line (`log.format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, Documented)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `key=value` pairs, as Pyroscope, Loki and Mimir log by default.
    #[default]
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// Ember's crates: `debug` applies to them, not to the libraries below them.
const EMBER_CRATES: &[&str] = &[
    "ember",
    "ember_agent",
    "ember_block",
    "ember_compactor",
    "ember_config",
    "ember_distributor",
    "ember_formats",
    "ember_ingester",
    "ember_limits",
    "ember_model",
    "ember_objstore",
    "ember_querier",
    "ember_query",
    "ember_ring",
    "ember_server",
    "ember_symdb",
    "ember_ui",
    "ember_wal",
];

impl LogConfig {
    /// Returns the filter of this configuration, with `rust_log` (the
    /// `RUST_LOG` variable) added when set.
    pub fn filter(&self, rust_log: Option<&str>) -> EnvFilter {
        let mut directives = match self.level {
            LogLevel::Debug => {
                let mut d = String::from("info,pprof=warn");
                for krate in EMBER_CRATES {
                    d.push_str(&format!(",{krate}=debug"));
                }
                d
            }
            // The CPU sampler logs each start and stop at info.
            LogLevel::Info => "info,pprof=warn".into(),
            LogLevel::Warn => "warn".into(),
            LogLevel::Error => "error".into(),
        };
        if let Some(extra) = rust_log.filter(|s| !s.trim().is_empty()) {
            directives.push(',');
            directives.push_str(extra);
        }
        EnvFilter::builder().parse_lossy(directives)
    }
}

/// Installs the process's log subscriber: `config`'s level and format, to
/// stderr. Call once, before anything logs.
pub fn init(config: &LogConfig) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(config.filter(rust_log.as_deref()))
        .with_writer(std::io::stderr)
        .with_ansi(false);
    match config.format {
        LogFormat::Logfmt => builder.event_format(Lines::Logfmt).init(),
        LogFormat::Json => builder.event_format(Lines::Json).init(),
    }
}

/// The two line formats, written by hand: `tracing-subscriber` has no
/// logfmt, and its JSON nests fields where collectors look for `msg`.
#[derive(Debug, Clone, Copy)]
enum Lines {
    Logfmt,
    Json,
}

/// An event's fields, in order, as text or JSON values.
#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(String, serde_json::Value)>,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, serde_json::Value::String(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, serde_json::Value::String(format!("{value:?}")));
    }
}

impl Fields {
    fn push(&mut self, field: &Field, value: serde_json::Value) {
        if field.name().starts_with("log.") {
            // The `log` crate's metadata, already in the line's target.
            return;
        }
        if field.name() == "message" {
            self.message = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
        } else {
            self.pairs.push((field.name().to_owned(), value));
        }
    }
}

/// Returns `value` as a logfmt value: bare when it can be, else quoted.
fn logfmt_value(value: &str) -> String {
    let bare = !value.is_empty()
        && value
            .chars()
            .all(|c| c > ' ' && c != '"' && c != '=' && c != '\\' && !c.is_control());
    if bare {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut ts = String::new();
        SystemTime.format_time(&mut Writer::new(&mut ts))?;
        // Events of the `log` crate (from dependencies) carry their own target.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let level = meta.level().as_str().to_ascii_lowercase();
        let mut fields = Fields::default();
        event.record(&mut fields);
        // The fields of the spans the event is in, outermost first.
        let mut spans = Vec::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<FormattedFields<N>>()
                    && !f.is_empty()
                {
                    spans.push((span.name().to_owned(), f.to_string()));
                }
            }
        }
        match self {
            Lines::Logfmt => {
                write!(
                    writer,
                    "ts={ts} level={level} target={} msg={}",
                    meta.target(),
                    logfmt_value(&fields.message)
                )?;
                for (key, value) in &fields.pairs {
                    write!(writer, " {key}={}", logfmt_value(&text(value)))?;
                }
                for (_, span_fields) in &spans {
                    write!(writer, " {span_fields}")?;
                }
                writeln!(writer)
            }
            Lines::Json => {
                let mut line = serde_json::Map::new();
                line.insert("ts".into(), ts.into());
                line.insert("level".into(), level.into());
                line.insert("target".into(), meta.target().into());
                line.insert("msg".into(), fields.message.into());
                for (name, span_fields) in spans {
                    line.entry(format!("span.{name}"))
                        .or_insert(span_fields.into());
                }
                for (key, value) in fields.pairs {
                    line.entry(key).or_insert(value);
                }
                let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
                writeln!(writer, "{text}")
            }
        }
    }
}

/// Logs every request once it is answered: debug, or warn for a 5xx, with
/// its tenant (when it had one), method, path, status and duration.
pub(crate) async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let duration = started.elapsed();
    let tenant = response
        .extensions()
        .get::<Tenant>()
        .map(|t| t.0.clone())
        .unwrap_or_default();
    let status = response.status().as_u16();
    // A gRPC error answers 200 with its status in a header (trailers-only).
    let grpc_status = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // `/ready` answers 503 while starting or draining, and 501 means "not
    // available here" (the heap profile): states, not failures.
    if status >= 500 && status != 501 && path != "/ready" {
        tracing::warn!(
            tenant,
            method = %method,
            path,
            status,
            grpc_status,
            duration = ?duration,
            "request failed"
        );
    } else {
        tracing::debug!(
            tenant,
            method = %method,
            path,
            status,
            grpc_status,
            duration = ?duration,
            "request"
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn logfmt_values_are_quoted_only_when_needed() {
        assert_eq!(logfmt_value("ready"), "ready");
        assert_eq!(logfmt_value("two words"), "\"two words\"");
        assert_eq!(logfmt_value(""), "\"\"");
        assert_eq!(logfmt_value("a=b"), "\"a=b\"");
        assert_eq!(logfmt_value("say \"hi\"\n"), "\"say \\\"hi\\\"\\n\"");
        assert_eq!(logfmt_value("\u{1b}[31m"), "\"\\u{1b}[31m\"");
    }

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(format: Lines, level: LogLevel) -> String {
        let buffer = Buffer::default();
        let out = buffer.clone();
        let config = LogConfig {
            level,
            format: LogFormat::Logfmt,
        };
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(config.filter(None))
            .with_writer(move || out.clone())
            .with_ansi(false)
            .event_format(format)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("push", tenant = "team-a");
            let _in = span.enter();
            tracing::info!(
                records = 4_000_u64,
                dir = "/data/wal",
                "replayed write-ahead log"
            );
            tracing::debug!("a debug line");
            tracing::warn!(error = %"disk full", "write failed");
        });
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn logfmt_lines_carry_level_message_and_fields() {
        let out = logged(Lines::Logfmt, LogLevel::Info);
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with("ts="), "{}", lines[0]);
        assert!(
            lines[0].contains(
                "level=info target=ember_server::logging::tests msg=\"replayed write-ahead log\" records=4000 dir=/data/wal"
            ),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("tenant=\"team-a\""), "{}", lines[0]);
        assert!(lines[1].contains("level=warn"), "{}", lines[1]);
        assert!(lines[1].contains("error=\"disk full\""), "{}", lines[1]);
        assert!(!out.contains('\u{1b}'));
    }

    #[test]
    fn json_lines_parse_with_level_and_msg() {
        let out = logged(Lines::Json, LogLevel::Debug);
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 3, "debug is on: {out}");
        assert_eq!(lines[0]["level"], "info");
        assert_eq!(lines[0]["msg"], "replayed write-ahead log");
        assert_eq!(lines[0]["records"], 4000);
        assert_eq!(lines[1]["level"], "debug");
        assert_eq!(lines[2]["error"], "disk full");
    }

    #[test]
    fn levels_filter_and_rust_log_adds_directives() {
        let out = logged(Lines::Logfmt, LogLevel::Error);
        assert!(out.is_empty(), "{out}");
        let config = LogConfig {
            level: LogLevel::Warn,
            format: LogFormat::Json,
        };
        let filter = config.filter(Some("ember_wal=debug")).to_string();
        assert!(
            filter.contains("ember_wal=debug") && filter.contains("warn"),
            "{filter}"
        );
    }
}
