//! Segments follow each profile change: after random writes and deletions through the
//! profile API (one profile, a bulk write) and imports, every segment holds exactly the
//! members, and the count, that a refresh of every profile then finds.

use export_destinations::db::Db;
use export_destinations::domain::Role;
use export_destinations::domain::segment_rules::{Condition, Match, Operator, SegmentRules};
use export_destinations::store::segments::{self, Definition};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};

use crate::api::{call, token};
use crate::helpers::{import_csv, spawn_app};

/// Each segment's members (customer IDs, in profile order) and its member count.
async fn memberships(db: &Db, ids: &[i64]) -> Vec<(Vec<String>, i64)> {
    let mut all = Vec::new();
    for id in ids {
        let members = segments::members(db.pool(), *id, 0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.customer_id)
            .collect();
        let count = segments::find(db.pool(), *id)
            .await
            .unwrap()
            .unwrap()
            .member_count;
        all.push((members, count));
    }
    all
}

fn rules(match_: Match, conditions: &[(&str, Operator, &str)]) -> Definition {
    Definition::Rules(SegmentRules {
        match_,
        conditions: conditions
            .iter()
            .map(|(field, op, value)| Condition {
                field: (*field).into(),
                op: *op,
                value: (*value).into(),
            })
            .collect(),
    })
}

/// A random profile's fields: a country or none, an age.
fn random_fields(rng: &mut StdRng) -> Value {
    let country = [
        json!("France"),
        json!("Germany"),
        json!("Spain"),
        Value::Null,
    ]
    .choose(rng)
    .cloned()
    .unwrap();
    json!({ "Country": country, "Age": rng.gen_range(10..60) })
}

#[tokio::test]
async fn segments_follow_random_changes_as_a_refresh_of_every_profile_finds_them() {
    let app = spawn_app().await;
    let db = &app.state.db;
    import_csv(
        db,
        "CustomerId,Email,Country,Age\nC0,c0@example.com,France,20\n",
    )
    .await;
    let pool = db.pool();
    let mut ids = Vec::new();
    for (name, definition) in [
        (
            "France",
            rules(Match::All, &[("Country", Operator::Equals, "France")]),
        ),
        (
            "Over 30",
            rules(Match::All, &[("Age", Operator::GreaterThan, "30")]),
        ),
        (
            "Germany or young",
            rules(
                Match::Any,
                &[
                    ("Country", Operator::Equals, "Germany"),
                    ("Age", Operator::LessThan, "25"),
                ],
            ),
        ),
        (
            "No country",
            rules(Match::All, &[("Country", Operator::IsEmpty, "")]),
        ),
        ("Listed", Definition::Static),
    ] {
        ids.push(segments::create(pool, name, &definition).await.unwrap());
    }
    let listed: Vec<String> = ["C1", "C3", "C5", "C7", "C11", "C99"]
        .iter()
        .map(|c| (*c).to_string())
        .collect();
    let mut conn = pool.acquire().await.unwrap();
    segments::set_static_ids(&mut conn, ids[4], &listed)
        .await
        .unwrap();
    drop(conn);
    export_destinations::segments::refresh(db, None)
        .await
        .unwrap();
    let initial = memberships(db, &ids).await;

    let ci = token(&app, "ci@example.com", Role::Contributor).await;
    let mut rng = StdRng::seed_from_u64(20261207);
    for _ in 0..80 {
        let customer = format!("C{}", rng.gen_range(0..16));
        match rng.gen_range(0..10) {
            0..=5 => {
                let path = format!("/api/v1/profiles/{customer}");
                let (status, body) = call(
                    &app,
                    Method::PUT,
                    &path,
                    Some(&ci),
                    Some(random_fields(&mut rng)),
                )
                .await;
                assert!(status == 200 || status == 201, "{status} {body}");
            }
            6 | 7 => {
                let path = format!("/api/v1/profiles/{customer}");
                let (status, body) = call(&app, Method::DELETE, &path, Some(&ci), None).await;
                assert!(status == 204 || status == 404, "{status} {body}");
            }
            8 => {
                let rows: Vec<Value> = (0..3)
                    .map(|_| {
                        let mut row = random_fields(&mut rng);
                        row["customer_id"] = json!(format!("C{}", rng.gen_range(0..16)));
                        row
                    })
                    .collect();
                let (status, body) = call(
                    &app,
                    Method::POST,
                    "/api/v1/profiles",
                    Some(&ci),
                    Some(json!(rows)),
                )
                .await;
                assert_eq!(status, 200, "{body}");
            }
            _ => {
                let age = rng.gen_range(10..60);
                let country = ["France", "Germany", ""].choose(&mut rng).unwrap();
                import_csv(
                    db,
                    &format!("CustomerId,Country,Age\n{customer},{country},{age}\n"),
                )
                .await;
            }
        }
    }
    let followed = memberships(db, &ids).await;
    assert_ne!(followed, initial, "the writes changed some segment");
    export_destinations::segments::refresh(db, None)
        .await
        .unwrap();
    let refreshed = memberships(db, &ids).await;
    let names = [
        "France",
        "Over 30",
        "Germany or young",
        "No country",
        "Listed",
    ];
    for ((name, followed), refreshed) in names.iter().zip(&followed).zip(&refreshed) {
        assert_eq!(followed, refreshed, "{name}: followed, then refreshed");
    }
}

#[tokio::test]
async fn writes_racing_a_refresh_leave_the_members_a_refresh_finds() {
    let app = spawn_app().await;
    let db = &app.state.db;
    let mut csv = String::from("CustomerId,Country,Age\n");
    for n in 0..200 {
        csv.push_str(&format!(
            "C{n},{},{}\n",
            ["France", "Spain"][n % 2],
            20 + n % 40
        ));
    }
    import_csv(db, &csv).await;
    let france = segments::create(
        db.pool(),
        "France",
        &rules(Match::All, &[("Country", Operator::Equals, "France")]),
    )
    .await
    .unwrap();
    export_destinations::segments::refresh(db, None)
        .await
        .unwrap();
    let ci = token(&app, "ci@example.com", Role::Contributor).await;

    // Writers move profiles in and out of France while refreshes read every profile.
    let writers = (0..4).map(|w| {
        let (app, ci) = (&app, ci.clone());
        async move {
            for i in 0..15 {
                let customer = format!("C{}", (w * 50 + i * 3) % 200);
                let country = if (w + i) % 2 == 0 {
                    "France"
                } else {
                    "Germany"
                };
                let path = format!("/api/v1/profiles/{customer}");
                let body = json!({ "Country": country });
                let (status, answer) = call(app, Method::PUT, &path, Some(&ci), Some(body)).await;
                assert!(status == 200 || status == 201, "{status} {answer}");
            }
        }
    });
    let refreshes = async {
        for _ in 0..3 {
            export_destinations::segments::refresh(db, None)
                .await
                .unwrap();
        }
    };
    tokio::join!(futures::future::join_all(writers), refreshes);

    let followed = memberships(db, &[france]).await;
    export_destinations::segments::refresh(db, None)
        .await
        .unwrap();
    assert_eq!(followed, memberships(db, &[france]).await);
}
