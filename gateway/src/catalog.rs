//! Provider catalogs: the template catalogs of OpenAI- and
//! Anthropic-compatible APIs, and matching a request (method, path) to the
//! operation (resource, action) that policies, mandates and allowlists name.

use crate::model::{Action, CatalogEntry, Template};

/// The operation a request performs on a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub resource: String,
    pub action: Action,
}

/// Resource name given to requests forwarded by a passthrough provider
/// that match no catalog entry.
pub const PASSTHROUGH_RESOURCE: &str = "passthrough";

fn entry(method: &str, path: &str, resource: &str, action: Option<Action>) -> CatalogEntry {
    CatalogEntry {
        method: method.into(),
        path: path.into(),
        resource: resource.into(),
        action,
    }
}

/// The catalog a new provider of `template` starts with. Resource names
/// follow the SDKs' namespaces (`client.chat.completions.create` is
/// resource `chat.completions`, action `create`).
pub fn template_catalog(template: Template) -> Vec<CatalogEntry> {
    use Action::*;
    let e = entry;
    match template {
        Template::Openai => vec![
            e("POST", "/v1/chat/completions", "chat.completions", None),
            e("GET", "/v1/chat/completions", "chat.completions", None),
            e("GET", "/v1/chat/completions/{id}", "chat.completions", None),
            e("POST", "/v1/completions", "completions", None),
            e("POST", "/v1/embeddings", "embeddings", None),
            e("POST", "/v1/responses", "responses", None),
            e("GET", "/v1/responses/{id}", "responses", None),
            e("DELETE", "/v1/responses/{id}", "responses", None),
            e(
                "POST",
                "/v1/responses/{id}/cancel",
                "responses",
                Some(Update),
            ),
            e("GET", "/v1/models", "models.list", None),
            e("GET", "/v1/models/{model}", "models.retrieve", None),
            e("POST", "/v1/moderations", "moderations", None),
            e("POST", "/v1/images/generations", "images.generations", None),
            e("POST", "/v1/images/edits", "images.edits", None),
            e("POST", "/v1/audio/speech", "audio.speech", None),
            e(
                "POST",
                "/v1/audio/transcriptions",
                "audio.transcriptions",
                None,
            ),
            e("POST", "/v1/audio/translations", "audio.translations", None),
            e("GET", "/v1/files", "files", None),
            e("POST", "/v1/files", "files", None),
            e("GET", "/v1/files/{id}", "files", None),
            e("GET", "/v1/files/{id}/content", "files", None),
            e("DELETE", "/v1/files/{id}", "files", None),
            e("GET", "/v1/batches", "batches", None),
            e("POST", "/v1/batches", "batches", None),
            e("GET", "/v1/batches/{id}", "batches", None),
            e("POST", "/v1/batches/{id}/cancel", "batches", Some(Update)),
        ],
        Template::Anthropic => vec![
            e("POST", "/v1/messages", "messages", None),
            e(
                "POST",
                "/v1/messages/count_tokens",
                "messages.count_tokens",
                Some(Read),
            ),
            e("POST", "/v1/messages/batches", "messages.batches", None),
            e("GET", "/v1/messages/batches", "messages.batches", None),
            e("GET", "/v1/messages/batches/{id}", "messages.batches", None),
            e(
                "GET",
                "/v1/messages/batches/{id}/results",
                "messages.batches",
                None,
            ),
            e(
                "POST",
                "/v1/messages/batches/{id}/cancel",
                "messages.batches",
                Some(Update),
            ),
            e(
                "DELETE",
                "/v1/messages/batches/{id}",
                "messages.batches",
                None,
            ),
            e("POST", "/v1/complete", "completions", None),
            e("GET", "/v1/models", "models.list", None),
            e("GET", "/v1/models/{model}", "models.retrieve", None),
        ],
        Template::Generic => Vec::new(),
    }
}

/// Why a catalog entry cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog entry {0:?}: method must be an HTTP method or *")]
    Method(String),
    #[error(
        "catalog entry {0:?}: path must start with '/', and '**' may only be the last segment"
    )]
    Path(String),
    #[error("catalog entry {0:?}: resource must be 1-128 characters of [a-z0-9._-]")]
    Resource(String),
}

#[derive(Debug, Clone)]
enum Segment {
    Literal(String),
    Any,
    Rest,
}

/// A catalog compiled for matching; entries are tried in order.
#[derive(Debug, Clone, Default)]
pub struct CompiledCatalog {
    entries: Vec<(Option<http::Method>, Vec<Segment>, Operation)>,
}

impl CompiledCatalog {
    pub fn compile(entries: &[CatalogEntry]) -> Result<Self, CatalogError> {
        let mut compiled = Vec::with_capacity(entries.len());
        for e in entries {
            let method = match e.method.as_str() {
                "*" => None,
                m => Some(
                    http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                        .map_err(|_| CatalogError::Method(e.method.clone()))?,
                ),
            };
            let segments =
                compile_path(&e.path).ok_or_else(|| CatalogError::Path(e.path.clone()))?;
            if !valid_resource(&e.resource) {
                return Err(CatalogError::Resource(e.resource.clone()));
            }
            let action = e.action.unwrap_or_else(|| {
                Action::for_method(method.as_ref().unwrap_or(&http::Method::GET))
            });
            compiled.push((
                method,
                segments,
                Operation {
                    resource: e.resource.clone(),
                    action,
                },
            ));
        }
        Ok(Self { entries: compiled })
    }

    /// The operation of a request, or None when no entry matches. `path`
    /// excludes the query string.
    pub fn classify(&self, method: &http::Method, path: &str) -> Option<&Operation> {
        let parts: Vec<&str> = path.split('/').skip(1).collect();
        self.entries
            .iter()
            .find(|(m, segs, _)| {
                m.as_ref().is_none_or(|m| m == method) && path_matches(segs, &parts)
            })
            .map(|(_, _, op)| op)
    }

    /// Every (resource, action) this catalog can produce, sorted, unique.
    pub fn operations(&self) -> Vec<(String, Action)> {
        let mut ops: Vec<(String, Action)> = self
            .entries
            .iter()
            .map(|(_, _, op)| (op.resource.clone(), op.action))
            .collect();
        ops.sort_by(|a, b| (&a.0, a.1.as_str()).cmp(&(&b.0, b.1.as_str())));
        ops.dedup();
        ops
    }
}

/// Resource names: lowercase letters, digits, `.`, `_`, `-`.
pub fn valid_resource(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 128
        && r.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

fn compile_path(path: &str) -> Option<Vec<Segment>> {
    let rest = path.strip_prefix('/')?;
    let raw: Vec<&str> = rest.split('/').collect();
    let mut segs = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        if *s == "**" {
            if i + 1 != raw.len() {
                return None;
            }
            segs.push(Segment::Rest);
        } else if s.starts_with('{') && s.ends_with('}') && s.len() > 2 {
            segs.push(Segment::Any);
        } else if s.contains(['{', '}', '*']) {
            return None;
        } else {
            segs.push(Segment::Literal((*s).to_string()));
        }
    }
    Some(segs)
}

fn path_matches(segs: &[Segment], parts: &[&str]) -> bool {
    let mut i = 0;
    for seg in segs {
        match seg {
            Segment::Rest => return true,
            Segment::Any => {
                if parts.get(i).is_none_or(|p| p.is_empty()) {
                    return false;
                }
            }
            Segment::Literal(l) => {
                if parts.get(i) != Some(&l.as_str()) {
                    return false;
                }
            }
        }
        i += 1;
    }
    i == parts.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn openai() -> CompiledCatalog {
        CompiledCatalog::compile(&template_catalog(Template::Openai)).unwrap()
    }

    #[test]
    fn templates_compile_and_classify() {
        let c = openai();
        let op = c.classify(&Method::POST, "/v1/chat/completions").unwrap();
        assert_eq!(
            (op.resource.as_str(), op.action),
            ("chat.completions", Action::Create)
        );
        let op = c.classify(&Method::GET, "/v1/models").unwrap();
        assert_eq!(
            (op.resource.as_str(), op.action),
            ("models.list", Action::Read)
        );
        let op = c.classify(&Method::POST, "/v1/batches/b_1/cancel").unwrap();
        assert_eq!(op.action, Action::Update);
        let op = c.classify(&Method::DELETE, "/v1/files/f1").unwrap();
        assert_eq!(op.action, Action::Delete);
        let a = CompiledCatalog::compile(&template_catalog(Template::Anthropic)).unwrap();
        let op = a.classify(&Method::POST, "/v1/messages").unwrap();
        assert_eq!(
            (op.resource.as_str(), op.action),
            ("messages", Action::Create)
        );
        assert_eq!(
            a.classify(&Method::POST, "/v1/messages/count_tokens")
                .unwrap()
                .action,
            Action::Read
        );
    }

    #[test]
    fn near_misses_do_not_match() {
        let c = openai();
        for (m, p) in [
            (Method::GET, "/v1/chat/completions/x/y"),
            (Method::PUT, "/v1/chat/completions"),
            (Method::POST, "/v1/chat/completions/"),
            (Method::POST, "/v1/chat"),
            (Method::GET, "/v1/models/"),
            (Method::POST, "/v2/chat/completions"),
            (Method::POST, "//v1/chat/completions"),
            (Method::POST, ""),
        ] {
            assert!(c.classify(&m, p).is_none(), "{m} {p} matched");
        }
    }

    #[test]
    fn wildcards_and_validation() {
        let c = CompiledCatalog::compile(&[entry("*", "/api/**", "things", Some(Action::Update))])
            .unwrap();
        assert!(c.classify(&Method::GET, "/api/a/b/c").is_some());
        assert!(c.classify(&Method::GET, "/other").is_none());
        for bad in [
            entry("P OST", "/x", "r", None),
            entry("GET", "x", "r", None),
            entry("GET", "/**/x", "r", None),
            entry("GET", "/a*", "r", None),
            entry("GET", "/x", "Bad Resource", None),
        ] {
            assert!(
                CompiledCatalog::compile(std::slice::from_ref(&bad)).is_err(),
                "{bad:?}"
            );
        }
        assert!(openai()
            .operations()
            .contains(&("chat.completions".into(), Action::Create)));
    }
}
