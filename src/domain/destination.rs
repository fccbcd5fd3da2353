//! What an export destination is made of, parsed from what an administrator types.

use super::Invalid;
use std::fmt;
use std::str::FromStr;

/// The version of the data-privacy notice an administrator agrees to; recorded with the
/// consent so that a later change of wording is traceable.
pub const CONSENT_VERSION: &str = "2026-11-1";

/// A destination's name: 1 to 100 characters, trimmed, in NFC, no invisible characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match super::text::clean_name(raw, 100) {
            Ok(name) => Ok(Self(name)),
            Err(super::text::NameError::Empty) => {
                Err("Display name: give the destination a name.".into())
            }
            Err(err) => Err(format!("Display name: {err}.").into()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which Mailchimp a destination exports to: the real one (or what `MAILCHIMP_API_BASE_URL`
/// and `MAILCHIMP_OAUTH_BASE_URL` name), or the console's built-in sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    #[default]
    Mailchimp,
    Sandbox,
}

impl Target {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw.trim() {
            "mailchimp" => Ok(Self::Mailchimp),
            "sandbox" => Ok(Self::Sandbox),
            _ => Err("Mailchimp: choose Mailchimp or the built-in sandbox.".into()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mailchimp => "mailchimp",
            Self::Sandbox => "sandbox",
        }
    }

    /// How pages name it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Mailchimp => "Mailchimp",
            Self::Sandbox => "Built-in sandbox",
        }
    }

    pub fn is_sandbox(self) -> bool {
        self == Self::Sandbox
    }
}

/// How a destination signs in to Mailchimp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    OAuth,
    ApiKey,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::OAuth => "oauth",
            AuthMethod::ApiKey => "api_key",
        }
    }

    /// As stored: `api_key`, and anything else an OAuth token (the older rows' default).
    pub fn from_stored(raw: &str) -> Self {
        if raw == "api_key" {
            AuthMethod::ApiKey
        } else {
            AuthMethod::OAuth
        }
    }
}

/// A Mailchimp audience ID (what Mailchimp calls a list ID, e.g. `a1b2c3d4e5`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudienceId(String);

impl AudienceId {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let id = raw.trim();
        if id.is_empty() {
            return Err("Audience ID: enter the ID of your Mailchimp audience.".into());
        }
        if !(5..=20).contains(&id.len()) || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(
                "Audience ID: an audience ID is letters and digits only, like a1b2c3d4e5 (in Mailchimp: \
                 Audience > Settings > Audience name and defaults)."
                    .into(),
            );
        }
        Ok(Self(id.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Mailchimp API key: 32 hex digits, a dash, the data centre. Debug never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let key = raw.trim();
        let valid = key.split_once('-').is_some_and(|(hex, dc)| {
            hex.len() == 32
                && hex.chars().all(|c| c.is_ascii_hexdigit())
                && !dc.is_empty()
                && dc.len() <= 10
                && dc.chars().all(|c| c.is_ascii_alphanumeric())
        });
        if !valid {
            return Err(
                "API key: a Mailchimp API key looks like 0123456789abcdef0123456789abcdef-us6."
                    .into(),
            );
        }
        Ok(Self(key.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The data centre the key names after its dash (`us6`): where its account lives.
    pub fn data_centre(&self) -> &str {
        self.0.rsplit_once('-').map_or("", |(_, dc)| dc)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(redacted)")
    }
}

/// A Mailchimp merge tag (`FNAME`, `LNAME`, `MMERGE5`, …): the key of a member's
/// `merge_fields`, checked before anything is sent to Mailchimp.
///
/// The rule: 1 to 10 characters, each an uppercase ASCII letter, a digit or `_`.
/// Sources: `../shared/mailchimp/FACTS.md` (item 9 of "What goes wrong": "10-character merge
/// tags"); Mailchimp's Marketing API description 3.0.85 beside it
/// (`marketing-openapi-3.0.85.json`) declares `tag` a plain string with neither pattern nor
/// length, and shows tags only in capitals ("merge tags (like FNAME)"); the characters are
/// those of Mailchimp's audience-field settings and of the sandbox (`sandbox/api_segments.rs`,
/// which models Mailchimp). "Starts with a letter" is often said but no source here states
/// it, and Mailchimp generates tags from field names that may begin with a digit, so it is
/// not required. Tags are matched exactly by Mailchimp, so lowercase is refused, not folded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeTag(String);

/// The longest merge tag Mailchimp takes.
pub const MAX_MERGE_TAG_CHARS: usize = 10;

impl MergeTag {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let tag = raw.trim();
        if tag.is_empty() {
            return Err("Merge tag: give the merge tag of a Mailchimp field, like FNAME.".into());
        }
        let valid_chars = tag
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if tag.chars().count() > MAX_MERGE_TAG_CHARS || !valid_chars {
            let upper = tag.to_ascii_uppercase();
            let hint = if upper != tag && Self::parse(&upper).is_ok() {
                format!(" Write it in capitals: {upper}.")
            } else {
                String::new()
            };
            return Err(format!(
                "Merge tag: Mailchimp's merge tags are 1 to {MAX_MERGE_TAG_CHARS} characters, \
                 uppercase letters, digits and underscores only, like FNAME.{hint}"
            )
            .into());
        }
        Ok(Self(tag.to_owned()))
    }

    /// The tag Mailchimp would make from a new merge field's name: its ASCII letters and
    /// digits in capitals, cut to [`MAX_MERGE_TAG_CHARS`]. None when the name has none (a
    /// tag must then be given).
    pub fn suggest(name: &str) -> Option<Self> {
        let tag: String = name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(MAX_MERGE_TAG_CHARS)
            .collect::<String>()
            .to_ascii_uppercase();
        Self::parse(&tag).ok()
    }

    /// True when a name's suggested tag had to be cut to fit.
    pub fn is_cut_from(&self, name: &str) -> bool {
        name.chars().filter(char::is_ascii_alphanumeric).count() > MAX_MERGE_TAG_CHARS
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MergeTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The status a new member gets; existing members keep theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewMemberStatus {
    Subscribed,
    Pending,
}

impl NewMemberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NewMemberStatus::Subscribed => "subscribed",
            NewMemberStatus::Pending => "pending",
        }
    }
}

impl FromStr for NewMemberStatus {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "subscribed" => Ok(Self::Subscribed),
            "pending" => Ok(Self::Pending),
            _ => Err("Status for new members: choose subscribed or pending.".into()),
        }
    }
}

/// The most profiles one destination may export (the brief's limit).
pub const MAX_EXPORT_PROFILES: i64 = 1_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_required_and_bounded() {
        assert_eq!(
            DisplayName::parse("  Newsletter  ").unwrap().as_str(),
            "Newsletter"
        );
        assert!(DisplayName::parse(" ").is_err());
        assert!(DisplayName::parse(&"x".repeat(101)).is_err());
        assert!(DisplayName::parse(&"é".repeat(100)).is_ok());
    }

    #[test]
    fn audience_ids_are_letters_and_digits() {
        assert_eq!(
            AudienceId::parse(" A1B2C3D4E5 ").unwrap().as_str(),
            "a1b2c3d4e5"
        );
        assert!(AudienceId::parse("").is_err());
        assert!(AudienceId::parse("abc").is_err());
        assert!(AudienceId::parse("a1b2c3d4e5/../x").is_err());
    }

    #[test]
    fn a_new_fields_tag_is_made_from_its_name_and_cut_to_ten() {
        let tag = MergeTag::suggest("Loyalty tier").unwrap();
        assert_eq!(tag.as_str(), "LOYALTYTIE");
        assert!(tag.is_cut_from("Loyalty tier"));
        let short = MergeTag::suggest("Shoe size").unwrap();
        assert_eq!(short.as_str(), "SHOESIZE");
        assert!(!short.is_cut_from("Shoe size"));
        assert!(MergeTag::suggest("日本語").is_none());
    }

    #[test]
    fn merge_tags_follow_mailchimps_rule() {
        for good in [
            "FNAME",
            "MMERGE5",
            "BIRTH_DAY",
            "A",
            "ABCDEFGHIJ",
            "2024SALES",
        ] {
            assert_eq!(MergeTag::parse(good).unwrap().as_str(), good);
        }
        assert_eq!(MergeTag::parse(" FNAME ").unwrap().as_str(), "FNAME");
        for bad in [
            "",
            "   ",
            "ABCDEFGHIJK",
            "FIRST NAME",
            "F-NAME",
            "*|FNAME|*",
            "NAMÉ",
            "ÄÖÜ",
        ] {
            assert!(MergeTag::parse(bad).is_err(), "{bad:?}");
        }
        let lower = MergeTag::parse("fname").unwrap_err();
        assert!(lower.as_str().contains("capitals: FNAME"), "{lower}");
    }

    #[test]
    fn api_keys_have_mailchimps_shape_and_never_show_in_debug() {
        let key = ApiKey::parse("0123456789abcdef0123456789abcdef-us6").unwrap();
        assert_eq!(format!("{key:?}"), "ApiKey(redacted)");
        assert!(ApiKey::parse("0123456789abcdef-us6").is_err());
        assert!(ApiKey::parse("0123456789abcdef0123456789abcdef").is_err());
    }
}
