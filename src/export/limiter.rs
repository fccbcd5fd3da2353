//! Mailchimp allows 10 requests in flight per account: one semaphore per account, shared
//! by every destination on it; throttled and transient failures are retried with
//! exponential back-off and jitter, a bounded number of times. A per-member 400 never is.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::Semaphore;

use crate::mailchimp::client::{ApiError, Connection, ErrorKind};

/// Requests in flight per Mailchimp account.
pub const PER_ACCOUNT: usize = 10;
const MAX_ATTEMPTS: u32 = 8;

#[derive(Clone, Default)]
pub struct Limiters {
    accounts: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl Limiters {
    /// The semaphore of the account behind a connection (its API base and credential).
    pub fn for_connection(&self, connection: &Connection) -> Arc<Semaphore> {
        let key = format!("{}|{:?}", connection.api_base, fingerprint(connection));
        let mut map = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(PER_ACCOUNT)))
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

/// Runs `call` under the account's limit, retrying what can succeed later.
pub async fn with_retries<T, F, Fut>(
    semaphore: &Semaphore,
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
            let _permit = semaphore
                .acquire()
                .await
                .expect("the semaphore is never closed");
            call().await
        };
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
