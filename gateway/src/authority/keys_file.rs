//! The keyring's on-disk form (JSON, keys in base64) and its parsing.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::KeyEntry;

/// The on-disk form: keys in base64 (standard alphabet, padded).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyringFile {
    pub(super) version: u32,
    pub(super) keys: Vec<KeyFileEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyFileEntry {
    pub(super) kid: String,
    pub(super) created_at: i64,
    #[serde(default)]
    pub(super) retired_at: Option<i64>,
    pub(super) public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) private_pkcs8: Option<String>,
}

impl KeyFileEntry {
    pub(super) fn into_key(self) -> Result<KeyEntry, String> {
        let kid = self.kid;
        let public = B64
            .decode(self.public_key.as_bytes())
            .map_err(|e| format!("public key of {kid:?} is not base64: {e}"))?;
        let public_key: [u8; 32] = public.try_into().map_err(|v: Vec<u8>| {
            format!("public key of {kid:?} is {} bytes, expected 32", v.len())
        })?;
        let private_pkcs8 = match self.private_pkcs8 {
            Some(p) => Some(
                B64.decode(p.as_bytes())
                    .map_err(|e| format!("private key of {kid:?} is not base64: {e}"))?,
            ),
            None => None,
        };
        Ok(KeyEntry {
            kid,
            created_at: self.created_at,
            retired_at: self.retired_at,
            public_key,
            private_pkcs8,
        })
    }
}

/// A JSON error without the offending value (it could be key material):
/// only field-name errors keep serde's message.
pub(super) fn describe_json_error(e: &serde_json::Error) -> String {
    let at = format!("line {} column {}", e.line(), e.column());
    match e.classify() {
        serde_json::error::Category::Io => format!("read error: {e}"),
        serde_json::error::Category::Eof => format!("truncated JSON at {at}"),
        serde_json::error::Category::Syntax => format!("not JSON (syntax error at {at})"),
        serde_json::error::Category::Data => {
            let msg = e.to_string();
            let named_field = ["missing field", "unknown field", "duplicate field"]
                .iter()
                .any(|p| msg.starts_with(p));
            if named_field {
                msg
            } else {
                format!("not a keyring document (unexpected value at {at})")
            }
        }
    }
}
