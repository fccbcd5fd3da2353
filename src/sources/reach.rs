//! Which addresses a source may name. A database or file server on the team's network is
//! what sources are for; link-local addresses (where clouds answer with instance metadata
//! and credentials) and the console's own address are not.

use std::net::{IpAddr, SocketAddr};

use url::Url;

use super::SourceError;

/// The console's own addresses, which no source may name.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    /// Where the console listens (port 0 until it is bound).
    pub bind_addr: Option<SocketAddr>,
    /// The host and port the console is reached at from outside.
    pub public: Option<(String, u16)>,
}

impl Reach {
    pub fn new(bind_addr: SocketAddr, public_url: &Url) -> Self {
        Self {
            bind_addr: Some(bind_addr),
            public: public_url
                .host_str()
                .zip(public_url.port_or_known_default())
                .map(|(h, p)| (h.to_ascii_lowercase(), p)),
        }
    }

    /// Resolves the URL's host and checks every address it names; returns them to connect
    /// to (so that a name cannot resolve to another address between check and use).
    pub async fn check(
        &self,
        url: &Url,
        default_port: u16,
    ) -> Result<Vec<SocketAddr>, SourceError> {
        let host = url
            .host_str()
            .ok_or_else(|| SourceError::new("The URL names no host."))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(default_port);
        if let Some((public_host, public_port)) = &self.public {
            if host.eq_ignore_ascii_case(public_host) && port == *public_port {
                return Err(own_address(&host, port));
            }
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|_| {
                SourceError::new(format!(
                    "The host {host:?} is unknown: check its name (the console could not resolve it)."
                ))
            })?
            .collect();
        if addrs.is_empty() {
            return Err(SourceError::new(format!(
                "The host {host:?} has no address."
            )));
        }
        for addr in &addrs {
            if is_link_local(addr.ip()) {
                return Err(SourceError::new(format!(
                    "The host {host:?} is at {}, a link-local address (where cloud instance metadata lives); \
                     sources may not read from there.",
                    addr.ip()
                )));
            }
            if self.is_console(*addr) {
                return Err(own_address(&host, port));
            }
        }
        Ok(addrs)
    }

    fn is_console(&self, addr: SocketAddr) -> bool {
        let Some(bind) = self.bind_addr else {
            return false;
        };
        if bind.port() != addr.port() || bind.port() == 0 {
            return false;
        }
        let ip = canonical(addr.ip());
        let bound = canonical(bind.ip());
        ip == bound
            || (bound.is_unspecified() && (ip.is_loopback() || ip.is_unspecified()))
            || (bound.is_loopback() && ip.is_loopback())
    }
}

fn own_address(host: &str, port: u16) -> SourceError {
    SourceError::new(format!(
        "{host}:{port} is this console's own address; a source reads from a database or file server."
    ))
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach() -> Reach {
        Reach::new(
            "0.0.0.0:8080".parse().unwrap(),
            &Url::parse("https://console.example.com/").unwrap(),
        )
    }

    #[tokio::test]
    async fn link_local_and_the_consoles_own_address_are_refused() {
        let reach = reach();
        for (url, said) in [
            ("http://169.254.169.254/latest/meta-data", "link-local"),
            ("http://[fe80::1]:80/x.csv", "link-local"),
            ("http://[::ffff:169.254.169.254]/x", "link-local"),
            ("http://127.0.0.1:8080/export.csv", "own address"),
            ("https://console.example.com/x.csv", "own address"),
        ] {
            let err = reach
                .check(&Url::parse(url).unwrap(), 80)
                .await
                .unwrap_err();
            assert!(err.0.contains(said), "{url}: {err}");
        }
        assert!(
            reach
                .check(
                    &Url::parse("postgres://u:p@127.0.0.1:5432/shop").unwrap(),
                    5432
                )
                .await
                .is_ok(),
            "a database on this machine is fine"
        );
    }
}
