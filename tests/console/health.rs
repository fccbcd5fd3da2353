use crate::helpers::spawn_app;

#[tokio::test]
async fn health_and_readiness_answer_without_signing_in() {
    let app = spawn_app().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().await.unwrap(), "ready");
}

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let app = spawn_app().await;
    app.state.db.pool().close().await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
}

const TOKEN: &str = "metrics-token-for-tests-0123";

/// The value of the metric line that starts with `prefix` (name and labels).
fn value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
}

#[tokio::test]
async fn metrics_are_off_without_a_token_and_refused_without_the_right_one() {
    let off = spawn_app().await;
    assert_eq!(off.get("/metrics").await.status(), 404);
    let app = crate::helpers::spawn_app_with(|s| s.metrics_token = Some(TOKEN.into())).await;
    let anonymous = app.get("/metrics").await;
    assert_eq!(anonymous.status(), 401);
    let wrong = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("metrics-token-for-tests-0124")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
}

#[tokio::test]
async fn metrics_can_have_an_address_of_their_own() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.metrics_bind_addr = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let own = app.state.metrics_addr.expect("bound");
    assert_ne!(own.port(), 0);
    let scraped = reqwest::get(format!("http://{own}/metrics")).await.unwrap();
    assert_eq!(scraped.status(), 200, "no token asked there");
    let text = scraped.text().await.unwrap();
    assert!(text.contains("export_destinations_queue_length"), "{text}");
    assert!(text.ends_with("# EOF\n"));
    let console = app.get("/metrics").await;
    assert_eq!(console.status(), 404, "not on the console's address");
    assert!(console.text().await.unwrap().contains("METRICS_BIND_ADDR"));
    assert_eq!(
        reqwest::get(format!("http://{own}/"))
            .await
            .unwrap()
            .status(),
        404,
        "nothing but the metrics there"
    );

    // Both: the own address asks for the token too.
    let both = crate::helpers::spawn_app_with(|s| {
        s.metrics_bind_addr = Some("127.0.0.1:0".parse().unwrap());
        s.metrics_token = Some(TOKEN.into());
    })
    .await;
    let own = both.state.metrics_addr.unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://{own}/metrics");
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    let with_token = client.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(with_token.status(), 200);
}

#[tokio::test]
async fn metrics_count_runs_members_calls_and_the_429s_mailchimp_answered() {
    use crate::world::{PEOPLE, destination, export, import, refresh, segment, world_with};
    use export_destinations::sandbox::SandboxConfig;
    // One connection at a time: the run's first reads, side by side, meet 429s.
    let w = world_with(
        SandboxConfig {
            max_connections: 1,
            latency: std::time::Duration::from_millis(50),
            ..SandboxConfig::default()
        },
        |s| s.metrics_token = Some(TOKEN.into()),
    )
    .await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    let run = export(&w, id, false).await;
    assert_eq!(
        run.status,
        export_destinations::store::runs::RunStatus::Successful
    );
    let scraped = w
        .app
        .client
        .get(w.app.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(
        scraped.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = scraped.text().await.unwrap();
    assert_eq!(
        value(&text, r#"export_destinations_runs{status="successful"}"#),
        1.0
    );
    assert_eq!(value(&text, "export_destinations_queue_length"), 0.0);
    assert_eq!(
        value(
            &text,
            r#"export_destinations_members_total{outcome="created"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            r#"export_destinations_members_total{outcome="skipped"}"#
        ),
        3.0
    );
    assert_eq!(
        value(&text, "export_destinations_import_seconds_count"),
        1.0
    );
    assert!(text.contains(r#"export_destinations_segment_refresh_seconds{segment="Germany"}"#));
    // The console's count of 429s is Mailchimp's (the sandbox's) own.
    let rejected = w.sandbox.stats().rejected_429;
    assert!(rejected > 0, "the sandbox refused some calls");
    let account = export_destinations::mailchimp::client::account_label(&w.sandbox_base, &w.key);
    let throttled = value(
        &text,
        &format!(r#"export_destinations_mailchimp_throttled_total{{account="{account}"}}"#),
    );
    assert_eq!(throttled, rejected as f64, "{text}");
    assert!(
        text.contains(&format!(r#"{{account="{account}",answer="2xx"}}"#)),
        "{text}"
    );
    assert!(text.contains("export_destinations_mailchimp_call_seconds_bucket{"));
    assert!(!text.contains(&w.key), "no credential in the metrics");
}
