//! Request path hygiene. The gateway classifies, allowlists and forwards
//! the path exactly as the agent sent it, so a path that an upstream (or a
//! CDN in front of it) could read differently must be refused: dot
//! segments, encoded separators or dots, backslashes, empty segments and
//! control characters. Refusing is safer than normalising, because the
//! gateway cannot know every upstream's normalisation rules.

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path must start with '/'")]
    NotAbsolute,
    #[error("path contains a '.' or '..' segment")]
    DotSegment,
    #[error("path contains an empty segment ('//')")]
    EmptySegment,
    #[error("path contains an encoded '/', '\\', '.' or NUL ({0})")]
    EncodedSeparator(String),
    #[error("path contains a backslash")]
    Backslash,
    #[error("path contains a control character or space")]
    Control,
    #[error("path contains a malformed percent-escape")]
    BadEscape,
}

/// Checks the path part of a request target (no query string).
pub fn check(path: &str) -> Result<(), PathError> {
    let rest = path.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(PathError::Control);
    }
    if path.contains('\\') {
        return Err(PathError::Backslash);
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = path.get(i + 1..i + 3).ok_or(PathError::BadEscape)?;
            // `from_str_radix` alone would also take a sign (`%+b`).
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(PathError::BadEscape);
            }
            let value = u8::from_str_radix(hex, 16).map_err(|_| PathError::BadEscape)?;
            if matches!(value, b'/' | b'\\' | b'.' | 0) {
                return Err(PathError::EncodedSeparator(format!("%{hex}")));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    if rest.is_empty() {
        return Ok(());
    }
    let segments: Vec<&str> = rest.split('/').collect();
    for (n, seg) in segments.iter().enumerate() {
        match *seg {
            "." | ".." => return Err(PathError::DotSegment),
            // A trailing slash is an empty last segment; that one is fine.
            "" if n + 1 < segments.len() => return Err(PathError::EmptySegment),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_paths_pass() {
        for p in [
            "/",
            "/v1/chat/completions",
            "/v1/models/gpt-4o",
            "/v1/files/",
            "/v1/a%20b",
            "/v1/x.json",
            "/v1/..x",
            "/v1/%41",
        ] {
            assert_eq!(check(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for (p, e) in [
            ("v1/models", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
            ("/v1/models/../../admin", PathError::DotSegment),
            ("/v1/./models", PathError::DotSegment),
            ("/..", PathError::DotSegment),
            ("/v1//models", PathError::EmptySegment),
            ("//v1/models", PathError::EmptySegment),
            (
                "/v1/%2e%2e/admin",
                PathError::EncodedSeparator("%2e".into()),
            ),
            ("/v1/.%2E/admin", PathError::EncodedSeparator("%2E".into())),
            ("/v1/a%2fb", PathError::EncodedSeparator("%2f".into())),
            ("/v1/a%5Cb", PathError::EncodedSeparator("%5C".into())),
            ("/v1/a%00", PathError::EncodedSeparator("%00".into())),
            ("/v1\\..\\admin", PathError::Backslash),
            ("/v1/a b", PathError::Control),
            ("/v1/a\tb", PathError::Control),
            ("/v1/%zz", PathError::BadEscape),
            ("/v1/%4", PathError::BadEscape),
            ("/v1/%", PathError::BadEscape),
        ] {
            assert_eq!(check(p), Err(e), "{p:?}");
        }
    }

    /// Found by the `path` fuzz target: `u8::from_str_radix` accepts a
    /// leading '+', so `%+b` passed as an escape.
    #[test]
    fn a_sign_is_not_a_hex_digit() {
        for p in ["/%+b", "/v1/%+0", "/v1/%+"] {
            assert_eq!(check(p), Err(PathError::BadEscape), "{p:?}");
        }
    }
}
