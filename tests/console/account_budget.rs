//! Every call to a Mailchimp account shares its ten connections, the pages' reads included:
//! a page that reads the audience while an export keeps every connection busy waits for a
//! free one instead of drawing a 429.

use std::time::Duration;

use export_destinations::sandbox::SandboxConfig;
use export_destinations::store::destinations;

use crate::helpers::PASSWORD;
use crate::world::*;

#[tokio::test]
async fn the_data_matching_page_waits_for_a_connection_while_ten_calls_are_in_flight() {
    let w = world(SandboxConfig {
        latency: Duration::from_millis(1500),
        ..SandboxConfig::default()
    })
    .await;
    let id = destination(&w, &[], "subscribed").await;
    let saved = destinations::find(w.app.state.db.pool(), id)
        .await
        .unwrap()
        .unwrap();

    // Ten calls on the account, each answered after 1.5 s: every connection is busy.
    let gateway = w.app.state.engine.gateway(&saved).unwrap();
    let mut busy = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (gateway, audience) = (gateway.clone(), w.audience.clone());
        busy.spawn(async move { gateway.audience_check(&audience).await });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let response = w.app.sign_in("owner0@example.com", PASSWORD).await;
    assert_eq!(response.status(), 303);
    let html = w
        .app
        .get_html(&format!("/admin/export-destinations/{id}/configure"))
        .await;
    assert!(
        !html.contains("could not be read"),
        "the page's read waited for a connection: {html}"
    );
    assert!(
        html.contains("LNAME"),
        "the audience's merge fields are offered: {html}"
    );
    while let Some(call) = busy.join_next().await {
        call.unwrap().expect("the busy calls were answered");
    }
    let stats = w.sandbox.stats();
    assert_eq!(
        stats.rejected_429, 0,
        "no call went past the account's limit"
    );
    assert_eq!(stats.peak_in_flight, 10);
}
