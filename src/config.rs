//! Settings: flags and environment variables parsed once into checked values.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use url::Url;

use crate::crypto::SecretKey;
use crate::db::DatabaseUrl;
use crate::domain::{EmailAddress, NewPassword};

/// Where the console's data lives; shared by `serve` and the data commands.
#[derive(Debug, Clone, clap::Args)]
pub struct DbArgs {
    /// `sqlite:` or `postgres:` URL; by default a SQLite file in the data folder.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Folder for the default database and the generated secret key.
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
}

impl DbArgs {
    pub fn database_url(&self) -> anyhow::Result<DatabaseUrl> {
        match &self.database_url {
            Some(url) => DatabaseUrl::parse(url).context("DATABASE_URL"),
            None => Ok(DatabaseUrl::sqlite_file(
                &self.data_dir.join("export-destinations.db"),
            )),
        }
    }

    /// Connects and brings the schema up to date.
    pub async fn connect(&self) -> anyhow::Result<crate::db::Db> {
        let db = crate::db::Db::connect(&self.database_url()?).await?;
        db.migrate().await?;
        Ok(db)
    }
}

/// What `serve` accepts, each flag also readable from the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Load demo profiles and segments into an empty database at start-up.
    #[arg(long, env = "DEMO_DATA", default_value_t = true, action = clap::ArgAction::Set)]
    pub demo_data: bool,
    /// Address and port the console listens on.
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8080")]
    pub bind_addr: SocketAddr,
    /// The URL people use to reach the console (base of OAuth redirect URIs).
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,
    /// 32-byte key (64 hex digits or base64) that encrypts secrets at rest.
    #[arg(long, env = "SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Serve `GET /metrics` (Prometheus) to requests bearing this token (at least 16
    /// characters); without it the endpoint is off.
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Serve `GET /metrics` on this address of its own (for example 127.0.0.1:9464, or an
    /// internal interface) instead of the console's; there it needs no token unless
    /// METRICS_TOKEN is set too.
    #[arg(long, env = "METRICS_BIND_ADDR")]
    pub metrics_bind_addr: Option<SocketAddr>,
    /// Make sure this administrator exists at start-up (with ADMIN_PASSWORD).
    #[arg(long, env = "ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    /// Password for a newly created ADMIN_EMAIL account.
    #[arg(long, env = "ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Minutes without a request after which a session ends.
    #[arg(long, env = "SESSION_IDLE_MINUTES", default_value_t = 480)]
    pub session_idle_minutes: u32,
    /// Failed sign-ins for one account from one address before sign-in is paused.
    #[arg(long, env = "SIGN_IN_MAX_FAILURES", default_value_t = 5)]
    pub sign_in_max_failures: u32,
    /// Failed password checks for one account from all addresses together (but those it
    /// signed in from before) before its password checks pause.
    #[arg(long, env = "SIGN_IN_ACCOUNT_MAX_FAILURES", default_value_t = 20)]
    pub sign_in_account_max_failures: u32,
    /// The window failures are counted in; a pause lasts at most this long.
    #[arg(long, env = "SIGN_IN_LOCKOUT_MINUTES", default_value_t = 15)]
    pub sign_in_lockout_minutes: u32,
    /// Argon2id memory cost in KiB (OWASP's 19 MiB by default).
    #[arg(long, env = "PASSWORD_HASH_MEMORY_KIB", default_value_t = 19_456)]
    pub password_hash_memory_kib: u32,
    /// Argon2id iterations.
    #[arg(long, env = "PASSWORD_HASH_ITERATIONS", default_value_t = 2)]
    pub password_hash_iterations: u32,
    /// Seconds an export worker's claim on a run lasts without a heartbeat; after a crash
    /// another worker resumes the run once it expires.
    #[arg(long, env = "EXPORT_LEASE_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u32).range(2..))]
    pub export_lease_seconds: u32,
    /// Export runs one console executes at once. Runs on different Mailchimp accounts
    /// proceed side by side; runs on one account share its 10 connections.
    #[arg(long, env = "EXPORT_WORKERS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub export_workers: u32,
    /// Keep in sync's window, in milliseconds: a change waits half of it before its export
    /// is queued, and while changes stream in, up to three of it for a batch to fill.
    #[arg(long, env = "SYNC_WINDOW_MS", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(100..=600_000))]
    pub sync_window_ms: u32,
    /// Offer the built-in Mailchimp sandbox (mounted at /sandbox/) as a destination's
    /// Mailchimp: on or off.
    #[arg(long, env = "MAILCHIMP_SANDBOX", default_value = "on", value_parser = parse_switch, action = clap::ArgAction::Set)]
    pub mailchimp_sandbox: bool,
    /// Client ID of your Mailchimp OAuth app (for Authenticate with Mailchimp); unset:
    /// destinations on Mailchimp connect with an API key.
    #[arg(long, env = "MAILCHIMP_CLIENT_ID")]
    pub mailchimp_client_id: Option<String>,
    /// Client secret of your Mailchimp OAuth app.
    #[arg(long, env = "MAILCHIMP_CLIENT_SECRET", hide_env_values = true)]
    pub mailchimp_client_secret: Option<String>,
    /// Base URL of Mailchimp's OAuth endpoints.
    #[arg(long, env = "MAILCHIMP_OAUTH_BASE_URL")]
    pub mailchimp_oauth_base_url: Option<String>,
    /// Base URL of the Marketing API for API keys; `{dc}` becomes the key's data centre.
    #[arg(long, env = "MAILCHIMP_API_BASE_URL")]
    pub mailchimp_api_base_url: Option<String>,
    /// Register a webhook on each destination's audience so that unsubscribes, bounces and
    /// address changes reach the console as they happen: on, off, or auto (on when
    /// PUBLIC_URL is set to an address other than loopback).
    #[arg(long, env = "MAILCHIMP_WEBHOOKS", default_value = "auto", value_parser = parse_webhooks)]
    pub mailchimp_webhooks: WebhookSetting,
    /// Seconds to wait before each new try of a failure alert that was not delivered
    /// (comma-separated; one more try than delays). Empty: one try only.
    #[arg(long, env = "ALERT_RETRY_DELAYS", default_value = "1,5,30", value_parser = parse_delays)]
    pub alert_retry_delays: RetryDelays,
    /// Seconds a source's query may run before the database stops it (a pull then fails
    /// and changes nothing).
    #[arg(long, env = "SOURCE_STATEMENT_TIMEOUT", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub source_statement_timeout: u64,
}

/// Whether destinations register a webhook on their audience (MAILCHIMP_WEBHOOKS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WebhookSetting {
    /// On when PUBLIC_URL is set and is not a loopback address: Mailchimp must reach it.
    #[default]
    Auto,
    On,
    Off,
}

impl WebhookSetting {
    /// Whether webhooks are on for a console reached at `public_url` (None: PUBLIC_URL
    /// unset).
    pub fn is_on(self, public_url: Option<&Url>) -> bool {
        match self {
            WebhookSetting::On => true,
            WebhookSetting::Off => false,
            WebhookSetting::Auto => public_url.is_some_and(|url| !is_loopback(url)),
        }
    }
}

/// A URL only this machine reaches: `localhost` or a loopback or unspecified address.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip.is_unspecified(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback() || ip.is_unspecified(),
        None => true,
    }
}

fn parse_webhooks(raw: &str) -> Result<WebhookSetting, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(WebhookSetting::Auto),
        other => parse_switch(other)
            .map(|on| {
                if on {
                    WebhookSetting::On
                } else {
                    WebhookSetting::Off
                }
            })
            .map_err(|_| format!("“{raw}” is not on, off or auto")),
    }
}

/// The waits between tries of a failure alert, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryDelays(pub Vec<Duration>);

/// `1,5,30`: seconds, decimals allowed (`0.5`), at most 10 delays of at most an hour.
fn parse_delays(raw: &str) -> Result<RetryDelays, String> {
    let mut delays = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let seconds: f64 = part
            .parse()
            .map_err(|_| format!("“{part}” is not a number of seconds"))?;
        if !(0.0..=3600.0).contains(&seconds) {
            return Err(format!("“{part}”: a delay is 0 to 3600 seconds"));
        }
        delays.push(Duration::from_secs_f64(seconds));
    }
    if delays.len() > 10 {
        return Err("at most 10 delays (11 tries)".into());
    }
    Ok(RetryDelays(delays))
}

/// Largest request body the console reads (pages and the API alike), but for file uploads
/// (which set their own).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How the console reaches Mailchimp, as configured. With no OAuth app, the console
/// mounts its built-in sandbox and uses that.
#[derive(Debug, Clone)]
pub struct MailchimpSettings {
    /// The built-in sandbox is offered beside Mailchimp.
    pub sandbox: bool,
    pub app: Option<crate::mailchimp::OAuthApp>,
    pub oauth_base_url: Option<Url>,
    pub api_base_template: Option<String>,
}

/// The zero-configuration start: the sandbox on, no OAuth app, Mailchimp's own addresses.
impl Default for MailchimpSettings {
    fn default() -> Self {
        Self {
            sandbox: true,
            app: None,
            oauth_base_url: None,
            api_base_template: None,
        }
    }
}

/// The administrator named by ADMIN_EMAIL and ADMIN_PASSWORD.
#[derive(Debug, Clone)]
pub struct BootstrapAdmin {
    pub email: EmailAddress,
    pub password: NewPassword,
}

/// Password hashing cost; tests use cheap values, production the defaults.
#[derive(Debug, Clone, Copy)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct SignInThrottle {
    /// Password checks for one account from one client address, per window.
    pub max_failures: u32,
    /// Password checks for one account from addresses it never signed in from, per window.
    pub account_max_failures: u32,
    /// The window; a pause ends when the window that filled up ends.
    pub lockout: Duration,
}

/// Checked settings for one console process.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: DatabaseUrl,
    pub data_dir: PathBuf,
    /// Load demo profiles and segments when the database has none.
    pub demo_data: bool,
    /// Run the scheduled refresh in this process (tests drive it themselves).
    pub scheduler: bool,
    /// How long an export worker's claim lasts without a heartbeat.
    pub export_lease: Duration,
    /// Export runs executed at once.
    pub export_workers: usize,
    /// How long a change waits before destinations kept in sync export it.
    pub sync_window: Duration,
    pub bind_addr: SocketAddr,
    /// None: derived from the address actually bound.
    pub public_url: Option<Url>,
    /// None: read from, or generated into, `data_dir/secret.key`.
    pub secret_key: Option<SecretKey>,
    pub admin: Option<BootstrapAdmin>,
    pub session_idle: Duration,
    pub sign_in_throttle: SignInThrottle,
    pub hash_cost: HashCost,
    pub mailchimp: MailchimpSettings,
    /// The bearer token `GET /metrics` asks for; None: the endpoint is off (unless it has
    /// an address of its own).
    pub metrics_token: Option<String>,
    /// Where `GET /metrics` is served instead of the console's address, if anywhere.
    pub metrics_bind_addr: Option<SocketAddr>,
    /// The waits before each new try of an undelivered failure alert.
    pub alert_retry_delays: Vec<Duration>,
    /// Whether destinations register a webhook on their audience.
    pub mailchimp_webhooks: WebhookSetting,
    /// How long a source's query may run.
    pub source_statement_timeout: Duration,
}

impl Settings {
    pub fn from_args(args: ServeArgs) -> anyhow::Result<Self> {
        let database_url = args.db.database_url()?;
        let public_url = args
            .public_url
            .as_deref()
            .map(parse_public_url)
            .transpose()?;
        let secret_key = args
            .secret_key
            .as_deref()
            .map(SecretKey::parse)
            .transpose()
            .context("SECRET_KEY")?;
        let admin = match (args.admin_email, args.admin_password) {
            (None, None) => None,
            (Some(email), Some(password)) => Some(BootstrapAdmin {
                email: EmailAddress::parse(&email).context("ADMIN_EMAIL")?,
                password: NewPassword::parse(password).context("ADMIN_PASSWORD")?,
            }),
            _ => bail!("ADMIN_EMAIL and ADMIN_PASSWORD must be given together"),
        };
        if args.session_idle_minutes == 0 {
            bail!("SESSION_IDLE_MINUTES must be at least 1");
        }
        if args.sign_in_max_failures == 0 {
            bail!("SIGN_IN_MAX_FAILURES must be at least 1");
        }
        if args.sign_in_account_max_failures < args.sign_in_max_failures {
            bail!("SIGN_IN_ACCOUNT_MAX_FAILURES must be at least SIGN_IN_MAX_FAILURES");
        }
        if args.sign_in_lockout_minutes == 0 {
            bail!("SIGN_IN_LOCKOUT_MINUTES must be at least 1");
        }
        let app = match (args.mailchimp_client_id, args.mailchimp_client_secret) {
            (None, None) => None,
            (Some(client_id), Some(client_secret))
                if !client_id.trim().is_empty() && !client_secret.trim().is_empty() =>
            {
                Some(crate::mailchimp::OAuthApp {
                    client_id: client_id.trim().to_owned(),
                    client_secret: client_secret.trim().to_owned(),
                })
            }
            _ => bail!("MAILCHIMP_CLIENT_ID and MAILCHIMP_CLIENT_SECRET must be given together"),
        };
        let oauth_base_url = args
            .mailchimp_oauth_base_url
            .as_deref()
            .map(|raw| parse_http_url(raw, "MAILCHIMP_OAUTH_BASE_URL"))
            .transpose()?;
        if oauth_base_url.is_some() && app.is_none() {
            bail!(
                "MAILCHIMP_OAUTH_BASE_URL is set but no OAuth app is: set MAILCHIMP_CLIENT_ID and \
                 MAILCHIMP_CLIENT_SECRET too, or unset MAILCHIMP_OAUTH_BASE_URL (API keys need only \
                 MAILCHIMP_API_BASE_URL)"
            );
        }
        let api_base_template = args
            .mailchimp_api_base_url
            .map(|raw| {
                parse_http_url(&raw.replace("{dc}", "dc"), "MAILCHIMP_API_BASE_URL")?;
                Ok::<_, anyhow::Error>(raw.trim_end_matches('/').to_owned())
            })
            .transpose()?;
        Ok(Self {
            database_url,
            data_dir: args.db.data_dir,
            demo_data: args.demo_data,
            scheduler: true,
            export_lease: Duration::from_secs(u64::from(args.export_lease_seconds)),
            export_workers: args.export_workers as usize,
            sync_window: Duration::from_millis(u64::from(args.sync_window_ms)),
            bind_addr: args.bind_addr,
            public_url,
            secret_key,
            admin,
            session_idle: Duration::from_secs(u64::from(args.session_idle_minutes) * 60),
            sign_in_throttle: SignInThrottle {
                max_failures: args.sign_in_max_failures,
                account_max_failures: args.sign_in_account_max_failures,
                lockout: Duration::from_secs(u64::from(args.sign_in_lockout_minutes) * 60),
            },
            hash_cost: HashCost {
                memory_kib: args.password_hash_memory_kib,
                iterations: args.password_hash_iterations,
            },
            mailchimp: MailchimpSettings {
                sandbox: args.mailchimp_sandbox,
                app,
                oauth_base_url,
                api_base_template,
            },
            metrics_token: match args.metrics_token.map(|t| t.trim().to_owned()) {
                Some(token) if token.chars().count() < 16 => {
                    bail!("METRICS_TOKEN must have at least 16 characters")
                }
                token => token.filter(|t| !t.is_empty()),
            },
            metrics_bind_addr: args.metrics_bind_addr,
            alert_retry_delays: args.alert_retry_delays.0,
            source_statement_timeout: Duration::from_secs(args.source_statement_timeout),
            mailchimp_webhooks: args.mailchimp_webhooks,
        })
    }
}

fn parse_public_url(raw: &str) -> anyhow::Result<Url> {
    parse_http_url(raw, "PUBLIC_URL")
}

/// `on`/`off` (also true/false, yes/no, 1/0) for a switch setting.
fn parse_switch(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(format!("“{raw}” is not on or off")),
    }
}

fn parse_http_url(raw: &str, name: &str) -> anyhow::Result<Url> {
    let url = Url::parse(raw).with_context(|| format!("{name} {raw:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        bail!("{name} must be an http:// or https:// URL with a host, got {raw:?}");
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> ServeArgs {
        let mut argv = vec!["export-destinations"];
        argv.extend_from_slice(extra);
        crate::cli::Cli::try_parse_from(argv).unwrap().serve
    }

    #[test]
    fn no_configuration_means_a_sqlite_file_under_data() {
        let settings = Settings::from_args(args(&[])).unwrap();
        assert!(settings.database_url.is_sqlite());
        assert!(
            settings
                .database_url
                .as_str()
                .contains("data/export-destinations.db")
        );
        assert_eq!(settings.bind_addr.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn the_password_check_limits_have_defaults_and_are_checked() {
        let settings = Settings::from_args(args(&[])).unwrap();
        let throttle = settings.sign_in_throttle;
        assert_eq!(
            (throttle.max_failures, throttle.account_max_failures),
            (5, 20)
        );
        assert_eq!(throttle.lockout, Duration::from_secs(15 * 60));
        let settings = Settings::from_args(args(&[
            "--sign-in-account-max-failures",
            "50",
            "--sign-in-lockout-minutes",
            "5",
        ]))
        .unwrap();
        assert_eq!(settings.sign_in_throttle.account_max_failures, 50);
        assert_eq!(settings.sign_in_throttle.lockout, Duration::from_secs(300));
        let err = Settings::from_args(args(&["--sign-in-account-max-failures", "3"])).unwrap_err();
        assert!(err.to_string().contains("at least SIGN_IN_MAX_FAILURES"));
        let err = Settings::from_args(args(&["--sign-in-lockout-minutes", "0"])).unwrap_err();
        assert!(err.to_string().contains("SIGN_IN_LOCKOUT_MINUTES"));
    }

    #[test]
    fn alert_retry_delays_default_to_one_five_and_thirty_seconds() {
        let settings = Settings::from_args(args(&[])).unwrap();
        assert_eq!(
            settings.alert_retry_delays,
            [1, 5, 30].map(Duration::from_secs)
        );
        let settings = Settings::from_args(args(&["--alert-retry-delays", "0.5, 2"])).unwrap();
        assert_eq!(
            settings.alert_retry_delays,
            [Duration::from_millis(500), Duration::from_secs(2)]
        );
        let refused =
            crate::cli::Cli::try_parse_from(["export-destinations", "--alert-retry-delays", "1,x"]);
        let message = refused.expect_err("refused").to_string();
        assert!(
            message.contains("“x” is not a number of seconds"),
            "{message}"
        );
    }

    #[test]
    fn admin_email_without_password_is_refused() {
        let err = Settings::from_args(args(&["--admin-email", "a@example.com"])).unwrap_err();
        assert!(err.to_string().contains("together"));
    }

    #[test]
    fn a_public_url_must_be_http() {
        let err = Settings::from_args(args(&["--public-url", "ftp://x"])).unwrap_err();
        assert!(err.to_string().contains("http"));
    }

    #[test]
    fn a_mailchimp_client_id_needs_its_secret() {
        let err = Settings::from_args(args(&["--mailchimp-client-id", "123"])).unwrap_err();
        assert!(err.to_string().contains("together"));
        let ok = Settings::from_args(args(&[
            "--mailchimp-client-id",
            "123",
            "--mailchimp-client-secret",
            "s",
            "--mailchimp-api-base-url",
            "http://127.0.0.1:9090/",
        ]))
        .unwrap();
        assert_eq!(
            ok.mailchimp.api_base_template.as_deref(),
            Some("http://127.0.0.1:9090")
        );
    }

    #[test]
    fn with_no_configuration_the_sandbox_is_on_and_no_oauth_app_is_set() {
        let settings = Settings::from_args(args(&[])).unwrap();
        assert!(settings.mailchimp.app.is_none());
        assert!(settings.mailchimp.sandbox);
    }

    #[test]
    fn the_sandbox_setting_takes_on_or_off_and_refuses_anything_else() {
        for (raw, on) in [
            ("off", false),
            ("OFF", false),
            ("false", false),
            ("on", true),
        ] {
            let settings = Settings::from_args(args(&["--mailchimp-sandbox", raw])).unwrap();
            assert_eq!(settings.mailchimp.sandbox, on, "{raw}");
        }
        let refused = crate::cli::Cli::try_parse_from([
            "export-destinations",
            "--mailchimp-sandbox",
            "maybe",
        ]);
        let message = refused.expect_err("refused").to_string();
        assert!(message.contains("mailchimp-sandbox"), "{message}");
        assert!(message.contains("not on or off"), "{message}");
    }

    #[test]
    fn an_api_base_url_alone_is_used_for_api_keys_with_no_oauth_app() {
        let settings = Settings::from_args(args(&[
            "--mailchimp-sandbox",
            "off",
            "--mailchimp-api-base-url",
            "https://{dc}.api.example.com/",
        ]))
        .unwrap();
        assert!(settings.mailchimp.app.is_none());
        assert_eq!(
            settings.mailchimp.api_base_template.as_deref(),
            Some("https://{dc}.api.example.com")
        );
    }

    #[test]
    fn an_oauth_base_url_without_an_app_stops_start_up_naming_the_variables() {
        let err = Settings::from_args(args(&[
            "--mailchimp-oauth-base-url",
            "http://127.0.0.1:9090/",
        ]))
        .unwrap_err()
        .to_string();
        for name in [
            "MAILCHIMP_OAUTH_BASE_URL",
            "MAILCHIMP_CLIENT_ID",
            "MAILCHIMP_CLIENT_SECRET",
        ] {
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn webhooks_are_on_by_default_only_for_a_public_url_mailchimp_can_reach() {
        let on = |extra: &[&str]| {
            let settings = Settings::from_args(args(extra)).unwrap();
            settings
                .mailchimp_webhooks
                .is_on(settings.public_url.as_ref())
        };
        assert!(!on(&[]), "no PUBLIC_URL");
        for local in [
            "http://127.0.0.1:8080/",
            "http://localhost:8080",
            "http://[::1]:8080/",
            "http://0.0.0.0:8080/",
        ] {
            assert!(!on(&["--public-url", local]), "{local}");
        }
        assert!(on(&["--public-url", "https://console.example.com/"]));
        assert!(on(&["--public-url", "http://10.0.0.5:8080/"]));
        assert!(on(&["--mailchimp-webhooks", "on"]));
        assert!(!on(&[
            "--public-url",
            "https://console.example.com/",
            "--mailchimp-webhooks",
            "OFF"
        ]));
        let refused = crate::cli::Cli::try_parse_from([
            "export-destinations",
            "--mailchimp-webhooks",
            "sometimes",
        ]);
        let message = refused.expect_err("refused").to_string();
        assert!(message.contains("not on, off or auto"), "{message}");
    }

    #[test]
    fn an_unknown_database_scheme_is_refused() {
        let err = Settings::from_args(args(&["--database-url", "mysql://x"])).unwrap_err();
        assert!(format!("{err:#}").contains("sqlite: or postgres:"));
    }
}
