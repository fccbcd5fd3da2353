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

pub fn optional_timestamp(millis: Option<i64>) -> String {
    millis.map(timestamp).unwrap_or_else(|| "Never".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_as_utc_minutes() {
        assert_eq!(timestamp(0), "1970-01-01 00:00 UTC");
        assert_eq!(optional_timestamp(None), "Never");
    }
}
