//! Host names: normalisation and validation of the names that go into
//! certificates (DNS names or IP literals; no wildcards).

use std::net::IpAddr;

use rcgen::SanType;
use rustls::pki_types::{DnsName, ServerName};

use crate::CertError;

/// Longest DNS name accepted (RFC 1035, without the trailing dot).
const MAX_DNS_LEN: usize = 253;

/// A validated, normalised certificate name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Host {
    /// Lowercase DNS name without trailing dot.
    Dns(String),
    /// IP literal (IPv6 given with or without brackets).
    Ip(IpAddr),
}

impl Host {
    /// Normalises `raw` (ASCII lowercase, one trailing dot removed, IPv6
    /// brackets removed) and validates it; never panics on bad input.
    pub(crate) fn parse(raw: &str) -> Result<Self, CertError> {
        let bad = |problem| CertError::InvalidName {
            name: raw.to_owned(),
            problem,
        };
        let unbracketed = raw
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(raw);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        let name = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
        if name.is_empty() {
            return Err(bad("empty"));
        }
        if name.len() > MAX_DNS_LEN {
            return Err(bad("longer than 253 characters"));
        }
        if name.contains('*') {
            return Err(bad("wildcards are not supported"));
        }
        if DnsName::try_from(name.as_str()).is_err() {
            return Err(bad("not a DNS name or IP address"));
        }
        Ok(Self::Dns(name))
    }

    /// The name as text: the DNS name, or the IP address without brackets.
    pub(crate) fn as_text(&self) -> String {
        match self {
            Self::Dns(name) => name.clone(),
            Self::Ip(ip) => ip.to_string(),
        }
    }

    /// The subjectAltName entry for this host.
    pub(crate) fn san(&self) -> Result<SanType, CertError> {
        Ok(match self {
            Self::Dns(name) => SanType::DnsName(name.as_str().try_into()?),
            Self::Ip(ip) => SanType::IpAddress(*ip),
        })
    }

    /// The name a TLS client would verify against.
    pub(crate) fn server_name(&self) -> Result<ServerName<'static>, CertError> {
        match self {
            Self::Dns(name) => {
                ServerName::try_from(name.clone()).map_err(|_| CertError::InvalidName {
                    name: name.clone(),
                    problem: "not a DNS name",
                })
            }
            Self::Ip(ip) => Ok(ServerName::IpAddress((*ip).into())),
        }
    }
}

/// Parses every name in `names`; an empty list is an error.
pub(crate) fn parse_all(names: &[String]) -> Result<Vec<Host>, CertError> {
    if names.is_empty() {
        return Err(CertError::InvalidName {
            name: String::new(),
            problem: "a certificate needs at least one name",
        });
    }
    names.iter().map(|n| Host::parse(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_dns_names() {
        assert_eq!(
            Host::parse("API.OpenAI.com.").unwrap(),
            Host::Dns("api.openai.com".into())
        );
        assert_eq!(
            Host::parse("localhost").unwrap(),
            Host::Dns("localhost".into())
        );
    }

    #[test]
    fn parses_ip_literals() {
        assert_eq!(
            Host::parse("127.0.0.1").unwrap(),
            Host::Ip("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            Host::parse("[::1]").unwrap(),
            Host::Ip("::1".parse().unwrap())
        );
        assert_eq!(Host::parse("::1").unwrap().as_text(), "::1");
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        let long = "a".repeat(300);
        for bad in [
            "",
            ".",
            "*.example.com",
            "a..b",
            "exa mple.com",
            "bad/host",
            "-",
            "ä.com",
            long.as_str(),
            "[not-ip]",
            "host:443",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_all(&[]).is_err());
    }
}
