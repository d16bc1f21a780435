//! A target's `host:port` as configured: an IP address, or a host name resolved at every
//! connect (and so again on every reconnect, after a DNS change).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// `192.0.2.7:4433`, `[2001:db8::7]:4433` or `node.example:4433`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct TargetAddress {
    host: String,
    port: u16,
}

/// Why an address did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not host:port (an IP address or a DNS name, and a port): {why}")]
pub struct AddressError {
    input: String,
    why: &'static str,
}

impl TargetAddress {
    /// Parses `host:port`; a host that is no IP address must be a DNS name (letters, digits,
    /// `-`, `_`, dots).
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(a.into());
        }
        let bad = |why| AddressError {
            input: s.to_owned(),
            why,
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("no :port"))?;
        let port: u16 = port.parse().map_err(|_| bad("the port is not 0-65535"))?;
        let name_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return Err(bad("the host is neither an IP address nor a DNS name"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// The IP address, when it was configured as one (no name to resolve).
    pub fn ip(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.host.parse().ok()?;
        Some(SocketAddr::new(ip, self.port))
    }

    /// The address to connect to now: the configured IP, or the name looked up (the first
    /// address of the family `ipv4` says, as the probing socket can only reach that one).
    pub async fn resolve(&self, ipv4: bool) -> std::io::Result<SocketAddr> {
        if let Some(a) = self.ip() {
            return Ok(a);
        }
        let all: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .collect();
        all.iter()
            .find(|a| a.is_ipv4() == ipv4)
            .copied()
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "{self} resolves to no IPv{} address ({all:?})",
                        if ipv4 { 4 } else { 6 }
                    ),
                )
            })
    }
}

impl From<SocketAddr> for TargetAddress {
    fn from(a: SocketAddr) -> Self {
        Self {
            host: a.ip().to_string(),
            port: a.port(),
        }
    }
}

impl std::str::FromStr for TargetAddress {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for TargetAddress {
    type Error = AddressError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl fmt::Display for TargetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host.contains(':') {
            true => write!(f, "[{}]:{}", self.host, self.port),
            false => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TargetAddress;

    #[test]
    fn parses_ips_and_names() {
        for (s, shown, ip) in [
            ("127.0.0.1:4433", "127.0.0.1:4433", true),
            ("[::1]:4433", "[::1]:4433", true),
            ("localhost:4433", "localhost:4433", false),
            ("node-1.fra.example:1", "node-1.fra.example:1", false),
        ] {
            let a = TargetAddress::parse(s).unwrap();
            assert_eq!(a.to_string(), shown);
            assert_eq!(a.ip().is_some(), ip, "{s}");
        }
        for s in [
            "localhost",
            "host:99999",
            ":4433",
            "a b:1",
            "ho/st:1",
            "::1:4433x",
        ] {
            assert!(TargetAddress::parse(s).is_err(), "{s}");
        }
    }

    #[tokio::test]
    async fn resolves_names_to_the_socket_family() {
        let a = TargetAddress::parse("localhost:4433").unwrap();
        let v4 = a.resolve(true).await.unwrap();
        assert_eq!(v4, "127.0.0.1:4433".parse().unwrap());
        let ip = TargetAddress::parse("127.0.0.2:1").unwrap();
        assert_eq!(
            ip.resolve(true).await.unwrap(),
            "127.0.0.2:1".parse().unwrap()
        );
    }
}
