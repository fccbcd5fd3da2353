//! Application assembly: state, start-up (database, key, first administrator), the
//! listener, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tower_sessions::cookie::SameSite;
use tower_sessions::{ExpiredDeletion, Expiry, SessionManagerLayer};
use url::Url;

use crate::auth::PasswordHasher;
use crate::auth::session_store::DbSessionStore;
use crate::config::{BootstrapAdmin, Settings};
use crate::crypto::SecretKey;
use crate::db::Db;
use crate::domain::{PersonName, Role};
use crate::store::users;

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub hasher: PasswordHasher,
    pub secret_key: SecretKey,
    pub settings: Arc<Settings>,
    pub public_url: Url,
}

/// A console ready to serve: bound, migrated, with its state.
pub struct App {
    listener: TcpListener,
    router: Router,
    state: AppState,
    sessions: DbSessionStore,
}

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating {}", settings.data_dir.display()))?;
        let db = Db::connect(&settings.database_url).await?;
        db.migrate().await?;
        let secret_key = match &settings.secret_key {
            Some(key) => key.clone(),
            None => SecretKey::load_or_generate(&settings.data_dir.join("secret.key"))?,
        };
        let hasher = PasswordHasher::new(settings.hash_cost)?;
        if let Some(admin) = &settings.admin {
            ensure_admin(&db, &hasher, admin).await?;
        }
        let sessions = DbSessionStore::connect(&settings.database_url).await?;
        let listener = TcpListener::bind(settings.bind_addr)
            .await
            .with_context(|| format!("listening on {}", settings.bind_addr))?;
        let local = listener.local_addr()?;
        let public_url = match &settings.public_url {
            Some(url) => url.clone(),
            None => default_public_url(local)?,
        };
        let session_layer = SessionManagerLayer::new(sessions.clone())
            .with_name("export_destinations_session")
            .with_http_only(true)
            .with_same_site(SameSite::Lax)
            .with_secure(public_url.scheme() == "https")
            .with_expiry(Expiry::OnInactivity(time::Duration::seconds(
                settings.session_idle.as_secs() as i64,
            )));
        let state = AppState {
            db,
            hasher,
            secret_key,
            settings: Arc::new(settings),
            public_url,
        };
        let router = crate::web::router(state.clone(), session_layer);
        Ok(Self {
            listener,
            router,
            state,
            sessions,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn public_url(&self) -> &Url {
        &self.state.public_url
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGINT or SIGTERM, then lets requests in flight finish.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let cleanup = tokio::spawn(
            self.sessions
                .clone()
                .continuously_delete_expired(tokio::time::Duration::from_secs(3600)),
        );
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(self.listener, service)
            .with_graceful_shutdown(shutdown_signal())
            .await;
        cleanup.abort();
        tracing::info!("console stopped");
        served.context("serving HTTP")
    }
}

fn default_public_url(local: SocketAddr) -> anyhow::Result<Url> {
    let host = if local.ip().is_unspecified() {
        "localhost".to_owned()
    } else {
        local.ip().to_string()
    };
    let host = if local.is_ipv6() && host != "localhost" {
        format!("[{host}]")
    } else {
        host
    };
    Ok(Url::parse(&format!("http://{host}:{}/", local.port()))?)
}

/// Creates ADMIN_EMAIL when missing; an existing account is kept an active administrator
/// and its password is left as its owner set it.
async fn ensure_admin(
    db: &Db,
    hasher: &PasswordHasher,
    admin: &BootstrapAdmin,
) -> anyhow::Result<()> {
    if let Some(user) = users::find_by_email(db.pool(), &admin.email).await? {
        if user.role != Role::Administrator {
            users::set_role(db.pool(), user.id, Role::Administrator).await?;
        }
        if !user.is_active() {
            users::set_deactivated(db.pool(), user.id, None).await?;
        }
        return Ok(());
    }
    let hash = hasher.hash(&admin.password).await?;
    let name = PersonName::parse("Administrator").map_err(anyhow::Error::msg)?;
    users::insert(
        db.pool(),
        users::NewUser {
            email: &admin.email,
            name: &name,
            role: Role::Administrator,
            password_hash: &hash,
        },
    )
    .await
    .context("creating the ADMIN_EMAIL administrator")?;
    tracing::info!(email = %admin.email, "administrator created from ADMIN_EMAIL");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
