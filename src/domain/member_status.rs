//! A Mailchimp audience member's subscription status.

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

    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Subscribed => "subscribed",
            MemberStatus::Unsubscribed => "unsubscribed",
            MemberStatus::Cleaned => "cleaned",
            MemberStatus::Pending => "pending",
            MemberStatus::Transactional => "transactional",
            MemberStatus::Archived => "archived",
        }
    }

    /// The contact opted out or bounced: no API call may subscribe them again.
    pub fn is_compliance_state(self) -> bool {
        matches!(self, MemberStatus::Unsubscribed | MemberStatus::Cleaned)
    }

    /// Statuses that put a contact on the mailing list (or ask them to confirm).
    pub fn is_opt_in(self) -> bool {
        matches!(self, MemberStatus::Subscribed | MemberStatus::Pending)
    }
}

impl FromStr for MemberStatus {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        MemberStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| format!("unknown member status {raw:?}"))
    }
}

impl fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_opt_outs_are_compliance_states() {
        for status in MemberStatus::ALL {
            assert_eq!(status.as_str().parse::<MemberStatus>().unwrap(), status);
        }
        assert!(MemberStatus::Unsubscribed.is_compliance_state());
        assert!(MemberStatus::Cleaned.is_compliance_state());
        assert!(!MemberStatus::Pending.is_compliance_state());
    }
}
