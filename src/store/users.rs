//! Console accounts.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use crate::db::now_millis;
use crate::domain::{EmailAddress, PersonName, Role};
use crate::store::Record;

/// One console account as stored.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub password_hash: String,
    pub created_at: i64,
    pub last_sign_in_at: Option<i64>,
    pub deactivated_at: Option<i64>,
    /// When the password last changed (0: never since the account was made).
    pub password_changed_at: i64,
}

impl User {
    pub fn is_active(&self) -> bool {
        self.deactivated_at.is_none()
    }
}

/// What creating an account needs; the hash is computed before the transaction starts.
pub struct NewUser<'a> {
    pub email: &'a EmailAddress,
    pub name: &'a PersonName,
    pub role: Role,
    pub password_hash: &'a str,
}

const COLUMNS: &str = "id, email, name, role, password_hash, created_at, last_sign_in_at, deactivated_at, password_changed_at";

impl Record for User {
    const TABLE: &'static str = "users";
    const COLUMNS: &'static str = COLUMNS;
    fn from_row(row: AnyRow) -> sqlx::Result<Self> {
        let role: String = row.try_get("role")?;
        Ok(User {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            name: row.try_get("name")?,
            role: role
                .parse()
                .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
            password_hash: row.try_get("password_hash")?,
            created_at: row.try_get("created_at")?,
            last_sign_in_at: row.try_get("last_sign_in_at")?,
            deactivated_at: row.try_get("deactivated_at")?,
            password_changed_at: row.try_get("password_changed_at")?,
        })
    }
}

pub async fn count<'e>(db: impl Executor<'e, Database = Any>) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(db)
        .await
}

pub async fn find_by_email<'e>(
    db: impl Executor<'e, Database = Any>,
    email: &EmailAddress,
) -> sqlx::Result<Option<User>> {
    super::select_one(db, "WHERE email = $1", &[email.as_str().into()]).await
}

pub async fn find_by_id<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
) -> sqlx::Result<Option<User>> {
    User::find(db, id).await
}

/// Every account, administrators first, then by name.
pub async fn list<'e>(db: impl Executor<'e, Database = Any>) -> sqlx::Result<Vec<User>> {
    super::select(
        db,
        "ORDER BY deactivated_at IS NOT NULL, \
         CASE role WHEN 'administrator' THEN 0 WHEN 'contributor' THEN 1 ELSE 2 END, \
         lower(name), id",
        &[],
    )
    .await
}

/// Inserts an account; a taken address comes back as a unique violation.
pub async fn insert<'e>(
    db: impl Executor<'e, Database = Any>,
    user: NewUser<'_>,
) -> sqlx::Result<i64> {
    let now = now_millis();
    sqlx::query_scalar(
        "INSERT INTO users (email, name, role, password_hash, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
    )
    .bind(user.email.as_str())
    .bind(user.name.as_str())
    .bind(user.role.as_str())
    .bind(user.password_hash)
    .bind(now)
    .fetch_one(db)
    .await
}

/// Records that this account created the first administrator; fails if one already did.
pub async fn claim_first_admin<'e>(
    db: impl Executor<'e, Database = Any>,
    user_id: i64,
) -> sqlx::Result<()> {
    super::execute(
        db,
        "INSERT INTO first_admin_claim (id, user_id, claimed_at) VALUES (1, $1, $2)",
        &[user_id.into(), now_millis().into()],
    )
    .await
}

pub async fn set_role<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
    role: Role,
) -> sqlx::Result<()> {
    super::execute(
        db,
        "UPDATE users SET role = $1, updated_at = $2 WHERE id = $3",
        &[role.as_str().into(), now_millis().into(), id.into()],
    )
    .await
}

/// Deactivates (with the time) or reactivates (with None) an account.
pub async fn set_deactivated<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
    deactivated_at: Option<i64>,
) -> sqlx::Result<()> {
    super::execute(
        db,
        "UPDATE users SET deactivated_at = $1, updated_at = $2 WHERE id = $3",
        &[deactivated_at.into(), now_millis().into(), id.into()],
    )
    .await
}

pub async fn record_sign_in<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
) -> sqlx::Result<()> {
    super::execute(
        db,
        "UPDATE users SET last_sign_in_at = $1 WHERE id = $2",
        &[now_millis().into(), id.into()],
    )
    .await
}

/// Active administrators other than `except`.
pub async fn count_other_active_admins<'e>(
    db: impl Executor<'e, Database = Any>,
    except: i64,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM users \
         WHERE role = 'administrator' AND deactivated_at IS NULL AND id <> $1",
    )
    .bind(except)
    .fetch_one(db)
    .await
}

/// Replaces an account's password; returns the time it changed (sessions from before end).
pub async fn set_password<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
    password_hash: &str,
) -> sqlx::Result<i64> {
    // Strictly later than any earlier change, even within one millisecond.
    let now = now_millis();
    sqlx::query_scalar(
        "UPDATE users SET password_hash = $1, \
         password_changed_at = CASE WHEN password_changed_at >= $2 THEN password_changed_at + 1 ELSE $2 END, \
         updated_at = $2 WHERE id = $3 RETURNING password_changed_at",
    )
    .bind(password_hash)
    .bind(now)
    .bind(id)
    .fetch_one(db)
    .await
}

/// A change to an account that could take one of the console's administrators away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarded {
    Role(Role),
    Deactivate,
}

/// Applies `change` to account `id` unless it would leave the console without an active
/// administrator; false when refused (or the account is gone). The check and the change
/// are one transaction holding the active administrators' rows (PostgreSQL) or the
/// database's write lock (SQLite), so two administrators demoting or deactivating each
/// other at the same moment cannot both succeed.
pub async fn change_keeping_an_administrator(
    db: &crate::db::Db,
    id: i64,
    change: Guarded,
) -> sqlx::Result<bool> {
    let mut tx = crate::db::begin_write(db.pool()).await?;
    if db.backend() == crate::db::Backend::Postgres {
        sqlx::query(
            "SELECT id FROM users \
             WHERE role = 'administrator' AND deactivated_at IS NULL FOR UPDATE",
        )
        .fetch_all(&mut *tx)
        .await?;
    }
    let Some(target) = find_by_id(&mut *tx, id).await? else {
        return Ok(false);
    };
    let takes_one_away = target.role == Role::Administrator
        && target.is_active()
        && change != Guarded::Role(Role::Administrator);
    if takes_one_away && count_other_active_admins(&mut *tx, id).await? == 0 {
        return Ok(false);
    }
    match change {
        Guarded::Role(role) => set_role(&mut *tx, id, role).await?,
        Guarded::Deactivate => set_deactivated(&mut *tx, id, Some(now_millis())).await?,
    }
    tx.commit().await?;
    Ok(true)
}
