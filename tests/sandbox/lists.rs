use serde_json::{Value, json};

use crate::helpers::{problem_title, spawn_sandbox};

#[tokio::test]
async fn the_demo_account_has_two_audiences_and_new_ones_can_be_created() {
    let sb = spawn_sandbox().await;
    let (status, lists) = sb.get("/lists").await;
    assert_eq!(status, 200);
    assert_eq!(lists["total_items"], 2);
    let (status, created) = sb
        .post(
            "/lists",
            json!({
                "name": "Spring launch",
                "contact": { "company": "Northwind", "address1": "1 Main St", "city": "Atlanta",
                             "state": "GA", "zip": "30308", "country": "US" },
                "permission_reminder": "You bought from us.",
                "campaign_defaults": { "from_name": "Northwind", "from_email": "news@northwind.io",
                                       "subject": "", "language": "en" },
                "email_type_option": false,
                "an_unknown_field": "is ignored, as Mailchimp does"
            }),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["name"], "Spring launch");
    assert_eq!(created["id"].as_str().unwrap().len(), 10);
    let (_, lists) = sb.get("/lists").await;
    assert_eq!(lists["total_items"], 3);
}

#[tokio::test]
async fn creating_an_audience_without_its_required_fields_names_each_field() {
    let sb = spawn_sandbox().await;
    let (status, body) = sb.post("/lists", json!({ "name": "x" })).await;
    assert_eq!(problem_title(status, &body, 400), "Invalid Resource");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "contact",
            "permission_reminder",
            "campaign_defaults",
            "email_type_option"
        ]
    );
}

#[tokio::test]
async fn an_audience_reports_its_name_and_member_counts() {
    let sb = spawn_sandbox().await;
    sb.batch(
        json!([
            { "email_address": "a@northwind.io", "status": "subscribed" },
            { "email_address": "b@northwind.io", "status": "subscribed" },
            { "email_address": "c@northwind.io", "status": "unsubscribed" },
        ]),
        false,
    )
    .await;
    let (status, list) = sb.get(&format!("/lists/{}", sb.newsletter)).await;
    assert_eq!(status, 200);
    assert_eq!(list["name"], "Newsletter subscribers");
    assert_eq!(list["stats"]["member_count"], 2);
    assert_eq!(list["stats"]["unsubscribe_count"], 1);
    let (_, other) = sb.get(&format!("/lists/{}", sb.customers)).await;
    assert_eq!(other["stats"]["member_count"], 0, "audiences are separate");
}

#[tokio::test]
async fn an_unknown_audience_is_resource_not_found() {
    let sb = spawn_sandbox().await;
    let (status, body) = sb.get("/lists/0000000000").await;
    assert_eq!(problem_title(status, &body, 404), "Resource Not Found");
}

#[tokio::test]
async fn batch_subscribe_creates_updates_and_reports_per_member_errors() {
    let sb = spawn_sandbox().await;
    let first = sb
        .batch(
            json!([
                { "email_address": "Ada@Northwind.io", "status": "subscribed", "merge_fields": { "FNAME": "Ada" } },
                { "email_address": "fake@example.com", "status": "subscribed" },
                { "email_address": "not-an-address", "status": "subscribed" },
                { "email_address": "grace@northwind.io", "status": "subscribed", "extra": 1 },
            ]),
            true,
        )
        .await;
    assert_eq!(first["total_created"], 2);
    assert_eq!(first["error_count"], 2);
    let errors = first["errors"].as_array().unwrap();
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap()
            .contains("looks fake or invalid")
    );
    assert_eq!(errors[1]["email_address"], "not-an-address");

    let second = sb
        .batch(
            json!([{ "email_address": "ada@northwind.io", "status": "subscribed", "merge_fields": { "LNAME": "Lovelace" } }]),
            true,
        )
        .await;
    assert_eq!(second["total_created"], 0);
    assert_eq!(
        second["total_updated"], 1,
        "addresses compare case-insensitively"
    );
    let (_, member) = sb.member("ada@northwind.io").await;
    assert_eq!(
        member["merge_fields"]["FNAME"], "Ada",
        "fields not sent are kept"
    );
    assert_eq!(member["merge_fields"]["LNAME"], "Lovelace");
}

#[tokio::test]
async fn without_update_existing_existing_members_are_reported_not_changed() {
    let sb = spawn_sandbox().await;
    sb.batch(json!([{ "email_address": "ada@northwind.io", "status": "subscribed", "merge_fields": { "FNAME": "Ada" } }]), false)
        .await;
    let body = sb
        .batch(json!([{ "email_address": "ada@northwind.io", "status": "subscribed", "merge_fields": { "FNAME": "Changed" } }]), false)
        .await;
    assert_eq!(body["errors"][0]["error_code"], "ERROR_CONTACT_EXISTS");
    let (_, member) = sb.member("ada@northwind.io").await;
    assert_eq!(member["merge_fields"]["FNAME"], "Ada");
}

#[tokio::test]
async fn batch_subscribe_never_resubscribes_an_unsubscribed_or_cleaned_contact() {
    let sb = spawn_sandbox().await;
    sb.batch(
        json!([
            { "email_address": "left@northwind.io", "status": "unsubscribed" },
            { "email_address": "bounced@northwind.io", "status": "cleaned" },
        ]),
        false,
    )
    .await;
    let body = sb
        .batch(
            json!([
                { "email_address": "left@northwind.io", "status": "subscribed" },
                { "email_address": "bounced@northwind.io", "status": "pending" },
            ]),
            true,
        )
        .await;
    assert_eq!(body["error_count"], 2);
    for error in body["errors"].as_array().unwrap() {
        assert!(
            error["error"]
                .as_str()
                .unwrap()
                .contains("compliance state"),
            "{error}"
        );
    }
    assert_eq!(
        sb.member("left@northwind.io").await.1["status"],
        "unsubscribed"
    );
    assert_eq!(
        sb.member("bounced@northwind.io").await.1["status"],
        "cleaned"
    );
    // Sending the status back unchanged is how an exporter updates them safely.
    let body = sb
        .batch(json!([{ "email_address": "left@northwind.io", "status": "unsubscribed", "merge_fields": { "FNAME": "Lee" } }]), true)
        .await;
    assert_eq!(body["total_updated"], 1);
}

#[tokio::test]
async fn batch_subscribe_refuses_more_than_500_members() {
    let sb = spawn_sandbox().await;
    let members: Vec<Value> = (0..501)
        .map(|i| json!({ "email_address": format!("p{i}@northwind.io"), "status": "subscribed" }))
        .collect();
    let (status, body) = sb
        .post(
            &format!("/lists/{}", sb.newsletter),
            json!({ "members": members }),
        )
        .await;
    assert_eq!(problem_title(status, &body, 400), "Invalid Resource");
    let (_, list) = sb.get(&format!("/lists/{}", sb.newsletter)).await;
    assert_eq!(
        list["stats"]["member_count"], 0,
        "nothing of a refused batch is applied"
    );

    let exactly: Vec<Value> = (0..500)
        .map(|i| json!({ "email_address": format!("p{i}@northwind.io"), "status": "subscribed" }))
        .collect();
    assert_eq!(
        sb.batch(Value::Array(exactly), false).await["total_created"],
        500
    );
}

#[tokio::test]
async fn a_member_without_a_status_is_reported() {
    let sb = spawn_sandbox().await;
    let body = sb
        .batch(json!([{ "email_address": "a@northwind.io" }]), true)
        .await;
    assert_eq!(body["errors"][0]["field"], "status");
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let sb = spawn_sandbox().await;
    let response = sb
        .http
        .post(format!("{}/3.0/lists/{}", sb.base, sb.newsletter))
        .basic_auth("x", Some(&sb.key))
        .body("{ not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["title"], "Invalid Resource");
}

/// The member's tag names, sorted.
async fn tags_of(sb: &crate::helpers::TestSandbox, email: &str) -> Vec<String> {
    let (_, member) = sb.member(email).await;
    let mut names: Vec<String> = member["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn batch_tags_are_added_to_new_and_existing_members_and_missing_tags_are_created() {
    let sb = spawn_sandbox().await;
    sb.batch(
        json!([{ "email_address": "ada@northwind.io", "status": "subscribed" }]),
        true,
    )
    .await;
    let (_, tags_before) = sb.get(&format!("/lists/{}/segments", sb.newsletter)).await;
    assert_eq!(tags_before["total_items"], 0);
    let answer = sb
        .batch(
            json!([
                { "email_address": "ada@northwind.io", "status": "subscribed", "tags": ["Germany", "VIP"] },
                { "email_address": "zoe@northwind.io", "status": "subscribed", "tags": ["Germany"] },
            ]),
            true,
        )
        .await;
    assert_eq!(
        (
            answer["total_created"].as_u64(),
            answer["total_updated"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let names = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(&answer["updated_members"][0]["tags"]).len(),
        2,
        "{answer}"
    );
    assert_eq!(names(&answer["new_members"][0]["tags"]), ["Germany"]);
    assert_eq!(tags_of(&sb, "ada@northwind.io").await, ["Germany", "VIP"]);
    assert_eq!(tags_of(&sb, "zoe@northwind.io").await, ["Germany"]);
    let (_, tags) = sb.get(&format!("/lists/{}/segments", sb.newsletter)).await;
    assert_eq!(tags["total_items"], 2, "each tag created once: {tags}");

    // Tags a member already has stay, and tags not named are left alone.
    sb.batch(
        json!([{ "email_address": "ada@northwind.io", "status": "subscribed", "tags": ["Germany"] }]),
        true,
    )
    .await;
    assert_eq!(tags_of(&sb, "ada@northwind.io").await, ["Germany", "VIP"]);
}

#[tokio::test]
async fn sync_tags_replaces_a_members_tags_and_needs_update_existing() {
    let sb = spawn_sandbox().await;
    sb.batch(
        json!([{ "email_address": "ada@northwind.io", "status": "subscribed", "tags": ["Germany", "VIP"] }]),
        true,
    )
    .await;
    let (status, body) = sb
        .post(
            &format!("/lists/{}", sb.newsletter),
            json!({ "members": [{ "email_address": "ada@northwind.io", "status": "subscribed", "tags": ["France"] }], "sync_tags": true }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["field"], "sync_tags");
    let (status, _) = sb
        .post(
            &format!("/lists/{}", sb.newsletter),
            json!({ "members": [{ "email_address": "ada@northwind.io", "status": "subscribed", "tags": ["France"] }], "update_existing": true, "sync_tags": true }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(tags_of(&sb, "ada@northwind.io").await, ["France"]);
}

#[tokio::test]
async fn an_empty_or_over_long_tag_name_refuses_only_its_member() {
    let sb = spawn_sandbox().await;
    let long = "t".repeat(101);
    let answer = sb
        .batch(
            json!([
                { "email_address": "ada@northwind.io", "status": "subscribed", "tags": [" "] },
                { "email_address": "bob@northwind.io", "status": "subscribed", "tags": [long] },
                { "email_address": "zoe@northwind.io", "status": "subscribed", "tags": ["t".repeat(100)] },
            ]),
            true,
        )
        .await;
    assert_eq!(answer["total_created"], 1);
    assert_eq!(answer["error_count"], 2);
    assert_eq!(answer["errors"][0]["field"], "tags");
    assert!(
        answer["errors"][1]["error"]
            .as_str()
            .unwrap()
            .contains("at most 100 characters")
    );
    assert_eq!(sb.member("ada@northwind.io").await.0, 404, "not written");
}
