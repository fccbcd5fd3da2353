//! A member's status, in Mailchimp's words, as the sandbox keeps it. The sandbox stands for
//! another company's service: it has its own vocabulary and does not borrow the console's.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberStatus {
    Subscribed,
    Unsubscribed,
    Cleaned,
    Pending,
    Transactional,
    Archived,
}

impl MemberStatus {
    pub const ALL: [MemberStatus; 6] = [
        MemberStatus::Subscribed,
        MemberStatus::Unsubscribed,
        MemberStatus::Cleaned,
        MemberStatus::Pending,
        MemberStatus::Transactional,
        MemberStatus::Archived,
    ];

    /// The word Mailchimp's API uses, taken from the serialized form.
    pub fn as_str(self) -> &'static str {
        const WORDS: [&str; 6] = [
            "subscribed",
            "unsubscribed",
            "cleaned",
            "pending",
            "transactional",
            "archived",
        ];
        WORDS[self as usize]
    }

    /// Opted out or bounced: an API call may not subscribe them again.
    pub fn is_compliance_state(self) -> bool {
        matches!(self, MemberStatus::Unsubscribed | MemberStatus::Cleaned)
    }

    /// On the list, or asked to confirm.
    pub fn is_opt_in(self) -> bool {
        matches!(self, MemberStatus::Subscribed | MemberStatus::Pending)
    }
}

impl FromStr for MemberStatus {
    type Err = ();
    fn from_str(raw: &str) -> Result<Self, ()> {
        MemberStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or(())
    }
}

impl fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An address the sandbox accepts, as Mailchimp's API does: one `@`, a plausible local part
/// and a domain with a dot and a top-level label of two letters or more; compared without
/// case. Returns the lower-cased address.
pub fn plausible_address(raw: &str) -> Option<String> {
    let address = raw.trim().to_lowercase();
    let (local, domain) = address.split_once('@')?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && address.len() <= 254
        && labels.iter().all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.chars().count() >= 2 && tld.chars().all(char::is_alphabetic));
    (local_ok && domain_ok).then_some(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_and_write_mailchimps_words() {
        for status in MemberStatus::ALL {
            assert_eq!(status.as_str().parse::<MemberStatus>(), Ok(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert!("active".parse::<MemberStatus>().is_err());
    }

    #[test]
    fn plausible_addresses_are_lower_cased_and_implausible_ones_refused() {
        assert_eq!(
            plausible_address(" Ada@Northwind.IO ").as_deref(),
            Some("ada@northwind.io")
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@northwind.io",
            "a@b",
            "a@@b.io",
            "a b@c.io",
            "a@b.1",
        ] {
            assert_eq!(plausible_address(bad), None, "{bad}");
        }
    }
}
