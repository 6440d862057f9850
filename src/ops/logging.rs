//! Logging that cannot stop the server: lines go to stderr through a
//! writer thread with a bounded queue, so a request never waits for a
//! write(2). When the sink stalls and the queue is full, lines are dropped
//! rather than requests held; dropped lines and write errors are counted
//! on `/metrics` and turn `/readyz` red for a minute, so a lost audit line
//! never passes silently.
//!
//! The queue is one buffer of lines under a mutex (`Batch`): a line
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
    let queue = batch.clone();
    let guard = Guard(thread.ok().map(|t| (batch, t)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    match format {
        Format::Json => {
            builder.event_format(JsonLine).init();
            let _ = JSON_QUEUE.set(queue);
        }
        Format::Pretty => builder.compact().map_event_format(WithRequestId).init(),
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

/// A human-readable line format that puts the running request's ID at the
/// head of a line: `request_id=N`.
struct WithRequestId<E>(E);

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
        if let Some(id) = request_id() {
            write!(writer, "request_id={id} ")?;
        }
        self.0.format_event(ctx, writer, event)
    }
}

/// The JSON line format: one object per event, with the fields
/// tracing-subscriber's JSON format writes with `flatten_event`
/// (`timestamp`, `level`, the event's fields, `target`), opened by the
/// running request's ID (`request_id`).
///
/// Written by hand because it is the audit line of every token request:
/// tracing-subscriber's formatter serialized each line through serde_json
/// into an `io::Write` adaptor that checked every fragment as UTF-8 again,
/// and formatted each displayed field into a string of its own. This one
/// writes the line into a byte buffer of its thread, reused from line to
/// line (strings escaped by serde_json straight into it), checks it as
/// UTF-8 once and hands it over in one piece.
struct JsonLine;

thread_local! {
    /// The line being written on this thread.
    static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A line buffer that grew past this is given back rather than kept.
const KEEP_LINE_BYTES: usize = 64 * 1024;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        with_line(|line| {
            json_line(line, event)?;
            writer.write_str(std::str::from_utf8(line).map_err(|_| fmt::Error)?)
        })
    }
}

/// Runs `write` on this thread's line buffer, emptied first. An event
/// logged while a line of this thread is being written (from a field's
/// Display) gets a buffer of its own; a buffer that grew past
/// [`KEEP_LINE_BYTES`] is given back.
fn with_line<T>(write: impl FnOnce(&mut Vec<u8>) -> T) -> T {
    LINE.with(|line| match line.try_borrow_mut() {
        Ok(mut line) => {
            line.clear();
            let written = write(&mut line);
            if line.capacity() > KEEP_LINE_BYTES {
                *line = Vec::new();
            }
            written
        }
        Err(_) => write(&mut Vec::new()),
    })
}

/// Writes `event` as one JSON object and a newline.
fn json_line(line: &mut Vec<u8>, event: &Event<'_>) -> fmt::Result {
    use tracing_log::NormalizeEvent as _;
    let normalized = event.normalized_metadata();
    let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
    json_line_of(line, meta.level(), meta.target(), |fields| {
        event.record(fields)
    })
}

/// Writes one JSON object and a newline: the running request's ID, the
/// time, `level`, the fields `fields` writes, `target`.
pub(crate) fn json_line_of(
    line: &mut Vec<u8>,
    level: &tracing::Level,
    target: &str,
    fields: impl FnOnce(&mut JsonFields<'_>),
) -> fmt::Result {
    use tracing_subscriber::fmt::time::FormatTime as _;
    line.push(b'{');
    if let Some(id) = request_id() {
        line.extend_from_slice(b"\"request_id\":");
        line.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
        line.push(b',');
    }
    line.extend_from_slice(b"\"timestamp\":\"");
    tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut Bytes(line)))?;
    line.extend_from_slice(b"\",\"level\":\"");
    line.extend_from_slice(level.as_str().as_bytes());
    line.push(b'"');
    let mut written = JsonFields {
        line,
        result: Ok(()),
    };
    fields(&mut written);
    written.result?;
    line.extend_from_slice(b",\"target\":");
    json_value(line, target)?;
    line.extend_from_slice(b"}\n");
    Ok(())
}

/// The queue of regauth's own JSON log, once [`init`] installed it.
static JSON_QUEUE: std::sync::OnceLock<Arc<Batch>> = std::sync::OnceLock::new();

/// Writes a line of `level` and `target` whose fields `fields` writes
/// straight into the log's queue, as [`JsonLine`] writes an event with
/// these fields, without the event: no visitor, no copy through
/// tracing-subscriber's buffer. The caller has checked that the line is
/// enabled. False, with nothing written, unless the log is regauth's own
/// JSON log: then the caller logs through tracing.
pub(crate) fn write_json_line(
    level: &tracing::Level,
    target: &str,
    fields: impl FnOnce(&mut JsonFields<'_>),
) -> bool {
    let Some(batch) = JSON_QUEUE.get() else {
        return false;
    };
    with_line(|line| {
        if json_line_of(line, level, target, fields).is_ok() {
            batch.push(line);
        }
    });
    true
}

/// Writes fields as `,"name":value`, keeping the first error.
pub(crate) struct JsonFields<'a> {
    line: &'a mut Vec<u8>,
    result: fmt::Result,
}

impl JsonFields<'_> {
    /// Writes the field's name, then its value with `value`.
    fn named(&mut self, name: &str, value: impl FnOnce(&mut Vec<u8>) -> fmt::Result) {
        if self.result.is_ok() {
            self.line.push(b',');
            self.result = json_value(self.line, name)
                .map(|()| self.line.push(b':'))
                .and_then(|()| value(self.line));
        }
    }

    fn field(
        &mut self,
        field: &tracing::field::Field,
        value: impl FnOnce(&mut Vec<u8>) -> fmt::Result,
    ) {
        self.named(field.name(), value);
    }

    /// A field serde serializes (a string, a number, a bool).
    pub(crate) fn value(&mut self, name: &str, value: &(impl serde::Serialize + ?Sized)) {
        self.named(name, |line| json_value(line, value));
    }

    /// A field as it displays, escaped as it is formatted (tracing's `%`).
    pub(crate) fn display(&mut self, name: &str, value: &dyn fmt::Display) {
        self.named(name, |line| collect_str(line, format_args!("{value}")));
    }
}

/// Formatted text as a JSON string, escaped as it is formatted, without a
/// string of its own.
fn collect_str(line: &mut Vec<u8>, text: fmt::Arguments<'_>) -> fmt::Result {
    serde::Serializer::collect_str(&mut serde_json::Serializer::new(line), &text)
        .map_err(|_| fmt::Error)
}

impl tracing::field::Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.field(field, |line| json_value(line, value));
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.field(field, |line| json_value(line, &value));
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.field(field, |line| json_value(line, &value));
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.field(field, |line| json_value(line, &value));
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        // JSON has no NaN or infinity: serde_json writes them as null
        self.field(field, |line| json_value(line, &value));
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.field(field, |line| collect_str(line, format_args!("{value:?}")));
    }
}

/// `value` as JSON, by serde_json.
fn json_value(line: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) -> fmt::Result {
    serde_json::to_writer(line, value).map_err(|_| fmt::Error)
}

/// Text formatted into the line's bytes.
struct Bytes<'a>(&'a mut Vec<u8>);

impl fmt::Write for Bytes<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
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
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while batch.lock().lines > 0 {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::yield_now();
        }
        // room again once written: a line queued now is written at close
        Queue(batch.clone()).write_all(b"last\n").unwrap();
        batch.close();
        writer.join().unwrap();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "line 0\nline 1\nline 2\nlast\n");
    }

    /// A line format the tests' subscriber can use.
    trait LineFormat:
        FormatEvent<tracing_subscriber::Registry, tracing_subscriber::fmt::format::DefaultFields>
        + Send
        + Sync
        + 'static
    {
    }

    impl<E> LineFormat for E where
        E: FormatEvent<
                tracing_subscriber::Registry,
                tracing_subscriber::fmt::format::DefaultFields,
            > + Send
            + Sync
            + 'static
    {
    }

    /// What `format` writes for `events`.
    fn text_of(format: impl LineFormat, events: impl Fn()) -> String {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(format)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, events);
        let bytes = sink.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    /// The lines `format` writes for the same events, parsed.
    fn lines_of(format: impl LineFormat, events: impl Fn()) -> Vec<serde_json::Value> {
        text_of(format, events)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn json_lines_say_what_tracing_subscribers_json_lines_say() {
        let events = || {
            let forged = "erin\"}\n{\"outcome\":\"issued\"\u{1b}[31m\\ \u{0}\u{8}\u{c}\r\té✓";
            tracing::info!(target: "regauth::audit", outcome = "issued", subject = %forged,
                debug = ?forged, n = 7u64, i = -3i64, f = 1.5f64, nan = f64::NAN, ok = true,
                "token request");
            tracing::warn!(reason = forged, "a {} message", "formatted");
            tracing::error!("");
        };
        let ours = lines_of(JsonLine, events);
        let theirs = lines_of(
            tracing_subscriber::fmt::format().json().flatten_event(true),
            events,
        );
        assert_eq!(ours.len(), 3);
        for (mut ours, mut theirs) in ours.into_iter().zip(theirs) {
            // both are times of this run, to the microsecond
            let stamp = ours["timestamp"].as_str().unwrap().to_owned();
            assert!(stamp.ends_with('Z') && stamp.len() == 27, "{stamp}");
            ours["timestamp"].take();
            theirs["timestamp"].take();
            assert_eq!(ours, theirs);
        }
    }

    /// `line` with its timestamp's value blanked.
    fn timeless(line: &str) -> String {
        let at = line.find("\"timestamp\":\"").unwrap() + 13;
        format!("{}{}", &line[..at], &line[at + 27..])
    }

    #[test]
    fn audit_lines_written_directly_are_the_lines_tracing_writes() {
        use crate::ops::audit::{self, Event, GrantType, IssuedSummary, Outcome};
        let forged = "erin\"}\n{\"outcome\":\"issued\"\u{1b}[31m\\ \u{0}é✓";
        let long = "repository:a:pull ".repeat(400);
        let request = audit::Request {
            method: "GET",
            grant: GrantType::Basic,
            client_ip: Some("10.1.2.3".parse().unwrap()),
            client_id: forged,
            service: forged,
            scopes: vec![forged, &long],
        };
        let issued = Event::issued(IssuedSummary {
            subject: forged,
            kind: "user",
            provider: "local",
            service: "registry.local",
            requested: long.clone(),
            granted: forged,
            cache_hit: true,
            reused: false,
        });
        let refused = Event::refused(forged, &request.scopes, format!("no: {forged}"));
        let anonymous = audit::Request::default();
        let cases = [
            (&request, &issued, Outcome::Issued),
            (&request, &refused, Outcome::Unauthorized),
            (&anonymous, &refused, Outcome::BadRequest),
        ];
        for (request, event, outcome) in cases {
            let latency = Duration::from_micros(1234);
            let theirs = text_of(JsonLine, || audit::record(request, event, outcome, latency));
            let mut ours = Vec::new();
            json_line_of(&mut ours, &tracing::Level::INFO, "regauth::audit", |line| {
                audit::json_fields(line, request, event, outcome, latency)
            })
            .unwrap();
            let ours = String::from_utf8(ours).unwrap();
            assert_eq!(timeless(&ours), timeless(&theirs));
            assert_eq!(ours.lines().count(), 1, "{ours}");
        }
    }

    #[test]
    fn human_audit_lines_quote_client_text() {
        use crate::ops::audit::{self, Event, Outcome};
        let sent = "x subject=admin outcome=issued\n";
        let request = audit::Request {
            service: sent,
            ..Default::default()
        };
        let event = Event::refused(sent, &[], "no".into());
        let line = text_of(
            tracing_subscriber::fmt::format().compact().with_ansi(false),
            || audit::record(&request, &event, Outcome::BadRequest, Duration::ZERO),
        );
        assert!(
            line.contains("service=\"x subject=admin outcome=issued\\\\u{a}\""),
            "{line}"
        );
        assert_eq!(line.lines().count(), 1, "{line}");
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let every_ascii: String = (0u8..0x80).map(char::from).collect();
        for text in [every_ascii.as_str(), "é✓\u{2028}😀", "", "\\\"", "a\u{7f}b"] {
            let mut ours = Vec::new();
            json_value(&mut ours, text).unwrap();
            assert_eq!(ours, serde_json::to_vec(text).unwrap());
        }
    }

    #[test]
    fn a_requests_lines_name_it_and_stay_json() {
        let lines = lines_of(JsonLine, || {
            tracing::info!("outside");
            let inside = in_request(7, async { tracing::info!(user = "{\"a\"}", "inside") });
            let runtime = tokio::runtime::Builder::new_current_thread().build();
            runtime.unwrap().block_on(inside);
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].get("request_id").is_none(), "{lines:?}");
        assert_eq!(lines[1]["request_id"], 7, "{lines:?}");
        assert_eq!(lines[1]["user"], "{\"a\"}", "{lines:?}");
        assert_eq!(lines[1]["message"], "inside", "{lines:?}");
    }
}
