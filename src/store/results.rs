//! Per-member results of export runs, for the CSV a person downloads.

use sqlx::{AnyConnection, AnyPool, Row};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberResult {
    pub customer_id: String,
    pub email: String,
    pub outcome: &'static str,
    pub title: String,
    pub detail: String,
}

/// Records results; a customer who already has one in this run keeps the first.
pub async fn insert(
    conn: &mut AnyConnection,
    run_id: i64,
    results: &[MemberResult],
) -> sqlx::Result<()> {
    for chunk in results.chunks(200) {
        let values = (0..chunk.len())
            .map(|i| {
                format!(
                    "($1, ${}, ${}, ${}, ${}, ${})",
                    i * 5 + 2,
                    i * 5 + 3,
                    i * 5 + 4,
                    i * 5 + 5,
                    i * 5 + 6
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO export_results (run_id, customer_id, email, outcome, title, detail) VALUES {values} \
             ON CONFLICT (run_id, customer_id) DO NOTHING"
        );
        let mut query = sqlx::query(&sql).bind(run_id);
        for r in chunk {
            query = query
                .bind(&r.customer_id)
                .bind(&r.email)
                .bind(r.outcome)
                .bind(&r.title)
                .bind(&r.detail);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// How many members of a run were skipped or failed for one reason (Mailchimp's or the
/// console's title).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub outcome: String,
    pub title: String,
    pub members: i64,
}

/// A run's skipped and failed members grouped by reason, the largest group first.
pub async fn reasons(pool: &AnyPool, run_id: i64) -> sqlx::Result<Vec<Reason>> {
    sqlx::query(
        "SELECT outcome, title, COUNT(*) AS members FROM export_results \
         WHERE run_id = $1 AND outcome IN ('skipped', 'failed') \
         GROUP BY outcome, title ORDER BY COUNT(*) DESC, outcome, title",
    )
    .bind(run_id)
    .try_map(|row: sqlx::any::AnyRow| {
        Ok(Reason {
            outcome: row.try_get("outcome")?,
            title: row.try_get("title")?,
            members: row.try_get("members")?,
        })
    })
    .fetch_all(pool)
    .await
}

/// Which of a run's results a CSV holds: all, or one outcome, or one outcome's reason.
#[derive(Debug, Clone, Default)]
pub struct Only {
    pub outcome: Option<String>,
    pub title: Option<String>,
}

/// A run's per-member results as CSV: customer_id, email, outcome, title, detail; each cell
/// made safe to open in a spreadsheet ([`spreadsheet_safe`]).
pub async fn csv(pool: &AnyPool, run_id: i64, only: &Only) -> anyhow::Result<Vec<u8>> {
    use futures::TryStreamExt;
    let mut writer = ::csv::Writer::from_writer(Vec::new());
    writer.write_record(["customer_id", "email", "outcome", "title", "detail"])?;
    let mut rows = sqlx::query(
        "SELECT customer_id, email, outcome, title, detail FROM export_results \
         WHERE run_id = $1 AND ($2 IS NULL OR outcome = $2) AND ($3 IS NULL OR title = $3) \
         ORDER BY customer_id",
    )
    .bind(run_id)
    .bind(only.outcome.as_deref())
    .bind(only.title.as_deref())
    .fetch(pool);
    while let Some(row) = rows.try_next().await? {
        let fields: [String; 5] = [
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
            row.try_get(4)?,
        ];
        writer.write_record(fields.iter().map(|f| spreadsheet_safe(f).into_owned()))?;
    }
    Ok(writer.into_inner()?)
}

/// A cell a spreadsheet would not run as a formula: a value starting with `=`, `+`, `-`,
/// `@`, a tab or a carriage return gets a leading `'` (OWASP, "CSV Injection"). The values
/// come from imported profiles and from Mailchimp's answers, so any of them may be hostile.
pub fn spreadsheet_safe(value: &str) -> std::borrow::Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}").into()
    } else {
        value.into()
    }
}

#[cfg(test)]
mod tests {
    use super::spreadsheet_safe;

    #[test]
    fn formula_cells_are_neutralised() {
        assert_eq!(
            spreadsheet_safe("=HYPERLINK(\"http://x\",\"y\")"),
            "'=HYPERLINK(\"http://x\",\"y\")"
        );
        for (raw, safe) in [
            ("+1", "'+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
        ] {
            assert_eq!(spreadsheet_safe(raw), safe);
        }
        for plain in ["P1", "ada@northwind.io", "a=b", "", " =x", "'quoted"] {
            assert_eq!(spreadsheet_safe(plain), plain);
        }
    }
}
