//! Logs on stderr: the level from `-q`/`-v`/`RUST_LOG`, the format from `--log-format`, colour only
//! on a terminal and never with `NO_COLOR`. With `--log-format json` every line the tool writes to
//! stderr is one JSON object — log events, job outcomes and fatal errors alike — and the fields of the
//! enclosing spans (the job's name) are lifted to the top level: `{"timestamp", "level", "job",
//! "message", …fields}`; `target` only with `-v`. Text lines read `time LEVEL job: message fields`.

use std::fmt;
use std::io::IsTerminal;
use std::sync::OnceLock;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::{Global, LogFormat};
use crate::error::Error;

static JSON: OnceLock<bool> = OnceLock::new();

/// True when `--log-format json` is in force: messages for people must go through `tracing` then.
pub fn json() -> bool {
    JSON.get().copied().unwrap_or(false)
}

/// Colour on stderr: a terminal, `NO_COLOR` unset (or empty, as no-color.org says), `TERM` not dumb.
pub fn color_stderr() -> bool {
    color_enabled(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR"), std::env::var_os("TERM"))
}

/// The colour decision, on its inputs.
pub fn color_enabled(terminal: bool, no_color: Option<std::ffi::OsString>, term: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty()) && term.is_none_or(|t| t != "dumb")
}

/// Level: warnings under progress bars, info otherwise; `-v` debug, `-vv` trace; `-q` errors only;
/// `RUST_LOG` overrides all of it.
pub fn init_logging(g: &Global) {
    let _ = JSON.set(g.log_format == LogFormat::Json);
    let level = match (g.quiet, g.verbose) {
        (true, _) => "error",
        (false, 0) if super::use_bars(g) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("oneup_bulk={level},rustls_platform_verifier=off,warn")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(|| AboveBars).with_ansi(color_stderr());
    let _ = match g.log_format {
        LogFormat::Json => {
            builder.fmt_fields(JsonFields::new()).event_format(JsonLine { target: g.verbose > 0 }).try_init()
        }
        LogFormat::Text => builder.event_format(TextLine).try_init(),
    };
}

/// Writes each log line above the progress bars (when they are drawn), never through them.
struct AboveBars;

impl std::io::Write for AboveBars {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        crate::progress::above_bars(|| std::io::stderr().lock().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// `error: ` (red and bold when colour is on).
pub fn error_prefix() -> &'static str {
    if color_stderr() { "\x1b[1;31merror\x1b[0m: " } else { "error: " }
}

/// Reports an error for a person (text) or a pipeline (one JSON line), and returns its exit code.
pub fn report_error(e: &Error) -> u8 {
    let code = e.exit_code();
    if json() {
        tracing::error!(exit_code = code, "{e}");
    } else {
        match e {
            // Job-file errors are rendered like a compiler's, `error:` lines included.
            Error::Job(_) => eprintln!("{e}"),
            _ => eprintln!("{}{e}", error_prefix()),
        }
    }
    code
}

/// A message for the person at the terminal (the demo's narration): a plain line, or an info event.
pub fn say(text: &str) {
    if json() {
        tracing::info!("{}", text.trim_end());
    } else {
        eprintln!("{text}");
    }
}

/// A fatal error before logging is set up (the command line did not parse), in the JSON lines' shape.
pub fn json_error_line(message: &str, exit_code: u8) -> String {
    let fields = vec![
        ("timestamp".to_string(), Value::String(timestamp())),
        ("level".to_string(), Value::String("ERROR".into())),
        ("message".to_string(), Value::String(message.trim_end().to_string())),
        ("exit_code".to_string(), Value::from(exit_code)),
    ];
    object(&fields)
}

fn timestamp() -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::now_utc().format(&fmt).unwrap_or_default()
}

/// A JSON object with its keys in the order given (timestamp, level, job and message first).
fn object(fields: &[(String, Value)]) -> String {
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("{}:{}", Value::String(k.clone()), v)).collect();
    format!("{{{}}}", body.join(","))
}

/// Collects an event's fields as JSON values.
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn put(&mut self, f: &Field, v: Value) {
        self.0.push((f.name().to_string(), v));
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, f: &Field, v: &dyn fmt::Debug) {
        self.put(f, Value::String(format!("{v:?}")));
    }
    fn record_str(&mut self, f: &Field, v: &str) {
        self.put(f, Value::String(v.to_string()));
    }
    fn record_u64(&mut self, f: &Field, v: u64) {
        self.put(f, Value::from(v));
    }
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.put(f, Value::from(v));
    }
    fn record_f64(&mut self, f: &Field, v: f64) {
        self.put(f, Value::from(v));
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        self.put(f, Value::from(v));
    }
    fn record_error(&mut self, f: &Field, v: &(dyn std::error::Error + 'static)) {
        self.put(f, Value::String(v.to_string()));
    }
}

/// One JSON object per line.
struct JsonLine {
    target: bool,
}

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &tracing::Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let mut out = vec![
            ("timestamp".to_string(), Value::String(timestamp())),
            ("level".to_string(), Value::String(meta.level().to_string())),
        ];
        // Span fields (`job`), outermost first; the span's JSON field formatter stored them as an object.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<FormattedFields<N>>()
                    && let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&f.fields)
                {
                    out.extend(m);
                }
            }
        }
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        // The message first, then the other fields; an event's own field wins over a span's.
        fields.0.sort_by_key(|(k, _)| k != "message");
        for (k, v) in fields.0 {
            out.retain(|(o, _)| *o != k);
            out.push((k, v));
        }
        if self.target {
            out.push(("target".to_string(), Value::String(meta.target().to_string())));
        }
        writeln!(w, "{}", object(&out))
    }
}

/// `2026-01-31T10:00:00.123Z  INFO provider-nightly: file verified path="Patient.ndjson" …`
struct TextLine;

impl<S, N> FormatEvent<S, N> for TextLine
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &tracing::Event<'_>) -> fmt::Result {
        let level = *event.metadata().level();
        let name = format!("{level:>5}");
        let colored = match level {
            tracing::Level::ERROR => format!("\x1b[31m{name}\x1b[0m"),
            tracing::Level::WARN => format!("\x1b[33m{name}\x1b[0m"),
            tracing::Level::INFO => format!("\x1b[32m{name}\x1b[0m"),
            _ => format!("\x1b[2m{name}\x1b[0m"),
        };
        write!(w, "{} {} ", timestamp(), if w.has_ansi_escapes() { colored } else { name })?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<FormattedFields<N>>()
                    && !f.fields.is_empty()
                {
                    // The job span's one field reads as its value: `provider-nightly: …`.
                    write!(w, "{}: ", f.fields.strip_prefix("job=").unwrap_or(&f.fields))?;
                }
            }
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_turns_colour_off() {
        let some = |s: &str| Some(std::ffi::OsString::from(s));
        assert!(color_enabled(true, None, some("xterm-256color")));
        assert!(!color_enabled(true, some("1"), some("xterm-256color")));
        assert!(color_enabled(true, some(""), None), "an empty NO_COLOR does not count (no-color.org)");
        assert!(!color_enabled(true, None, some("dumb")));
        assert!(!color_enabled(false, None, None), "never when stderr is not a terminal");
    }

    #[test]
    fn a_usage_error_is_one_json_line() {
        let line = json_error_line("error: unexpected argument '--nope'\n\nUsage: oneup-bulk run\n", 2);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(v["level"], "ERROR");
        assert_eq!(v["exit_code"], 2);
        assert_eq!(v["message"], "error: unexpected argument '--nope'\n\nUsage: oneup-bulk run");
        assert!(line.starts_with("{\"timestamp\":"), "{line}");
    }
}
