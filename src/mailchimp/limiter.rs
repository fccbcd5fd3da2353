//! Mailchimp allows 10 requests in flight per account: one limit per account, shared by
//! every destination on it. Throttled and transient failures are retried with exponential
//! back-off and jitter (or as long as a `Retry-After` asks), a bounded number of times; a
//! 429 also takes a connection slot away for a while. A per-member 400 is never retried.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::Semaphore;

use crate::mailchimp::client::{ApiError, Connection, ErrorKind};

/// Requests in flight per Mailchimp account.
pub const PER_ACCOUNT: usize = 10;
const MAX_ATTEMPTS: u32 = 8;
/// Successes in a row that earn a withheld slot back.
const SUCCESSES_PER_SLOT: usize = 20;

#[derive(Clone, Default)]
pub struct Limiters {
    accounts: Arc<Mutex<HashMap<String, Arc<AccountLimit>>>>,
}

impl Limiters {
    /// The limit of the account behind a connection (its API base and credential).
    pub fn for_connection(&self, connection: &Connection) -> Arc<AccountLimit> {
        let key = format!("{}|{}", connection.api_base, fingerprint(connection));
        let mut map = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key)
            .or_insert_with(|| Arc::new(AccountLimit::new(PER_ACCOUNT)))
            .clone()
    }
}

fn fingerprint(connection: &Connection) -> String {
    use crate::mailchimp::client::Credential;
    let secret = match &connection.credential {
        Credential::OAuth(s) | Credential::ApiKey(s) => s,
    };
    crate::domain::subscriber_hash(secret)
}

/// An account's connection slots. A 429 takes one slot away (down to one: someone else is
/// using the account's connections too); a run of successes gives it back.
pub struct AccountLimit {
    semaphore: Semaphore,
    withheld: AtomicUsize,
    successes: AtomicUsize,
    most: usize,
}

impl AccountLimit {
    pub fn new(most: usize) -> Self {
        Self {
            semaphore: Semaphore::new(most),
            withheld: AtomicUsize::new(0),
            successes: AtomicUsize::new(0),
            most,
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
pub async fn with_retries<T, F, Fut>(
    limit: &AccountLimit,
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
            call().await
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
                    && attempt < MAX_ATTEMPTS =>
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
