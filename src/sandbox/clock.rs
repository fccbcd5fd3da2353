//! The time as Mailchimp writes it.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, in the ISO 8601 form Mailchimp uses ("2026-11-29T18:40:00+00:00").
pub fn now() -> String {
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::now_utc());
    now.format(&Rfc3339)
        .map(|s| s.replace('Z', "+00:00"))
        .unwrap_or_default()
}
