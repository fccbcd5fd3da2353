//! What a refusal by Mailchimp means to the person who meets it: while connecting a
//! destination (set-up pages and API alike) or during an export run.

use crate::mailchimp::client::{ApiError, ErrorKind};

/// What Mailchimp's answer to the audience check means to the person connecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    NoSuchAudience,
    AudienceNotAllowed,
    CredentialRefused,
    Unreachable,
}

/// Mailchimp's refusal of a credential for an audience, with what is needed to explain it.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub kind: RefusalKind,
    account: String,
    audience_id: String,
    error: String,
}

impl Refusal {
    pub fn of(err: &ApiError, account: &str, audience_id: &str) -> Self {
        let kind = match err.kind {
            ErrorKind::NotFound => RefusalKind::NoSuchAudience,
            ErrorKind::Forbidden => RefusalKind::AudienceNotAllowed,
            ErrorKind::Unauthorized => RefusalKind::CredentialRefused,
            _ => RefusalKind::Unreachable,
        };
        Self {
            kind,
            account: account.to_owned(),
            audience_id: audience_id.to_owned(),
            error: err.to_string(),
        }
    }

    pub fn title(&self) -> &'static str {
        match self.kind {
            RefusalKind::NoSuchAudience => "Mailchimp has no audience with this ID",
            RefusalKind::AudienceNotAllowed => "This Mailchimp account cannot use the audience",
            RefusalKind::CredentialRefused => "Mailchimp refused the credential",
            RefusalKind::Unreachable => "Mailchimp could not be reached",
        }
    }

    pub fn explanation(&self) -> String {
        let (account, audience) = (&self.account, &self.audience_id);
        match self.kind {
            RefusalKind::NoSuchAudience => format!(
                "The Mailchimp account {account} has no audience {audience}. Check the audience ID (in \
                 Mailchimp: Audience > Settings > Audience name and defaults) and connect again."
            ),
            RefusalKind::AudienceNotAllowed => format!(
                "The account {account} may not use audience {audience}. Sign in to Mailchimp with the \
                 account that owns the audience."
            ),
            RefusalKind::CredentialRefused => format!("{}.", self.error),
            RefusalKind::Unreachable => format!("{}. Try again.", self.error),
        }
    }

    /// The same answer met by an export run of a destination connected before.
    pub fn during_run(&self) -> String {
        let error = &self.error;
        match self.kind {
            RefusalKind::CredentialRefused => {
                format!(
                    "Mailchimp refused the destination's credential ({error}). Authenticate again."
                )
            }
            RefusalKind::AudienceNotAllowed => {
                format!("The Mailchimp account may not use this audience ({error}).")
            }
            RefusalKind::NoSuchAudience => {
                format!("Mailchimp no longer has this audience ({error}).")
            }
            RefusalKind::Unreachable => format!("Mailchimp could not be used: {error}."),
        }
    }

    /// Whether the credential (rather than the audience ID) is what to change.
    pub fn is_about_the_credential(&self) -> bool {
        self.kind == RefusalKind::CredentialRefused
    }
}
