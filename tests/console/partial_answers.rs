//! The console asks Mailchimp for partial answers (`fields=`): what it reads of each call,
//! not whole member records. The sandbox honours `fields` and `exclude_fields` and counts
//! the bytes of its answers, so the saving is measured, and the export stays exact.

use std::collections::BTreeMap;

use export_destinations::sandbox::SandboxConfig;
use export_destinations::store::runs::RunStatus;
use serde_json::{Value, json};

use crate::world::*;

const PEOPLE_COUNT: usize = 1200;
/// Those already in the audience, unsubscribed, before the first export.
const UNSUBSCRIBED: usize = 50;
/// Those who move from Germany to France before the second export.
const MOVED: usize = 100;

fn bytes(w: &World) -> BTreeMap<String, u64> {
    w.sandbox.stats().bytes_by_route
}

fn bytes_since(w: &World, before: &BTreeMap<String, u64>, route: &str) -> u64 {
    bytes(w).get(route).copied().unwrap_or(0) - before.get(route).copied().unwrap_or(0)
}

/// A call straight to the sandbox, as a client that asks for whole answers; the answer's
/// length in bytes.
async fn whole(w: &World, method: reqwest::Method, path: &str, body: Option<Value>) -> usize {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}/3.0{path}", w.sandbox_base))
        .basic_auth("x", Some(&w.key));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    assert!(response.status().is_success());
    response.bytes().await.unwrap().len()
}

fn country(i: usize, moved: bool) -> &'static str {
    if moved && i % 3 == 0 && i / 3 < MOVED {
        "France"
    } else {
        ["Germany", "France", "Spain"][i % 3]
    }
}

fn assert_exact(w: &World, moved: bool) {
    let members = audience(w);
    assert_eq!(members.len(), PEOPLE_COUNT);
    for (email, status, name, tags) in &members {
        let i: usize = email
            .trim_start_matches("person")
            .split('@')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let expected = if i < UNSUBSCRIBED {
            "unsubscribed"
        } else {
            "subscribed"
        };
        assert_eq!(status, expected, "{email}");
        assert_eq!(name, &format!("Name{i}"), "{email}");
        assert_eq!(
            tags,
            &vec![
                country(i, moved).to_owned(),
                "export-destinations".to_owned()
            ],
            "{email}"
        );
    }
}

#[tokio::test]
async fn the_console_asks_for_partial_answers_and_the_export_stays_exact() {
    let w = world(SandboxConfig::default()).await;
    let list = w.audience.clone();
    // Some are in the audience already, unsubscribed: the run reads their statuses. The
    // same batch subscribe asking for everything shows what a whole answer weighs.
    let already: Vec<Value> = (0..UNSUBSCRIBED)
        .map(|i| json!({ "email_address": format!("person{i}@northwind.io"), "status": "unsubscribed" }))
        .collect();
    let whole_batch = whole(
        &w,
        reqwest::Method::POST,
        &format!("/lists/{list}"),
        Some(json!({ "members": already, "update_existing": false })),
    )
    .await;
    let whole_per_member = whole_batch / UNSUBSCRIBED;
    let whole_page = whole(
        &w,
        reqwest::Method::GET,
        &format!("/lists/{list}/members?status=unsubscribed&count=1000"),
        None,
    )
    .await;
    let whole_merge_fields = whole(
        &w,
        reqwest::Method::GET,
        &format!("/lists/{list}/merge-fields?count=1000"),
        None,
    )
    .await;

    let mut csv = String::from("CustomerId,FirstName,Email,Country\n");
    for i in 0..PEOPLE_COUNT {
        csv.push_str(&format!(
            "C{i},Name{i},person{i}@northwind.io,{}\n",
            country(i, false)
        ));
    }
    import(&w.app, &csv).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    let france = segment(&w.app, "France", "Country", "France").await;
    let spain = segment(&w.app, "Spain", "Country", "Spain").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany, france, spain], "subscribed").await;

    let before = bytes(&w);
    let calls_before = routes(&w);
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful, "{:?}", run.message);
    assert_eq!(
        (run.counters.created, run.counters.updated),
        ((PEOPLE_COUNT - UNSUBSCRIBED) as i64, UNSUBSCRIBED as i64)
    );
    assert_exact(&w, false);
    let calls = calls_since(&w, &calls_before);

    // Batch subscribe: an address and a status a member, not the whole record.
    let batch = bytes_since(&w, &before, "POST /lists/{list_id}");
    let per_member = batch as usize / PEOPLE_COUNT;
    eprintln!("batch subscribe: {per_member} bytes a member, {whole_per_member} when whole");
    assert!(whole_per_member > 500, "a whole answer: {whole_per_member}");
    assert!(
        per_member < 200 && per_member * 5 < whole_per_member,
        "{per_member} bytes a member"
    );
    // The statuses read: an address a member.
    let pages = bytes_since(&w, &before, "GET /lists/{list_id}/members") as usize;
    eprintln!(
        "member pages: {} bytes a member, {} when whole",
        pages / UNSUBSCRIBED,
        whole_page / UNSUBSCRIBED
    );
    assert!(
        calls.contains_key("GET /lists/{list_id}/members"),
        "{calls:?}"
    );
    assert!(
        pages / UNSUBSCRIBED < 100 && pages * 5 < whole_page,
        "{pages} bytes for {UNSUBSCRIBED} members ({whole_page} whole)"
    );
    // Merge fields: what the console reads of each.
    let merge_fields = bytes_since(&w, &before, "GET /lists/{list_id}/merge-fields") as usize;
    let merge_calls = calls["GET /lists/{list_id}/merge-fields"] as usize;
    eprintln!(
        "merge fields: {} bytes a call, {whole_merge_fields} when whole",
        merge_fields / merge_calls
    );
    assert!(
        merge_fields / merge_calls * 2 < whole_merge_fields,
        "{merge_fields} bytes in {merge_calls} calls ({whole_merge_fields} whole)"
    );
    // The audience check and the tags were already partial.
    let check = bytes_since(&w, &before, "GET /lists/{list_id}") as usize;
    let whole_list = whole(&w, reqwest::Method::GET, &format!("/lists/{list}"), None).await;
    assert!(check * 5 < whole_list, "{check} bytes ({whole_list} whole)");

    // Some leave Germany for France: the tag comes off them with a tag call, whose
    // answer would list every member taken off in full.
    let mut moves = String::from("CustomerId,Country\n");
    for i in (0..PEOPLE_COUNT).filter(|i| i % 3 == 0).take(MOVED) {
        moves.push_str(&format!("C{i},France\n"));
    }
    import(&w.app, &moves).await;
    refresh(&w.app).await;
    let before = bytes(&w);
    let calls_before = routes(&w);
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful, "{:?}", run.message);
    assert_exact(&w, true);
    let calls = calls_since(&w, &calls_before);
    let untag_route = "POST /lists/{list_id}/segments/{segment_id}";
    assert!(calls.contains_key(untag_route), "{calls:?}");
    let untagged = bytes_since(&w, &before, untag_route) as usize;
    eprintln!(
        "tag removals: {} bytes a member taken off",
        untagged / MOVED
    );
    assert!(
        untagged / MOVED < 20,
        "{untagged} bytes for {MOVED} removals"
    );
}

/// The sandbox honours `fields` and `exclude_fields` on any JSON answer, and leaves a
/// problem document whole.
#[tokio::test]
async fn the_sandbox_cuts_its_answers_to_the_fields_asked() {
    let w = world(SandboxConfig::default()).await;
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut request = client
            .request(method, format!("{}/3.0{path}", w.sandbox_base))
            .basic_auth("x", Some(&w.key));
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let list = &w.audience;
    let (status, answer) = call(
        reqwest::Method::POST,
        format!("/lists/{list}?fields=new_members.email_address,new_members.status,total_created,errors"),
        Some(json!({ "members": [
            { "email_address": "ada@northwind.io", "status": "subscribed", "merge_fields": { "FNAME": "Ada" } },
            { "email_address": "not-an-address", "status": "subscribed" }
        ]})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["new_members"],
        json!([{ "email_address": "ada@northwind.io", "status": "subscribed" }])
    );
    assert_eq!(answer["total_created"], 1);
    assert_eq!(answer["errors"].as_array().unwrap().len(), 1);
    assert!(answer["errors"][0]["error"].is_string(), "kept whole");
    assert!(answer.get("updated_members").is_none());
    assert!(answer.get("_links").is_none());

    let (_, page) = call(
        reqwest::Method::GET,
        format!("/lists/{list}/members?exclude_fields=members.merge_fields,members.stats,members._links,_links"),
        None,
    )
    .await;
    let ada = &page["members"][0];
    assert_eq!(ada["email_address"], "ada@northwind.io");
    assert!(ada.get("merge_fields").is_none() && ada.get("stats").is_none());
    assert_eq!(ada["status"], "subscribed");
    assert!(page.get("_links").is_none() && page["total_items"] == 1);

    let (status, problem) = call(
        reqwest::Method::GET,
        "/lists/nosuchlist?fields=id".to_owned(),
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(problem["title"], "Resource Not Found");
    assert!(problem.get("detail").is_some(), "a problem stays whole");
}
