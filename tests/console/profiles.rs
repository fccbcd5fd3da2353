use export_destinations::domain::{FieldType, Role};
use export_destinations::store::{fields, profiles};

use crate::helpers::spawn_app;

const GOOD: &str = "CustomerId,FirstName,EmailAddress,Age,Joined,OptIn\n\
                    C1,Ada,Ada@Northwind.io,36,2020-01-05,true\n\
                    C2,José,jose@northwind.io,41,2021-03-01,false\n";

#[tokio::test]
async fn an_import_reports_every_rejected_row_with_its_line_and_reason_and_imports_the_rest() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Contributor).await;
    let first = app
        .import_report("first.csv", format!("\u{feff}{GOOD}"))
        .await;
    assert!(first.contains("Imported: 2 created, 0 updated."), "{first}");
    let pool = app.state.db.pool();
    let catalogue = fields::as_catalogue(&fields::list(pool).await.unwrap());
    assert_eq!(
        catalogue["EmailAddress"],
        FieldType::Email,
        "the BOM did not stick to the header"
    );
    assert_eq!(catalogue["Age"], FieldType::Number);
    assert_eq!(catalogue["Joined"], FieldType::Date);
    assert_eq!(catalogue["OptIn"], FieldType::Boolean);
    assert!(
        !catalogue.contains_key("CustomerId"),
        "the ID column is the profile's key, not a field"
    );

    let csv = "CustomerId,FirstName,EmailAddress,Age,Joined\n\
               C1,Ada,ada@northwind.io,36,2020-01-05\n\
               C2,Bob,bob@northwind.io,forty,2020-01-05\n\
               ,Nobody,x@northwind.io,20,2020-01-05\n\
               C4,Short,row@northwind.io\n\
               C5,Eve,not-an-email,29,2020-13-45\n\
               C6,Zoë,zoe@northwind.io,,\n\
               C1,Ada,ada@northwind.io,37,2020-01-05\n";
    let html = app.import_report("people.csv", csv).await;
    assert!(
        html.contains(
            "Imported with rejected rows: 1 created, 2 updated, <strong>4 rejected</strong>."
        ),
        "{html}"
    );
    let quoted = |s: &str| s.replace('"', "&#34;");
    assert!(
        html.contains(&quoted(
            "<td>3</td><td>C2</td><td>Age: \"forty\" is not a number.</td>"
        )),
        "{html}"
    );
    assert!(html.contains("<td>4</td><td></td><td>The customer ID is empty.</td>"));
    assert!(html.contains(
        "<td>5</td><td>C4</td><td>The row has 3 values; the header names 5 columns.</td>"
    ));
    assert!(html.contains(&quoted(
        "<td>6</td><td>C5</td><td>Joined: \"2020-13-45\" is not a date (YYYY-MM-DD).</td>"
    )));
    assert_eq!(
        profiles::count(pool).await.unwrap(),
        3,
        "C1, C2 and C6; C5's bad row added nothing"
    );
}

#[tokio::test]
async fn a_file_that_is_not_utf8_imports_nothing_and_says_why() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Contributor).await;
    let mut csv = b"CustomerId,Name\nC1,Ada\nC2,".to_vec();
    csv.extend_from_slice(&[0xff, 0xfe, b'\n']);
    let html = app.import_report("latin1.csv", csv).await;
    assert!(html.contains("The file was not imported; nothing was changed."));
    assert!(html.contains("Line 3 is not UTF-8 text"));
    assert_eq!(
        profiles::count(app.state.db.pool()).await.unwrap(),
        0,
        "not even line 2"
    );
}

#[tokio::test]
async fn malformed_files_are_refused_whole_with_a_clear_reason() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Contributor).await;
    let cases = [
        (
            "Email,Name\na@b.io,Ada\n",
            "No column holds the customer ID",
        ),
        (
            "CustomerId,Name,name\nC1,a,b\n",
            "the column \"name\" appears twice",
        ),
        ("", "The file is empty"),
        (
            "CustomerId,Name\nC1,Ada\nC2,\"never closed\nC3,Eve\n",
            "a quoted value starts here and never ends",
        ),
    ];
    for (csv, reason) in cases {
        let html = app.import_report("bad.csv", csv).await;
        assert!(html.contains("nothing was changed"), "{csv:?}");
        assert!(
            html.contains(&reason.replace('"', "&#34;"))
                || html.contains(&reason.replace('"', "&quot;")),
            "{csv:?}: {html}"
        );
    }
    assert_eq!(profiles::count(app.state.db.pool()).await.unwrap(), 0);
}

#[tokio::test]
async fn a_named_id_column_is_used() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Contributor).await;
    let response = app
        .upload_profiles("x.csv", "Ref,Email\nR-1,a@northwind.io\n", "Ref")
        .await;
    let html = app.finished_import(response).await;
    assert!(html.contains("1 created"), "{html}");
    let response = app
        .upload_profiles("x.csv", "Ref,Email\nR-1,a@northwind.io\n", "Nope")
        .await;
    let html = app.finished_import(response).await;
    assert!(
        html.contains("There is no column named &#34;Nope&#34;")
            || html.contains("There is no column named &quot;Nope&quot;"),
        "{html}"
    );
}

#[tokio::test]
async fn importing_again_updates_by_customer_id_and_keeps_other_fields() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Contributor).await;
    app.import_report("a.csv", GOOD).await;
    let html = app
        .import_report("b.csv", "CustomerId,Age,City\nC1,37,Berlin\nC3,,Paris\n")
        .await;
    assert!(html.contains("1 created, 1 updated"), "{html}");
    let page = app.get_html("/data/profiles?q=C1").await;
    let id = page
        .split("/data/profiles/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let profile = app.get_html(&format!("/data/profiles/{id}")).await;
    assert!(profile.contains("<td>37</td>"), "the new age");
    assert!(
        profile.contains("<td>Ada</td>"),
        "the first name from the first file is kept"
    );
    assert!(profile.contains("<td>Berlin</td>"));
}

#[tokio::test]
async fn profiles_are_searched_by_customer_id_or_email_and_paged() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Viewer).await;
    let mut csv = String::from("CustomerId,EmailAddress\n");
    for i in 0..120 {
        csv.push_str(&format!("K{i:03},person{i}@northwind.io\n"));
    }
    csv.push_str("Z1,Special.Person@Fabrikam.io\n");
    export_destinations::profiles::import::import_reader(
        &app.state.db,
        std::io::Cursor::new(csv.into_bytes()),
        "seed.csv",
        Default::default(),
        None,
        &|_, _| {},
    )
    .await
    .unwrap();
    let first = app.get_html("/data/profiles").await;
    assert!(first.contains("121 in all"));
    assert!(first.contains(">K000<") && first.contains(">K049<") && !first.contains(">K050<"));
    let next = first
        .split("after=")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let second = app
        .get_html(&format!("/data/profiles?q=&after={next}"))
        .await;
    assert!(second.contains(">K050<") && second.contains("Previous"));
    let by_email = app.get_html("/data/profiles?q=special.PERSON").await;
    assert!(by_email.contains(">Z1<") && !by_email.contains(">K000<"));
    let by_id = app.get_html("/data/profiles?q=K11").await;
    assert!(by_id.contains(">K110<") && by_id.contains(">K119<") && !by_id.contains(">K000<"));
    let none = app.get_html("/data/profiles?q=nobody").await;
    assert!(none.contains("No profile"));
}

#[tokio::test]
async fn profiles_are_found_by_the_start_of_their_name_too() {
    let app = spawn_app().await;
    app.signed_in_as("vera@example.com", Role::Viewer).await;
    crate::helpers::import_csv(
        &app.state.db,
        "CustomerId,First_Name,Surname,Email\n\
         P1,Ada,Lovelace,p1@northwind.io\n\
         P2,Adam,Smith,p2@northwind.io\n\
         P3,Grace,Hopper,p3@northwind.io\n\
         P4,Zoë,Adams,p4@northwind.io\n\
         P5,100%,Sure,p5@northwind.io\n",
    )
    .await;
    // The names are shown from the fields named so.
    let all = app.get_html("/data/profiles").await;
    assert!(all.contains("<td>Ada Lovelace</td>"), "{all}");
    // One word: a first or a last name starting so (not an ID or email prefix here).
    let ada = app.get_html("/data/profiles?q=ADA").await;
    assert!(ada.contains(r#"id="search-by-name""#), "{ada}");
    for id in ["P1", "P2", "P4"] {
        assert!(ada.contains(&format!(">{id}<")), "{id}: {ada}");
    }
    assert!(!ada.contains(">P3<"));
    // Two words: first name, then last name.
    let full = app.get_html("/data/profiles?q=ada%20love").await;
    assert!(full.contains(">P1<") && !full.contains(">P2<") && !full.contains(">P4<"));
    // LIKE's wildcards are only characters.
    let pct = app.get_html("/data/profiles?q=100%25").await;
    assert!(pct.contains(">P5<") && !pct.contains(">P1<"), "{pct}");
    let none = app.get_html("/data/profiles?q=%25").await;
    assert!(!none.contains(">P1<"), "{none}");
    // An email prefix still wins, through its index.
    let email = app.get_html("/data/profiles?q=p3@").await;
    assert!(email.contains(">P3<") && !email.contains(r#"id="search-by-name""#));
}

#[tokio::test]
async fn viewers_browse_profiles_but_cannot_import() {
    let app = spawn_app().await;
    app.signed_in_as("viewer@example.com", Role::Viewer).await;
    let html = app.get_html("/data/profiles").await;
    assert!(!html.contains("Import profiles"));
    let response = app.upload_profiles("x.csv", GOOD, "").await;
    assert_eq!(response.status(), 403);
    assert_eq!(profiles::count(app.state.db.pool()).await.unwrap(), 0);
}

#[tokio::test]
async fn an_upload_without_its_csrf_token_is_refused() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Contributor).await;
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(GOOD.as_bytes().to_vec()).file_name("x.csv"),
    );
    let response = app
        .client
        .post(app.url("/data/profiles/import"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn the_command_line_import_prints_the_report_and_fails_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.csv");
    std::fs::write(&good, "CustomerId,Age\nC1,3\nC2,x\n").unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "Name\nAda\n").unwrap();
    let run = |file: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_export-destinations"))
            .args(["import", "profiles"])
            .arg(file)
            .args(["--type", "Age=number", "--data-dir"])
            .arg(dir.path())
            .env_remove("DATABASE_URL")
            .output()
            .unwrap()
    };
    let ok = run(&good);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}");
    assert!(
        stdout.contains("2 rows read, 1 created, 0 updated, 1 rejected."),
        "{stdout}"
    );
    assert!(
        stdout.contains("Line 3: rejected (C2): Age: \"x\" is not a number."),
        "{stdout}"
    );
    let failed = run(&bad);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("No column holds the customer ID"));
}

#[tokio::test]
async fn a_new_console_loads_demo_profiles_and_segments() {
    let app = crate::helpers::spawn_app_with(|s| s.demo_data = true).await;
    let pool = app.state.db.pool();
    assert_eq!(profiles::count(pool).await.unwrap(), 20_000);
    let segments = export_destinations::store::segments::list(pool)
        .await
        .unwrap();
    assert_eq!(segments.len(), 6);
    assert!(
        segments
            .iter()
            .all(|s| s.member_count > 0 && s.last_refreshed_at.is_some())
    );
}

#[tokio::test]
async fn column_types_given_on_the_upload_form_override_inference() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Contributor).await;
    let token = crate::helpers::csrf_token(&app.get_html("/data/profiles").await);
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"CustomerId,Code\nC1,0042\nC2,x\n".to_vec())
                .file_name("t.csv"),
        )
        .text("types", "Code=number");
    let response = app
        .client
        .post(app.url(&format!("/data/profiles/import?csrf_token={token}")))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let html = app.finished_import(response).await;
    assert!(
        html.contains("1 created, 0 updated, <strong>1 rejected</strong>"),
        "{html}"
    );
    let catalogue = fields::as_catalogue(&fields::list(app.state.db.pool()).await.unwrap());
    assert_eq!(catalogue["Code"], FieldType::Number);
}

/// Uploads like the page's form, with or without "Refresh every segment when the import
/// ends".
async fn upload_with(app: &crate::helpers::TestApp, csv: &str, refresh: bool) -> reqwest::Response {
    let token = crate::helpers::csrf_token(&app.get_html("/data/profiles").await);
    let mut form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(csv.as_bytes().to_vec()).file_name("people.csv"),
    );
    if refresh {
        form = form.text("refresh_segments", "yes");
    }
    app.client
        .post(app.url(&format!("/data/profiles/import?csrf_token={token}")))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_upload_returns_at_once_and_its_page_follows_the_import_to_its_report() {
    let app = spawn_app().await;
    let segment = reachable(&app).await;

    // Without "refresh": the report says the segments lag behind, with the button.
    let csv = "CustomerId,Email\nP1,ada@northwind.io\n,nobody@northwind.io\n";
    let upload = upload_with(&app, csv, false).await;
    let job = crate::helpers::location(&upload);
    assert!(job.starts_with("/data/import-jobs/"), "{job}");
    let progress: serde_json::Value = app
        .get(&format!("{job}/progress.json"))
        .await
        .json()
        .await
        .unwrap();
    assert!(progress["bytes_total"].as_i64().unwrap() > 0, "{progress}");
    let report = app.finished_import(upload).await;
    assert!(
        report.contains(r#"class="notice warning" role="alert" id="import-result""#),
        "{report}"
    );
    assert!(report.contains("Segments do not include these changes yet"));
    assert!(report.contains(r#"action="/data/segments/refresh""#));
    let stale = export_destinations::store::segments::find(app.state.db.pool(), segment)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stale.member_count, 0, "not refreshed");

    // With "refresh": the segments include the import when the report opens.
    let upload = upload_with(&app, "CustomerId,Email\nP2,bob@northwind.io\n", true).await;
    let report = app.finished_import(upload).await;
    assert!(
        report.contains(r#"class="flash" role="status" id="import-result""#),
        "{report}"
    );
    assert!(
        report.contains("Segments: Refreshed 1 segment(s)"),
        "{report}"
    );
    assert!(!report.contains("Segments do not include these changes yet"));
    let fresh = export_destinations::store::segments::find(app.state.db.pool(), segment)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fresh.member_count, 3);
}

#[tokio::test]
async fn an_import_cut_short_by_a_stop_says_so_instead_of_running_forever() {
    use export_destinations::store::import_jobs;
    let app = spawn_app().await;
    app.signed_in_as("carol@example.com", Role::Contributor)
        .await;
    let id = import_jobs::create(app.state.db.pool(), "big.csv", 1_000, true, None)
        .await
        .unwrap();
    let running = app.get_html(&format!("/data/import-jobs/{id}")).await;
    assert!(
        running.contains("Importing…") && running.contains("<progress"),
        "{running}"
    );
    // Its console stopped beating a while ago; the next start notices.
    sqlx::query("UPDATE import_jobs SET heartbeat_at = 0 WHERE id = $1")
        .bind(id)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    let marked = import_jobs::interrupt_stale(
        app.state.db.pool(),
        export_destinations::profiles::jobs::STALE_MS,
    )
    .await
    .unwrap();
    assert_eq!(marked, 1);
    let stopped = app.get_html(&format!("/data/import-jobs/{id}")).await;
    assert!(stopped.contains("The import did not finish."), "{stopped}");
    assert!(stopped.contains("nothing of the file was imported"));
}

#[tokio::test]
async fn counts_read_with_thousands_separators() {
    let app = spawn_app().await;
    app.signed_in_as("carol@example.com", Role::Contributor)
        .await;
    let mut csv = String::from("CustomerId,Email\n");
    for i in 0..1_234 {
        csv.push_str(&format!("T{i},t{i}@northwind.io\n"));
    }
    let report = app.import_report("many.csv", csv).await;
    assert!(
        report.contains("Imported: 1,234 created, 0 updated."),
        "{report}"
    );
    let list = app.get_html("/data/profiles").await;
    assert!(list.contains("1,234 in all"), "{list}");
    assert!(list.contains(r#"<td class="num">1,234</td>"#), "{list}");
}

#[tokio::test]
async fn segments_include_an_import_at_once_without_a_refresh() {
    let app = spawn_app().await;
    let segment = reachable(&app).await;
    export_destinations::segments::refresh(&app.state.db, None)
        .await
        .unwrap();

    // "Refresh every segment" unticked: the segment follows the import all the same.
    let upload = upload_with(&app, "CustomerId,Email\nP1,one@northwind.io\nP2,\n", false).await;
    let report = app.finished_import(upload).await;
    assert!(
        !report.contains("Segments do not include these changes yet"),
        "{report}"
    );
    let followed = export_destinations::store::segments::find(app.state.db.pool(), segment)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(followed.member_count, 2, "P0 and P1, not P2 (no email)");
}

/// Carol, a contributor, signed in after a first import of one profile, and a segment of
/// the profiles with an email address.
async fn reachable(app: &crate::helpers::TestApp) -> i64 {
    app.signed_in_as("carol@example.com", Role::Contributor)
        .await;
    app.import_report("first.csv", "CustomerId,Email\nP0,zero@northwind.io\n")
        .await;
    use export_destinations::domain::segment_rules::{Condition, Match, Operator, SegmentRules};
    use export_destinations::store::segments::{self, Definition};
    let rules = SegmentRules {
        match_: Match::All,
        conditions: vec![Condition {
            field: "Email".into(),
            op: Operator::IsNotEmpty,
            value: String::new(),
        }],
    };
    segments::create(app.state.db.pool(), "Reachable", &Definition::Rules(rules))
        .await
        .unwrap()
}
