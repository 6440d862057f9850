//! Counters and histograms exported on `/metrics` in the Prometheus text
//! format. Plain atomics: the hot path pays one relaxed increment per
//! request; a histogram costs one more per observation. The README has a
//! table of every metric.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::ops::audit::Outcome;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Counts one observation.
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

/// Histograms and counters by label values, created on first use.
#[derive(Debug, Default)]
struct Family<T>(RwLock<BTreeMap<Vec<String>, Arc<T>>>);

impl<T: Default> Family<T> {
    fn get(&self, labels: &[&str]) -> Arc<T> {
        let key: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        if let Some(found) = self.0.read().ok().and_then(|m| m.get(&key).cloned()) {
            return found;
        }
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        map.entry(key).or_default().clone()
    }

    fn each(&self) -> Vec<(Vec<String>, Arc<T>)> {
        self.0
            .read()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
}

/// `name="value",...` for label names and values.
fn labels(names: &[&str], values: &[String]) -> String {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(",")
}

/// How a provider answered a check, as the `outcome` label says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The credentials are valid.
    Authenticated,
    /// The provider owns the user and refused the secret.
    Rejected,
    /// Not the provider's user or credential.
    Unknown,
    /// The provider could not be asked.
    Unavailable,
}

impl Answer {
    /// The label's value.
    pub fn label(self) -> &'static str {
        match self {
            Answer::Authenticated => "authenticated",
            Answer::Rejected => "rejected",
            Answer::Unknown => "unknown",
            Answer::Unavailable => "unavailable",
        }
    }
}

/// The team-robot events counted, in the order `/metrics` shows them.
const ROBOT_EVENTS: [&str; 5] = [
    "robot_created",
    "robot_rotated",
    "robot_used",
    "robot_revoked",
    "robot_refused",
];

/// Team-robot events, process-wide (the CLI's revocations are counted by
/// the process that makes them).
static ROBOTS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// Counts one team-robot event (`robot_created`, `_rotated`, `_used`,
/// `_revoked`, `_refused`).
pub fn robot_event(event: &str) {
    if let Some(i) = ROBOT_EVENTS.iter().position(|e| *e == event) {
        ROBOTS[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// The counters and histograms served on `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    issued: AtomicU64,
    bad_request: AtomicU64,
    unauthorized: AtomicU64,
    throttled: AtomicU64,
    unavailable: AtomicU64,
    connections_refused: AtomicU64,
    /// Provider checks by (provider, outcome).
    logins: Family<Histogram>,
    /// State backend operations by (backend, result).
    state_ops: Family<Histogram>,
}

impl Metrics {
    /// Counts one token request by its outcome.
    pub fn record(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Issued => &self.issued,
            Outcome::BadRequest => &self.bad_request,
            Outcome::Unauthorized => &self.unauthorized,
            Outcome::Throttled => &self.throttled,
            Outcome::Unavailable => &self.unavailable,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// One provider check and how the provider answered.
    pub fn login(&self, provider: &str, answer: Answer, took: Duration) {
        self.logins.get(&[provider, answer.label()]).observe(took);
    }

    /// One state backend operation.
    pub fn state_op(&self, backend: &str, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "error" };
        self.state_ops.get(&[backend, result]).observe(took);
    }

    /// A connection beyond `server.max_connections` was answered 503.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// All metrics in the Prometheus text format: this process's counters
    /// and what the components report in `snapshot`.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut out = String::new();
        self.render_requests(&mut out, snapshot);
        render_keys(&mut out, snapshot);
        self.render_providers(&mut out, &snapshot.providers);
        histograms(
            &mut out,
            "regauth_state_operation_duration_seconds",
            "State backend operations by backend and result.",
            &["backend", "result"],
            &self.state_ops,
        );
        out
    }

    /// Token requests, the caches, refused connections and the log sink.
    fn render_requests(&self, out: &mut String, snapshot: &Snapshot) {
        let outcomes: Vec<(String, u64)> = [
            ("issued", &self.issued),
            ("bad_request", &self.bad_request),
            ("unauthorized", &self.unauthorized),
            ("throttled", &self.throttled),
            ("unavailable", &self.unavailable),
        ]
        .into_iter()
        .map(|(label, c)| (format!("outcome=\"{label}\""), c.load(Ordering::Relaxed)))
        .collect();
        let help = "Token requests by outcome.";
        metric(
            out,
            "regauth_token_requests_total",
            "counter",
            help,
            &outcomes,
        );
        let robots: Vec<(String, u64)> = ROBOT_EVENTS
            .iter()
            .zip(&ROBOTS)
            .map(|(event, c)| {
                let event = event.trim_start_matches("robot_");
                (format!("event=\"{event}\""), c.load(Ordering::Relaxed))
            })
            .collect();
        metric(
            out,
            "regauth_robot_events_total",
            "counter",
            "Team robots made, rotated, used, revoked, and logins refused (team gone).",
            &robots,
        );
        let verdicts = &snapshot.verdicts;
        metric(
            out,
            "regauth_cache_requests_total",
            "counter",
            "Cache lookups by result.",
            &[
                ("cache=\"verdict\",result=\"hit\"".into(), verdicts.hits),
                ("cache=\"verdict\",result=\"miss\"".into(), verdicts.misses),
            ],
        );
        let entries = [("cache=\"verdict\"".into(), verdicts.entries)];
        metric(
            out,
            "regauth_cache_entries",
            "gauge",
            "Entries per cache.",
            &entries,
        );
        let counters = [
            (
                "regauth_tokens_reused_total",
                "Tokens handed out again within token.reuse_window.",
                snapshot.reused,
            ),
            (
                "regauth_connections_refused_total",
                "Connections answered 503 because server.max_connections were open.",
                self.connections_refused.load(Ordering::Relaxed),
            ),
            (
                "regauth_log_lines_dropped_total",
                "Log and audit lines dropped because the log sink could not keep up.",
                crate::ops::logging::dropped_lines(),
            ),
            (
                "regauth_log_write_errors_total",
                "Writes of log and audit lines that the sink refused.",
                crate::ops::logging::write_errors(),
            ),
        ];
        for (name, help, value) in counters {
            metric(out, name, "counter", help, &[(String::new(), value)]);
        }
    }

    /// Provider checks and errors, provider operations and servers.
    fn render_providers(&self, out: &mut String, providers: &[ProviderReport]) {
        histograms(
            out,
            "regauth_provider_check_duration_seconds",
            "Identity provider checks (cache misses) by provider and outcome.",
            &["provider", "outcome"],
            &self.logins,
        );
        let errors: Vec<(String, u64)> = self
            .logins
            .each()
            .into_iter()
            .filter(|(k, _)| k.get(1).is_some_and(|o| o == Answer::Unavailable.label()))
            .map(|(k, h)| {
                (
                    labels(&["provider"], &k[..1]),
                    h.count.load(Ordering::Relaxed),
                )
            })
            .collect();
        metric(
            out,
            "regauth_provider_upstream_errors_total",
            "counter",
            "Checks a provider could not answer (unreachable, timed out, rate limited).",
            &errors,
        );
        let operations: Vec<(String, u64)> = providers
            .iter()
            .flat_map(|p| {
                p.counters.iter().map(|(op, value)| {
                    let values = [p.name.clone(), (*op).to_owned()];
                    (labels(&["provider", "op"], &values), *value)
                })
            })
            .collect();
        metric(
            out,
            "regauth_provider_operations_total",
            "counter",
            "Provider operations: LDAP binds and searches, group cache hits and misses, IdP fetches (since the last reload).",
            &operations,
        );
        let servers: Vec<(String, u64)> = providers
            .iter()
            .flat_map(|p| {
                p.servers.iter().map(|(server, up)| {
                    let values = [p.name.clone(), server.clone()];
                    (labels(&["provider", "server"], &values), u64::from(*up))
                })
            })
            .collect();
        metric(
            out,
            "regauth_provider_server_up",
            "gauge",
            "Whether a provider's server (a domain controller of several) answered last time.",
            &servers,
        );
    }
}

/// The signing keys' certificate expiry and how many are published.
fn render_keys(out: &mut String, snapshot: &Snapshot) {
    metric(
        out,
        "regauth_signing_certificate_expiry_seconds",
        "gauge",
        "When the first published signing certificate expires.",
        &[(String::new(), snapshot.signing_not_after.max(0) as u64)],
    );
    metric(
        out,
        "regauth_signing_keys_published",
        "gauge",
        "Signing keys published (2 while a rotation is under way).",
        &[(String::new(), snapshot.signing_keys)],
    );
}

/// A cache's hits, misses and entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that found an entry.
    pub hits: u64,
    /// Lookups that found none.
    pub misses: u64,
    /// Entries kept now.
    pub entries: u64,
}

/// One provider's own numbers.
#[derive(Debug, Default)]
pub struct ProviderReport {
    /// The provider's name.
    pub name: String,
    /// Its operation counters (binds, searches, fetches...).
    pub counters: Vec<(&'static str, u64)>,
    /// Its servers and whether each answered last time.
    pub servers: Vec<(String, bool)>,
}

/// What the components report for one scrape: metrics ask them rather
/// than reach into their fields.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The verdict cache.
    pub verdicts: CacheStats,
    /// Tokens handed out again within `token.reuse_window`.
    pub reused: u64,
    /// When the first published signing certificate expires (seconds
    /// since the epoch).
    pub signing_not_after: i64,
    /// Signing keys published.
    pub signing_keys: u64,
    /// Each provider, in the chain's order.
    pub providers: Vec<ProviderReport>,
}

/// A histogram family: HELP, TYPE and the series of each label set.
fn histograms(
    out: &mut String,
    name: &str,
    help: &str,
    names: &[&str],
    family: &Family<Histogram>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (values, histogram) in family.each() {
        histogram.render(out, name, &labels(names, &values));
    }
}

/// One metric family: HELP, TYPE and a sample per label set.
fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}
