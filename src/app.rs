//! Application assembly: start-up (database, key, first administrator, the state), the
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
use crate::mailchimp::{self, Endpoints, OAuthApp, Reach};
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::state::AppState;
use crate::store::users;

/// A console ready to serve: bound, migrated, with its state.
pub struct App {
    listener: TcpListener,
    /// `GET /metrics` on an address of its own (METRICS_BIND_ADDR).
    metrics_listener: Option<TcpListener>,
    router: Router,
    state: AppState,
    sessions: DbSessionStore,
}

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        create_private_dir(&settings.data_dir)?;
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
        if settings.demo_data {
            load_demo_data(&db).await?;
        }
        let sessions = DbSessionStore::connect(&settings.database_url).await?;
        let (listener, metrics_listener) = bind(&settings).await?;
        let local = listener.local_addr()?;
        let metrics_addr = match &metrics_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let public_url = match &settings.public_url {
            Some(url) => url.clone(),
            None => default_public_url(local)?,
        };
        let session_layer = session_layer(&sessions, &public_url, settings.session_idle);
        let (mailchimp, sandbox) = mailchimp_endpoints(&settings, &public_url)?;
        let limiters =
            crate::export::Limiters::for_database(&db, settings.export_lease.as_millis() as i64);
        let alerts = crate::alerts::Sender::new(
            db.clone(),
            secret_key.clone(),
            public_url.clone(),
            settings.alert_retry_delays.clone(),
        );
        // Destinations keep a webhook on their audience when Mailchimp can reach the console.
        let webhooks = settings
            .mailchimp_webhooks
            .is_on(settings.public_url.as_ref())
            .then(|| crate::export::webhooks::Hooks::new(public_url.clone()));
        let sources = crate::sources::Sources {
            db: db.clone(),
            key: secret_key.clone(),
            reach: crate::sources::reach::Reach::new(local, &public_url),
            statement_timeout: settings.source_statement_timeout,
            live: Default::default(),
        };
        let state = AppState {
            sources,
            alerts,
            metrics_addr,
            db: db.clone(),
            hasher,
            secret_key: secret_key.clone(),
            settings: Arc::new(settings),
            public_url,
            engine: crate::export::Engine {
                db: db.clone(),
                key: secret_key.clone(),
                client: mailchimp::client::Client::new(),
                limiters,
                sandbox: mailchimp
                    .sandbox
                    .as_ref()
                    .map_or(crate::export::SandboxApi::Off, |s| {
                        crate::export::SandboxApi::At(s.api_base_template.clone())
                    }),
                fresh: Default::default(),
                webhooks,
            },
            mailchimp,
            mailchimp_client: mailchimp::client::Client::new(),
            sandbox,
        };
        interrupt_stale_imports(&state.db).await?;
        let router = crate::web::router(state.clone(), session_layer);
        Ok(Self {
            listener,
            metrics_listener,
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

    /// Serves until Ctrl-C or SIGTERM, then stops gracefully.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `shutdown` completes, then stops gracefully: requests in flight end,
    /// the sandbox's state is saved, export leases are released.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let cleanup = tokio::spawn(
            self.sessions
                .clone()
                .continuously_delete_expired(tokio::time::Duration::from_secs(3600)),
        );
        let worker = crate::export::worker::Worker::with_lease(
            self.state.engine.clone(),
            self.state.settings.export_lease.as_millis() as i64,
        );
        let owner = worker.owner().to_owned();
        let worker = tokio::spawn(worker.run(self.state.settings.export_workers));
        // Failure alerts, those the last stop left among them.
        let alerts = tokio::spawn(self.state.alerts.clone().run());
        let scheduler = self
            .state
            .settings
            .scheduler
            .then(|| tokio::spawn(crate::schedule::run(self.state.sources.clone())));
        let live = tokio::spawn(crate::live::run(
            self.state.db.clone(),
            self.state.settings.sync_window,
        ));
        // The built-in sandbox keeps its state in data/sandbox.json as it changes.
        let sandbox = self.state.sandbox.clone();
        let autosave = sandbox.clone().map(|s| tokio::spawn(s.autosave()));
        let metrics = self.metrics_listener.map(|listener| {
            let router = crate::web::metrics_router(self.state.clone());
            tokio::spawn(async move {
                if let Err(err) = axum::serve(listener, router).await {
                    tracing::error!(error = %err, "serving the metrics stopped");
                }
            })
        });
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(self.listener, service)
            .with_graceful_shutdown(shutdown)
            .await;
        cleanup.abort();
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        if let Some(autosave) = autosave {
            autosave.abort();
        }
        if let Some(sandbox) = sandbox {
            if let Err(err) = sandbox.save() {
                tracing::warn!(error = %err, "saving the sandbox state");
            }
        }
        // A run cut short here is resumed by the next worker, at once; an alert being sent,
        // by the next sender.
        worker.abort();
        live.abort();
        alerts.abort();
        self.state.alerts.release().await;
        if let Some(scheduler) = scheduler {
            scheduler.abort();
        }
        if let Err(err) = crate::store::runs::release(self.state.db.pool(), &owner).await {
            tracing::warn!(error = %err, "releasing the export worker's leases");
        }
        self.state.engine.limiters.release().await;
        tracing::info!("console stopped");
        served.context("serving HTTP")
    }
}

/// The console's listener, and the metrics' own when they have an address.
async fn bind(settings: &Settings) -> anyhow::Result<(TcpListener, Option<TcpListener>)> {
    let listener = TcpListener::bind(settings.bind_addr)
        .await
        .with_context(|| format!("listening on {}", settings.bind_addr))?;
    let metrics_listener = match settings.metrics_bind_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for metrics on {addr}"))?,
        ),
        None => None,
    };
    Ok((listener, metrics_listener))
}

/// Sessions in a cookie only the console reads (HTTP-only, same-site, secure behind
/// HTTPS), ended after `idle` without a request.
fn session_layer(
    sessions: &DbSessionStore,
    public_url: &url::Url,
    idle: std::time::Duration,
) -> SessionManagerLayer<DbSessionStore> {
    SessionManagerLayer::new(sessions.clone())
        .with_name("export_destinations_session")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(public_url.scheme() == "https")
        .with_expiry(Expiry::OnInactivity(time::Duration::seconds(
            idle.as_secs() as i64,
        )))
}

/// Imports whose console stopped mid-way say so instead of running forever.
async fn interrupt_stale_imports(db: &Db) -> anyhow::Result<()> {
    let interrupted =
        crate::store::import_jobs::interrupt_stale(db.pool(), crate::profiles::jobs::STALE_MS)
            .await?;
    if interrupted > 0 {
        tracing::warn!(
            interrupted,
            "imports cut short by a stop were marked as interrupted"
        );
    }
    Ok(())
}

/// Demo profiles: enough for the demo to have something to export.
pub const DEMO_PROFILES: u64 = 20_000;

/// A console with no profiles and no import yet gets the demo profiles and segments.
async fn load_demo_data(db: &Db) -> anyhow::Result<()> {
    let empty = crate::store::profiles::count(db.pool()).await? == 0
        && crate::store::imports::recent(db.pool(), 1)
            .await?
            .is_empty();
    if !empty {
        return Ok(());
    }
    tracing::info!(
        "loading {DEMO_PROFILES} demo profiles and six segments (DEMO_DATA=false turns this off)"
    );
    crate::profiles::demo::load(db, DEMO_PROFILES, 1, 6, &|_, _| {}).await?;
    crate::segments::refresh(db, None).await?;
    Ok(())
}

/// The data folder holds the database and the key: readable by the owner only when the
/// console creates it.
fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Mailchimp (its own addresses, or those the settings name), reached with the configured
/// OAuth app if any and with API keys always; and, when on, the built-in sandbox mounted
/// under `/sandbox/`, reached through the same URLs a real Mailchimp would have.
fn mailchimp_endpoints(
    settings: &Settings,
    public_url: &Url,
) -> anyhow::Result<(Reach, Option<Sandbox>)> {
    let redirect_uri = mailchimp::join(public_url, mailchimp::CALLBACK_PATH);
    let configured = &settings.mailchimp;
    let real = Endpoints {
        app: configured.app.clone(),
        oauth_base: match &configured.oauth_base_url {
            Some(url) => url.clone(),
            None => Url::parse(mailchimp::DEFAULT_OAUTH_BASE)?,
        },
        api_base_template: configured
            .api_base_template
            .clone()
            .unwrap_or_else(|| mailchimp::DEFAULT_API_BASE.to_owned()),
        redirect_uri: redirect_uri.clone(),
        is_sandbox: false,
    };
    if !configured.sandbox {
        let reach = Reach {
            mailchimp: real,
            sandbox: None,
        };
        return Ok((reach, None));
    }
    let sandbox_base = mailchimp::join(public_url, "sandbox/");
    // The sandbox's own OAuth app: its secret is kept with the sandbox's state, so tokens
    // and the registration survive a restart.
    let state_file = settings.data_dir.join("sandbox.json");
    let config = SandboxConfig {
        state_file: Some(state_file),
        back_link: Some(
            mailchimp::join(public_url, "admin/export-destinations")
                .path()
                .to_owned(),
        ),
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::new(config, sandbox_base.clone())?;
    let app = {
        let mut store = sandbox.store();
        if !store
            .api_keys
            .values()
            .any(|owner| owner == crate::sandbox::store::DEFAULT_ACCOUNT)
        {
            store.issue_api_key(crate::sandbox::store::DEFAULT_ACCOUNT);
        }
        let client_secret = store
            .client(SANDBOX_CLIENT_ID)
            .map(|c| c.client_secret.clone())
            .unwrap_or_else(crate::crypto::random_token);
        store.register_client(crate::sandbox::store::OAuthClient {
            client_id: SANDBOX_CLIENT_ID.into(),
            client_secret: client_secret.clone(),
            name: "export-destinations".into(),
            redirect_uri: Some(redirect_uri.to_string()),
        });
        OAuthApp {
            client_id: SANDBOX_CLIENT_ID.into(),
            client_secret,
        }
    };
    let endpoints = Endpoints {
        app: Some(app),
        oauth_base: sandbox_base.clone(),
        api_base_template: sandbox_base.as_str().trim_end_matches('/').to_owned(),
        redirect_uri,
        is_sandbox: true,
    };
    let reach = Reach {
        mailchimp: real,
        sandbox: Some(endpoints),
    };
    Ok((reach, Some(sandbox)))
}

/// The console's app registration in its built-in sandbox.
const SANDBOX_CLIENT_ID: &str = "export-destinations-console";

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

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
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
