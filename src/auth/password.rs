//! Argon2id password hashes, computed off the async threads. The cost comes from
//! configuration so tests can be fast without a different code path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use argon2::password_hash::{PasswordHash, PasswordVerifier, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::config::HashCost;
use crate::domain::NewPassword;

#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    argon: Argon2<'static>,
    /// Verified against when an account does not exist, so that a wrong address and a
    /// wrong password take the same time.
    dummy_hash: String,
    /// Passwords verified since start, for the status of the throttle in front of it.
    verifications: AtomicU64,
}

impl PasswordHasher {
    pub fn new(cost: HashCost) -> anyhow::Result<Self> {
        let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
            .map_err(|e| anyhow::anyhow!("invalid password hash cost: {e}"))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_hash = hash_with(&argon, "a password nobody has")?;
        Ok(Self {
            inner: Arc::new(Inner {
                argon,
                dummy_hash,
                verifications: AtomicU64::new(0),
            }),
        })
    }

    pub async fn hash(&self, password: &NewPassword) -> anyhow::Result<String> {
        let inner = self.inner.clone();
        let password = password.expose().to_owned();
        tokio::task::spawn_blocking(move || hash_with(&inner.argon, &password))
            .await
            .context("password hashing task")?
    }

    /// How many passwords were verified since start (every throttled check ends here).
    pub fn verifications(&self) -> u64 {
        self.inner.verifications.load(Ordering::Relaxed)
    }

    /// True when `candidate` matches `hash`; with no hash, spends the same time and says no.
    pub async fn verify(&self, candidate: String, hash: Option<String>) -> bool {
        self.inner.verifications.fetch_add(1, Ordering::Relaxed);
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let (hash, real) = match &hash {
                Some(hash) => (hash.as_str(), true),
                None => (inner.dummy_hash.as_str(), false),
            };
            let matches = PasswordHash::new(hash)
                .map(|parsed| {
                    inner
                        .argon
                        .verify_password(candidate.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false);
            matches && real
        })
        .await
        .unwrap_or(false)
    }
}

fn hash_with(argon: &Argon2<'_>, password: &str) -> anyhow::Result<String> {
    use argon2::password_hash::PasswordHasher as _;
    let salt = SaltString::generate(&mut OsRng);
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordHasher {
        PasswordHasher::new(HashCost {
            memory_kib: 64,
            iterations: 1,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn the_right_password_verifies_and_a_wrong_one_does_not() {
        let hasher = cheap();
        let password = NewPassword::parse("correct horse battery".into()).unwrap();
        let hash = hasher.hash(&password).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            hasher
                .verify("correct horse battery".into(), Some(hash.clone()))
                .await
        );
        assert!(
            !hasher
                .verify("wrong horse battery".into(), Some(hash))
                .await
        );
    }

    #[tokio::test]
    async fn a_missing_account_never_verifies() {
        let hasher = cheap();
        assert!(!hasher.verify("a password nobody has".into(), None).await);
    }

    #[tokio::test]
    async fn hashes_made_at_another_cost_still_verify() {
        let password = NewPassword::parse("correct horse battery".into()).unwrap();
        let old = cheap().hash(&password).await.unwrap();
        let stronger = PasswordHasher::new(HashCost {
            memory_kib: 128,
            iterations: 2,
        })
        .unwrap();
        assert!(
            stronger
                .verify("correct horse battery".into(), Some(old))
                .await
        );
    }
}
