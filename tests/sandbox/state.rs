use export_destinations::sandbox::{Sandbox, SandboxConfig};
use serde_json::json;

use crate::helpers::spawn_with;

#[tokio::test]
async fn with_a_state_file_the_sandbox_remembers_audiences_members_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sandbox.json");
    let config = SandboxConfig {
        state_file: Some(file.clone()),
        ..SandboxConfig::default()
    };
    let sb = spawn_with(config.clone()).await;
    sb.batch(
        json!([{ "email_address": "ada@northwind.io", "status": "unsubscribed" }]),
        false,
    )
    .await;
    let token = sb
        .token_for(export_destinations::sandbox::store::DEFAULT_ACCOUNT)
        .await;
    sb.sandbox.save().unwrap();

    let reloaded = Sandbox::new(config, "http://127.0.0.1:1/".parse().unwrap()).unwrap();
    let store = reloaded.store();
    let audience = &store.audiences[&sb.newsletter];
    let member =
        &audience.members[&export_destinations::domain::subscriber_hash("ada@northwind.io")];
    assert_eq!(member.status.as_str(), "unsubscribed");
    assert!(
        store.tokens.contains_key(&token),
        "connected apps stay connected"
    );
    assert!(store.api_keys.contains_key(&sb.key));
}

#[tokio::test]
async fn the_same_seed_gives_the_same_audience_ids() {
    let a = spawn_with(SandboxConfig {
        seed: 42,
        ..SandboxConfig::default()
    })
    .await;
    let b = spawn_with(SandboxConfig {
        seed: 42,
        ..SandboxConfig::default()
    })
    .await;
    let c = spawn_with(SandboxConfig {
        seed: 43,
        ..SandboxConfig::default()
    })
    .await;
    assert_eq!(a.newsletter, b.newsletter);
    assert_ne!(a.newsletter, c.newsletter);
    assert_ne!(a.key, b.key, "credentials are never predictable");
}
