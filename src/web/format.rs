//! How times and numbers read on the pages.

use time::OffsetDateTime;
use time::macros::format_description;

/// "2026-11-29 18:40 UTC" for a millisecond timestamp.
pub fn timestamp(millis: i64) -> String {
    let Ok(at) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000) else {
        return "—".to_owned();
    };
    at.format(format_description!(
        "[year]-[month]-[day] [hour]:[minute] UTC"
    ))
    .unwrap_or_else(|_| "—".to_owned())
}

/// "2026-12-04 06:00 Europe/Berlin (05:00 UTC)": a time as the clocks of a time zone show
/// it, with UTC beside it; plain UTC when the zone is UTC or unknown.
pub fn in_zone(millis: i64, zone: &str) -> String {
    use chrono::TimeZone;
    let Ok(tz) = zone.parse::<chrono_tz::Tz>() else {
        return timestamp(millis);
    };
    let Some(utc) = chrono::Utc.timestamp_millis_opt(millis).single() else {
        return timestamp(millis);
    };
    if tz == chrono_tz::UTC {
        return timestamp(millis);
    }
    let local = utc.with_timezone(&tz);
    format!(
        "{} {zone} ({} UTC)",
        local.format("%Y-%m-%d %H:%M"),
        utc.format("%H:%M")
    )
}

pub fn optional_timestamp(millis: Option<i64>) -> String {
    millis.map(timestamp).unwrap_or_else(|| "Never".to_owned())
}

/// What an import or a pull did with its rows, each count with thousands separators.
pub struct RowCountsShown {
    pub rows_read: String,
    pub created: String,
    pub updated: String,
    pub unchanged: String,
    pub rejected: String,
    pub deleted: String,
}

impl From<crate::store::imports::RowCounts> for RowCountsShown {
    fn from(counts: crate::store::imports::RowCounts) -> Self {
        Self {
            rows_read: num(counts.rows_read),
            created: num(counts.created),
            updated: num(counts.updated),
            unchanged: num(counts.unchanged),
            rejected: num(counts.rejected),
            deleted: num(counts.deleted),
        }
    }
}

/// A count with thousands separators: "1,000,000".
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// [`count`] for templates, which hand over (references to) any integer.
pub fn num(n: impl std::fmt::Display) -> String {
    let text = n.to_string();
    text.parse::<i64>().map(count).unwrap_or(text)
}

/// How long something took: "850 ms", "4.2 s", "2 min 09 s", "1 h 05 min".
pub fn duration(millis: i64) -> String {
    let millis = millis.max(0);
    match millis {
        0..1_000 => format!("{millis} ms"),
        1_000..60_000 => format!("{:.1} s", millis as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {:02} s", millis / 60_000, millis / 1000 % 60),
        _ => format!("{} h {:02} min", millis / 3_600_000, millis / 60_000 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_thousands_separators_and_durations_read_plainly() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(count(-12_345), "-12,345");
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(4_200), "4.2 s");
        assert_eq!(duration(129_000), "2 min 09 s");
        assert_eq!(duration(3_900_000), "1 h 05 min");
        // 2026-12-04 05:00 UTC is 06:00 in Berlin (winter time).
        let at = 1_796_360_400_000;
        assert_eq!(
            in_zone(at, "Europe/Berlin"),
            "2026-12-04 06:00 Europe/Berlin (05:00 UTC)"
        );
        assert_eq!(in_zone(at, "UTC"), "2026-12-04 05:00 UTC");
    }

    #[test]
    fn timestamps_read_as_utc_minutes() {
        assert_eq!(timestamp(0), "1970-01-01 00:00 UTC");
        assert_eq!(optional_timestamp(None), "Never");
    }
}
