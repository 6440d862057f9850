//! Logging that cannot stop the server: lines go to stderr through a
//! writer thread with a bounded queue, so a request never waits for a
//! write(2). When the sink stalls and the queue is full, lines are dropped
//! rather than requests held; dropped lines and write errors are counted
//! on `/metrics` and turn `/readyz` red for a minute, so a lost audit line
//! never passes silently.
//!
//! The queue is one buffer of lines under a mutex ([`Batch`]): a line
//! costs its copy, and the writer thread takes everything queued at once,
//! every few milliseconds or as soon as 64 KiB wait, in one write(2). A
//! channel of one message per line (tracing-appender's) cost a fifth of
//! the server's CPU on the cached-token path: its writer woke, yielded
//! and wrote for every line.

use std::fmt;
use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tracing::{Event, Subscriber};
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
static DROPPED: AtomicU64 = AtomicU64::new(0);
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

/// The writer thread takes what is queued at least this often.
const WRITE_EVERY: Duration = Duration::from_millis(5);
/// ... or as soon as this much is queued.
const WRITE_AT_BYTES: usize = 64 * 1024;

/// Keeps the writer thread; dropping it writes the queued lines and ends
/// it.
pub struct Guard(Option<(Arc<Batch>, std::thread::JoinHandle<()>)>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some((batch, writer)) = self.0.take() {
            batch.close();
            let _ = writer.join();
        }
    }
}

/// The lines queued for the writer thread, bounded in lines.
struct Batch {
    queued: Mutex<Queued>,
    ready: Condvar,
    max_lines: usize,
}

#[derive(Default)]
struct Queued {
    bytes: Vec<u8>,
    lines: usize,
    closed: bool,
}

impl Batch {
    fn new(max_lines: usize) -> Arc<Self> {
        Arc::new(Self {
            queued: Mutex::new(Queued::default()),
            ready: Condvar::new(),
            max_lines,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.queued.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues one line (a whole formatted event), or counts it dropped
    /// when `max_lines` wait already.
    fn push(&self, line: &[u8]) {
        let mut queued = self.lock();
        if queued.lines >= self.max_lines {
            drop(queued);
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        queued.bytes.extend_from_slice(line);
        queued.lines += 1;
        let full = queued.bytes.len() >= WRITE_AT_BYTES;
        drop(queued);
        if full {
            self.ready.notify_one();
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// The writer thread: everything queued, in one write, every
    /// [`WRITE_EVERY`] or once [`WRITE_AT_BYTES`] wait; until closed and
    /// empty.
    fn write_to(&self, mut sink: impl Write) {
        let mut spare = Vec::new();
        loop {
            let mut queued = self.lock();
            if queued.bytes.len() < WRITE_AT_BYTES && !queued.closed {
                queued = self
                    .ready
                    .wait_timeout(queued, WRITE_EVERY)
                    .map(|(q, _)| q)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            let closed = queued.closed;
            std::mem::swap(&mut queued.bytes, &mut spare);
            queued.lines = 0;
            drop(queued);
            if !spare.is_empty() {
                let _ = sink.write_all(&spare);
                let _ = sink.flush();
                spare.clear();
            }
            if closed && self.lock().bytes.is_empty() {
                return;
            }
        }
    }
}

/// What the subscriber writes each line to: the [`Batch`].
#[derive(Clone)]
struct Queue(Arc<Batch>);

impl Write for Queue {
    /// The formatter hands over each line whole.
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.0.push(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Queue {
    type Writer = Queue;
    fn make_writer(&'a self) -> Queue {
        self.clone()
    }
}

/// Installs the global subscriber (`RUST_LOG` filters, default `info`).
pub fn init(format: Format) -> Guard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let batch = Batch::new(
        std::env::var("REGAUTH_LOG_QUEUE_LINES")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(QUEUE_LINES),
    );
    let writer = Queue(batch.clone());
    let thread = {
        let batch = batch.clone();
        std::thread::Builder::new()
            .name("regauth-log".into())
            .spawn(move || batch.write_to(Counting(std::io::stderr())))
    };
    let guard = Guard(thread.ok().map(|t| (batch, t)));
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
    guard
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
    let dropped = DROPPED.load(Ordering::Relaxed);
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

    #[test]
    fn queued_lines_are_written_whole_in_order_and_the_excess_counted() {
        let batch = Batch::new(3);
        let sink = Sink::default();
        let before = DROPPED.load(Ordering::Relaxed);
        for i in 0..5 {
            Queue(batch.clone())
                .write_all(format!("line {i}\n").as_bytes())
                .unwrap();
        }
        // three wait, two were dropped and counted
        assert!(DROPPED.load(Ordering::Relaxed) >= before + 2);
        let writer = {
            let (batch, sink) = (batch.clone(), sink.clone());
            std::thread::spawn(move || batch.write_to(sink))
        };
        std::thread::sleep(WRITE_EVERY * 4);
        // room again once written: a line queued now is written at close
        Queue(batch.clone()).write_all(b"last\n").unwrap();
        batch.close();
        writer.join().unwrap();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "line 0\nline 1\nline 2\nlast\n");
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
