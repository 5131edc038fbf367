//! Output helpers: the writers every command prints through, JSON and
//! table rendering, secret masking and error rendering.

use std::fmt::Display;
use std::io::Write;

use comfy_table::{presets, ContentArrangement, Table};
use serde::Serialize;

/// Where a command writes: machine or human output to `out`, notes and
/// warnings to `err`.
pub struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
}

/// How a command that ran to the end went (errors are `Err`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success,
    /// The command worked but the answer is "no" (unhealthy, denied,
    /// unreachable): exit code 1.
    Failure,
}

impl Exit {
    pub fn from_ok(ok: bool) -> Self {
        if ok {
            Self::Success
        } else {
            Self::Failure
        }
    }
}

/// Writes `value` as one pretty-printed JSON document and a newline.
pub fn json(out: &mut dyn Write, value: &impl Serialize) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// A table with `header`, in the style every command uses.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    t
}

pub fn print_table(out: &mut dyn Write, table: &Table) -> anyhow::Result<()> {
    writeln!(out, "{table}")?;
    Ok(())
}

/// `-` for absent values.
pub fn or_dash<T: Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// A credential value safe to show: an auth scheme prefix (`Bearer `) is
/// kept, then at most the first 3 and last 4 characters of a long secret
/// (`Bearer sk-…abcd`); short secrets are hidden entirely.
pub fn mask_secret(value: &str) -> String {
    let (prefix, secret) = match value.split_once(' ') {
        Some((scheme, rest))
            if scheme.chars().all(|c| c.is_ascii_alphabetic()) && !rest.is_empty() =>
        {
            (format!("{scheme} "), rest)
        }
        _ => (String::new(), value),
    };
    let chars: Vec<char> = secret.chars().collect();
    let shown = if chars.len() >= 16 {
        let head: String = chars[..3].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{head}…{tail}")
    } else {
        "…".to_string()
    };
    format!("{prefix}{shown}")
}

/// An error and its causes on one line, skipping a cause whose text the
/// message before it already includes.
pub fn error_chain(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let s = cause.to_string();
        if text.contains(&s) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&s);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked() {
        assert_eq!(
            mask_secret("Bearer sk-proj-1234567890abcd"),
            "Bearer sk-…abcd"
        );
        assert_eq!(mask_secret("sk-ant-api03-xxxxxxxxwxyz"), "sk-…wxyz");
        assert_eq!(mask_secret("Bearer short"), "Bearer …");
        assert_eq!(mask_secret("tiny"), "…");
        let long = "secretsecretsecretsecret";
        assert!(!mask_secret(long).contains("secretsecret"));
    }

    #[test]
    fn error_chains_do_not_repeat_themselves() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let err = anyhow::Error::new(io)
            .context("cannot read x: gone")
            .context("loading");
        assert_eq!(error_chain(&err), "loading: cannot read x: gone");
    }
}
