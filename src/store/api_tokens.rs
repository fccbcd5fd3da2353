//! Personal API tokens: random secrets shown once, stored as SHA-256 digests.

use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use crate::db::now_millis;

/// Tokens start with this, so that a leaked one is recognisable in logs and scanners.
pub const TOKEN_PREFIX: &str = "edt_";

pub fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// Creates a token for a user and returns it: the only time it is ever seen whole.
pub async fn create<'e>(
    db: impl Executor<'e, Database = Any>,
    user_id: i64,
    name: &str,
) -> sqlx::Result<String> {
    let token = format!("{TOKEN_PREFIX}{}", crate::crypto::random_token());
    sqlx::query("INSERT INTO api_tokens (user_id, name, token_hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(user_id)
        .bind(name)
        .bind(digest(&token))
        .bind(&token[..TOKEN_PREFIX.len() + 6])
        .bind(now_millis())
        .execute(db)
        .await?;
    Ok(token)
}

/// The user a token belongs to (and marks it used).
pub async fn user_of<'e, E>(db: E, token: &str) -> sqlx::Result<Option<i64>>
where
    E: Executor<'e, Database = Any> + Copy,
{
    let hash = digest(token);
    let user: Option<i64> =
        sqlx::query_scalar("SELECT user_id FROM api_tokens WHERE token_hash = $1")
            .bind(&hash)
            .fetch_optional(db)
            .await?;
    if user.is_some() {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2")
            .bind(now_millis())
            .bind(&hash)
            .execute(db)
            .await?;
    }
    Ok(user)
}

pub async fn list<'e>(
    db: impl Executor<'e, Database = Any>,
    user_id: i64,
) -> sqlx::Result<Vec<TokenInfo>> {
    sqlx::query("SELECT id, name, prefix, created_at, last_used_at FROM api_tokens WHERE user_id = $1 ORDER BY id")
        .bind(user_id)
        .try_map(|row: AnyRow| {
            Ok(TokenInfo {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                prefix: row.try_get("prefix")?,
                created_at: row.try_get("created_at")?,
                last_used_at: row.try_get("last_used_at")?,
            })
        })
        .fetch_all(db)
        .await
}

pub async fn revoke<'e>(
    db: impl Executor<'e, Database = Any>,
    user_id: i64,
    id: i64,
) -> sqlx::Result<bool> {
    super::changed_any(
        db,
        "DELETE FROM api_tokens WHERE id = $1 AND user_id = $2",
        &[id.into(), user_id.into()],
    )
    .await
}
