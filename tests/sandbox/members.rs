use export_destinations::domain::subscriber_hash;
use serde_json::json;

use crate::helpers::{problem_title, spawn_sandbox};

#[tokio::test]
async fn put_applies_status_if_new_only_to_new_members() {
    let sb = spawn_sandbox().await;
    let path = |email: &str| sb.member_path(email);
    let (status, created) = sb
        .put(
            &path("new@northwind.io"),
            json!({ "email_address": "new@northwind.io", "status_if_new": "pending" }),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["status"], "pending");

    sb.batch(
        json!([{ "email_address": "left@northwind.io", "status": "unsubscribed" }]),
        false,
    )
    .await;
    let (status, updated) = sb
        .put(
            &path("left@northwind.io"),
            json!({ "email_address": "left@northwind.io", "status_if_new": "subscribed", "merge_fields": { "FNAME": "Lee" } }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        updated["status"], "unsubscribed",
        "an existing member keeps their status"
    );
    assert_eq!(updated["merge_fields"]["FNAME"], "Lee");
}

#[tokio::test]
async fn put_with_subscribed_on_an_unsubscribed_member_is_member_in_compliance_state() {
    let sb = spawn_sandbox().await;
    sb.batch(
        json!([{ "email_address": "left@northwind.io", "status": "unsubscribed" }]),
        false,
    )
    .await;
    let (status, body) = sb
        .put(
            &format!(
                "/lists/{}/members/{}",
                sb.newsletter,
                subscriber_hash("left@northwind.io")
            ),
            json!({ "email_address": "left@northwind.io", "status": "subscribed" }),
        )
        .await;
    assert_eq!(
        problem_title(status, &body, 400),
        "Member In Compliance State"
    );
    assert_eq!(
        sb.member("left@northwind.io").await.1["status"],
        "unsubscribed"
    );
}

#[tokio::test]
async fn put_of_a_new_member_needs_status_if_new() {
    let sb = spawn_sandbox().await;
    let (status, body) = sb
        .put(
            &format!(
                "/lists/{}/members/{}",
                sb.newsletter,
                subscriber_hash("a@northwind.io")
            ),
            json!({ "email_address": "a@northwind.io" }),
        )
        .await;
    assert_eq!(problem_title(status, &body, 400), "Invalid Resource");
    assert_eq!(body["errors"][0]["field"], "status_if_new");
}

#[tokio::test]
async fn put_checks_the_hash_against_the_address() {
    let sb = spawn_sandbox().await;
    let (status, _) = sb
        .put(
            &format!(
                "/lists/{}/members/{}",
                sb.newsletter,
                subscriber_hash("someone.else@northwind.io")
            ),
            json!({ "email_address": "a@northwind.io", "status_if_new": "subscribed" }),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn posting_an_existing_member_is_member_exists() {
    let sb = spawn_sandbox().await;
    let path = format!("/lists/{}/members", sb.newsletter);
    let body = json!({ "email_address": "a@northwind.io", "status": "subscribed" });
    assert_eq!(sb.post(&path, body.clone()).await.0, 200);
    let (status, problem) = sb
        .post(
            &path,
            json!({ "email_address": "A@northwind.io", "status": "subscribed" }),
        )
        .await;
    assert_eq!(problem_title(status, &problem, 400), "Member Exists");
}

#[tokio::test]
async fn patch_changes_an_existing_member_and_404s_otherwise() {
    let sb = spawn_sandbox().await;
    sb.batch(
        json!([{ "email_address": "a@northwind.io", "status": "subscribed" }]),
        false,
    )
    .await;
    let path = |email: &str| sb.member_path(email);
    let (status, body) = sb
        .patch(
            &path("a@northwind.io"),
            json!({ "merge_fields": { "LNAME": "Byron" } }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["merge_fields"]["LNAME"], "Byron");
    let (status, body) = sb
        .patch(&path("ghost@northwind.io"), json!({ "merge_fields": {} }))
        .await;
    assert_eq!(problem_title(status, &body, 404), "Resource Not Found");
}

#[tokio::test]
async fn delete_archives_a_member() {
    let sb = spawn_sandbox().await;
    sb.batch(
        json!([{ "email_address": "a@northwind.io", "status": "subscribed" }]),
        false,
    )
    .await;
    let (status, _) = sb
        .delete(&format!(
            "/lists/{}/members/{}",
            sb.newsletter,
            subscriber_hash("a@northwind.io")
        ))
        .await;
    assert_eq!(status, 204);
    let (_, list) = sb.get(&format!("/lists/{}/members", sb.newsletter)).await;
    assert_eq!(list["total_items"], 0);
    let (_, archived) = sb
        .get(&format!("/lists/{}/members?status=archived", sb.newsletter))
        .await;
    assert_eq!(archived["total_items"], 1);
    assert_eq!(sb.member("a@northwind.io").await.1["status"], "archived");
}

#[tokio::test]
async fn a_permanently_deleted_address_cannot_be_added_again() {
    let sb = spawn_sandbox().await;
    sb.batch(
        json!([{ "email_address": "gone@northwind.io", "status": "subscribed" }]),
        false,
    )
    .await;
    let hash = subscriber_hash("gone@northwind.io");
    let (status, _) = sb
        .post(
            &format!(
                "/lists/{}/members/{hash}/actions/delete-permanent",
                sb.newsletter
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(sb.member("gone@northwind.io").await.0, 404);
    let (status, body) = sb
        .put(
            &format!("/lists/{}/members/{hash}", sb.newsletter),
            json!({ "email_address": "gone@northwind.io", "status_if_new": "subscribed" }),
        )
        .await;
    assert_eq!(
        problem_title(status, &body, 400),
        "Forgotten Email Not Subscribed"
    );
    let batch = sb
        .batch(
            json!([{ "email_address": "Gone@northwind.io", "status": "subscribed" }]),
            true,
        )
        .await;
    assert!(
        batch["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("permanently deleted")
    );
}

#[tokio::test]
async fn members_are_paged_and_filtered_by_status() {
    let sb = spawn_sandbox().await;
    let members: Vec<_> = (0..25)
        .map(|i| json!({ "email_address": format!("p{i:02}@northwind.io"), "status": if i % 5 == 0 { "unsubscribed" } else { "subscribed" } }))
        .collect();
    sb.batch(json!(members), false).await;
    let (_, page) = sb
        .get(&format!(
            "/lists/{}/members?count=10&offset=20",
            sb.newsletter
        ))
        .await;
    assert_eq!(page["total_items"], 25);
    let emails: Vec<&str> = page["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email_address"].as_str().unwrap())
        .collect();
    assert_eq!(
        emails,
        [
            "p20@northwind.io",
            "p21@northwind.io",
            "p22@northwind.io",
            "p23@northwind.io",
            "p24@northwind.io"
        ]
    );
    let (_, default) = sb.get(&format!("/lists/{}/members", sb.newsletter)).await;
    assert_eq!(
        default["members"].as_array().unwrap().len(),
        10,
        "count defaults to 10"
    );
    let (_, unsubscribed) = sb
        .get(&format!(
            "/lists/{}/members?status=unsubscribed&count=1000",
            sb.newsletter
        ))
        .await;
    assert_eq!(unsubscribed["total_items"], 5);
    let (status, body) = sb
        .get(&format!("/lists/{}/members?count=1001", sb.newsletter))
        .await;
    assert_eq!(problem_title(status, &body, 400), "Invalid Resource");
}

#[tokio::test]
async fn merge_fields_are_validated_against_the_audience() {
    let sb = spawn_sandbox().await;
    let body = sb
        .batch(json!([{ "email_address": "a@northwind.io", "status": "subscribed", "merge_fields": { "NOSUCH": "x" } }]), true)
        .await;
    assert_eq!(body["errors"][0]["field"], "NOSUCH");
    assert_eq!(
        body["errors"][0]["error"],
        "Your merge fields were invalid."
    );

    let (status, _) = sb
        .post(
            &format!("/lists/{}/merge-fields", sb.newsletter),
            json!({ "name": "Loyalty tier", "type": "text", "tag": "TIER", "required": true }),
        )
        .await;
    assert_eq!(status, 200);
    let body = sb
        .batch(
            json!([{ "email_address": "b@northwind.io", "status": "subscribed" }]),
            true,
        )
        .await;
    assert_eq!(
        body["errors"][0]["field"], "TIER",
        "a required field must be given for new members"
    );

    let (status, _) = sb
        .put(
            &format!(
                "/lists/{}/members/{}?skip_merge_validation=true",
                sb.newsletter,
                subscriber_hash("b@northwind.io")
            ),
            json!({ "email_address": "b@northwind.io", "status_if_new": "subscribed" }),
        )
        .await;
    assert_eq!(status, 200, "skip_merge_validation lets it through");

    let (status, _) = sb
        .post(
            &format!("/lists/{}/merge-fields", sb.newsletter),
            json!({ "name": "Points", "type": "number", "tag": "POINTS" }),
        )
        .await;
    assert_eq!(status, 200);
    let body = sb
        .batch(json!([{ "email_address": "b@northwind.io", "status": "subscribed", "merge_fields": { "POINTS": "lots" } }]), true)
        .await;
    assert_eq!(body["errors"][0]["field"], "POINTS");
}

#[tokio::test]
async fn text_sizes_dates_and_birthdays_are_checked_as_mailchimp_does() {
    let sb = spawn_sandbox().await;
    for field in [
        json!({ "name": "Nickname", "type": "text", "tag": "NICK", "options": { "size": 5 } }),
        json!({ "name": "Joined", "type": "date", "tag": "JOINED" }),
        json!({ "name": "Joined (EU)", "type": "date", "tag": "JOINEDEU", "options": { "date_format": "DD/MM/YYYY" } }),
        json!({ "name": "Birthday", "type": "birthday", "tag": "BDAY" }),
    ] {
        let (status, body) = sb
            .post(&format!("/lists/{}/merge-fields", sb.newsletter), field)
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, fields) = sb
        .get(&format!("/lists/{}/merge-fields", sb.newsletter))
        .await;
    let nick = fields["merge_fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["tag"] == "NICK")
        .unwrap();
    assert_eq!(nick["options"]["size"], 5, "the options are answered back");
    let refused = |email: &str, fields: serde_json::Value| json!({ "email_address": email, "status": "subscribed", "merge_fields": fields });
    let body = sb
        .batch(
            json!([
                refused("a@northwind.io", json!({ "NICK": "Adaline" })),
                refused("b@northwind.io", json!({ "JOINED": "2026-02-30" })),
                refused("c@northwind.io", json!({ "JOINED": "31/01/2026" })),
                refused("d@northwind.io", json!({ "BDAY": "13/01" })),
                refused("e@northwind.io", json!({ "NICK": "Ada", "JOINED": "01/31/2026", "JOINEDEU": "31/01/2026", "BDAY": "02/29" })),
                refused("f@northwind.io", json!({ "JOINED": "2026-01-31" })),
            ]),
            true,
        )
        .await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["NICK", "JOINED", "JOINED", "BDAY"]);
    assert_eq!(body["total_created"], 2, "the rest of the batch goes on");
}

/// Now, as Mailchimp writes times (whole seconds).
fn now_iso() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
        .replace('Z', "+00:00")
}

#[tokio::test]
async fn the_members_list_filters_on_when_members_changed_and_unsubscribed() {
    let sb = spawn_sandbox().await;
    let list = sb.newsletter.clone();
    sb.batch(
        json!([
            { "email_address": "kept@northwind.io", "status": "subscribed" },
            { "email_address": "edited@northwind.io", "status": "subscribed" },
            { "email_address": "leaving@northwind.io", "status": "subscribed" },
        ]),
        true,
    )
    .await;
    // Times have whole seconds: the mark falls after the first writes, the changes after it.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let mark = now_iso();
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let member = |email: &str| format!("/lists/{list}/members/{}", subscriber_hash(email));
    let (status, _) = sb
        .patch(
            &member("edited@northwind.io"),
            json!({ "merge_fields": { "FNAME": "Ed" } }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = sb
        .patch(
            &member("leaving@northwind.io"),
            json!({ "status": "unsubscribed" }),
        )
        .await;
    assert_eq!(status, 200);

    let emails = |body: &serde_json::Value| -> Vec<String> {
        let mut emails: Vec<String> = body["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["email_address"].as_str().unwrap().to_owned())
            .collect();
        emails.sort();
        emails
    };
    let mark = url::form_urlencoded::byte_serialize(mark.as_bytes()).collect::<String>();
    let (status, since) = sb
        .get(&format!(
            "/lists/{list}/members?since_last_changed={mark}&count=1000"
        ))
        .await;
    assert_eq!(status, 200, "{since}");
    assert_eq!(
        emails(&since),
        ["edited@northwind.io", "leaving@northwind.io"]
    );
    let (_, before) = sb
        .get(&format!(
            "/lists/{list}/members?before_last_changed={mark}&count=1000"
        ))
        .await;
    assert!(
        emails(&before).contains(&"kept@northwind.io".to_string()),
        "{before}"
    );
    assert!(!emails(&before).contains(&"edited@northwind.io".to_string()));
    let (_, unsubscribed) = sb
        .get(&format!(
            "/lists/{list}/members?unsubscribed_since={mark}&count=1000"
        ))
        .await;
    assert_eq!(emails(&unsubscribed), ["leaving@northwind.io"]);

    let (status, body) = sb
        .get(&format!(
            "/lists/{list}/members?status=subscribed&unsubscribed_since={mark}"
        ))
        .await;
    assert_eq!(problem_title(status, &body, 400), "Invalid Resource");
    let (status, body) = sb
        .get(&format!(
            "/lists/{list}/members?since_last_changed=yesterday"
        ))
        .await;
    assert_eq!(problem_title(status, &body, 400), "Invalid Resource");
}

#[tokio::test]
async fn patch_with_a_new_address_renames_the_contact_and_never_merges_two() {
    let sb = spawn_sandbox().await;
    sb.batch(
        json!([
            { "email_address": "old@northwind.io", "status": "unsubscribed",
              "merge_fields": { "FNAME": "Ada" }, "tags": ["Germany"] },
            { "email_address": "taken@northwind.io", "status": "subscribed" }
        ]),
        false,
    )
    .await;
    let path = |email: &str| sb.member_path(email);

    let (status, renamed) = sb
        .patch(
            &path("old@northwind.io"),
            json!({ "email_address": "New@Northwind.io", "merge_fields": { "FNAME": "Ada L." } }),
        )
        .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["email_address"], "new@northwind.io");
    assert_eq!(renamed["id"], subscriber_hash("new@northwind.io"));
    assert_eq!(renamed["status"], "unsubscribed", "it keeps its status");
    assert_eq!(renamed["merge_fields"]["FNAME"], "Ada L.");
    let tags: Vec<&str> = renamed["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["Germany"], "it keeps its tags");
    let (status, _) = sb.get(&path("old@northwind.io")).await;
    assert_eq!(status, 404, "the old address is gone");

    // The address of another contact: refused, both left as they were.
    let (status, body) = sb
        .patch(
            &path("new@northwind.io"),
            json!({ "email_address": "taken@northwind.io" }),
        )
        .await;
    assert_eq!(problem_title(status, &body, 400), "Member Exists", "{body}");
    let (status, still) = sb.get(&path("new@northwind.io")).await;
    assert_eq!(
        (status.as_u16(), &still["status"]),
        (200, &json!("unsubscribed"))
    );
    let (_, other) = sb.get(&path("taken@northwind.io")).await;
    assert_eq!(other["status"], "subscribed");
}
