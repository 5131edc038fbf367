//! Principal credentials: how tokens are minted and hashed, and how they
//! are read from `Proxy-Authorization` (proxy modes) or `Authorization` /
//! `x-api-key` (base_url mode). Lookup is by hash in the snapshot, O(1).

use base64::Engine;
use http::HeaderMap;
use sha2::{Digest, Sha256};

/// Credentials that cannot be read (the caller is unauthenticated).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadCredentials(pub String);

/// Every principal token starts with this, so leaked tokens are easy to
/// recognise and scan for.
pub const TOKEN_PREFIX: &str = "cct_";

/// A fresh token: the prefix and 32 random bytes, base64url.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The stored form of a token. Tokens carry 256 random bits, so a plain
/// SHA-256 is a safe, constant-cost lookup key.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Credentials as presented by a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// The user part of Basic credentials (principal id or name), if any.
    pub user: Option<String>,
    pub token: String,
}

fn unauthenticated(msg: impl Into<String>) -> BadCredentials {
    BadCredentials(msg.into())
}

/// Reads `Proxy-Authorization`: `Basic base64(principal:token)` (what
/// clients send for `HTTPS_PROXY=https://principal:token@gateway:8443`) or
/// `Bearer token`. `Ok(None)` when the header is absent.
pub fn from_proxy_headers(headers: &HeaderMap) -> Result<Option<Presented>, BadCredentials> {
    let Some(value) = headers.get(http::header::PROXY_AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| unauthenticated("Proxy-Authorization is not valid text"))?;
    parse_authorization(value, "Proxy-Authorization").map(Some)
}

/// Reads base_url credentials: `Authorization: Bearer token` (OpenAI SDKs),
/// `x-api-key: token` (Anthropic SDKs) or `api-key: token` (Azure style).
pub fn from_request_headers(headers: &HeaderMap) -> Result<Option<Presented>, BadCredentials> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| unauthenticated("Authorization is not valid text"))?;
        return parse_authorization(value, "Authorization").map(Some);
    }
    for name in ["x-api-key", "api-key"] {
        if let Some(value) = headers.get(name) {
            let token = value
                .to_str()
                .map_err(|_| unauthenticated(format!("{name} is not valid text")))?
                .trim();
            if token.is_empty() {
                return Err(unauthenticated(format!("{name} is empty")));
            }
            return Ok(Some(Presented {
                user: None,
                token: token.to_string(),
            }));
        }
    }
    Ok(None)
}

fn parse_authorization(value: &str, header: &str) -> Result<Presented, BadCredentials> {
    let (scheme, rest) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| unauthenticated(format!("{header} must be `Basic …` or `Bearer …`")))?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() {
            return Err(unauthenticated(format!(
                "{header} has an empty bearer token"
            )));
        }
        return Ok(Presented {
            user: None,
            token: rest.to_string(),
        });
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| unauthenticated(format!("{header} Basic credentials are not base64")))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| unauthenticated(format!("{header} Basic credentials are not UTF-8")))?;
        let (user, token) = decoded.split_once(':').ok_or_else(|| {
            unauthenticated(format!(
                "{header} Basic credentials must be principal:token"
            ))
        })?;
        let user = percent_decode(user);
        let token = percent_decode(token);
        if token.is_empty() {
            return Err(unauthenticated(format!(
                "{header} Basic credentials have an empty token"
            )));
        }
        return Ok(Presented {
            user: (!user.is_empty()).then_some(user),
            token,
        });
    }
    Err(unauthenticated(format!(
        "{header} scheme {scheme:?} is not supported; use Basic or Bearer"
    )))
}

/// Some clients send proxy userinfo still percent-encoded; tokens and ids
/// never contain `%`, so decoding is unambiguous.
fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    fn basic(s: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    }

    #[test]
    fn tokens_are_unique_and_hash_stably() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() > 40);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
    }

    #[test]
    fn proxy_credentials_parse() {
        let p = from_proxy_headers(&headers("proxy-authorization", &basic("agent-1:cct_x")))
            .unwrap()
            .unwrap();
        assert_eq!(p.user.as_deref(), Some("agent-1"));
        assert_eq!(p.token, "cct_x");
        let p = from_proxy_headers(&headers("proxy-authorization", "Bearer cct_y"))
            .unwrap()
            .unwrap();
        assert_eq!((p.user, p.token.as_str()), (None, "cct_y"));
        let p = from_proxy_headers(&headers("proxy-authorization", &basic("a%2Db:cct%5Fz")))
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.user.as_deref(), p.token.as_str()),
            (Some("a-b"), "cct_z")
        );
        assert_eq!(from_proxy_headers(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn garbled_credentials_are_refused_with_a_reason() {
        for bad in [
            "Basic",
            "Basic !!!notbase64",
            &basic("no-colon"),
            &basic("user:"),
            "Bearer ",
            "Digest abc",
            "garbage",
            &format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe, b':', b'x'])
            ),
            "%",
        ] {
            let err = from_proxy_headers(&headers("proxy-authorization", bad)).unwrap_err();
            assert!(err.0.contains("Proxy-Authorization"), "{bad:?}: {err}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            "proxy-authorization",
            HeaderValue::from_bytes(b"Basic \xff").unwrap(),
        );
        assert!(from_proxy_headers(&h).is_err());
        assert_eq!(percent_decode("abc%"), "abc%");
        assert_eq!(percent_decode("%4"), "%4");
    }

    #[test]
    fn base_url_credentials_parse() {
        let p = from_request_headers(&headers("authorization", "Bearer cct_a"))
            .unwrap()
            .unwrap();
        assert_eq!(p.token, "cct_a");
        let p = from_request_headers(&headers("x-api-key", "cct_b"))
            .unwrap()
            .unwrap();
        assert_eq!(p.token, "cct_b");
        assert!(from_request_headers(&headers("x-api-key", " ")).is_err());
        assert_eq!(from_request_headers(&HeaderMap::new()).unwrap(), None);
    }
}
