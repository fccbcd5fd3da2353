//! Deterministic, realistic demo profiles and segments, with the mess real data has:
//! missing and invalid addresses, the same address in another case, addresses at
//! reserved domains, unicode names, empty values.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::db::Db;
use crate::domain::FieldType;
use crate::domain::segment_rules::{Condition, Match, Operator, SegmentRules};
use crate::profiles::writer::{self, Batch, Message, Progress, Totals};
use crate::store::profiles::ProfileWrite;
use crate::store::segments::{self, Definition};

const FIRST_NAMES: &[(&str, &str)] = &[
    ("Ada", "ada"),
    ("José", "jose"),
    ("Zoë", "zoe"),
    ("Łukasz", "lukasz"),
    ("Amélie", "amelie"),
    ("Søren", "soren"),
    ("Mia", "mia"),
    ("Noah", "noah"),
    ("Yuki", "yuki"),
    ("Chloé", "chloe"),
    ("Mateo", "mateo"),
    ("Aisha", "aisha"),
    ("Björn", "bjorn"),
    ("Elena", "elena"),
    ("Liam", "liam"),
    ("Priya", "priya"),
    ("Oliver", "oliver"),
    ("Sofía", "sofia"),
    ("Kenji", "kenji"),
    ("Emma", "emma"),
    ("Raphaël", "raphael"),
    ("Ingrid", "ingrid"),
    ("Tomás", "tomas"),
    ("Hannah", "hannah"),
];
const LAST_NAMES: &[(&str, &str)] = &[
    ("Lovelace", "lovelace"),
    ("García", "garcia"),
    ("Müller", "muller"),
    ("Kowalski", "kowalski"),
    ("Dubois", "dubois"),
    ("Jensen", "jensen"),
    ("Smith", "smith"),
    ("Tanaka", "tanaka"),
    ("Rossi", "rossi"),
    ("Novák", "novak"),
    ("O'Brien", "obrien"),
    ("Silva", "silva"),
    ("Andersson", "andersson"),
    ("Nguyen", "nguyen"),
    ("Schäfer", "schafer"),
    ("Brown", "brown"),
    ("van Dijk", "vandijk"),
    ("Fernández", "fernandez"),
    ("山田", "yamada"),
    ("Ivanova", "ivanova"),
];
const DOMAINS: &[&str] = &[
    "northwind-mail.com",
    "contoso-post.net",
    "fabrikam.io",
    "tailspin.app",
    "woodgrove.email",
    "litware.co",
    "adventure-works.org.uk",
    "wingtip.de",
];
const PLACES: &[(&str, &[&str], u32)] = &[
    ("United States", &["Seattle", "Austin", "Boston"], 30),
    ("Germany", &["Berlin", "München", "Köln"], 15),
    ("United Kingdom", &["London", "Leeds"], 12),
    ("France", &["Paris", "Lyon"], 10),
    ("Netherlands", &["Amsterdam", "Utrecht"], 6),
    ("Spain", &["Madrid", "Sevilla"], 6),
    ("Japan", &["Tokyo", "Ōsaka"], 6),
    ("Brazil", &["São Paulo", "Recife"], 6),
    ("Poland", &["Kraków", "Gdańsk"], 5),
    ("Sweden", &["Göteborg", "Malmö"], 4),
];

/// The demo catalogue, in column order.
pub const FIELDS: &[(&str, FieldType)] = &[
    ("FirstName", FieldType::Text),
    ("LastName", FieldType::Text),
    ("EmailAddress", FieldType::Email),
    ("WorkEmail", FieldType::Email),
    ("Country", FieldType::Text),
    ("City", FieldType::Text),
    ("LoyaltyTier", FieldType::Text),
    ("LifetimeValue", FieldType::Number),
    ("LastPurchaseDate", FieldType::Date),
    ("SignupDate", FieldType::Date),
    ("NewsletterOptIn", FieldType::Boolean),
    ("Age", FieldType::Number),
];

/// The demo segments, in order; `demo-data --segments N` takes the first N.
pub fn segment_definitions() -> Vec<(&'static str, SegmentRules)> {
    let rule = |match_: Match, conditions: &[(&str, Operator, &str)]| SegmentRules {
        match_,
        conditions: conditions
            .iter()
            .map(|(field, op, value)| Condition {
                field: (*field).into(),
                op: *op,
                value: (*value).into(),
            })
            .collect(),
    };
    vec![
        (
            "Newsletter opt-ins",
            rule(Match::All, &[("NewsletterOptIn", Operator::Equals, "true")]),
        ),
        (
            "Recent buyers",
            rule(
                Match::All,
                &[("LastPurchaseDate", Operator::After, "2026-06-01")],
            ),
        ),
        (
            "Gold and Platinum members",
            rule(
                Match::Any,
                &[
                    ("LoyaltyTier", Operator::Equals, "Gold"),
                    ("LoyaltyTier", Operator::Equals, "Platinum"),
                ],
            ),
        ),
        (
            "High-value customers",
            rule(
                Match::All,
                &[("LifetimeValue", Operator::GreaterThan, "2500")],
            ),
        ),
        (
            "Lapsed customers",
            rule(
                Match::All,
                &[("LastPurchaseDate", Operator::Before, "2025-01-01")],
            ),
        ),
        (
            "Customers in Germany",
            rule(Match::All, &[("Country", Operator::Equals, "Germany")]),
        ),
    ]
}

/// Profile number `n` (from 1) of the demo set for `seed`; the same inputs give the same
/// profile. `rng` is the set's generator, advanced in order.
fn profile(n: u64, rng: &mut StdRng, earlier_emails: &mut Vec<String>) -> ProfileWrite {
    let (first, first_ascii) = FIRST_NAMES[rng.gen_range(0..FIRST_NAMES.len())];
    let (last, last_ascii) = LAST_NAMES[rng.gen_range(0..LAST_NAMES.len())];
    let domain = DOMAINS[rng.gen_range(0..DOMAINS.len())];
    let roll: f64 = rng.r#gen();
    let email = if roll < 0.02 {
        Value::Null
    } else if roll < 0.03 {
        json!(format!("{first_ascii}.{last_ascii}{n} at {domain}"))
    } else if roll < 0.04 && !earlier_emails.is_empty() {
        let earlier = &earlier_emails[rng.gen_range(0..earlier_emails.len())];
        json!(earlier.to_uppercase())
    } else if roll < 0.045 {
        json!(format!("{first_ascii}{n}@example.com"))
    } else {
        let address = format!("{first_ascii}.{last_ascii}{n}@{domain}");
        if earlier_emails.len() < 1000 {
            earlier_emails.push(address.clone());
        }
        json!(address)
    };
    let work_email = if rng.gen_bool(0.25) {
        json!(format!(
            "{first_ascii}{n}@{}",
            DOMAINS[rng.gen_range(0..DOMAINS.len())]
        ))
    } else {
        Value::Null
    };
    let weight: u32 = rng.gen_range(0..PLACES.iter().map(|p| p.2).sum::<u32>());
    let mut acc = 0;
    let (country, cities, _) = PLACES
        .iter()
        .find(|(_, _, w)| {
            acc += w;
            weight < acc
        })
        .unwrap_or(&PLACES[0]);
    let tier = match rng.gen_range(0..100) {
        0..50 => "Bronze",
        50..80 => "Silver",
        80..95 => "Gold",
        _ => "Platinum",
    };
    let value = (rng.gen_range(0.0..5000.0_f64) * 100.0).round() / 100.0;
    let date = |rng: &mut StdRng, from: i32, to: i32| {
        let day = time::Date::from_ordinal_date(from, 1).unwrap()
            + time::Duration::days(rng.gen_range(0..((to - from) as i64 * 365)));
        day.to_string()
    };
    let mut attributes = Map::new();
    attributes.insert("FirstName".into(), json!(first));
    attributes.insert("LastName".into(), json!(last));
    attributes.insert("EmailAddress".into(), email.clone());
    attributes.insert("WorkEmail".into(), work_email);
    attributes.insert("Country".into(), json!(country));
    attributes.insert("City".into(), json!(cities[rng.gen_range(0..cities.len())]));
    attributes.insert("LoyaltyTier".into(), json!(tier));
    attributes.insert("LifetimeValue".into(), json!(value));
    attributes.insert(
        "LastPurchaseDate".into(),
        json!(date(rng, 2024, 2027).min("2026-11-01".into())),
    );
    attributes.insert("SignupDate".into(), json!(date(rng, 2018, 2024)));
    attributes.insert("NewsletterOptIn".into(), json!(rng.gen_bool(0.6)));
    attributes.insert(
        "Age".into(),
        if rng.gen_bool(0.03) {
            Value::Null
        } else {
            json!(rng.gen_range(18..80))
        },
    );
    ProfileWrite {
        customer_id: format!("C{n:07}"),
        attributes: Value::Object(attributes).to_string(),
        email_key: email.as_str().map(str::to_lowercase),
    }
}

/// Writes `count` demo profiles as a CSV file (CustomerId, then the demo fields).
pub fn write_csv(path: &std::path::Path, count: u64, seed: u64) -> anyhow::Result<()> {
    let mut out = csv::Writer::from_path(path)?;
    let mut header = vec!["CustomerId"];
    header.extend(FIELDS.iter().map(|(name, _)| *name));
    out.write_record(&header)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut earlier = Vec::new();
    let mut row = Vec::with_capacity(header.len());
    for n in 1..=count {
        let profile = profile(n, &mut rng, &mut earlier);
        let attributes: Map<String, Value> = serde_json::from_str(&profile.attributes)?;
        row.clear();
        row.push(profile.customer_id);
        for (name, _) in FIELDS {
            row.push(match attributes.get(*name) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            });
        }
        out.write_record(&row)?;
    }
    out.flush()?;
    Ok(())
}

/// Writes `count` demo profiles (replacing demo profiles of the same IDs), creates the
/// demo segments that are missing (the first `segments`), and returns the import totals.
pub async fn load(
    db: &Db,
    count: u64,
    seed: u64,
    segments: usize,
    progress: Progress<'_>,
) -> anyhow::Result<Totals> {
    let (sender, receiver) = mpsc::channel(4);
    let generator = tokio::task::spawn_blocking(move || {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut earlier = Vec::new();
        let header = Message::Header {
            new_fields: FIELDS.iter().map(|(n, t)| ((*n).to_owned(), *t)).collect(),
            sets_email_key: true,
        };
        if sender.blocking_send(header).is_err() {
            return;
        }
        let mut batch = Batch::default();
        for n in 1..=count {
            batch.rows.push(profile(n, &mut rng, &mut earlier));
            batch.rows_read += 1;
            if batch.rows.len() == 500
                && sender
                    .blocking_send(Message::Batch(std::mem::take(&mut batch)))
                    .is_err()
            {
                return;
            }
        }
        if !batch.rows.is_empty() {
            let _ = sender.blocking_send(Message::Batch(batch));
        }
    });
    let (_, totals) = writer::write(
        db,
        receiver,
        &format!("demo data ({count} profiles, seed {seed})"),
        None,
        progress,
    )
    .await?;
    generator.await?;
    for (name, rules) in segment_definitions().into_iter().take(segments) {
        if segments::find_by_name(db.pool(), name).await?.is_none() {
            segments::create(db.pool(), name, &Definition::Rules(rules)).await?;
        }
    }
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn sample(seed: u64, n: u64) -> Vec<ProfileWrite> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut earlier = Vec::new();
        (1..=n)
            .map(|i| profile(i, &mut rng, &mut earlier))
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_profiles() {
        assert_eq!(sample(5, 50), sample(5, 50));
        assert_ne!(sample(5, 50), sample(6, 50));
    }

    #[test]
    fn demo_profiles_carry_the_mess_of_real_data() {
        let profiles = sample(1, 5000);
        let emails: Vec<Option<String>> = profiles
            .iter()
            .map(|p| {
                serde_json::from_str::<Value>(&p.attributes).unwrap()["EmailAddress"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        let missing = emails.iter().filter(|e| e.is_none()).count();
        let invalid = emails.iter().flatten().filter(|e| !e.contains('@')).count();
        let reserved = emails
            .iter()
            .flatten()
            .filter(|e| e.ends_with("@example.com"))
            .count();
        let mut by_lower: HashMap<String, usize> = HashMap::new();
        for e in emails.iter().flatten() {
            *by_lower.entry(e.to_lowercase()).or_default() += 1;
        }
        let repeated = by_lower.values().filter(|c| **c > 1).count();
        assert!(
            missing > 50 && invalid > 20 && reserved > 5 && repeated > 20,
            "{missing} {invalid} {reserved} {repeated}"
        );
        assert!(
            profiles
                .iter()
                .any(|p| p.attributes.contains("山田") || p.attributes.contains("Zoë"))
        );
    }

    #[test]
    fn demo_segments_compile_against_the_demo_catalogue() {
        let catalogue: HashMap<String, FieldType> =
            FIELDS.iter().map(|(n, t)| ((*n).to_owned(), *t)).collect();
        for (name, rules) in segment_definitions() {
            assert!(rules.compile(&catalogue).is_ok(), "{name}");
        }
    }
}
