//! Drives the Mailchimp set-up as a browser would, over HTTP, against the built-in sandbox.

use export_destinations::sandbox::store::DEFAULT_ACCOUNT;

use crate::helpers::{PASSWORD, TestApp, csrf_token, location};

pub const PEOPLE: &str = "CustomerId,FirstName,LastName,EmailAddress,Country\n\
                          P1,Ada,Lovelace,ada@northwind.io,Germany\n\
                          P2,Bob,Brown,bob@fabrikam.io,France\n\
                          P3,Zoë,Dubois,zoe@northwind.io,Germany\n";

/// Profiles and one refreshed segment ("Germany") to export; returns the segment id.
pub async fn seed(app: &TestApp) -> i64 {
    use export_destinations::domain::segment_rules::{Condition, Match, Operator, SegmentRules};
    use export_destinations::store::segments::{self, Definition};
    export_destinations::profiles::import::import_reader(
        &app.state.db,
        std::io::Cursor::new(PEOPLE.as_bytes().to_vec()),
        "people.csv",
        Default::default(),
        None,
        &|_, _| {},
    )
    .await
    .unwrap();
    let rules = SegmentRules {
        match_: Match::All,
        conditions: vec![Condition {
            field: "Country".into(),
            op: Operator::Equals,
            value: "Germany".into(),
        }],
    };
    let id = segments::create(app.state.db.pool(), "Germany", &Definition::Rules(rules))
        .await
        .unwrap();
    export_destinations::segments::refresh(&app.state.db, None)
        .await
        .unwrap();
    id
}

/// The sandbox audience named `name`.
pub fn audience(app: &TestApp, name: &str) -> String {
    let sandbox = app.state.sandbox.clone().unwrap();
    let store = sandbox.store();
    store
        .audiences
        .values()
        .find(|a| a.name == name)
        .unwrap()
        .id
        .clone()
}

/// Display name + I agree + audience ID + Connect; returns the draft's setup path.
pub async fn connect(app: &TestApp, name: &str, audience_id: &str) -> String {
    let response = app
        .post_form(
            "/admin/export-destinations/mailchimp/new",
            "/admin/export-destinations/mailchimp",
            &[
                ("display_name", name),
                ("consent", "yes"),
                ("audience_id", audience_id),
            ],
        )
        .await;
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    location(&response)
}

pub fn id_of(setup_path: &str) -> i64 {
    setup_path.split('/').nth(3).unwrap().parse().unwrap()
}

/// Authenticate with Mailchimp up to the callback URL the sandbox sends the browser to.
pub async fn consent(app: &TestApp, setup: &str, decision: &str, account: &str) -> String {
    let id = id_of(setup);
    let response = app
        .post_form(
            setup,
            &format!("/admin/export-destinations/{id}/authenticate"),
            &[],
        )
        .await;
    assert_eq!(response.status(), 303);
    let authorize = location(&response);
    assert!(
        authorize.starts_with(&app.url("/sandbox/oauth2/authorize?")),
        "{authorize}"
    );
    let page = app
        .client
        .get(&authorize)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let field = |name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let start = page.find(&marker).unwrap() + marker.len();
        page[start..start + page[start..].find('"').unwrap()].to_owned()
    };
    let answer = app
        .client
        .post(app.url("/sandbox/oauth2/authorize"))
        .form(&[
            ("consent_id", field("consent_id").as_str()),
            ("page_token", field("page_token").as_str()),
            ("account_id", account),
            ("decision", decision),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    location(&answer)
}

/// The OAuth round trip with consent given; returns the callback's response.
pub async fn authenticate(app: &TestApp, setup: &str) -> reqwest::Response {
    let callback = consent(app, setup, "allow", DEFAULT_ACCOUNT).await;
    app.client.get(&callback).send().await.unwrap()
}

pub async fn add_export_user(app: &TestApp, setup: &str) -> reqwest::Response {
    let id = id_of(setup);
    app.post_form(
        setup,
        &format!("/admin/export-destinations/{id}/export-user"),
        &[("password", PASSWORD)],
    )
    .await
}

/// Configure and Save with the given segments.
pub async fn save(app: &TestApp, id: i64, segments: &[i64]) -> reqwest::Response {
    save_named(app, id, "Newsletter export", segments).await
}

/// Configure and Save under `name` with the given segments.
pub async fn save_named(app: &TestApp, id: i64, name: &str, segments: &[i64]) -> reqwest::Response {
    let page = format!("/admin/export-destinations/{id}/configure");
    let token = csrf_token(&app.get_html(&page).await);
    let segment_values: Vec<String> = segments.iter().map(i64::to_string).collect();
    let mut form: Vec<(&str, &str)> = vec![
        ("csrf_token", &token),
        ("display_name", name),
        ("email_field", "EmailAddress"),
        ("map_tag_0", "FNAME"),
        ("map_field_0", "FirstName"),
        ("map_tag_1", "LNAME"),
        ("map_field_1", "LastName"),
        ("new_member_status", "subscribed"),
        ("action", "save"),
    ];
    for value in &segment_values {
        form.push(("segment", value));
    }
    app.post_raw(&page, &form).await
}

/// Every step of the brief, done right; returns the destination id.
/// A console with the seeded people and segment, an administrator signed in, and a
/// destination set up through the pages: (console, segment, destination).
pub async fn set_up() -> (TestApp, i64, i64) {
    let app = crate::helpers::spawn_app().await;
    let segment = seed(&app).await;
    app.signed_in_as(
        "ada@example.com",
        export_destinations::domain::Role::Administrator,
    )
    .await;
    let id = complete(&app, segment).await;
    (app, segment, id)
}

pub async fn complete(app: &TestApp, segment: i64) -> i64 {
    let setup = connect(
        app,
        "Newsletter export",
        &audience(app, "Newsletter subscribers"),
    )
    .await;
    assert_eq!(authenticate(app, &setup).await.status(), 303);
    assert_eq!(add_export_user(app, &setup).await.status(), 303);
    let id = id_of(&setup);
    assert_eq!(save(app, id, &[segment]).await.status(), 303);
    id
}
