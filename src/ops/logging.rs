//! Logging that cannot stop the server: lines go to stderr through a
//! writer thread with a bounded queue, so a request never waits for a
//! write(2). When the sink stalls and the queue is full, lines are dropped
//! rather than requests held; dropped lines and write errors are counted
//! on `/metrics` and turn `/readyz` red for a minute, so a lost audit line
//! never passes silently.

use std::fmt;
use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How the log is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line (the audit format).
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Lines the queue could not take.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();
/// Writes the sink refused.
static WRITE_ERRORS: AtomicU64 = AtomicU64::new(0);
/// When a line was last lost (seconds since the epoch).
static LAST_LOSS: AtomicU64 = AtomicU64::new(0);
static LAST_DROPPED: AtomicU64 = AtomicU64::new(0);

/// Lines queued at most; beyond this they are dropped and counted.
/// `REGAUTH_LOG_QUEUE_LINES` overrides it (logging starts before the
/// configuration is read).
const QUEUE_LINES: usize = 64 * 1024;
/// `/readyz` stays red this long after a line was lost.
const RED_FOR_SECONDS: u64 = 60;

/// Keeps the writer thread; dropping it flushes the queued lines.
pub struct Guard(#[allow(dead_code)] WorkerGuard);

/// Installs the global subscriber (`RUST_LOG` filters, default `info`).
pub fn init(format: Format) -> Guard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(
            std::env::var("REGAUTH_LOG_QUEUE_LINES")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .unwrap_or(QUEUE_LINES),
        )
        .thread_name("regauth-log")
        .finish(Counting(std::io::BufWriter::new(std::io::stderr())));
    let _ = DROPPED.set(writer.error_counter());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    match format {
        Format::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .map_event_format(|inner| WithRequestId { inner, json: true })
            .init(),
        Format::Pretty => builder
            .compact()
            .map_event_format(|inner| WithRequestId { inner, json: false })
            .init(),
    }
    Guard(guard)
}

tokio::task_local! {
    /// The ID of the request the running task serves.
    static REQUEST_ID: u64;
}

/// Runs `work` as request `id`: each line logged while it runs names the
/// request (`request_id`).
///
/// A task-local rather than a tracing span: on the cached-token path a span
/// (made, entered on each poll, and its fields parsed back for each JSON
/// line) cost a tenth of the throughput; this costs a thread-local read per
/// line. Like a span, it does not follow work spawned onto other tasks.
pub async fn in_request<F: Future>(id: u64, work: F) -> F::Output {
    REQUEST_ID.scope(id, work).await
}

/// The request the running task serves, if any.
fn request_id() -> Option<u64> {
    REQUEST_ID.try_with(|id| *id).ok()
}

/// A line format that adds the running request's ID: the first field of a
/// JSON line, `request_id=N` at the head of a human-readable one.
struct WithRequestId<E> {
    inner: E,
    json: bool,
}

impl<S, N, E> FormatEvent<S, N> for WithRequestId<E>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    E: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(id) = request_id() else {
            return self.inner.format_event(ctx, writer, event);
        };
        if !self.json {
            write!(writer, "request_id={id} ")?;
            return self.inner.format_event(ctx, writer, event);
        }
        // the ID opens the object, and the inner line goes on from there
        write!(writer, "{{\"request_id\":{id},")?;
        let mut rest = AfterBrace {
            out: &mut writer,
            opened: false,
        };
        self.inner.format_event(ctx, Writer::new(&mut rest), event)
    }
}

/// The rest of a JSON line whose opening brace is already written.
struct AfterBrace<'a, W> {
    out: &'a mut W,
    opened: bool,
}

impl<W: fmt::Write> fmt::Write for AfterBrace<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if self.opened || text.is_empty() {
            return self.out.write_str(text);
        }
        self.opened = true;
        self.out
            .write_str(text.strip_prefix('{').ok_or(fmt::Error)?)
    }
}

/// Lines dropped because the queue was full.
pub fn dropped_lines() -> u64 {
    let dropped = DROPPED.get().map_or(0, |c| c.dropped_lines() as u64);
    if dropped > LAST_DROPPED.swap(dropped, Ordering::Relaxed) {
        LAST_LOSS.store(regauth_providers::clock::unix_seconds(), Ordering::Relaxed);
    }
    dropped
}

/// Writes to the sink that failed.
pub fn write_errors() -> u64 {
    WRITE_ERRORS.load(Ordering::Relaxed)
}

/// Whether a line was lost within the last minute.
pub fn losing_lines() -> bool {
    dropped_lines();
    let last = LAST_LOSS.load(Ordering::Relaxed);
    last != 0 && regauth_providers::clock::unix_seconds().saturating_sub(last) < RED_FOR_SECONDS
}

/// A sink that counts its failures instead of giving up on them.
struct Counting<W>(W);

impl<W: Write> Counting<W> {
    fn lost<T>(&self, result: std::io::Result<T>, otherwise: T) -> std::io::Result<T> {
        result.or_else(|_| {
            WRITE_ERRORS.fetch_add(1, Ordering::Relaxed);
            LAST_LOSS.store(regauth_providers::clock::unix_seconds(), Ordering::Relaxed);
            Ok(otherwise)
        })
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.0.write(buf);
        self.lost(written, buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let flushed = self.0.flush();
        self.lost(flushed, ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Lines written, shared with the test.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_requests_lines_name_it_and_stay_json() {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .map_event_format(|inner| WithRequestId { inner, json: true })
            .with_writer(move || writer.clone())
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        tracing::info!("outside");
        in_request(7, async { tracing::info!(user = "{\"a\"}", "inside") }).await;
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].get("request_id").is_none(), "{text}");
        assert_eq!(lines[1]["request_id"], 7, "{text}");
        assert_eq!(lines[1]["user"], "{\"a\"}", "{text}");
        assert_eq!(lines[1]["message"], "inside", "{text}");
    }
}
