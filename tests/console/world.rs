//! A console exporting to a standalone sandbox reached by API key, with the sandbox's
//! limits and faults set per test, and what the tests read back from it.

use export_destinations::domain::Role;
use export_destinations::sandbox::SandboxConfig;
use export_destinations::sandbox::standalone::RunningSandbox;
use export_destinations::sandbox::webhooks::{MemberChange, Source};
use export_destinations::store::runs::{self, Run};
use serde_json::Value;

use crate::helpers::{
    Target, TestApp, equals_segment, import_csv, saved_destination, spawn_app_with,
};

/// A console whose Mailchimp is a standalone sandbox (reached by API key), so that the
/// sandbox's limits and faults can be set per test.
pub(crate) struct World {
    pub(crate) app: TestApp,
    pub(crate) sandbox: export_destinations::sandbox::Sandbox,
    pub(crate) sandbox_base: String,
    pub(crate) audience: String,
    pub(crate) key: String,
}

impl World {
    /// The contact unsubscribes in Mailchimp (a campaign's link): as Mailchimp does, the
    /// change is dated and told to the audience's webhooks.
    pub(crate) fn unsubscribes(&self, email: &str) {
        self.changes(email, MemberChange::Unsubscribe);
    }

    /// The contact subscribes again in Mailchimp, through a signup form.
    pub(crate) fn subscribes_again(&self, email: &str) {
        self.changes(email, MemberChange::Subscribe);
    }

    fn changes(&self, email: &str, change: MemberChange) {
        self.sandbox
            .change_member(&self.audience, email, change, Source::User)
            .unwrap();
    }
}

pub(crate) async fn world(config: SandboxConfig) -> World {
    world_with(config, |_| {}).await
}

pub(crate) async fn world_with(
    config: SandboxConfig,
    configure: impl FnOnce(&mut export_destinations::Settings) + Send + 'static,
) -> World {
    let running = RunningSandbox::bind(config, "127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let sandbox = running.sandbox.clone();
    let sandbox_base = format!("http://{}", running.addr);
    tokio::spawn(running.serve(std::future::pending()));
    let (key, audience) = {
        let store = sandbox.store();
        let key = store.api_keys.keys().next().unwrap().clone();
        let audience = store
            .audiences
            .values()
            .find(|a| a.name == "Newsletter subscribers")
            .unwrap()
            .id
            .clone();
        (key, audience)
    };
    let base = sandbox_base.clone();
    let app = spawn_app_with(move |settings| {
        // A real user's setup: Mailchimp reached with an API key, no OAuth app, no sandbox.
        settings.mailchimp = export_destinations::config::MailchimpSettings {
            sandbox: false,
            app: None,
            oauth_base_url: None,
            api_base_template: Some(base.clone()),
        };
        configure(settings);
    })
    .await;
    World {
        app,
        sandbox,
        sandbox_base,
        audience,
        key,
    }
}

pub(crate) async fn import(app: &TestApp, csv: &str) {
    import_csv(&app.state.db, csv).await;
}

pub(crate) async fn segment(app: &TestApp, name: &str, field: &str, value: &str) -> i64 {
    equals_segment(&app.state.db, name, field, value).await
}

pub(crate) async fn refresh(app: &TestApp) {
    export_destinations::segments::refresh(&app.state.db, None)
        .await
        .unwrap();
}

/// A saved destination for the sandbox audience, made through the stores.
pub(crate) async fn destination(w: &World, segment_ids: &[i64], status: &str) -> i64 {
    let owner = w
        .app
        .create_user(
            &format!("owner{}@example.com", segment_ids.len()),
            Role::Administrator,
        )
        .await;
    let target = Target {
        api_base: &w.sandbox_base,
        key: &w.key,
        audience: &w.audience,
        audience_name: "Newsletter subscribers",
    };
    saved_destination(
        &w.app.state.db,
        &w.app.state.secret_key,
        owner,
        "Newsletter",
        target,
        segment_ids,
        status,
    )
    .await
}

/// Queues a run and waits for the console's worker to finish it.
pub(crate) async fn export(w: &World, destination: i64, full: bool) -> Run {
    let mut conn = w.app.state.db.pool().acquire().await.unwrap();
    let (id, _) = runs::enqueue(&mut conn, destination, full, None)
        .await
        .unwrap();
    drop(conn);
    wait(w, id).await
}

pub(crate) async fn wait(w: &World, id: i64) -> Run {
    crate::helpers::finished_run(&w.app.state.db, id).await
}

/// The sandbox audience as (email, status, FNAME, tags).
pub(crate) fn audience(w: &World) -> Vec<(String, String, String, Vec<String>)> {
    let store = w.sandbox.store();
    let list = &store.audiences[&w.audience];
    let mut members: Vec<_> = list
        .members
        .values()
        .map(|m| {
            let mut tags: Vec<String> = list.tag_names(m).into_iter().map(|(_, n)| n).collect();
            tags.sort();
            (
                m.email_address.to_lowercase(),
                m.status.as_str().to_owned(),
                m.merge_fields
                    .get("FNAME")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                tags,
            )
        })
        .collect();
    members.sort();
    members
}

pub(crate) fn writes(w: &World, email: &str) -> u64 {
    let store = w.sandbox.store();
    store.audiences[&w.audience].members[&export_destinations::domain::subscriber_hash(email)]
        .writes
}

pub(crate) const PEOPLE: &str = "CustomerId,FirstName,Email,Country\n\
                      P1,Ada,ada@northwind.io,Germany\n\
                      P2,Bob,bob@fabrikam.io,France\n\
                      P3,Zoë,zoe@northwind.io,Germany\n\
                      P4,Nobody,,Germany\n\
                      P5,Broken,not-an-address,Germany\n\
                      P6,Ada Again,ADA@northwind.io,Germany\n";

/// Calls the sandbox answered on each route since `before`.
pub(crate) fn calls_since(
    w: &World,
    before: &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    w.sandbox
        .stats()
        .calls_by_route
        .into_iter()
        .map(|(route, n)| {
            let was = before.get(&route).copied().unwrap_or(0);
            (route, n - was)
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

pub(crate) fn routes(w: &World) -> std::collections::BTreeMap<String, u64> {
    w.sandbox.stats().calls_by_route.into_iter().collect()
}
