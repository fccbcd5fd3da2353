use crate::helpers::spawn_app;

#[tokio::test]
async fn health_and_readiness_answer_without_signing_in() {
    let app = spawn_app().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().await.unwrap(), "ready");
}

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let app = spawn_app().await;
    app.state.db.pool().close().await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
}
