//! Failure alerts, as an administrator sees them: System > Notifications, a webhook that
//! receives signed alerts (tried again when it fails for a while), people who get mails
//! through a real SMTP server, and one alert never delivered twice.

use std::sync::Arc;
use std::time::Duration;

use export_destinations::alerts::Sender;
use export_destinations::crypto::SecretKey;
use export_destinations::domain::Role;
use export_destinations::sandbox::SandboxConfig;
use export_destinations::store::alerts as alert_store;
use export_destinations::store::runs::{self, RunStatus};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::helpers::{
    Target, TestApp, assert_refused, csrf_token, fresh_database_url, location, saved_destination,
    spawn_stoppable, test_settings, wait_until,
};
use crate::receivers::{SmtpSink, WebhookReceiver};
use crate::world::{PEOPLE, World, destination, export, import, refresh, segment, world};

const PAGE: &str = "/system/notifications";

/// A world with the demo people, a Germany segment and a destination exporting it, and an
/// administrator signed in: (world, administrator's browser, destination id).
async fn exporting_world() -> (World, TestApp, i64) {
    let w = world(SandboxConfig::default()).await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    let admin = w.app.another_client();
    admin
        .signed_in_as("admin@example.com", Role::Administrator)
        .await;
    (w, admin, id)
}

/// Saves the settings form with `fields` (everything else left empty or off).
pub(crate) async fn save(admin: &TestApp, fields: &[(&str, &str)]) -> reqwest::Response {
    admin.post_form(PAGE, PAGE, fields).await
}

/// The signing secret a page shows once.
pub(crate) fn shown_secret(html: &str) -> String {
    let start = html
        .find("id=\"new-secret\"")
        .expect("the page shows the new secret");
    let rest = &html[start..];
    let value = rest.find("value=\"").unwrap() + "value=\"".len();
    let end = rest[value..].find('"').unwrap();
    rest[value..value + end].to_owned()
}

/// Turns the webhook on at `url`; returns the secret shown once.
pub(crate) async fn webhook_on(admin: &TestApp, url: &str, extra: &[(&str, &str)]) -> String {
    let mut fields = vec![("webhook_enabled", "yes"), ("webhook_url", url)];
    fields.extend_from_slice(extra);
    let saved = save(admin, &fields).await;
    assert_eq!(saved.status(), 200, "the secret is shown in the answer");
    let html = saved.text().await.unwrap();
    assert!(html.contains("Saved the notification settings."), "{html}");
    assert!(html.contains("Copy this signing secret now: it is not shown again."));
    shown_secret(&html)
}

/// `sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`, as the README tells a
/// receiver to compute it.
pub(crate) fn expected_signature(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The audience is gone from Mailchimp: the next run of the destination fails.
fn remove_audience(w: &World) {
    w.sandbox.store().audiences.remove(&w.audience);
}

/// Mailchimp takes FNAME as a number: every member with a first name fails.
fn first_names_fail(w: &World) {
    let mut store = w.sandbox.store();
    let audience = store.audiences.get_mut(&w.audience).unwrap();
    let field = audience
        .merge_fields
        .iter_mut()
        .find(|f| f.tag == "FNAME")
        .unwrap();
    field.kind = "number".into();
}

pub(crate) async fn wait_for_requests(
    receiver: &WebhookReceiver,
    n: usize,
) -> Vec<crate::receivers::Received> {
    wait_until(
        &format!("{n} request(s) at the webhook"),
        Duration::from_secs(30),
        || async {
            let got = receiver.received();
            (got.len() >= n).then_some(got)
        },
    )
    .await
}

/// How a delivery of `run` ended: (channel, target, status, attempts).
async fn deliveries(w: &World, run: i64) -> Vec<(String, String, String, i64)> {
    alert_store::deliveries_of_run(w.app.state.db.pool(), run)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_failed_run_posts_one_alert_signed_with_the_secret_shown_once() {
    let (w, admin, id) = exporting_world().await;
    let receiver = WebhookReceiver::start(&[]).await;
    let threshold = format!("threshold_{id}");
    let secret = webhook_on(&admin, &receiver.url, &[(&threshold, "1")]).await;
    remove_audience(&w);
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Failure, "{run:?}");

    let got = wait_for_requests(&receiver, 1).await;
    let request = &got[0];
    let timestamp = request.header("x-export-destinations-timestamp");
    assert_eq!(
        request.header("x-export-destinations-signature"),
        expected_signature(&secret, &timestamp, &request.body),
        "the signature checks out with the secret shown once"
    );
    assert_eq!(request.header("x-export-destinations-event"), "run.failed");
    assert_eq!(request.header("content-type"), "application/json");
    let body = request.json();
    assert_eq!(body["event"], "run.failed");
    assert_eq!(body["test"], false);
    assert_eq!(body["destination"]["id"], id);
    assert_eq!(body["destination"]["name"], "Newsletter");
    assert_eq!(body["run"]["id"], run.id);
    assert_eq!(body["run"]["kind"], "export");
    assert_eq!(body["run"]["status"], "failure");
    assert_eq!(
        body["run"]["message"].as_str(),
        run.message.as_deref(),
        "the run's message"
    );
    for count in ["created", "updated", "unchanged", "skipped", "failed"] {
        assert!(body["run"]["counts"][count].is_i64(), "{count}: {body}");
    }
    assert!(body["run"]["ended_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        body["link"],
        format!("{}/admin/export-runs/{}", w.app.base, run.id)
    );
    // The link opens the run's page.
    let link = body["link"].as_str().unwrap();
    let path = link.strip_prefix(&w.app.base).unwrap();
    assert!(admin.get_html(path).await.contains("Failure"));

    // One alert, however long one waits.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.received().len(), 1);
    let page = admin.get_html(PAGE).await;
    assert!(
        page.contains(&format!("<a href=\"/admin/export-runs/{}\">", run.id)),
        "the delivery is listed with its run: {page}"
    );
    assert!(page.contains("Delivered"));
    assert!(!page.contains(&secret), "the secret is shown once only");
    assert!(page.contains("Signing secret:") && page.contains("set (made"));
}

#[tokio::test]
async fn a_successful_run_alerts_only_when_its_failed_members_reach_the_threshold() {
    let (w, admin, id) = exporting_world().await;
    let receiver = WebhookReceiver::start(&[]).await;
    let threshold = format!("threshold_{id}");
    let secret = webhook_on(&admin, &receiver.url, &[(&threshold, "3")]).await;
    first_names_fail(&w);

    let under = export(&w, id, false).await;
    assert_eq!(under.status, RunStatus::Successful, "{under:?}");
    assert_eq!(under.counters.failed, 2, "{under:?}");
    // Alerts are queued as the run ends: a run that calls for none has none.
    assert!(deliveries(&w, under.id).await.is_empty());

    let saved = save(
        &admin,
        &[
            ("webhook_enabled", "yes"),
            ("webhook_url", &receiver.url),
            (&threshold, "2"),
        ],
    )
    .await;
    assert_eq!(location(&saved), PAGE);
    let page = admin.get_html(PAGE).await;
    assert!(page.contains("Saved the notification settings."), "{page}");
    assert!(page.contains(&format!("name=\"{threshold}\" value=\"2\"")));

    let over = export(&w, id, false).await;
    assert_eq!(over.status, RunStatus::Successful, "{over:?}");
    assert_eq!(over.counters.failed, 2, "{over:?}");
    let got = wait_for_requests(&receiver, 1).await;
    assert_eq!(got.len(), 1, "no alert for the run under the threshold");
    let body = got[0].json();
    assert_eq!(body["event"], "run.members_failed");
    assert_eq!(body["run"]["id"], over.id);
    assert_eq!(body["run"]["status"], "successful");
    assert_eq!(body["run"]["counts"]["failed"], 2);
    assert_eq!(
        got[0].header("x-export-destinations-signature"),
        expected_signature(
            &secret,
            &got[0].header("x-export-destinations-timestamp"),
            &got[0].body
        )
    );

    // 0: no alert for failed members at all.
    save(
        &admin,
        &[
            ("webhook_enabled", "yes"),
            ("webhook_url", &receiver.url),
            (&threshold, "0"),
        ],
    )
    .await;
    let off = export(&w, id, false).await;
    assert_eq!(off.counters.failed, 2, "{off:?}");
    assert!(deliveries(&w, off.id).await.is_empty());
}

#[tokio::test]
async fn an_alert_answered_500_is_tried_again_until_it_is_delivered_and_a_400_is_not() {
    let (w, admin, id) = exporting_world().await;
    let receiver = WebhookReceiver::start(&[500, 500, 200, 400]).await;
    let threshold = format!("threshold_{id}");
    webhook_on(&admin, &receiver.url, &[(&threshold, "1")]).await;
    remove_audience(&w);

    let first = export(&w, id, false).await;
    assert_eq!(first.status, RunStatus::Failure);
    let got = wait_for_requests(&receiver, 3).await;
    let delivery = got[0].header("x-export-destinations-delivery");
    assert!(
        got.iter()
            .all(|r| r.header("x-export-destinations-delivery") == delivery),
        "every try carries the same delivery number"
    );
    assert_eq!(got[0].body, got[2].body, "every try sends the same alert");
    let settled = wait_until(
        "the delivery to settle",
        Duration::from_secs(10),
        || async {
            deliveries(&w, first.id)
                .await
                .into_iter()
                .find(|d| d.2 == "delivered")
        },
    )
    .await;
    assert_eq!(settled.3, 3, "delivered at the third try");
    let page = admin.get_html(PAGE).await;
    assert_eq!(
        page.matches("Tried again later").count(),
        2,
        "two tries answered 500 are listed: {page}"
    );
    assert!(page.contains("The webhook answered 500 Internal Server Error."));
    assert!(page.contains("receiver says 500"), "the answer's body");
    assert!(page.contains("receiver says 200"));

    // A 400 would be the same again: one try only.
    let second = export(&w, id, false).await;
    assert_eq!(second.status, RunStatus::Failure);
    wait_for_requests(&receiver, 4).await;
    let failed = wait_until(
        "the 400 to be given up",
        Duration::from_secs(10),
        || async {
            deliveries(&w, second.id)
                .await
                .into_iter()
                .find(|d| d.2 == "failed")
        },
    )
    .await;
    assert_eq!(failed.3, 1);
    // Longer than every retry delay together.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.received().len(), 4, "the 400 was not tried again");
    let page = admin.get_html(PAGE).await;
    assert!(
        page.contains("The webhook answered 400 Bad Request."),
        "{page}"
    );
    assert!(page.contains("Not delivered"));
}

#[tokio::test]
async fn a_failed_run_mails_each_recipient_and_a_test_email_shows_the_servers_reply() {
    let (w, admin, id) = exporting_world().await;
    let sink = SmtpSink::start().await;
    let contributor = w
        .app
        .create_user("carla@northwind.io", Role::Contributor)
        .await;
    let admin_id: i64 =
        sqlx::query_scalar("SELECT id FROM users WHERE email = 'admin@example.com'")
            .fetch_one(w.app.state.db.pool())
            .await
            .unwrap();
    let port = sink.port.to_string();
    let threshold = format!("threshold_{id}");
    let (admin_id, contributor) = (admin_id.to_string(), contributor.to_string());
    let email_fields = |port: &'static str| {
        vec![
            ("email_enabled", "yes"),
            ("smtp_host", "127.0.0.1"),
            ("smtp_port", port),
            ("smtp_tls", "none"),
            ("smtp_username", "console"),
            ("smtp_password", "smtp-password-0451"),
            ("smtp_from", "alerts@northwind.io"),
            ("extra_recipients", "ops@fabrikam.io"),
        ]
    };
    let port: &'static str = port.leak();
    let mut fields = email_fields(port);
    fields.extend([
        ("recipient", admin_id.as_str()),
        ("recipient", contributor.as_str()),
        (threshold.as_str(), "1"),
    ]);
    let saved = save(&admin, &fields).await;
    assert_eq!(location(&saved), PAGE);

    remove_audience(&w);
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Failure);
    let mails = wait_until("three mails", Duration::from_secs(30), || async {
        let mails = sink.mails();
        (mails.len() >= 3).then_some(mails)
    })
    .await;
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(
        to,
        ["admin@example.com", "carla@northwind.io", "ops@fabrikam.io"],
        "one mail to each recipient"
    );
    for mail in &mails {
        assert_eq!(mail.from, "alerts@northwind.io");
        assert_eq!(
            mail.header("Subject").as_deref(),
            Some("Export failed: Newsletter")
        );
        assert_eq!(
            mail.auth,
            Some(("console".to_owned(), "smtp-password-0451".to_owned())),
            "the saved password signs in to the server"
        );
        let text = mail.text();
        assert!(text.contains("ended in Failure"), "{text}");
        assert!(text.contains("Failed: 0"), "{text}");
        assert!(
            text.contains(&format!("{}/admin/export-runs/{}", w.app.base, run.id)),
            "{text}"
        );
    }
    let page = admin.get_html(PAGE).await;
    assert!(
        !page.contains("smtp-password-0451"),
        "the password never comes back"
    );
    assert!(page.contains("saved; leave empty to keep it unchanged"));

    let tested = admin
        .post_form(PAGE, "/system/notifications/email/test", &[])
        .await;
    assert_eq!(tested.status(), 200);
    let html = tested.text().await.unwrap();
    assert!(
        html.contains("Delivered to ops@fabrikam.io: answered 250."),
        "{html}"
    );
    assert!(
        html.contains("Ok: queued as SINK"),
        "the server's reply: {html}"
    );
    let tests: Vec<_> = sink
        .mails()
        .into_iter()
        .filter(|m| {
            m.header("Subject").as_deref()
                == Some("Test alert from the export-destinations console")
        })
        .collect();
    assert_eq!(tests.len(), 3, "the test mail reached every recipient");
    assert!(tests[0].text().contains("This is a test alert"));

    // A port where nothing listens: the page says so.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port().to_string()
    };
    let closed: &'static str = closed.leak();
    let mut fields = email_fields(closed);
    fields.retain(|(k, _)| *k != "smtp_password");
    fields.extend([("recipient", admin_id.as_str()), (threshold.as_str(), "1")]);
    assert_eq!(location(&save(&admin, &fields).await), PAGE);
    let tested = admin
        .post_form(PAGE, "/system/notifications/email/test", &[])
        .await;
    let html = tested.text().await.unwrap();
    assert!(
        html.contains("Not delivered to admin@example.com")
            && html.contains(&format!(
                "Could not send through the SMTP server 127.0.0.1:{closed}"
            )),
        "{html}"
    );
}

#[tokio::test]
async fn a_test_alert_is_posted_at_once_and_its_answer_shown() {
    let (_w, admin, id) = exporting_world().await;
    let receiver = WebhookReceiver::start(&[503]).await;
    let secret = webhook_on(&admin, &receiver.url, &[(&format!("threshold_{id}"), "1")]).await;
    let tested = admin
        .post_form(PAGE, "/system/notifications/webhook/test", &[])
        .await;
    assert_eq!(tested.status(), 200);
    let html = tested.text().await.unwrap();
    assert!(
        html.contains(&format!("Not delivered to {}: answered 503.", receiver.url)),
        "{html}"
    );
    assert!(html.contains("receiver says 503"));
    let got = receiver.received();
    assert_eq!(got.len(), 1, "a test is tried once, at once");
    let body = got[0].json();
    assert_eq!(body["event"], "test");
    assert_eq!(body["test"], true);
    assert_eq!(
        got[0].header("x-export-destinations-signature"),
        expected_signature(
            &secret,
            &got[0].header("x-export-destinations-timestamp"),
            &got[0].body
        )
    );
    let again = admin
        .post_form(PAGE, "/system/notifications/webhook/test", &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(
        again.contains(&format!("Delivered to {}: answered 200.", receiver.url)),
        "{again}"
    );
}

#[tokio::test]
async fn only_administrators_reach_the_page_and_every_form_needs_its_token() {
    let w = world(SandboxConfig::default()).await;
    let admin = w.app.another_client();
    admin
        .signed_in_as("admin@example.com", Role::Administrator)
        .await;
    let nav = admin.get_html("/system/status").await;
    assert!(
        nav.contains("<a href=\"/system/notifications\""),
        "in the System menu"
    );
    for role in [Role::Contributor, Role::Viewer] {
        let other = w.app.another_client();
        other
            .signed_in_as(&format!("{}@example.com", role.as_str()), role)
            .await;
        assert!(
            !other
                .get_html("/system/status")
                .await
                .contains("/system/notifications")
        );
        assert_refused(other.get(PAGE).await, 403, "Your role does not allow this.").await;
        let token = csrf_token(&other.get_html("/system/status").await);
        for path in [
            PAGE,
            "/system/notifications/webhook/test",
            "/system/notifications/email/test",
            "/system/notifications/webhook/secret",
        ] {
            let posted = other
                .post_raw(
                    path,
                    &[
                        ("csrf_token", &token),
                        ("webhook_enabled", "yes"),
                        ("webhook_url", "https://hooks.example.com/x"),
                    ],
                )
                .await;
            assert_refused(posted, 403, "Your role does not allow this.").await;
        }
    }
    for path in [
        PAGE,
        "/system/notifications/webhook/test",
        "/system/notifications/email/test",
        "/system/notifications/webhook/secret",
    ] {
        let posted = admin
            .post_raw(
                path,
                &[
                    ("webhook_enabled", "yes"),
                    ("webhook_url", "https://hooks.example.com/x"),
                ],
            )
            .await;
        assert_refused(posted, 403, "This form could not be accepted").await;
    }
    let settings = alert_store::load(w.app.state.db.pool()).await.unwrap();
    assert!(
        !settings.webhook_enabled && settings.webhook_url.is_none(),
        "nothing saved"
    );
}

#[tokio::test]
async fn a_bad_form_keeps_what_was_typed_and_secrets_never_come_back() {
    let (w, admin, id) = exporting_world().await;
    let threshold = format!("threshold_{id}");
    let bad = save(
        &admin,
        &[
            ("webhook_enabled", "yes"),
            ("webhook_url", "ftp://hooks.example.com/alerts"),
            ("email_enabled", "yes"),
            ("smtp_host", "smtp.northwind.io"),
            ("smtp_port", "2525"),
            ("smtp_tls", "tls"),
            ("smtp_username", "mailer"),
            ("smtp_password", "typed-password-7731"),
            ("smtp_from", "alerts@northwind.io"),
            ("extra_recipients", "ops@fabrikam.io"),
            (&threshold, "4"),
        ],
    )
    .await;
    let html = assert_refused(
        bad,
        422,
        "Webhook URL: “ftp://hooks.example.com/alerts” is not an http:// or https:// address.",
    )
    .await;
    for kept in [
        "value=\"ftp://hooks.example.com/alerts\"",
        "value=\"smtp.northwind.io\"",
        "value=\"2525\"",
        "<option value=\"tls\" selected>",
        "value=\"mailer\"",
        "value=\"alerts@northwind.io\"",
        ">ops@fabrikam.io</textarea>",
        &format!("name=\"{threshold}\" value=\"4\""),
    ] {
        assert!(html.contains(kept), "{kept} is kept: {html}");
    }
    assert!(
        !html.contains("typed-password-7731"),
        "a password is never put in a page"
    );
    let settings = alert_store::load(w.app.state.db.pool()).await.unwrap();
    assert!(
        settings.webhook_url.is_none() && settings.smtp_host.is_none(),
        "nothing saved"
    );

    // Saved: the secret once, the password never.
    let secret = webhook_on(
        &admin,
        "https://hooks.example.com/alerts",
        &[
            ("email_enabled", "yes"),
            ("smtp_host", "smtp.northwind.io"),
            ("smtp_tls", "tls"),
            ("smtp_username", "mailer"),
            ("smtp_password", "typed-password-7731"),
            ("smtp_from", "alerts@northwind.io"),
            ("extra_recipients", "ops@fabrikam.io"),
            (&threshold, "4"),
        ],
    )
    .await;
    assert!(secret.len() >= 32, "{secret}");
    let page = admin.get_html(PAGE).await;
    assert!(!page.contains(&secret) && !page.contains("typed-password-7731"));
    assert!(page.contains("value=\"465\""), "the port TLS uses");
    assert!(page.contains("placeholder=\"unchanged\""));
    let settings = alert_store::load(w.app.state.db.pool()).await.unwrap();
    let sealed = settings.smtp_password_sealed.unwrap();
    assert!(!sealed.contains("typed-password-7731"), "sealed at rest");
    assert_eq!(
        w.app.state.secret_key.open(&sealed).unwrap(),
        "typed-password-7731"
    );
    let audit = admin.get_html("/admin/audit-log").await;
    assert!(audit.contains("Failure alerts"), "{audit}");
    assert!(
        audit
            .contains("Webhook alerts on, to https://hooks.example.com, with a new signing secret")
    );
    assert!(!audit.contains(&secret) && !audit.contains("typed-password-7731"));
    assert!(
        !audit.contains("/alerts"),
        "only the URL's origin is recorded"
    );

    // Saving again with the password left empty keeps it; a new secret replaces the old.
    let again = save(
        &admin,
        &[
            ("webhook_enabled", "yes"),
            ("webhook_url", "https://hooks.example.com/alerts"),
            ("email_enabled", "yes"),
            ("smtp_host", "smtp.northwind.io"),
            ("smtp_tls", "tls"),
            ("smtp_username", "mailer"),
            ("smtp_from", "alerts@northwind.io"),
            ("extra_recipients", "ops@fabrikam.io"),
            (&threshold, "4"),
        ],
    )
    .await;
    assert_eq!(location(&again), PAGE, "no new secret: back to the page");
    let settings = alert_store::load(w.app.state.db.pool()).await.unwrap();
    assert_eq!(
        w.app
            .state
            .secret_key
            .open(settings.smtp_password_sealed.as_deref().unwrap())
            .unwrap(),
        "typed-password-7731"
    );
    let rotated = admin
        .post_form(PAGE, "/system/notifications/webhook/secret", &[])
        .await
        .text()
        .await
        .unwrap();
    let new_secret = shown_secret(&rotated);
    assert_ne!(new_secret, secret);
    assert!(!admin.get_html(PAGE).await.contains(&new_secret));
}

/// An administrator made through the stores.
async fn create_owner(state: &export_destinations::state::AppState) -> i64 {
    use export_destinations::domain::{EmailAddress, NewPassword, PersonName};
    let hash = state
        .hasher
        .hash(&NewPassword::parse(crate::helpers::PASSWORD.into()).unwrap())
        .await
        .unwrap();
    export_destinations::store::users::insert(
        state.db.pool(),
        export_destinations::store::users::NewUser {
            email: &EmailAddress::parse("owner@example.com").unwrap(),
            name: &PersonName::parse("Owner").unwrap(),
            role: Role::Administrator,
            password_hash: &hash,
        },
    )
    .await
    .unwrap()
}

/// A failed run whose alerts are queued as the worker queues them, made through the
/// stores (no console executes anything).
async fn failed_run(db: &export_destinations::db::Db, destination: i64) -> i64 {
    let mut tx = export_destinations::db::begin_write(db.pool())
        .await
        .unwrap();
    let (id, _) = runs::enqueue(&mut tx, destination, false, None)
        .await
        .unwrap();
    runs::claim(&mut *tx, id, "test", 60_000)
        .await
        .unwrap()
        .unwrap();
    runs::finish(
        &mut *tx,
        id,
        RunStatus::Failure,
        Some("Mailchimp was unreachable."),
    )
    .await
    .unwrap();
    export_destinations::alerts::queue_for_run(&mut tx, id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

#[tokio::test]
async fn parallel_claims_and_senders_never_deliver_one_alert_twice() {
    // A console that is built but not started: nothing sends but the senders below.
    let dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(dir.path()).await;
    let app = export_destinations::App::build(test_settings(dir.path(), database_url))
        .await
        .unwrap();
    let state = app.state().clone();
    let db = state.db.clone();
    let receiver = WebhookReceiver::start(&[]).await;
    let owner = create_owner(&state).await;
    let target = Target {
        api_base: "http://127.0.0.1:9",
        key: "key-us1",
        audience: "aud",
        audience_name: "Audience",
    };
    let destination = saved_destination(
        &db,
        &state.secret_key,
        owner,
        "Newsletter",
        target,
        &[],
        "subscribed",
    )
    .await;
    alert_store::save_webhook(
        db.pool(),
        true,
        Some(&receiver.url),
        Some(&state.secret_key.seal("secret")),
        owner,
    )
    .await
    .unwrap();
    let mut run_ids = Vec::new();
    for _ in 0..5 {
        run_ids.push(failed_run(&db, destination).await);
    }
    // Queueing a run's alerts again queues nothing new.
    let mut conn = db.pool().acquire().await.unwrap();
    assert_eq!(
        export_destinations::alerts::queue_for_run(&mut conn, run_ids[0])
            .await
            .unwrap(),
        0
    );
    drop(conn);

    // Eight claimers at once: each delivery is claimed once.
    let mut claimers = tokio::task::JoinSet::new();
    for n in 0..8 {
        let db = db.clone();
        claimers.spawn(async move {
            let owner = format!("claimer-{n}");
            let mut claimed = Vec::new();
            while let Some(d) = alert_store::claim_due(db.pool(), &owner, 60_000)
                .await
                .unwrap()
            {
                claimed.push(d.id);
            }
            (owner, claimed)
        });
    }
    let mut all = Vec::new();
    let mut owners = Vec::new();
    while let Some(done) = claimers.join_next().await {
        let (owner, claimed) = done.unwrap();
        all.extend(claimed);
        owners.push(owner);
    }
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(before, 5, "five deliveries, each claimed once: {all:?}");
    assert_eq!(all.len(), 5);
    for owner in &owners {
        alert_store::release(db.pool(), owner).await.unwrap();
    }

    // Three senders at once (as three consoles on one database): one POST per alert.
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let sender = Sender::new(
            db.clone(),
            state.secret_key.clone(),
            url::Url::parse("http://console.example.com/").unwrap(),
            vec![Duration::from_millis(100)],
        );
        senders.spawn(async move { while sender.send_next().await.unwrap().is_some() {} });
    }
    while senders.join_next().await.is_some() {}
    let got = receiver.received();
    let mut numbers: Vec<String> = got
        .iter()
        .map(|r| r.header("x-export-destinations-delivery"))
        .collect();
    numbers.sort();
    numbers.dedup();
    assert_eq!((got.len(), numbers.len()), (5, 5), "{numbers:?}");
    for run in run_ids {
        let d = alert_store::deliveries_of_run(db.pool(), run)
            .await
            .unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].2, "delivered");
    }
}

#[tokio::test]
async fn an_alert_cut_short_by_a_stop_is_sent_by_the_next_start() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let database_url = fresh_database_url(dir.path()).await;
    let key = SecretKey::generate();
    let settings = || {
        let mut settings = test_settings(dir.path(), database_url.clone());
        settings.secret_key = Some(key.clone());
        settings
    };
    // The webhook does not answer the first try at all.
    let receiver = WebhookReceiver::start(&[0]).await;
    let (first, stop, stopped) = spawn_stoppable(dir.clone(), settings()).await;
    let owner = create_owner(&first.state).await;
    let target = Target {
        api_base: "http://127.0.0.1:9",
        key: "key-us1",
        audience: "aud",
        audience_name: "Audience",
    };
    let destination = saved_destination(
        &first.state.db,
        &first.state.secret_key,
        owner,
        "Newsletter",
        target,
        &[],
        "subscribed",
    )
    .await;
    alert_store::save_webhook(
        first.state.db.pool(),
        true,
        Some(&receiver.url),
        Some(&key.seal("secret")),
        owner,
    )
    .await
    .unwrap();
    let run = failed_run(&first.state.db, destination).await;
    wait_for_requests(&receiver, 1).await;
    stop.send(()).unwrap();
    stopped.await.unwrap().unwrap();
    drop(first);

    let (second, stop, _stopped) = spawn_stoppable(dir.clone(), settings()).await;
    let got = wait_for_requests(&receiver, 2).await;
    assert_eq!(
        got[0].header("x-export-destinations-delivery"),
        got[1].header("x-export-destinations-delivery"),
        "the same alert"
    );
    let delivered = wait_until(
        "the alert to be delivered",
        Duration::from_secs(10),
        || async {
            alert_store::deliveries_of_run(second.state.db.pool(), run)
                .await
                .unwrap()
                .into_iter()
                .find(|d| d.2 == "delivered")
        },
    )
    .await;
    assert_eq!(delivered.3, 2, "the second try delivered it");
    stop.send(()).unwrap();
}
