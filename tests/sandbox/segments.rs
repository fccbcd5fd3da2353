use export_destinations::domain::subscriber_hash;
use serde_json::{Value, json};

use crate::helpers::{problem_title, spawn_sandbox};

#[tokio::test]
async fn tags_are_static_segments_that_members_join_and_leave() {
    let sb = spawn_sandbox().await;
    sb.batch(
        json!([
            { "email_address": "a@northwind.io", "status": "subscribed" },
            { "email_address": "b@northwind.io", "status": "subscribed" },
        ]),
        false,
    )
    .await;
    let (status, tag) = sb
        .post(
            &format!("/lists/{}/segments", sb.newsletter),
            json!({ "name": "VIP customers", "static_segment": ["a@northwind.io"] }),
        )
        .await;
    assert_eq!(status, 200, "{tag}");
    assert_eq!(tag["type"], "static");
    assert_eq!(tag["member_count"], 1);
    let id = tag["id"].as_u64().unwrap();

    let (status, result) = sb
        .post(
            &format!("/lists/{}/segments/{id}", sb.newsletter),
            json!({ "members_to_add": ["B@northwind.io", "stranger@northwind.io"], "members_to_remove": ["a@northwind.io"] }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(result["total_added"], 1);
    assert_eq!(result["total_removed"], 1);
    assert_eq!(
        result["errors"][0]["email_addresses"],
        json!(["stranger@northwind.io"])
    );
    assert_eq!(
        sb.member("stranger@northwind.io").await.0,
        404,
        "unknown addresses are not added"
    );

    let (_, member) = sb.member("b@northwind.io").await;
    assert_eq!(member["tags"][0]["name"], "VIP customers");
    assert_eq!(sb.member("a@northwind.io").await.1["tags_count"], 0);

    let (_, tags) = sb
        .get(&format!(
            "/lists/{}/segments?type=static&count=1000",
            sb.newsletter
        ))
        .await;
    assert_eq!(tags["total_items"], 1);
    assert_eq!(tags["segments"][0]["member_count"], 1);
}

#[tokio::test]
async fn a_tag_name_is_unique_within_an_audience() {
    let sb = spawn_sandbox().await;
    let path = format!("/lists/{}/segments", sb.newsletter);
    assert_eq!(
        sb.post(&path, json!({ "name": "Churned", "static_segment": [] }))
            .await
            .0,
        200
    );
    let (status, body) = sb
        .post(&path, json!({ "name": "Churned", "static_segment": [] }))
        .await;
    assert_eq!(problem_title(status, &body, 400), "Invalid Resource");
}

#[tokio::test]
async fn a_segment_call_takes_at_most_500_members_each_way() {
    let sb = spawn_sandbox().await;
    let (_, tag) = sb
        .post(
            &format!("/lists/{}/segments", sb.newsletter),
            json!({ "name": "Big", "static_segment": [] }),
        )
        .await;
    let many: Vec<Value> = (0..501)
        .map(|i| json!(format!("p{i}@northwind.io")))
        .collect();
    let (status, body) = sb
        .post(
            &format!("/lists/{}/segments/{}", sb.newsletter, tag["id"]),
            json!({ "members_to_add": many }),
        )
        .await;
    assert_eq!(problem_title(status, &body, 400), "Invalid Resource");
}

#[tokio::test]
async fn a_members_tags_can_be_set_one_by_one_creating_missing_tags() {
    let sb = spawn_sandbox().await;
    sb.batch(
        json!([{ "email_address": "a@northwind.io", "status": "subscribed" }]),
        false,
    )
    .await;
    let path = format!(
        "/lists/{}/members/{}/tags",
        sb.newsletter,
        subscriber_hash("a@northwind.io")
    );
    let (status, _) = sb
        .post(&path, json!({ "tags": [{ "name": "Newcomers", "status": "active" }, { "name": "Never existed", "status": "inactive" }] }))
        .await;
    assert_eq!(status, 204);
    let (_, tags) = sb.get(&path).await;
    assert_eq!(tags["total_items"], 1);
    assert_eq!(tags["tags"][0]["name"], "Newcomers");
    let (status, _) = sb
        .post(
            &path,
            json!({ "tags": [{ "name": "Newcomers", "status": "inactive" }] }),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(sb.get(&path).await.1["total_items"], 0);
}

#[tokio::test]
async fn new_audiences_have_mailchimps_four_merge_fields_and_new_ones_can_be_added() {
    let sb = spawn_sandbox().await;
    let (_, fields) = sb
        .get(&format!("/lists/{}/merge-fields", sb.newsletter))
        .await;
    let tags: Vec<&str> = fields["merge_fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["FNAME", "LNAME", "ADDRESS", "PHONE"]);
    let (status, field) = sb
        .post(
            &format!("/lists/{}/merge-fields", sb.newsletter),
            json!({ "name": "Company", "type": "text" }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(field["tag"], "COMPANY");
    let (status, body) = sb
        .post(
            &format!("/lists/{}/merge-fields", sb.newsletter),
            json!({ "name": "x", "type": "text", "tag": "WAYTOOLONGTAG" }),
        )
        .await;
    assert_eq!(problem_title(status, &body, 400), "Invalid Resource");
    assert_eq!(body["errors"][0]["field"], "tag");
}
