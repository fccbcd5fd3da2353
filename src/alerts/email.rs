//! Alerts by email: the SMTP settings as an administrator may set them, and one plain-text
//! message sent with what the server replied.

use std::fmt;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::domain::text::excerpt;
use crate::domain::{EmailAddress, Invalid};
use crate::store::alerts::Answer;

/// How long the SMTP server has for each step of a conversation.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain SMTP (a relay on the same host or network only).
    None,
    /// Plain at first, then upgraded with STARTTLS, which the server must offer.
    StartTls,
    /// TLS from the first byte ("SMTPS", usually port 465).
    Tls,
}

impl TlsMode {
    pub const ALL: [TlsMode; 3] = [TlsMode::StartTls, TlsMode::Tls, TlsMode::None];

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "none" => Some(TlsMode::None),
            "starttls" => Some(TlsMode::StartTls),
            "tls" => Some(TlsMode::Tls),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::None => "none",
            TlsMode::StartTls => "starttls",
            TlsMode::Tls => "tls",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            TlsMode::None => "None (plain SMTP)",
            TlsMode::StartTls => "STARTTLS",
            TlsMode::Tls => "TLS (SMTPS)",
        }
    }

    /// The port used when none is given.
    pub fn default_port(self) -> u16 {
        match self {
            TlsMode::None => 25,
            TlsMode::StartTls => 587,
            TlsMode::Tls => 465,
        }
    }
}

/// Where and how alert emails are sent from. The password is not here: it is kept sealed
/// and handed over only to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub from: EmailAddress,
}

/// The email settings as typed on the page, before they are checked.
#[derive(Debug, Clone, Default)]
pub struct SmtpInput<'a> {
    pub host: &'a str,
    pub port: &'a str,
    pub tls: &'a str,
    pub username: &'a str,
    pub from: &'a str,
}

impl SmtpServer {
    /// Checks every field; all the problems at once.
    pub fn parse(input: &SmtpInput<'_>) -> Result<Self, Vec<Invalid>> {
        let mut problems = Vec::new();
        let host = input.host.trim();
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        if !host_ok {
            problems.push(Invalid::new(if host.is_empty() {
                "SMTP server: give its host name, e.g. smtp.example.com.".to_owned()
            } else {
                format!(
                    "SMTP server: “{}” is not a host name such as smtp.example.com.",
                    excerpt(host)
                )
            }));
        }
        let tls = TlsMode::parse(input.tls);
        if tls.is_none() {
            problems.push(Invalid::new("Security: choose None, STARTTLS or TLS."));
        }
        let port = match input.port.trim() {
            "" => tls.map(TlsMode::default_port),
            raw => match raw.parse::<u16>() {
                Ok(port) if port > 0 => Some(port),
                _ => {
                    problems.push(Invalid::new(format!(
                        "Port: “{}” is not a port number from 1 to 65535.",
                        excerpt(raw)
                    )));
                    None
                }
            },
        };
        let username = input.username.trim();
        if username.chars().count() > 254 || username.chars().any(char::is_control) {
            problems.push(Invalid::new(
                "User name: at most 254 characters, none of them a control character.",
            ));
        }
        let from = match EmailAddress::parse(input.from) {
            Ok(from) => Some(from),
            Err(err) => {
                problems.push(Invalid::new(format!("From address: {err}.")));
                None
            }
        };
        match (problems.is_empty(), port, tls, from) {
            (true, Some(port), Some(tls), Some(from)) => Ok(Self {
                host: host.to_owned(),
                port,
                tls,
                username: Some(username.to_owned()).filter(|u| !u.is_empty()),
                from,
            }),
            _ => Err(problems),
        }
    }

    /// "smtp.example.com:587 (STARTTLS)", for messages and the audit log.
    pub fn describe(&self) -> String {
        format!("{}:{} ({})", self.host, self.port, self.tls.label())
    }
}

/// Addresses typed one a line (or separated by commas), each checked; duplicates once.
pub fn parse_addresses(raw: &str) -> Result<Vec<EmailAddress>, Vec<Invalid>> {
    let mut addresses: Vec<EmailAddress> = Vec::new();
    let mut problems = Vec::new();
    for part in raw
        .split(['\n', ',', ';'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        match EmailAddress::parse(part) {
            Ok(address) if !addresses.contains(&address) => addresses.push(address),
            Ok(_) => {}
            Err(err) => problems.push(Invalid::new(format!(
                "Other addresses: “{}”: {err}.",
                excerpt(part)
            ))),
        }
    }
    if addresses.len() > 50 {
        problems.push(Invalid::new("Other addresses: at most 50."));
    }
    if problems.is_empty() {
        Ok(addresses)
    } else {
        Err(problems)
    }
}

/// A password handed to the SMTP server only; never shown, never logged.
#[derive(Clone)]
pub struct SmtpPassword(pub String);

impl fmt::Debug for SmtpPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SmtpPassword(redacted)")
    }
}

/// What sending one message came to, and whether another try may do better.
#[derive(Debug, Clone)]
pub struct Sent {
    pub answer: Answer,
    pub delivered: bool,
    /// Anything but a permanent refusal (5xx) of the server: worth another try.
    pub retry: bool,
}

/// Sends one plain-text message to one recipient.
pub async fn send(
    server: &SmtpServer,
    password: Option<&SmtpPassword>,
    to: &str,
    subject: &str,
    body: &str,
) -> Sent {
    let message = match build_message(server, to, subject, body) {
        Ok(message) => message,
        Err(error) => {
            return Sent {
                answer: Answer {
                    error: Some(error),
                    ..Answer::default()
                },
                delivered: false,
                retry: false,
            };
        }
    };
    let transport = match transport(server, password) {
        Ok(transport) => transport,
        Err(err) => {
            return Sent {
                answer: Answer {
                    error: Some(format!("The SMTP settings do not work: {err}.")),
                    ..Answer::default()
                },
                delivered: false,
                retry: false,
            };
        }
    };
    match transport.send(message).await {
        Ok(reply) => {
            let text: Vec<&str> = reply.message().collect();
            Sent {
                answer: Answer {
                    status_code: Some(i64::from(u16::from(reply.code()))),
                    error: None,
                    excerpt: Some(cut(&text.join(" "))).filter(|t| !t.is_empty()),
                },
                delivered: true,
                retry: false,
            }
        }
        Err(err) => Sent {
            answer: Answer {
                status_code: err.status().map(|code| i64::from(u16::from(code))),
                error: Some(describe(&err, server)),
                excerpt: None,
            },
            delivered: false,
            retry: !err.is_permanent(),
        },
    }
}

fn build_message(
    server: &SmtpServer,
    to: &str,
    subject: &str,
    body: &str,
) -> Result<Message, String> {
    let from: Mailbox = server
        .from
        .as_str()
        .parse()
        .map_err(|err| format!("The From address cannot be used: {err}."))?;
    let to: Mailbox = to
        .parse()
        .map_err(|err| format!("The recipient's address cannot be used: {err}."))?;
    Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body.to_owned())
        .map_err(|err| format!("The message could not be made: {err}."))
}

fn transport(
    server: &SmtpServer,
    password: Option<&SmtpPassword>,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, lettre::transport::smtp::Error> {
    let builder = match server.tls {
        TlsMode::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&server.host),
        TlsMode::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&server.host)?,
        TlsMode::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&server.host)?,
    };
    let mut builder = builder.port(server.port).timeout(Some(TIMEOUT));
    if let Some(username) = &server.username {
        let password = password.map(|p| p.0.clone()).unwrap_or_default();
        builder = builder.credentials(Credentials::new(username.clone(), password));
    }
    Ok(builder.build())
}

/// Why a message was not sent, in words; the server's reply when it gave one.
fn describe(err: &lettre::transport::smtp::Error, server: &SmtpServer) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    let at = format!("{}:{}", server.host, server.port);
    if err.is_timeout() {
        format!(
            "The SMTP server {at} did not answer within {} seconds.",
            TIMEOUT.as_secs()
        )
    } else if let Some(code) = err.status() {
        format!(
            "The SMTP server {at} refused the message: {code} {}",
            cut(&cause.to_string())
        )
    } else if err.is_tls() {
        format!("The TLS connection to the SMTP server {at} failed: {cause}.")
    } else {
        format!("Could not send through the SMTP server {at}: {err}.")
    }
}

fn cut(text: &str) -> String {
    text.chars().take(super::webhook::ANSWER_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(host: &'a str, port: &'a str, tls: &'a str, from: &'a str) -> SmtpInput<'a> {
        SmtpInput {
            host,
            port,
            tls,
            username: "",
            from,
        }
    }

    #[test]
    fn smtp_settings_take_a_default_port_for_their_security() {
        let server =
            SmtpServer::parse(&input(" smtp.example.com ", "", "tls", "a@example.com")).unwrap();
        assert_eq!(
            (server.host.as_str(), server.port),
            ("smtp.example.com", 465)
        );
        assert_eq!(server.describe(), "smtp.example.com:465 (TLS (SMTPS))");
        assert_eq!(server.username, None);
    }

    #[test]
    fn bad_smtp_settings_say_every_problem() {
        let problems =
            SmtpServer::parse(&input("smtp example", "70000", "ssl", "nobody")).unwrap_err();
        let text = Invalid::join(&problems);
        for says in [
            "SMTP server: “smtp example” is not a host name",
            "Security: choose None, STARTTLS or TLS.",
            "Port: “70000” is not a port number",
            "From address:",
        ] {
            assert!(text.contains(says), "{says}: {text}");
        }
    }

    #[test]
    fn other_addresses_are_read_one_a_line_or_by_commas() {
        let addresses =
            parse_addresses("a@example.com\n b@example.com, A@example.com\n\n").unwrap();
        assert_eq!(
            addresses
                .iter()
                .map(EmailAddress::as_str)
                .collect::<Vec<_>>(),
            ["a@example.com", "b@example.com"]
        );
        let problems = parse_addresses("a@example.com\nnot-an-address").unwrap_err();
        assert!(problems[0].as_str().contains("“not-an-address”"));
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        assert_eq!(
            format!("{:?}", SmtpPassword("hunter2".into())),
            "SmtpPassword(redacted)"
        );
    }
}
