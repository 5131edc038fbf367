//! The admission steps (authenticate → route → allowlist → mandate) as a
//! table, over a snapshot built from stored rows, without sockets: each
//! call is built by hand and driven through the same layers the stack
//! uses, down to a stub in place of the forwarding service.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use tower::{Service, ServiceBuilder, ServiceExt};

use super::call::{Call, Caller, Ctx, Refusal, RequestBody, Target};
use super::respond::{self, Body};
use super::{allowlist, authenticate, mandate, route, ConnInfo};
use crate::authn::{self, Presented};
use crate::authority::keys::Keyring;
use crate::authority::record::{MandateRecord, SigningKeyRow};
use crate::authority::{issue, mandate as jwt, Scope};
use crate::catalog::template_catalog;
use crate::model::{Action, Credential, Mode, PatternType, PrincipalKind, ProviderDef, Template};
use crate::policy::PolicyDefinition;
use crate::snapshot::Snapshot;
use crate::store::prelude::*;
use crate::store::{Change, NewPrincipal, SqliteStore};

/// Stands in for the rest of the stack: answers 200 naming the resource
/// and mandate the call was admitted with.
#[derive(Clone)]
struct Admitted;

impl Service<Call> for Admitted {
    type Response = Response<Body>;
    type Error = Refusal;
    type Future = std::future::Ready<Result<Response<Body>, Refusal>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Refusal>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let r = &call.ctx.record;
        let body = format!(
            "{} {} {}",
            r.resource.as_deref().unwrap_or("-"),
            r.action.unwrap_or("-"),
            r.mandate_id.as_deref().unwrap_or("-")
        );
        std::future::ready(Ok(Response::new(respond::full(body))))
    }
}

struct World {
    _dir: tempfile::TempDir,
    snapshot: Arc<Snapshot>,
    agent_token: String,
    intruder_token: String,
    mandate_token: String,
    mandate_id: String,
}

/// A workspace with provider `openai`, an agent allowed chat completions
/// and model listing, holding a mandate for chat completions only, and an
/// intruder with the same allowlist and no mandate.
async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("w.db")).await.unwrap();
    let mut principals = Vec::new();
    for (name, kind) in [
        ("ops", PrincipalKind::User),
        ("agent", PrincipalKind::Agent),
        ("intruder", PrincipalKind::Agent),
    ] {
        let new = NewPrincipal {
            kind,
            name: name.into(),
            email: String::new(),
        };
        principals.push(store.register_principal(new).await.unwrap());
    }
    let provider = ProviderDef {
        name: "openai".into(),
        template: Template::Openai,
        base_url: "https://api.openai.com".into(),
        hosts: vec!["api.openai.com".into()],
        credentials: vec![Credential {
            header: "authorization".into(),
            value: "Bearer sk-real".into(),
        }],
        default_headers: vec![],
        pinned_headers: vec![],
        allow_headers: vec![],
        catalog: template_catalog(Template::Openai),
        passthrough: false,
        allow_private_network: false,
    };
    store.put_provider(&provider, false).await.unwrap();
    for (p, _) in &principals[1..] {
        for pattern in [
            "https://api.openai.com/v1/chat/completions",
            "https://api.openai.com/v1/models",
        ] {
            store
                .add_allowlist(&p.id, pattern, PatternType::Glob)
                .await
                .unwrap();
        }
    }
    let now = jiff::Timestamp::now().as_second();
    let everything = Scope::new(
        vec!["*".into()],
        vec![Action::Read, Action::Create, Action::Update, Action::Delete],
    );
    let definition = PolicyDefinition {
        scope: everything,
        max_validity_secs: 3600,
        allow_delegation: false,
        max_delegation_depth: 0,
        budget: None,
        rate: None,
        max_in_flight: None,
    };
    let change = Change {
        changed_by: "test".into(),
        reason: "test".into(),
    };
    store
        .create_policy(&principals[0].0.id, &definition, &change)
        .await
        .unwrap();
    let keyring = Keyring::generate(now).unwrap();
    store
        .sync_signing_keys(&SigningKeyRow::of_keyring(&keyring))
        .await
        .unwrap();
    let policies = store.list_policies(None).await.unwrap();
    let chat_only = Scope::new(vec!["chat.completions".into()], vec![Action::Create]);
    let issued = issue::issue(
        &policies,
        &issue::IssueRequest {
            issuer: &principals[0].0,
            subject: &principals[1].0,
            scope: &chat_only,
            validity_secs: 600,
            now,
            workspace: None,
        },
    )
    .unwrap();
    let mandate_token = jwt::issue(&keyring, &issued.claims).unwrap();
    store
        .insert_mandate(&MandateRecord::issued(
            &issued.claims,
            &issued.policy_id,
            issued.policy_version,
        ))
        .await
        .unwrap();
    let (snapshot, warnings) =
        Snapshot::build(store.load_state().await.unwrap(), Default::default());
    assert!(warnings.is_empty(), "{warnings:?}");
    store.close().await;
    World {
        _dir: dir,
        snapshot: Arc::new(snapshot),
        agent_token: principals[1].1.clone(),
        intruder_token: principals[2].1.clone(),
        mandate_token,
        mandate_id: issued.claims.jti.clone(),
    }
}

/// One call of the table.
struct Case {
    name: &'static str,
    mode: Mode,
    token: Option<&'static str>,
    target: Target,
    method: Method,
    path: &'static str,
    mandate: Option<&'static str>,
    /// `Ok(resource action)` or `Err(code)`.
    want: Result<&'static str, &'static str>,
}

fn provider(name: &str) -> Target {
    Target::Provider { name: name.into() }
}

fn host(h: &str) -> Target {
    Target::Host {
        host: h.into(),
        https: true,
        port: Some(443),
    }
}

async fn admit(w: &World, case: &Case) -> Result<String, String> {
    let token = match case.token {
        Some("agent") => Some(w.agent_token.clone()),
        Some("intruder") => Some(w.intruder_token.clone()),
        Some(other) => Some(other.to_string()),
        None => None,
    };
    let mut req = Request::builder()
        .method(case.method.clone())
        .uri(case.path)
        .body(RequestBody::full(bytes::Bytes::new()))
        .unwrap();
    match case.mandate {
        Some("mandate") => {
            let v = w.mandate_token.parse().unwrap();
            req.headers_mut().insert(mandate::MANDATE_HEADER, v);
        }
        Some(other) => {
            req.headers_mut()
                .insert(mandate::MANDATE_HEADER, other.parse().unwrap());
        }
        None => {}
    }
    let conn = Arc::new(ConnInfo::unknown());
    let mut ctx = Ctx::new(case.mode, &case.method, conn, w.snapshot.clone());
    ctx.caller = Some(Caller::Presented(Ok(
        token.map(|token| Presented { user: None, token })
    )));
    ctx.target = Some(case.target.clone());
    ctx.path = case.path.to_string();
    let stack = ServiceBuilder::new()
        .layer(authenticate::layer())
        .layer(route::layer())
        .layer(allowlist::layer())
        .layer(mandate::layer(0))
        .service(Admitted);
    match stack.oneshot(Call { req, ctx }).await {
        Ok(resp) => {
            use http_body_util::BodyExt;
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            Ok(String::from_utf8(body.to_vec()).unwrap())
        }
        Err(refusal) => Err(refusal.denial().code.as_str().to_string()),
    }
}

#[tokio::test]
async fn admission_steps_over_a_snapshot_built_from_rows() {
    use Mode::{BaseUrl, Proxy};
    let w = world().await;
    let post = Method::POST;
    let get = Method::GET;
    let chat = "/v1/chat/completions";
    let cases = [
        Case {
            name: "allowed, base_url, recorded mandate",
            mode: BaseUrl,
            token: Some("agent"),
            target: provider("openai"),
            method: post.clone(),
            path: chat,
            mandate: None,
            want: Ok("chat.completions create"),
        },
        Case {
            name: "allowed, proxy, explicit mandate",
            mode: Proxy,
            token: Some("agent"),
            target: host("api.openai.com"),
            method: post.clone(),
            path: chat,
            mandate: Some("mandate"),
            want: Ok("chat.completions create"),
        },
        Case {
            name: "host names are case-insensitive",
            mode: Proxy,
            token: Some("agent"),
            target: host("API.OpenAI.com"),
            method: post.clone(),
            path: chat,
            mandate: None,
            want: Ok("chat.completions create"),
        },
        Case {
            name: "no credentials",
            mode: BaseUrl,
            token: None,
            target: provider("openai"),
            method: post.clone(),
            path: chat,
            mandate: None,
            want: Err("unauthenticated"),
        },
        Case {
            name: "a token of nobody",
            mode: BaseUrl,
            token: Some("cct_nobody"),
            target: provider("openai"),
            method: post.clone(),
            path: chat,
            mandate: None,
            want: Err("unauthenticated"),
        },
        Case {
            name: "unknown provider",
            mode: BaseUrl,
            token: Some("agent"),
            target: provider("nope"),
            method: post.clone(),
            path: chat,
            mandate: None,
            want: Err("provider_unknown"),
        },
        Case {
            name: "host of no provider",
            mode: Proxy,
            token: Some("agent"),
            target: host("example.com"),
            method: post.clone(),
            path: chat,
            mandate: None,
            want: Err("provider_unknown"),
        },
        Case {
            name: "metadata address",
            mode: Proxy,
            token: Some("agent"),
            target: host("169.254.169.254"),
            method: get.clone(),
            path: "/latest/meta-data",
            mandate: None,
            want: Err("destination_forbidden"),
        },
        Case {
            name: "loopback in another spelling",
            mode: Proxy,
            token: Some("agent"),
            target: host("0x7f.1"),
            method: get.clone(),
            path: "/",
            mandate: None,
            want: Err("destination_forbidden"),
        },
        Case {
            name: "dot segments",
            mode: BaseUrl,
            token: Some("agent"),
            target: provider("openai"),
            method: post.clone(),
            path: "/v1/x/../chat/completions",
            mandate: None,
            want: Err("bad_request"),
        },
        Case {
            name: "encoded slash",
            mode: BaseUrl,
            token: Some("agent"),
            target: provider("openai"),
            method: post.clone(),
            path: "/v1%2fchat/completions",
            mandate: None,
            want: Err("bad_request"),
        },
        Case {
            name: "not in the catalog",
            mode: BaseUrl,
            token: Some("agent"),
            target: provider("openai"),
            method: get.clone(),
            path: "/v1/nope",
            mandate: None,
            want: Err("operation_unknown"),
        },
        Case {
            name: "not allowlisted",
            mode: BaseUrl,
            token: Some("agent"),
            target: provider("openai"),
            method: post.clone(),
            path: "/v1/embeddings",
            mandate: None,
            want: Err("resource_not_allowed"),
        },
        Case {
            name: "a query does not widen the allowlist",
            mode: BaseUrl,
            token: Some("agent"),
            target: provider("openai"),
            method: post.clone(),
            path: "/v1/embeddings?x=/v1/chat/completions",
            mandate: None,
            want: Err("resource_not_allowed"),
        },
        Case {
            name: "allowlisted, outside the mandate",
            mode: BaseUrl,
            token: Some("agent"),
            target: provider("openai"),
            method: get.clone(),
            path: "/v1/models",
            mandate: None,
            want: Err("scope_exceeded"),
        },
        Case {
            name: "a garbage mandate",
            mode: BaseUrl,
            token: Some("agent"),
            target: provider("openai"),
            method: post.clone(),
            path: chat,
            mandate: Some("garbage"),
            want: Err("mandate_invalid"),
        },
        Case {
            name: "no mandate held",
            mode: BaseUrl,
            token: Some("intruder"),
            target: provider("openai"),
            method: post.clone(),
            path: chat,
            mandate: None,
            want: Err("mandate_missing"),
        },
        Case {
            name: "someone else's mandate",
            mode: BaseUrl,
            token: Some("intruder"),
            target: provider("openai"),
            method: post.clone(),
            path: chat,
            mandate: Some("mandate"),
            want: Err("mandate_wrong_principal"),
        },
    ];
    for case in &cases {
        let got = admit(&w, case).await;
        let want = case
            .want
            .map(|ok| format!("{ok} {}", w.mandate_id))
            .map_err(str::to_string);
        assert_eq!(got, want, "{}", case.name);
    }
}

#[test]
fn credentials_are_read_per_way_in() {
    let mut h = http::HeaderMap::new();
    h.insert("authorization", "Bearer cct_x".parse().unwrap());
    assert!(authn::from_request_headers(&h).unwrap().is_some());
    assert!(
        authn::from_proxy_headers(&h).unwrap().is_none(),
        "base_url credentials are not proxy credentials"
    );
}
