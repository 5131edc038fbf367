//! Property tests: the parsers of untrusted input accept or reject any
//! input without panicking, and keep their invariants.

use caracal_gateway::authn;
use caracal_gateway::catalog::{template_catalog, CompiledCatalog};
use caracal_gateway::destination::{self, Host};
use caracal_gateway::model::Template;
use caracal_gateway::usage::{BodyKind, Dialect, UsageObserver};
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn hosts_parse_or_fail_cleanly(s in "\\PC{0,80}") {
        if let Ok(Host::Name(n)) = destination::parse_host(&s) {
            // Names are normalised: lowercase ASCII, no trailing dot.
            prop_assert!(n.is_ascii());
            prop_assert_eq!(n.to_ascii_lowercase(), n.clone());
            prop_assert!(!n.ends_with('.'));
        }
    }

    #[test]
    fn numeric_looking_hosts_never_become_names(a in 0u64..5_000_000_000u64, hex in any::<bool>()) {
        let s = if hex { format!("0x{a:x}") } else { a.to_string() };
        match destination::parse_host(&s) {
            Ok(Host::Ip(_)) | Err(_) => {}
            Ok(Host::Name(n)) => prop_assert!(false, "{} parsed as name {}", s, n),
        }
    }

    #[test]
    fn proxy_credentials_parse_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(v) = HeaderValue::from_bytes(&bytes) {
            let mut h = HeaderMap::new();
            h.insert("proxy-authorization", v.clone());
            let _ = authn::from_proxy_headers(&h);
            let mut h = HeaderMap::new();
            h.insert("authorization", v);
            let _ = authn::from_request_headers(&h);
        }
    }

    #[test]
    fn usage_observer_takes_any_bytes(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8), sse in any::<bool>(), complete in any::<bool>()) {
        let kind = if sse { BodyKind::Sse } else { BodyKind::Json };
        for dialect in [Dialect::OpenAi, Dialect::Anthropic, Dialect::Unknown] {
            let mut o = UsageObserver::new(kind, dialect, 512);
            for c in &chunks {
                o.observe(c);
            }
            let _ = o.finish(complete).code();
        }
    }

    #[test]
    fn catalog_classification_takes_any_path(path in "\\PC{0,120}") {
        let c = CompiledCatalog::compile(&template_catalog(Template::Openai)).unwrap();
        let _ = c.classify(&http::Method::POST, &path);
    }
}
