//! `GET /metrics` in the OpenMetrics text format Prometheus reads: the console's Mailchimp
//! calls as they happen (by account, with their latency and the throttled ones), and, read from the
//! database at each scrape, runs by status, members by outcome, the queue, and how long
//! imports and segment refreshes took.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::db::Db;
use crate::store;

/// An account as metrics name it: the first 12 hex digits of a digest of its API base and
/// credential (the credential itself never appears).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Account {
    account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Call {
    account: String,
    /// "2xx", "4xx", "429", "5xx" or "unreachable".
    answer: String,
}

/// What this process counts as it goes.
struct Live {
    calls: Family<Call, Counter>,
    throttled: Family<Account, Counter>,
    latency: Family<Account, Histogram>,
}

fn live() -> &'static Live {
    static LIVE: OnceLock<Live> = OnceLock::new();
    LIVE.get_or_init(|| Live {
        calls: Family::default(),
        throttled: Family::default(),
        // 10 ms to about 20 s.
        latency: Family::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 12))
        }),
    })
}

/// Counts one Mailchimp call: its account, its answer's HTTP status (None: no answer),
/// whether the answer was throttling (a 429, or a 403 without Mailchimp's problem document)
/// and how long it took.
pub fn observe_call(account: &str, status: Option<u16>, throttled: bool, took: Duration) {
    let live = live();
    let answer = match status {
        None => "unreachable",
        Some(429) => "429",
        Some(200..=299) => "2xx",
        Some(400..=499) => "4xx",
        Some(_) => "5xx",
    };
    let account = account.to_owned();
    live.calls
        .get_or_create(&Call {
            account: account.clone(),
            answer: answer.to_owned(),
        })
        .inc();
    if throttled || status == Some(429) {
        live.throttled
            .get_or_create(&Account {
                account: account.clone(),
            })
            .inc();
    }
    live.latency
        .get_or_create(&Account { account })
        .observe(took.as_secs_f64());
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Status {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SegmentLabel {
    segment: String,
}

/// Everything, as Prometheus scrapes it.
pub async fn render(db: &Db) -> anyhow::Result<String> {
    let pool = db.pool();
    let mut registry = Registry::with_prefix("export_destinations");
    let live = live();
    registry.register(
        "mailchimp_calls",
        "Mailchimp API calls by account and answer",
        live.calls.clone(),
    );
    registry.register(
        "mailchimp_throttled",
        "Mailchimp calls throttled (answered 429, or 403 without an explanation), by account",
        live.throttled.clone(),
    );
    registry.register(
        "mailchimp_call_seconds",
        "How long Mailchimp calls took, by account",
        live.latency.clone(),
    );

    let runs = Family::<Status, Gauge>::default();
    for (status, n) in store::runs::count_by_status(pool).await? {
        runs.get_or_create(&Status { status }).set(n);
    }
    registry.register("runs", "Export and clean-up runs by status", runs);

    let queued = store::runs::count_queued(pool).await?;
    let queue = Gauge::<i64>::default();
    queue.set(queued);
    registry.register("queue_length", "Runs waiting for a worker", queue);

    let members = Family::<Outcome, Counter>::default();
    for (outcome, n) in store::runs::member_totals(pool).await?.by_outcome() {
        members
            .get_or_create(&Outcome {
                outcome: outcome.to_owned(),
            })
            .inc_by(u64::try_from(n).unwrap_or(0));
    }
    registry.register(
        "members",
        "Members of every export run, by outcome",
        members,
    );

    let imports = Histogram::new(exponential_buckets(0.1, 2.0, 12));
    for ms in store::imports::recent_durations_ms(pool, 1000).await? {
        imports.observe(ms as f64 / 1000.0);
    }
    registry.register(
        "import_seconds",
        "How long profile imports took (the last 1,000)",
        imports,
    );

    let refreshes = Family::<SegmentLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for (name, ms) in store::segments::last_refresh_times(pool).await? {
        refreshes
            .get_or_create(&SegmentLabel { segment: name })
            .set(ms as f64 / 1000.0);
    }
    registry.register(
        "segment_refresh_seconds",
        "How long each segment's last refresh took",
        refreshes,
    );

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}
