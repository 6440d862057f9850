//! Logging that cannot stop the server: lines go to stderr through a
//! writer thread with a bounded queue, so a request never waits for a
//! write(2). When the sink stalls and the queue is full, lines are dropped
//! rather than requests held; dropped lines and write errors are counted
//! on `/metrics` and turn `/readyz` red for a minute, so a lost audit line
//! never passes silently.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};

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
        // The request's span (its ID) on each line, not the whole stack.
        Format::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        Format::Pretty => builder.compact().init(),
    }
    Guard(guard)
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
