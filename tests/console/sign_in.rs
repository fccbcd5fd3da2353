use export_destinations::domain::Role;

use crate::helpers::{
    ACCOUNT_MAX_FAILURES, MAX_FAILURES, PASSWORD, assert_refused, csrf_token, location, new_client,
    spawn_app,
};

#[tokio::test]
async fn the_right_password_signs_in_and_lands_on_export_destinations() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", Role::Administrator)
        .await;
    let response = app.sign_in("ada@example.com", PASSWORD).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/admin/export-destinations");
    let html = app.get_html("/admin/export-destinations").await;
    assert!(html.contains("<h1>Export destinations</h1>"));
    assert!(html.contains("Sign out"));
}

#[tokio::test]
async fn a_wrong_password_or_unknown_address_gets_the_same_message_and_no_session() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", Role::Administrator)
        .await;
    for (email, password) in [
        ("ada@example.com", "wrong password!"),
        ("nobody@example.com", PASSWORD),
    ] {
        let response = app.sign_in(email, password).await;
        assert_eq!(response.status(), 401);
        let html = response.text().await.unwrap();
        assert!(html.contains("The email address or password is not right."));
    }
    let page = app.get("/admin/export-destinations").await;
    assert_eq!(page.status(), 303);
    assert!(location(&page).starts_with("/sign-in"));
}

#[tokio::test]
async fn repeated_failures_pause_sign_in_even_with_the_right_password() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", Role::Administrator)
        .await;
    for attempt in 1..MAX_FAILURES {
        let response = app.sign_in("ada@example.com", "wrong password!").await;
        assert_eq!(response.status(), 401, "attempt {attempt}");
    }
    let last = app.sign_in("ada@example.com", "wrong password!").await;
    assert_refused(last, 429, "Too many failed sign-in attempts").await;
    let right = app.sign_in("ada@example.com", PASSWORD).await;
    assert_eq!(right.status(), 429);
    let html = right.text().await.unwrap();
    assert!(html.contains("try again in 15 minutes"), "{html}");
    assert_eq!(app.get("/admin/export-destinations").await.status(), 303);
}

#[tokio::test]
async fn a_pause_on_one_account_leaves_other_accounts_alone() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", Role::Administrator)
        .await;
    app.create_user("bob@example.com", Role::Viewer).await;
    for _ in 0..MAX_FAILURES {
        app.sign_in("ada@example.com", "wrong password!").await;
    }
    assert_eq!(app.sign_in("bob@example.com", PASSWORD).await.status(), 303);
}

#[tokio::test]
async fn signing_out_ends_the_session() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Viewer).await;
    let response = app
        .post_form("/admin/export-destinations", "/sign-out", &[])
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/sign-in");
    let page = app.get("/admin/export-destinations").await;
    assert_eq!(page.status(), 303);
}

#[tokio::test]
async fn the_session_id_changes_at_sign_in_and_the_old_one_grants_nothing() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", Role::Administrator)
        .await;
    app.get_html("/sign-in").await;
    assert_eq!(
        app.session_cookie(),
        None,
        "the sign-in page opens no session"
    );
    assert_eq!(app.sign_in("ada@example.com", PASSWORD).await.status(), 303);
    let before = app.session_cookie().unwrap();
    // Signing in again (say, as someone else on a shared computer) starts a new session.
    assert_eq!(app.sign_in("ada@example.com", PASSWORD).await.status(), 303);
    let after = app.session_cookie().unwrap();
    assert_ne!(before, after);
    // The earlier session id is worth nothing after sign-in.
    let attacker = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = attacker
        .get(app.url("/admin/export-destinations"))
        .header("cookie", format!("export_destinations_session={before}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert!(location(&response).starts_with("/sign-in"));
}

#[tokio::test]
async fn the_session_cookie_is_http_only_and_same_site_lax() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", Role::Administrator)
        .await;
    // The sign-in page's own cookie (its form's token), then the session's at sign-in.
    let page = app.get("/sign-in").await;
    let signed_in = app.sign_in("ada@example.com", PASSWORD).await;
    for response in [page, signed_in] {
        let cookie = response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        assert!(cookie.contains("SameSite=Lax"), "{cookie}");
        assert!(
            !cookie.contains("Secure"),
            "plain http must not mark cookies Secure: {cookie}"
        );
    }
}

#[tokio::test]
async fn an_https_public_url_makes_the_session_cookie_secure() {
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.public_url = Some("https://console.example.com/".parse().unwrap());
    })
    .await;
    app.create_user("ada@example.com", Role::Administrator)
        .await;
    let response = app.get("/sign-in").await;
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.contains("Secure"), "{cookie}");
    assert!(response.headers().contains_key("strict-transport-security"));
}

#[tokio::test]
async fn sign_in_returns_to_the_page_asked_for_but_never_to_another_site() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", Role::Administrator)
        .await;
    let redirect = app.get("/admin/users").await;
    assert_eq!(location(&redirect), "/sign-in?next=%2Fadmin%2Fusers");
    let response = app
        .post_form(
            "/sign-in",
            "/sign-in",
            &[
                ("email", "ada@example.com"),
                ("password", PASSWORD),
                ("next", "/admin/users"),
            ],
        )
        .await;
    assert_eq!(location(&response), "/admin/users");

    let (client, _) = new_client();
    let token = crate::helpers::csrf_token(
        &client
            .get(app.url("/sign-in"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let response = client
        .post(app.url("/sign-in"))
        .form(&[
            ("email", "ada@example.com"),
            ("password", PASSWORD),
            ("next", "//evil.example/"),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&response), "/admin/export-destinations");
}

#[tokio::test]
async fn a_deactivated_account_cannot_sign_in() {
    let app = spawn_app().await;
    let id = app.create_user("gone@example.com", Role::Contributor).await;
    export_destinations::store::users::set_deactivated(app.state.db.pool(), id, Some(1))
        .await
        .unwrap();
    let response = app.sign_in("gone@example.com", PASSWORD).await;
    assert_eq!(response.status(), 403);
    assert!(response.text().await.unwrap().contains("deactivated"));
}

/// Each attempt comes from its own browser with its own form token, all at once.
async fn parallel_sign_ins(
    app: &crate::helpers::TestApp,
    attempts: Vec<(&'static str, &'static str)>,
) -> Vec<(u16, String)> {
    let mut prepared = Vec::new();
    for (email, password) in attempts {
        let browser = app.another_client();
        let token = csrf_token(&browser.get_html("/sign-in").await);
        prepared.push((browser, token, email, password));
    }
    let tasks = prepared
        .into_iter()
        .map(|(browser, token, email, password)| {
            tokio::spawn(async move {
                let response = browser
                    .post_raw(
                        "/sign-in",
                        &[
                            ("email", email),
                            ("password", password),
                            ("next", ""),
                            ("csrf_token", &token),
                        ],
                    )
                    .await;
                let status = response.status().as_u16();
                (status, response.text().await.unwrap())
            })
        });
    futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn a_burst_of_parallel_wrong_sign_ins_checks_no_more_passwords_than_the_limit() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", Role::Administrator)
        .await;
    let before = app.state.hasher.verifications();
    let mut attempts = vec![("ada@example.com", "wrong password!"); 40];
    // The right password in the middle of the burst gets no special treatment.
    attempts.insert(20, ("ada@example.com", PASSWORD));
    let results = parallel_sign_ins(&app, attempts).await;
    let checked = app.state.hasher.verifications() - before;
    assert!(
        checked <= u64::from(MAX_FAILURES),
        "{checked} passwords were checked; the limit is {MAX_FAILURES}"
    );
    let refused = results.iter().filter(|(status, _)| *status == 429).count();
    assert!(refused >= 41 - MAX_FAILURES as usize, "{results:?}");
    assert!(
        results
            .iter()
            .filter(|(status, _)| *status == 429)
            .all(|(_, html)| html.contains("try again in 15 minutes"))
    );
    // The right password was admitted only if it was among the checks the limit allows;
    // then it signed in, and a right password starts this address's count again. Otherwise
    // the burst used up the window, and the right password now waits too.
    let (right, _) = &results[20];
    let expected = match right {
        303 => 303,
        429 => 429,
        other => panic!("the right password got {other}"),
    };
    assert_eq!(
        app.sign_in("ada@example.com", PASSWORD).await.status(),
        expected
    );
}

#[tokio::test]
async fn guesses_from_many_addresses_meet_an_account_wide_ceiling_that_spares_known_addresses() {
    let app = ada_who_signed_in_here_before().await;
    let before = app.state.hasher.verifications();
    let statuses = guesses_from_elsewhere(&app, ACCOUNT_MAX_FAILURES + 2).await;
    for (i, status) in statuses.iter().enumerate() {
        let guess = i as u32 + 1;
        let expected = if guess < ACCOUNT_MAX_FAILURES {
            401
        } else {
            429
        };
        assert_eq!(*status, expected, "guess {guess}");
    }
    assert_eq!(
        app.state.hasher.verifications() - before,
        u64::from(ACCOUNT_MAX_FAILURES),
        "guesses past the account-wide ceiling are not checked"
    );
    // A new address is paused, and told for how long ...
    let newcomer = app.client_from(std::net::IpAddr::from([127, 0, 0, 200]));
    let paused = newcomer.sign_in("ada@example.com", PASSWORD).await;
    assert_refused(paused, 429, "try again in 15 minutes").await;
    // ... but Ada, where she signed in before, is not locked out by the attack.
    assert_eq!(app.sign_in("ada@example.com", PASSWORD).await.status(), 303);
}

#[tokio::test]
async fn a_right_password_starts_the_address_count_again() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", Role::Administrator)
        .await;
    for _ in 1..MAX_FAILURES {
        assert_eq!(
            app.sign_in("ada@example.com", "wrong password!")
                .await
                .status(),
            401
        );
    }
    assert_eq!(app.sign_in("ada@example.com", PASSWORD).await.status(), 303);
    app.post_form("/admin/export-destinations", "/sign-out", &[])
        .await;
    for _ in 1..MAX_FAILURES {
        assert_eq!(
            app.sign_in("ada@example.com", "wrong password!")
                .await
                .status(),
            401
        );
    }
}

#[tokio::test]
async fn an_address_last_used_more_than_30_days_ago_is_no_longer_spared() {
    let app = ada_who_signed_in_here_before().await;
    let long_ago = export_destinations::db::now_millis() - 31 * 24 * 60 * 60 * 1000;
    sqlx::query("UPDATE sign_in_known_addresses SET last_seen_at = $1")
        .bind(long_ago)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    // Guesses from elsewhere fill the account-wide ceiling ...
    guesses_from_elsewhere(&app, ACCOUNT_MAX_FAILURES).await;
    // ... and now count for the old address too.
    assert_eq!(app.sign_in("ada@example.com", PASSWORD).await.status(), 429);
}

/// Ada's account, which signed in from 127.0.0.1 (her usual address) and signed out.
async fn ada_who_signed_in_here_before() -> crate::helpers::TestApp {
    let app = spawn_app().await;
    app.create_user("ada@example.com", Role::Administrator)
        .await;
    assert_eq!(app.sign_in("ada@example.com", PASSWORD).await.status(), 303);
    app.post_form("/admin/export-destinations", "/sign-out", &[])
        .await;
    app
}

/// At least `count` wrong guesses at Ada's password from other addresses (127.0.0.2 …),
/// each staying under the per-address limit; the status of each.
async fn guesses_from_elsewhere(app: &crate::helpers::TestApp, count: u32) -> Vec<u16> {
    let mut statuses = Vec::new();
    for host in 2u8.. {
        let attacker = app.client_from(std::net::IpAddr::from([127, 0, 0, host]));
        for _ in 1..MAX_FAILURES {
            let response = attacker.sign_in("ada@example.com", "wrong password!").await;
            statuses.push(response.status().as_u16());
        }
        if statuses.len() >= count as usize {
            return statuses;
        }
    }
    statuses
}

/// Session rows in the console's database, and their expiry times.
async fn session_rows(app: &crate::helpers::TestApp) -> (i64, Vec<String>) {
    let table = match app.state.db.backend() {
        export_destinations::db::Backend::Sqlite => "tower_sessions",
        export_destinations::db::Backend::Postgres => "tower_sessions.session",
    };
    let pool = app.state.db.pool();
    let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap();
    let expiries: Vec<String> =
        sqlx::query_scalar(&format!("SELECT CAST(expiry_date AS TEXT) FROM {table}"))
            .fetch_all(pool)
            .await
            .unwrap();
    (count, expiries)
}

#[tokio::test]
async fn pages_before_sign_in_open_no_session_and_their_forms_still_need_the_token() {
    let app = spawn_app().await;
    // The first-administrator page, then the sign-in page, shown and refused a few times.
    assert_eq!(app.get("/setup").await.status(), 200);
    app.create_user("ada@example.com", Role::Administrator)
        .await;
    for _ in 0..2 {
        app.get_html("/sign-in").await;
        let refused = app.sign_in("ada@example.com", "wrong password").await;
        assert_eq!(refused.status(), 401);
    }
    assert_eq!(app.session_cookie(), None);
    assert_eq!(session_rows(&app).await.0, 0, "no session rows");
    // Posted from elsewhere (no token, or a token of another browser), sign-in is refused.
    let other = app.another_client();
    other.get_html("/sign-in").await;
    let token = crate::helpers::csrf_token(&app.get_html("/sign-in").await);
    let forged = other
        .client
        .post(other.url("/sign-in"))
        .form(&[
            ("email", "ada@example.com"),
            ("password", PASSWORD),
            ("csrf_token", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403, "another browser's token is refused");
    let bare = reqwest::Client::new()
        .post(app.url("/sign-in"))
        .form(&[("email", "ada@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 403);
    assert_eq!(session_rows(&app).await.0, 0);
    // With its own page's token, sign-in works and opens one session.
    assert_eq!(app.sign_in("ada@example.com", PASSWORD).await.status(), 303);
    assert_eq!(session_rows(&app).await.0, 1);
}

#[tokio::test]
async fn viewing_pages_does_not_rewrite_the_session() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let (_, before) = session_rows(&app).await;
    // Past the next whole second, so that an extended expiry would show in the row.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    for path in [
        "/admin/export-destinations",
        "/data/profiles",
        "/admin/export-destinations",
    ] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
    let (count, after) = session_rows(&app).await;
    assert_eq!(count, 1);
    assert_eq!(
        before, after,
        "pages that change nothing leave the session row as it was"
    );
}
