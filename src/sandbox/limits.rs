//! Mailchimp's limits and failures, modelled: at most N requests in flight per credential
//! (the next gets 429, or a bare 403 when so configured), a latency per call and per member,
//! and seeded random faults. The size of every answer is counted here too.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::sandbox::config::SandboxConfig;
use crate::sandbox::problem::MailchimpProblem;
use crate::sandbox::store::Credential;

/// Counters a benchmark or test reads back.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// API calls answered (including refused ones).
    pub calls: u64,
    /// Calls refused for exceeding the connection limit.
    pub rejected_429: u64,
    /// Calls refused for exceeding the connection limit with a bare 403 instead of 429
    /// (`throttle_as_bare_403`).
    pub rejected_403: u64,
    /// Calls failed on purpose by fault injection.
    pub faults_injected: u64,
    /// Sum of the modelled time of every call that did its work, in milliseconds.
    pub modelled_busy_ms: f64,
    /// The most calls of one credential in flight at once.
    pub peak_in_flight: usize,
    /// Calls by method and route, e.g. "POST /lists/{list_id}".
    pub calls_by_route: BTreeMap<String, u64>,
    /// Bytes of the answers' bodies (as sent, after `fields` and `exclude_fields`), by
    /// method and route.
    pub bytes_by_route: BTreeMap<String, u64>,
}

/// The limits of a sandbox, as configured, and what they have counted so far.
pub struct Limits {
    max_connections: usize,
    throttle_as_bare_403: bool,
    latency: Duration,
    per_member: Duration,
    fault_rate: f64,
    hang: Duration,
    in_flight: Mutex<HashMap<String, usize>>,
    faults: Mutex<StdRng>,
    stats: Mutex<Stats>,
    writes: AtomicU64,
}

impl Limits {
    /// The configured limits; the fault sequence is seeded by the configuration's seed.
    pub fn new(config: &SandboxConfig) -> Self {
        Self {
            max_connections: config.max_connections,
            throttle_as_bare_403: config.throttle_as_bare_403,
            latency: config.latency,
            per_member: config.per_member,
            fault_rate: config.fault_rate,
            hang: config.hang,
            in_flight: Mutex::new(HashMap::new()),
            faults: Mutex::new(StdRng::seed_from_u64(config.seed)),
            stats: Mutex::new(Stats::default()),
            writes: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Changes so far (for saving the state only when it changed).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Notes a change made outside the API (the sandbox's pages), so that it is saved.
    pub fn note_write(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    /// Spends the modelled time of a call that handles `members` members.
    pub async fn work(&self, members: usize) {
        let time = self.latency + self.per_member * members as u32;
        self.with_stats(|s| s.modelled_busy_ms += time.as_secs_f64() * 1000.0);
        if time > Duration::ZERO {
            tokio::time::sleep(time).await;
        }
    }

    fn with_stats<R>(&self, f: impl FnOnce(&mut Stats) -> R) -> R {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Holds one connection slot of a credential until dropped.
struct Slot<'a> {
    limits: &'a Limits,
    key: String,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut map = self
            .limits
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = map.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.key);
            }
        }
    }
}

enum Fault {
    Status(StatusCode, &'static str, &'static str),
    Hang,
}

pub async fn limit_and_fault(
    State(limits): State<Arc<Limits>>,
    request: Request,
    next: Next,
) -> Response {
    let route = format!(
        "{} {}",
        request.method(),
        request
            .extensions()
            .get::<MatchedPath>()
            .map(|p| {
                let path = p.as_str();
                path.find("/3.0/")
                    .map_or(path, |at| &path[at + 4..])
                    .to_owned()
            })
            .unwrap_or_else(|| request.uri().path().to_owned())
    );
    limits.with_stats(|s| {
        s.calls += 1;
        *s.calls_by_route.entry(route.clone()).or_default() += 1;
    });
    let response = answer(&limits, request, next).await;
    // Answers are small and already whole: read to count, then sent as they were.
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    limits.with_stats(|s| *s.bytes_by_route.entry(route).or_default() += bytes.len() as u64);
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// The call's answer within the credential's connection limit and the fault rate.
async fn answer(limits: &Limits, request: Request, next: Next) -> Response {
    let credential = Credential::from_header(
        request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    );
    let _slot = match credential.limit_key() {
        Some(key) => {
            let mut map = limits.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            let count = map.entry(key.to_owned()).or_default();
            if *count >= limits.max_connections {
                drop(map);
                if limits.throttle_as_bare_403 {
                    let n = limits.with_stats(|s| {
                        s.rejected_403 += 1;
                        s.rejected_403
                    });
                    return bare_403(n);
                }
                limits.with_stats(|s| s.rejected_429 += 1);
                return too_many(limits.max_connections);
            }
            *count += 1;
            let current = *count;
            drop(map);
            limits.with_stats(|s| s.peak_in_flight = s.peak_in_flight.max(current));
            Some(Slot {
                limits,
                key: key.to_owned(),
            })
        }
        None => None,
    };
    if request.method() != Method::GET {
        limits.writes.fetch_add(1, Ordering::Relaxed);
    }
    match roll_fault(limits) {
        Some(Fault::Status(status, title, detail)) => {
            let n = limits.with_stats(|s| {
                s.faults_injected += 1;
                s.faults_injected
            });
            if status == StatusCode::TOO_MANY_REQUESTS && limits.throttle_as_bare_403 {
                return bare_403(n);
            }
            MailchimpProblem::new(status, title, detail).into_response()
        }
        Some(Fault::Hang) => {
            limits.with_stats(|s| s.faults_injected += 1);
            // The work is done but the answer comes too late: the client has given up.
            let response = next.run(request).await;
            tokio::time::sleep(limits.hang).await;
            response
        }
        None => next.run(request).await,
    }
}

fn roll_fault(limits: &Limits) -> Option<Fault> {
    let rate = limits.fault_rate;
    if rate <= 0.0 {
        return None;
    }
    let mut rng = limits.faults.lock().unwrap_or_else(|p| p.into_inner());
    if rng.r#gen::<f64>() >= rate {
        return None;
    }
    Some(match rng.gen_range(0..4) {
        0 => Fault::Status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            "An unexpected internal error has occurred. Please contact Support for more information.",
        ),
        1 => Fault::Status(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            "This service is temporarily unavailable. Please try again later.",
        ),
        2 => Fault::Status(
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests",
            "You have exceeded the limit of 10 simultaneous connections.",
        ),
        _ => Fault::Hang,
    })
}

fn too_many(max: usize) -> Response {
    MailchimpProblem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "Too Many Requests",
        format!("You have exceeded the limit of {max} simultaneous connections."),
    )
    .into_response()
}

/// Throttling as Mailchimp has sometimes answered it under load: 403 Forbidden without its
/// problem document. Every other one has an empty body, the rest a proxy's HTML page.
fn bare_403(n: u64) -> Response {
    if n % 2 == 1 {
        return StatusCode::FORBIDDEN.into_response();
    }
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/html")],
        "<html><head><title>403 Forbidden</title></head>\
         <body><h1>Forbidden</h1><p>Access denied.</p></body></html>",
    )
        .into_response()
}
