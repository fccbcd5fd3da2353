//! Spawns the real console on port 0 with a fresh database per test (a SQLite file, or a
//! new PostgreSQL database when TEST_DATABASE_URL is set) and talks to it over HTTP.

use std::sync::Arc;
use std::time::Duration;

use export_destinations::config::{HashCost, SignInThrottle};
use export_destinations::crypto::SecretKey;
use export_destinations::db::DatabaseUrl;
use export_destinations::domain::{EmailAddress, NewPassword, PersonName, Role};
use export_destinations::store::users;
use export_destinations::{App, Settings, state::AppState};
use reqwest::cookie::{CookieStore, Jar};
use reqwest::redirect::Policy;
use sqlx::Connection;

pub const PASSWORD: &str = "correct horse battery";
pub const MAX_FAILURES: u32 = 3;
pub const ACCOUNT_MAX_FAILURES: u32 = 7;

pub struct TestApp {
    pub base: String,
    pub state: AppState,
    pub client: reqwest::Client,
    pub jar: Arc<Jar>,
    _dir: Arc<tempfile::TempDir>,
}

/// A client that keeps cookies and follows no redirects, as a careful browser test would.
pub fn new_client() -> (reqwest::Client, Arc<Jar>) {
    let jar = Arc::new(Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    (client, jar)
}

pub async fn fresh_database_url(dir: &std::path::Path) -> DatabaseUrl {
    let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
        return DatabaseUrl::sqlite_file(&dir.join("test.db"));
    };
    let name = format!(
        "t_{}",
        export_destinations::crypto::random_token()[..16].to_lowercase()
    )
    .replace('-', "_");
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .expect("TEST_DATABASE_URL reachable");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let mut url = url::Url::parse(&base).unwrap();
    url.set_path(&name);
    DatabaseUrl::parse(url.as_str()).unwrap()
}

pub fn test_settings(dir: &std::path::Path, database_url: DatabaseUrl) -> Settings {
    Settings {
        database_url,
        data_dir: dir.to_path_buf(),
        demo_data: false,
        scheduler: false,
        export_lease: Duration::from_secs(60),
        export_workers: 4,
        // Destinations kept in sync export a change quickly, so that their tests take little time.
        sync_window: Duration::from_millis(200),
        bind_addr: "127.0.0.1:0".parse().unwrap(),
        public_url: None,
        secret_key: Some(SecretKey::generate()),
        admin: None,
        session_idle: Duration::from_secs(3600),
        sign_in_throttle: SignInThrottle {
            max_failures: MAX_FAILURES,
            account_max_failures: ACCOUNT_MAX_FAILURES,
            lockout: Duration::from_secs(15 * 60),
        },
        hash_cost: HashCost {
            memory_kib: 64,
            iterations: 1,
        },
        mailchimp: Default::default(),
        metrics_token: None,
        metrics_bind_addr: None,
        // Alerts are tried again quickly, so that tests of retries take little time.
        alert_retry_delays: vec![Duration::from_millis(100); 3],
        source_statement_timeout: Duration::from_secs(300),
        mailchimp_webhooks: Default::default(),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        export_destinations::telemetry::init();
    }
    let dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(dir.path()).await;
    let mut settings = test_settings(dir.path(), database_url);
    configure(&mut settings);
    let app = App::build(settings).await.expect("the console starts");
    let base = format!("http://{}", app.local_addr());
    let state = app.state().clone();
    tokio::spawn(app.run_until_stopped());
    let (client, jar) = new_client();
    TestApp {
        base,
        state,
        client,
        jar,
        _dir: Arc::new(dir),
    }
}

/// A console started on `dir` with `settings`, to be stopped (gracefully, as by SIGTERM)
/// with the returned sender; the handle ends when it has stopped.
pub async fn spawn_stoppable(
    dir: Arc<tempfile::TempDir>,
    settings: Settings,
) -> (
    TestApp,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let app = App::build(settings).await.expect("the console starts");
    let base = format!("http://{}", app.local_addr());
    let state = app.state().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let (client, jar) = new_client();
    let app = TestApp {
        base,
        state,
        client,
        jar,
        _dir: dir,
    };
    (app, stop, handle)
}

impl TestApp {
    /// Another browser (its own cookies) on the same console.
    pub fn another_client(&self) -> TestApp {
        let (client, jar) = new_client();
        TestApp {
            base: self.base.clone(),
            state: self.state.clone(),
            client,
            jar,
            _dir: self._dir.clone(),
        }
    }

    /// Another browser whose connections come from `ip` (a loopback address such as
    /// 127.0.0.2), as a person elsewhere on the network would be.
    pub fn client_from(&self, ip: std::net::IpAddr) -> TestApp {
        let jar = Arc::new(Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(Policy::none())
            .local_address(ip)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        TestApp {
            base: self.base.clone(),
            state: self.state.clone(),
            client,
            jar,
            _dir: self._dir.clone(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn get_html(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.text().await.unwrap()
    }

    /// Posts a form as-is (no CSRF token added).
    pub async fn post_raw(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// Posts a form with the CSRF token from the page at `from`, as the browser would.
    pub async fn post_form(
        &self,
        from: &str,
        path: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let token = csrf_token(&self.get_html(from).await);
        let mut fields = form.to_vec();
        fields.push(("csrf_token", &token));
        self.post_raw(path, &fields).await
    }

    /// The session cookie's value, if the client holds one.
    pub fn session_cookie(&self) -> Option<String> {
        let header = self.jar.cookies(&self.base.parse().unwrap())?;
        header
            .to_str()
            .unwrap()
            .split("; ")
            .find_map(|c| c.strip_prefix("export_destinations_session="))
            .map(str::to_owned)
    }

    pub async fn create_user(&self, email: &str, role: Role) -> i64 {
        let hash = self
            .state
            .hasher
            .hash(&NewPassword::parse(PASSWORD.into()).unwrap())
            .await
            .unwrap();
        let email = EmailAddress::parse(email).unwrap();
        let name = PersonName::parse(email.as_str().split('@').next().unwrap()).unwrap();
        users::insert(
            self.state.db.pool(),
            users::NewUser {
                email: &email,
                name: &name,
                role,
                password_hash: &hash,
            },
        )
        .await
        .unwrap()
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_form(
            "/sign-in",
            "/sign-in",
            &[("email", email), ("password", password), ("next", "")],
        )
        .await
    }

    /// Creates an account with `role` and signs this client in as it.
    pub async fn signed_in_as(&self, email: &str, role: Role) -> i64 {
        let id = self.create_user(email, role).await;
        let response = self.sign_in(email, PASSWORD).await;
        assert_eq!(response.status(), 303, "signing in as {email}");
        id
    }
}

/// The CSRF token in a page's first form.
pub fn csrf_token(html: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).expect("the page has a CSRF token") + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .expect("a redirect")
        .to_str()
        .unwrap()
        .to_owned()
}

impl TestApp {
    /// Uploads a CSV file through Data > Profiles, as the page's form does.
    pub async fn upload_profiles(
        &self,
        name: &str,
        content: impl Into<Vec<u8>>,
        id_column: &str,
    ) -> reqwest::Response {
        let token = csrf_token(&self.get_html("/data/profiles").await);
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(content.into()).file_name(name.to_owned()),
            )
            .text("id_column", id_column.to_owned());
        self.client
            .post(self.url(&format!("/data/profiles/import?csrf_token={token}")))
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// Uploads and follows the import to its report; returns the report's HTML.
    pub async fn import_report(&self, name: &str, content: impl Into<Vec<u8>>) -> String {
        let response = self.upload_profiles(name, content, "").await;
        self.finished_import(response).await
    }

    /// Follows an upload's answer (the import running in the background) until the import
    /// is done, and returns its report's HTML.
    pub async fn finished_import(&self, upload: reqwest::Response) -> String {
        assert_eq!(upload.status(), 303, "{}", upload.text().await.unwrap());
        let job = location(&upload);
        assert!(job.starts_with("/data/import-jobs/"), "{job}");
        let report = wait_until("the import to end", Duration::from_secs(60), || async {
            let page = self.get(&job).await;
            (page.status() == 303).then(|| location(&page))
        })
        .await;
        self.get_html(&report).await
    }
}

/// Imports CSV text as an upload would.
pub async fn import_csv(db: &export_destinations::db::Db, csv: &str) {
    export_destinations::profiles::import::import_reader(
        db,
        std::io::Cursor::new(csv.as_bytes().to_vec()),
        "people.csv",
        Default::default(),
        None,
        &|_, _| {},
    )
    .await
    .unwrap();
}

/// A rules segment: profiles whose `field` equals `value`.
pub async fn equals_segment(
    db: &export_destinations::db::Db,
    name: &str,
    field: &str,
    value: &str,
) -> i64 {
    use export_destinations::domain::segment_rules::{Condition, Match, Operator, SegmentRules};
    use export_destinations::store::segments::{self, Definition};
    let rules = SegmentRules {
        match_: Match::All,
        conditions: vec![Condition {
            field: field.into(),
            op: Operator::Equals,
            value: value.into(),
        }],
    };
    segments::create(db.pool(), name, &Definition::Rules(rules))
        .await
        .unwrap()
}

/// Where a saved destination exports: Mailchimp's API base, the API key and the audience.
pub struct Target<'a> {
    pub api_base: &'a str,
    pub key: &'a str,
    pub audience: &'a str,
    pub audience_name: &'a str,
}

/// A saved destination reached by API key, made through the stores: the email in `Email`,
/// FNAME from `FirstName`.
pub async fn saved_destination(
    db: &export_destinations::db::Db,
    secret: &SecretKey,
    owner: i64,
    name: &str,
    target: Target<'_>,
    segment_ids: &[i64],
    status: &str,
) -> i64 {
    use export_destinations::store::destinations::{
        self, Authentication, Configuration, FieldMapping,
    };
    let pool = db.pool();
    let id = destinations::create_draft(
        pool,
        name,
        target.audience,
        export_destinations::domain::destination::Target::Mailchimp,
        owner,
        "v",
    )
    .await
    .unwrap();
    let sealed = secret.seal(target.key);
    let auth = Authentication {
        method: "api_key",
        credential_sealed: &sealed,
        api_base: target.api_base,
        account: "Sandbox",
        audience_name: target.audience_name,
        audience_members: 0,
        by: owner,
    };
    destinations::set_authentication(pool, id, &auth)
        .await
        .unwrap();
    destinations::set_export_user(pool, id, owner)
        .await
        .unwrap();
    let mappings = [FieldMapping {
        tag: "FNAME".into(),
        field: "FirstName".into(),
    }];
    let config = Configuration {
        display_name: name,
        email_field: "Email",
        field_mappings: &mappings,
        segment_ids,
        new_member_status: status,
        keep_in_sync: false,
    };
    let mut conn = pool.acquire().await.unwrap();
    destinations::save_configuration(&mut conn, id, &config)
        .await
        .unwrap();
    id
}

/// Polls `check` every 20 ms until it gives a value, and returns it; fails the test, naming
/// `what`, if `within` passes first.
pub async fn wait_until<T, F, Fut>(what: &str, within: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match poll_until(within, check).await {
        Some(value) => value,
        None => panic!("waited {within:?} for {what} in vain"),
    }
}

/// Polls `check` every 20 ms until it gives a value; None if `within` passes first (for a
/// caller that says more about what it saw when the wait fails).
pub async fn poll_until<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if started.elapsed() >= within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (up to a minute) for run `id` to end, and returns it.
pub async fn finished_run(
    db: &export_destinations::db::Db,
    id: i64,
) -> export_destinations::store::runs::Run {
    use export_destinations::store::runs;
    wait_until(
        &format!("run {id} to end"),
        Duration::from_secs(60),
        || async {
            runs::find(db.pool(), id)
                .await
                .unwrap()
                .filter(|run| run.status.is_finished())
        },
    )
    .await
}

/// Fails the test unless the console holds no destination at all (a refused request wrote
/// nothing).
pub async fn assert_no_destination(app: &TestApp) {
    let all = export_destinations::store::destinations::list(app.state.db.pool())
        .await
        .unwrap();
    assert!(all.is_empty(), "nothing was created: {all:?}");
}

/// Fails the test unless `response` has `status` and its body says `says` (what the person
/// who sent the request reads); returns the body for further checks.
pub async fn assert_refused(response: reqwest::Response, status: u16, says: &str) -> String {
    let got = response.status().as_u16();
    let body = response.text().await.unwrap();
    assert_eq!(got, status, "refused with {status}: {body}");
    assert!(body.contains(says), "the answer says {says:?}: {body}");
    body
}
