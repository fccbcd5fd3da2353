//! Authenticate with Mailchimp: the OAuth state, a denied consent, an audience that is
//! unknown or out of reach, and the API key as the alternative.

use export_destinations::domain::Role;
use export_destinations::sandbox::store::DEFAULT_ACCOUNT;
use export_destinations::store::destinations;

use crate::helpers::{assert_refused, spawn_app};
use crate::wizard::{audience, authenticate, connect, consent, id_of};

#[tokio::test]
async fn a_forged_missing_or_replayed_state_is_refused() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = connect(&app, "States", &audience(&app, "Customers")).await;
    let callback = consent(&app, &setup, "allow", DEFAULT_ACCOUNT).await;
    let forged = callback.replace("state=", "state=forged");
    let response = app.client.get(&forged).send().await.unwrap();
    assert_refused(response, 400, "This sign-in to Mailchimp cannot be used").await;
    // The forged attempt used up the pending state: even the real callback is now refused.
    assert_eq!(
        app.client.get(&callback).send().await.unwrap().status(),
        400
    );

    let callback = consent(&app, &setup, "allow", DEFAULT_ACCOUNT).await;
    let missing = callback.split("&state=").next().unwrap().to_owned();
    let response = app.client.get(&missing).send().await.unwrap();
    assert_eq!(response.status(), 400);

    let callback = consent(&app, &setup, "allow", DEFAULT_ACCOUNT).await;
    assert_eq!(
        app.client.get(&callback).send().await.unwrap().status(),
        303
    );
    let replayed = app.client.get(&callback).send().await.unwrap();
    assert_eq!(replayed.status(), 400, "a state works once");
}

#[tokio::test]
async fn another_persons_callback_state_is_worthless() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = connect(&app, "Mine", &audience(&app, "Customers")).await;
    let callback = consent(&app, &setup, "allow", DEFAULT_ACCOUNT).await;
    let mallory = app.another_client();
    mallory
        .signed_in_as("mallory@example.com", Role::Administrator)
        .await;
    let response = mallory.client.get(&callback).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        !destinations::find(app.state.db.pool(), id_of(&setup))
            .await
            .unwrap()
            .unwrap()
            .is_authenticated()
    );
}

#[tokio::test]
async fn denied_consent_leaves_the_destination_unconnected_with_a_clear_page() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = connect(&app, "Denied", &audience(&app, "Customers")).await;
    let callback = consent(&app, &setup, "deny", DEFAULT_ACCOUNT).await;
    let response = app.client.get(&callback).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let html = response.text().await.unwrap();
    assert!(html.contains("Mailchimp access was not granted"));
    assert!(html.contains(&format!("href=\"{setup}\"")));
    assert!(
        !destinations::find(app.state.db.pool(), id_of(&setup))
            .await
            .unwrap()
            .unwrap()
            .is_authenticated()
    );
}

#[tokio::test]
async fn an_unknown_audience_is_reported_and_no_credential_kept() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = connect(&app, "Nowhere", "0000000000").await;
    let response = authenticate(&app, &setup).await;
    assert_refused(response, 404, "Mailchimp has no audience with this ID").await;
    let stored = destinations::find(app.state.db.pool(), id_of(&setup))
        .await
        .unwrap()
        .unwrap();
    assert!(stored.credential.is_none());
}

#[tokio::test]
async fn an_account_that_cannot_see_the_audience_is_reported() {
    let app = spawn_app().await;
    let other = app
        .state
        .sandbox
        .clone()
        .unwrap()
        .store()
        .add_account("Another Company");
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = connect(&app, "Wrong account", &audience(&app, "Customers")).await;
    let callback = consent(&app, &setup, "allow", &other).await;
    let response = app.client.get(&callback).send().await.unwrap();
    assert_refused(
        response,
        403,
        "This Mailchimp account cannot use the audience",
    )
    .await;
}

#[tokio::test]
async fn an_api_key_is_the_alternative_to_oauth() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = connect(&app, "By key", &audience(&app, "Customers")).await;
    let id = id_of(&setup);
    let bad = app
        .post_form(
            &setup,
            &format!("/admin/export-destinations/{id}/api-key"),
            &[("api_key", "nope")],
        )
        .await;
    assert_refused(bad, 422, "a Mailchimp API key looks like").await;
    let unknown = app
        .post_form(
            &setup,
            &format!("/admin/export-destinations/{id}/api-key"),
            &[("api_key", "00000000000000000000000000000000-us1")],
        )
        .await;
    assert_refused(unknown, 422, "Mailchimp refused the credential").await;
    let key = app
        .state
        .sandbox
        .clone()
        .unwrap()
        .store()
        .api_keys
        .keys()
        .next()
        .unwrap()
        .clone();
    let ok = app
        .post_form(
            &setup,
            &format!("/admin/export-destinations/{id}/api-key"),
            &[("api_key", key.as_str())],
        )
        .await;
    assert_eq!(ok.status(), 303);
    let stored = destinations::find(app.state.db.pool(), id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.credential.as_ref().map(|c| c.method),
        Some(export_destinations::domain::destination::AuthMethod::ApiKey)
    );
    assert_eq!(
        app.state
            .secret_key
            .open(&stored.credential.as_ref().unwrap().sealed)
            .unwrap(),
        key
    );
    assert!(
        !app.get_html(&setup).await.contains(&key),
        "the key is never shown"
    );
}
