//! Mailchimp allows 10 requests in flight per account: one limit per account, shared by
//! every destination on it, and on PostgreSQL by every console on the database (slot leases
//! in the database, renewed while held, so a console that dies frees its slots when they run
//! out). Throttled and transient failures are retried with exponential back-off and jitter
//! (or as long as a `Retry-After` asks), a bounded number of times; a 429 (or the bare 403
//! Mailchimp sometimes answers instead) also takes a connection slot away for a while. A
//! per-member 400 is never retried.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use sqlx::AnyPool;
use tokio::sync::{OnceCell, Semaphore};

use crate::db::{Backend, Db, now_millis};
use crate::mailchimp::client::{ApiError, Connection, ErrorKind};
use crate::store::slots;

/// Requests in flight per Mailchimp account.
pub const PER_ACCOUNT: usize = 10;
pub const MAX_ATTEMPTS: u32 = 8;
/// Successes in a row that earn a withheld slot back.
const SUCCESSES_PER_SLOT: usize = 20;
/// How often a console waiting for a shared slot looks again.
const SLOT_POLL: Duration = Duration::from_millis(20);

#[derive(Clone, Default)]
pub struct Limiters {
    accounts: Arc<Mutex<HashMap<String, Arc<AccountLimit>>>>,
    shared: Option<Arc<SharedBudget>>,
}

impl Limiters {
    /// Limits for a console on `db`: on PostgreSQL, where several consoles may share the
    /// database, each account's slots are leased in the database for `lease_ms` at a time;
    /// on SQLite the console keeps the count itself.
    pub fn for_database(db: &Db, lease_ms: i64) -> Self {
        match db.backend() {
            Backend::Postgres => Self::shared(db, lease_ms),
            Backend::Sqlite => Self::default(),
        }
    }

    /// Limits whose slots are leased in the database, whatever the backend.
    pub fn shared(db: &Db, lease_ms: i64) -> Self {
        let lease_ms = lease_ms.max(1_000);
        let holder = format!("console-{}", &crate::crypto::random_token()[..12]);
        let renewer = {
            let (pool, holder) = (db.pool().clone(), holder.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(lease_ms as u64 / 4)).await;
                    if let Err(err) = slots::renew(&pool, &holder, now_millis() + lease_ms).await {
                        tracing::warn!(error = %err, "renewing the leases of connection slots");
                    }
                }
            })
        };
        Self {
            accounts: Arc::default(),
            shared: Some(Arc::new(SharedBudget {
                pool: db.pool().clone(),
                backend: db.backend(),
                holder,
                lease_ms,
                renewer,
            })),
        }
    }

    /// The limit of the account behind a connection (its API base and credential).
    pub fn for_connection(&self, connection: &Connection) -> Arc<AccountLimit> {
        let key = connection.account_key();
        let mut map = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.clone())
            .or_insert_with(|| {
                let mut limit = AccountLimit::new(PER_ACCOUNT);
                limit.shared = self.shared.clone().map(|budget| AccountShare {
                    budget,
                    key,
                    gate: tokio::sync::Mutex::new(()),
                    ensured: OnceCell::new(),
                });
                Arc::new(limit)
            })
            .clone()
    }

    /// Gives back every slot this console holds (at shutdown), so others need not wait
    /// for the leases to run out.
    pub async fn release(&self) {
        if let Some(shared) = &self.shared {
            if let Err(err) = slots::release_all(&shared.pool, &shared.holder).await {
                tracing::warn!(error = %err, "giving back connection slots");
            }
        }
    }
}

/// The console's side of the slot leases in the database.
struct SharedBudget {
    pool: AnyPool,
    backend: Backend,
    holder: String,
    lease_ms: i64,
    renewer: tokio::task::JoinHandle<()>,
}

impl Drop for SharedBudget {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// One account's slots in the database.
struct AccountShare {
    budget: Arc<SharedBudget>,
    key: String,
    /// One caller per console looks for a free slot at a time; the others queue here.
    gate: tokio::sync::Mutex<()>,
    ensured: OnceCell<()>,
}

/// A slot leased in the database, given back when dropped.
struct SlotLease {
    budget: Arc<SharedBudget>,
    key: String,
    slot: i32,
}

impl Drop for SlotLease {
    fn drop(&mut self) {
        let (budget, key, slot) = (
            self.budget.clone(),
            std::mem::take(&mut self.key),
            self.slot,
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = slots::release(&budget.pool, &key, slot, &budget.holder).await {
                    tracing::warn!(error = %err, "giving back a connection slot; its lease runs out");
                }
            });
        }
    }
}

/// While alive, the console is noted as waiting (since `since`) for one of the account's
/// slots. The note is taken off by a task of its own, so that it goes even when the caller
/// is canceled; it names its `since`, so that it never takes off the note of this console's
/// next caller.
struct Waiting<'a> {
    share: &'a AccountShare,
    since: i64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let (budget, key, since) = (
            self.share.budget.clone(),
            self.share.key.clone(),
            self.since,
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = slots::stop_waiting(&budget.pool, &key, &budget.holder, since).await;
            });
        }
    }
}

impl AccountShare {
    /// Waits for one of the account's slots in the database; consoles that waited longer
    /// go first.
    async fn take(&self) -> Result<SlotLease, ApiError> {
        let _gate = self.gate.lock().await;
        let budget = &self.budget;
        let pool = &budget.pool;
        self.ensured
            .get_or_try_init(|| slots::ensure(pool, &self.key, PER_ACCOUNT))
            .await
            .map_err(|err| ApiError::no_slot(&err))?;
        let since = now_millis();
        let mut waiting = None;
        loop {
            let now = now_millis();
            let claimed = slots::claim(
                pool,
                budget.backend,
                &self.key,
                &budget.holder,
                since,
                now,
                now + budget.lease_ms,
            )
            .await
            .map_err(|err| ApiError::no_slot(&err))?;
            if let Some(slot) = claimed {
                drop(waiting);
                return Ok(SlotLease {
                    budget: budget.clone(),
                    key: self.key.clone(),
                    slot,
                });
            }
            // Noted (again) as waiting: the note runs out if this console dies.
            slots::wait(
                pool,
                &self.key,
                &budget.holder,
                since,
                now + budget.lease_ms,
            )
            .await
            .map_err(|err| ApiError::no_slot(&err))?;
            if waiting.is_none() {
                // Made once: a guard made and dropped here would take the note off again.
                waiting = Some(Waiting { share: self, since });
            }
            let jitter = rand::thread_rng().gen_range(0..=SLOT_POLL.as_millis() as u64);
            tokio::time::sleep(SLOT_POLL + Duration::from_millis(jitter)).await;
        }
    }
}

/// An account's connection slots. A throttled call (429, or a bare 403) takes one slot away (down to one: someone else is
/// using the account's connections too); a run of successes gives it back.
pub struct AccountLimit {
    semaphore: Semaphore,
    withheld: AtomicUsize,
    successes: AtomicUsize,
    most: usize,
    shared: Option<AccountShare>,
}

impl AccountLimit {
    pub fn new(most: usize) -> Self {
        Self {
            semaphore: Semaphore::new(most),
            withheld: AtomicUsize::new(0),
            successes: AtomicUsize::new(0),
            most,
            shared: None,
        }
    }

    /// Slots usable now.
    pub fn current(&self) -> usize {
        self.most - self.withheld.load(Ordering::Relaxed)
    }

    fn throttled(&self) {
        self.successes.store(0, Ordering::Relaxed);
        if self.withheld.load(Ordering::Relaxed) + 1 < self.most {
            if let Ok(permit) = self.semaphore.try_acquire() {
                permit.forget();
                self.withheld.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn succeeded(&self) {
        if self.withheld.load(Ordering::Relaxed) == 0 {
            return;
        }
        if self.successes.fetch_add(1, Ordering::Relaxed) + 1 >= SUCCESSES_PER_SLOT {
            self.successes.store(0, Ordering::Relaxed);
            self.withheld.fetch_sub(1, Ordering::Relaxed);
            self.semaphore.add_permits(1);
        }
    }
}

/// Runs `call` within the account's limit, retrying what can succeed later.
pub async fn with_retries<T, F, Fut>(limit: &AccountLimit, call: F) -> Result<(T, u32), ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    with_attempts(limit, MAX_ATTEMPTS, call).await
}

/// Runs `call` within the account's limit, trying it at most `attempts` times while it
/// fails in a way that can succeed later.
pub async fn with_attempts<T, F, Fut>(
    limit: &AccountLimit,
    attempts: u32,
    mut call: F,
) -> Result<(T, u32), ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = {
            let _permit = limit
                .semaphore
                .acquire()
                .await
                .expect("the semaphore is never closed");
            match &limit.shared {
                Some(share) => match share.take().await {
                    Ok(_lease) => call().await,
                    Err(err) => Err(err),
                },
                None => call().await,
            }
        };
        match &result {
            Ok(_) => limit.succeeded(),
            Err(err) if err.kind == ErrorKind::Throttled => limit.throttled(),
            Err(_) => {}
        }
        match result {
            Ok(value) => return Ok((value, attempt)),
            Err(err)
                if matches!(err.kind, ErrorKind::Throttled | ErrorKind::Transient)
                    && attempt < attempts =>
            {
                let base = 200u64 * 2u64.pow(attempt.min(6));
                let jitter = rand::thread_rng().gen_range(0..=base / 2);
                let backoff = Duration::from_millis(base + jitter);
                // Mailchimp's own word on when to come back wins over our guess.
                let wait = err.retry_after.map_or(backoff, |asked| asked.max(backoff));
                tracing::debug!(attempt, error = %err, ?wait, "retrying a Mailchimp call");
                tokio::time::sleep(wait).await;
            }
            Err(err) => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailchimp::client::Credential;

    /// Two consoles' limits on one database (SQLite here: the leases are portable SQL).
    async fn two_consoles() -> (tempfile::TempDir, Db, Arc<AccountLimit>, Arc<AccountLimit>) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&crate::db::DatabaseUrl::sqlite_file(
            &dir.path().join("slots.db"),
        ))
        .await
        .unwrap();
        db.migrate().await.unwrap();
        let connection = Connection {
            api_base: "https://us1.api.mailchimp.com".into(),
            credential: Credential::ApiKey("0123456789abcdef0123456789abcdef-us1".into()),
        };
        let a = Limiters::shared(&db, 10_000).for_connection(&connection);
        let b = Limiters::shared(&db, 10_000).for_connection(&connection);
        (dir, db, a, b)
    }

    #[tokio::test]
    async fn two_consoles_calling_at_once_never_have_more_than_ten_in_flight() {
        let (_dir, _db, a, b) = two_consoles().await;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..60 {
            let limit = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (in_flight, peak) = (in_flight.clone(), peak.clone());
            calls.spawn(async move {
                with_retries(&limit, || async {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(15)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, ApiError>(())
                })
                .await
                .unwrap();
            });
        }
        while let Some(done) = calls.join_next().await {
            done.unwrap();
        }
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak <= PER_ACCOUNT, "{peak} calls in flight at once");
        assert!(peak > PER_ACCOUNT / 2, "the slots were used: {peak}");
    }

    #[tokio::test]
    async fn a_console_that_frees_a_slot_does_not_take_it_back_ahead_of_one_waiting() {
        let (_dir, db, a, b) = two_consoles().await;
        let gate = Arc::new(Semaphore::new(0));
        let order = Arc::new(Mutex::new(Vec::new()));
        let call = |limit: Arc<AccountLimit>, name: &'static str| {
            let (gate, order) = (gate.clone(), order.clone());
            tokio::spawn(async move {
                with_retries(&limit, || async {
                    order.lock().unwrap().push(name);
                    gate.acquire().await.unwrap().forget();
                    Ok::<_, ApiError>(())
                })
                .await
                .unwrap();
            })
        };
        // Console A holds all ten slots; console B waits for one.
        let mut calls: Vec<_> = (0..PER_ACCOUNT).map(|_| call(a.clone(), "a")).collect();
        let key = a.shared.as_ref().unwrap().key.clone();
        while slots::held(db.pool(), &key, now_millis()).await.unwrap() < PER_ACCOUNT as i64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        calls.push(call(b.clone(), "b"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        // A finishes one call and at once makes another: B, waiting longer, goes first.
        calls.push(call(a.clone(), "a again"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        gate.add_permits(1);
        while order.lock().unwrap().len() < PER_ACCOUNT + 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(order.lock().unwrap()[PER_ACCOUNT], "b");
        gate.add_permits(100);
        for call in calls {
            call.await.unwrap();
        }
        assert_eq!(order.lock().unwrap().last(), Some(&"a again"));
    }

    #[test]
    fn a_429_takes_a_slot_away_and_successes_give_it_back() {
        let limit = AccountLimit::new(10);
        limit.throttled();
        limit.throttled();
        assert_eq!(limit.current(), 8);
        for _ in 0..SUCCESSES_PER_SLOT {
            limit.succeeded();
        }
        assert_eq!(limit.current(), 9);
        for _ in 0..20 {
            limit.throttled();
        }
        assert_eq!(limit.current(), 1, "never below one slot");
    }
}
