//! The one gate in front of every password check (sign-in, change password, **Add yourself
//! as export user**).
//!
//! Each check is counted before the password is verified, in one write transaction that
//! also reads the counts, so the limit holds for parallel requests and across consoles
//! sharing a database: N attempts at once verify at most the limit's number of passwords.
//! Two counts apply in fixed windows of `lockout`:
//! - per account and client address (`max_failures`), so one source cannot guess on;
//! - per account from every address together (`account_max_failures`), so many sources
//!   cannot either. Addresses the account signed in from during the last 30 days are left
//!   out of this one, so an attack from elsewhere never keeps a person out from where they
//!   usually work.
//!
//! A right password gives its count back; a pause ends when its window ends, and the
//! refusal says when that is.

use std::net::IpAddr;

use sqlx::AnyPool;

use crate::config::SignInThrottle;
use crate::db::now_millis;
use crate::store::sign_in_failures as store;

/// How long a successful sign-in keeps its address out of the account-wide ceiling.
const KNOWN_ADDRESS_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// A counted password check: verify the password, then report how it went.
#[derive(Debug)]
pub struct Attempt {
    address_key: String,
    account_key: Option<String>,
    account: String,
    address: String,
    /// This check used up the last one the window allows.
    pub last_allowed: bool,
    /// When the window of this check ends (ms since epoch).
    window_ends_at: i64,
    window_ms: i64,
}

/// Whether a password may be checked now.
#[derive(Debug)]
pub enum Admission {
    Check(Attempt),
    /// Too many checks in this window; try again in this many milliseconds.
    Paused {
        remaining_ms: i64,
    },
}

/// Counts a password check for `account` (an email address as typed, case-insensitively)
/// from `address`, or says it must wait.
pub async fn admit(
    pool: &AnyPool,
    limits: SignInThrottle,
    account: &str,
    address: IpAddr,
) -> sqlx::Result<Admission> {
    let account = account.trim().to_lowercase();
    let address = address.to_string();
    let now = now_millis();
    let window_ms = limits.lockout.as_millis() as i64;
    let address_key = format!("{address}|{account}");
    let account_key = format!("*|{account}");
    // Ended windows are forgotten first, on their own (never holding locks the count's
    // transaction needs).
    store::purge_before(pool, now - window_ms).await?;
    let mut tx = crate::db::begin_write(pool).await?;
    let (count, started) = store::count_attempt(&mut *tx, &address_key, now, window_ms).await?;
    if count > i64::from(limits.max_failures) {
        tx.rollback().await?;
        return Ok(Admission::Paused {
            remaining_ms: (started + window_ms - now).clamp(0, window_ms),
        });
    }
    let mut last_allowed = count == i64::from(limits.max_failures);
    let mut window_ends_at = started + window_ms;
    let known =
        store::is_known_address(&mut *tx, &account, &address, now - KNOWN_ADDRESS_MS).await?;
    let account_key = if known {
        None
    } else {
        let (count, started) = store::count_attempt(&mut *tx, &account_key, now, window_ms).await?;
        if count > i64::from(limits.account_max_failures) {
            tx.rollback().await?;
            return Ok(Admission::Paused {
                // Another request may have started the window a moment "after" this one's
                // clock was read: never more than a window.
                remaining_ms: (started + window_ms - now).clamp(0, window_ms),
            });
        }
        if count == i64::from(limits.account_max_failures) {
            last_allowed = true;
            window_ends_at = window_ends_at.max(started + window_ms);
        }
        Some(account_key)
    };
    tx.commit().await?;
    Ok(Admission::Check(Attempt {
        address_key,
        account_key,
        account,
        address,
        last_allowed,
        window_ends_at,
        window_ms,
    }))
}

impl Attempt {
    /// The password was right: this address's count starts again, the account-wide count
    /// gets this check back, and the address is remembered as the account's.
    pub async fn succeeded(self, pool: &AnyPool) -> sqlx::Result<()> {
        let mut tx = crate::db::begin_write(pool).await?;
        store::clear(&mut *tx, &self.address_key).await?;
        if let Some(key) = &self.account_key {
            store::refund(&mut *tx, key).await?;
        }
        store::remember_address(&mut *tx, &self.account, &self.address, now_millis()).await?;
        tx.commit().await
    }

    /// The password was wrong (the check stays counted): how long until the next check is
    /// allowed, if this one used up the window.
    pub fn failed(self) -> Option<i64> {
        self.last_allowed
            .then(|| (self.window_ends_at - now_millis()).clamp(0, self.window_ms))
    }
}

/// What came of re-entering one's own password.
#[derive(Debug, PartialEq, Eq)]
pub enum Reentered {
    Right,
    Wrong,
    /// Too many wrong passwords for this account: nothing was checked.
    Paused {
        remaining_ms: i64,
    },
}

/// A signed-in person typing their own password again (change password, export user):
/// counted against the same limits as sign-in, so a borrowed session cannot guess it.
pub async fn reenter(
    pool: &AnyPool,
    limits: SignInThrottle,
    hasher: &crate::auth::PasswordHasher,
    account: &str,
    password_hash: String,
    candidate: String,
    address: IpAddr,
) -> sqlx::Result<Reentered> {
    let attempt = match admit(pool, limits, account, address).await? {
        Admission::Check(attempt) => attempt,
        Admission::Paused { remaining_ms } => return Ok(Reentered::Paused { remaining_ms }),
    };
    if hasher.verify(candidate, Some(password_hash)).await {
        attempt.succeeded(pool).await?;
        return Ok(Reentered::Right);
    }
    Ok(match attempt.failed() {
        Some(remaining_ms) => Reentered::Paused { remaining_ms },
        None => Reentered::Wrong,
    })
}

/// "try again in N minutes", rounded up, at least one.
pub fn try_again_in(remaining_ms: i64) -> String {
    let minutes = ((remaining_ms + 59_999) / 60_000).max(1);
    let unit = if minutes == 1 { "minute" } else { "minutes" };
    format!("try again in {minutes} {unit}")
}

#[cfg(test)]
mod tests {
    use super::try_again_in;

    #[test]
    fn the_wait_is_rounded_up_to_whole_minutes() {
        assert_eq!(try_again_in(0), "try again in 1 minute");
        assert_eq!(try_again_in(60_000), "try again in 1 minute");
        assert_eq!(try_again_in(60_001), "try again in 2 minutes");
        assert_eq!(try_again_in(15 * 60_000), "try again in 15 minutes");
    }
}
