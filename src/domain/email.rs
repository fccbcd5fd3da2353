//! Email addresses as Mailchimp and the console accept them: a pragmatic subset of RFC 5321.

use std::fmt;

/// A syntactically plausible address, trimmed and lower-cased (addresses are compared
/// case-insensitively everywhere: Mailchimp's subscriber hash is of the lower-cased form).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("the email address is empty")]
    Empty,
    #[error("the email address is longer than 254 characters")]
    TooLong,
    #[error("the email address needs exactly one @")]
    NotOneAt,
    #[error("the part before @ is empty, too long or has characters an address cannot have")]
    BadLocalPart,
    #[error("the part after @ is not a domain name such as example.com")]
    BadDomain,
}

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if trimmed.chars().count() > 254 {
            return Err(EmailError::TooLong);
        }
        let lowered = trimmed.to_lowercase();
        let mut parts = lowered.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(EmailError::NotOneAt);
        };
        if !valid_local(local) {
            return Err(EmailError::BadLocalPart);
        }
        if !valid_domain(domain) {
            return Err(EmailError::BadDomain);
        }
        Ok(Self(lowered))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit('@').next().unwrap_or_default()
    }
}

fn valid_local(local: &str) -> bool {
    const SPECIALS: &str = "!#$%&'*+/=?^_`{|}~.-";
    !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || SPECIALS.contains(c))
}

fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.chars().count() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.chars().count() >= 2 && !tld.chars().all(|c| c.is_ascii_digit()))
}

/// Mailchimp's subscriber hash: the MD5 hex digest of the lower-cased address.
pub fn subscriber_hash(email: &str) -> String {
    format!("{:032x}", subscriber_digest(email))
}

/// The subscriber hash as a number (what the exporter keeps per address, without hex).
pub fn subscriber_digest(email: &str) -> u128 {
    use md5::{Digest, Md5};
    u128::from_be_bytes(Md5::digest(email.trim().to_lowercase().as_bytes()).into())
}

impl EmailAddress {
    pub fn subscriber_hash(&self) -> String {
        subscriber_hash(&self.0)
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for EmailAddress {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_addresses_are_accepted_and_lower_cased() {
        for raw in [
            "ada@example.com",
            " Ada.Lovelace+news@Mail.Example.co.uk ",
            "o'neil@ex-ample.io",
        ] {
            let email = EmailAddress::parse(raw).unwrap();
            assert_eq!(email.as_str(), raw.trim().to_lowercase());
        }
    }

    #[test]
    fn unicode_local_parts_and_domains_are_accepted() {
        assert!(EmailAddress::parse("josé@exämple.de").is_ok());
    }

    #[test]
    fn malformed_addresses_are_refused_with_a_reason() {
        let cases = [
            ("", EmailError::Empty),
            ("   ", EmailError::Empty),
            ("no-at-sign.example.com", EmailError::NotOneAt),
            ("a@b@example.com", EmailError::NotOneAt),
            ("@example.com", EmailError::BadLocalPart),
            (".a@example.com", EmailError::BadLocalPart),
            ("a..b@example.com", EmailError::BadLocalPart),
            ("a b@example.com", EmailError::BadLocalPart),
            ("a@localhost", EmailError::BadDomain),
            ("a@example..com", EmailError::BadDomain),
            ("a@-example.com", EmailError::BadDomain),
            ("a@example.c", EmailError::BadDomain),
            ("a@127.0.0.1", EmailError::BadDomain),
        ];
        for (raw, expected) in cases {
            assert_eq!(EmailAddress::parse(raw), Err(expected), "{raw:?}");
        }
    }

    #[test]
    fn overlong_addresses_are_refused() {
        let raw = format!("{}@example.com", "a".repeat(250));
        assert_eq!(EmailAddress::parse(&raw), Err(EmailError::TooLong));
    }

    #[test]
    fn the_subscriber_hash_is_the_md5_of_the_lower_cased_address() {
        // The example from Mailchimp's documentation of subscriber hashes.
        assert_eq!(
            subscriber_hash("Urist.McVankab@freddiesjokes.com"),
            "62eeb292278cc15f5817cb78f7790b08"
        );
        assert_eq!(
            EmailAddress::parse("URIST.MCVANKAB@freddiesjokes.com")
                .unwrap()
                .subscriber_hash(),
            "62eeb292278cc15f5817cb78f7790b08"
        );
    }

    #[test]
    fn addresses_differing_only_in_case_are_equal() {
        assert_eq!(
            EmailAddress::parse("A@Example.COM").unwrap(),
            EmailAddress::parse("a@example.com").unwrap()
        );
    }
}
