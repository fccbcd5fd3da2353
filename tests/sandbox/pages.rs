use serde_json::json;

use crate::helpers::spawn_sandbox;

#[tokio::test]
async fn the_account_page_lists_audiences_with_copyable_ids() {
    let sb = spawn_sandbox().await;
    let html = sb
        .http
        .get(format!("{}/", sb.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Sandbox Mailchimp"));
    assert!(html.contains("No email is ever sent"));
    assert!(html.contains("Newsletter subscribers"));
    assert!(html.contains(&format!("readonly value=\"{}\"", sb.newsletter)));
    assert!(
        html.contains(&sb.key),
        "the API key is shown for trying the API-key path"
    );
}

#[tokio::test]
async fn an_audience_page_shows_members_with_status_fields_and_tags() {
    let sb = spawn_sandbox().await;
    sb.batch(
        json!([
            { "email_address": "ada@northwind.io", "status": "subscribed", "merge_fields": { "FNAME": "Ada", "LNAME": "<b>Lovelace</b>" } },
            { "email_address": "lee@northwind.io", "status": "unsubscribed" },
        ]),
        false,
    )
    .await;
    sb.post(
        &format!("/lists/{}/segments", sb.newsletter),
        json!({ "name": "Loyal customers", "static_segment": ["ada@northwind.io"] }),
    )
    .await;
    let html = sb
        .http
        .get(format!("{}/audiences/{}", sb.base, sb.newsletter))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("ada@northwind.io"));
    assert!(html.contains("<td>unsubscribed</td>"));
    assert!(html.contains("<span class=\"sb-tag\">Loyal customers</span>"));
    assert!(html.contains("Loyal customers (1)"));
    assert!(!html.contains("<b>Lovelace</b>"), "member data is escaped");
    assert!(html.contains("subscribed: 1"));
}

#[tokio::test]
async fn the_inspection_view_counts_writes_per_member() {
    let sb = spawn_sandbox().await;
    let member = json!([{ "email_address": "ada@northwind.io", "status": "subscribed" }]);
    sb.batch(member.clone(), true).await;
    sb.batch(member, true).await;
    let view: serde_json::Value = sb
        .http
        .get(format!(
            "{}/inspect/lists/{}/members.json",
            sb.base, sb.newsletter
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["members"][0]["writes"], 2);
    let stats: serde_json::Value = sb
        .http
        .get(format!("{}/inspect/stats.json", sb.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["calls_by_route"]["POST /lists/{list_id}"], 2);
}

#[tokio::test]
#[ignore = "needs python3 with Mailchimp's mailchimp-marketing package (bash .ci/run installs it)"]
async fn mailchimps_python_client_library_works_against_the_sandbox() {
    let sb = spawn_sandbox().await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/official_python_client.py"
    );
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .env("SANDBOX_API", format!("{}/3.0", sb.base))
        .env("SANDBOX_KEY", &sb.key)
        .env("SANDBOX_LIST", &sb.newsletter)
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
