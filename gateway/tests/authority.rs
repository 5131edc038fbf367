//! Mandates enforced by the running gateway: every call needs a current,
//! signed mandate under an active policy covering it. Explicit mandates
//! travel in `x-caracal-mandate` (base_url and inside a tunnel); clients
//! configured only through HTTPS_PROXY act under the mandates recorded for
//! their principal. Revocations and policy changes win within a second.

mod common;

use std::time::{Duration, Instant};

use caracal_gateway::authority::mandate::Claims;
use caracal_gateway::model::{Action, PrincipalKind};
use caracal_gateway::store::{LedgerFilter, MandateRecord};
use common::authority::{now, scope, ALL};
use common::*;
use serde_json::json;

const CHAT: &str = "https://api.openai.com/v1/chat/completions";
const MODELS: &str = "https://api.openai.com/v1/models";

fn chat() -> serde_json::Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
}

/// What a call came back with: status, JSON error code (empty when
/// allowed), and the ledger event id.
struct Outcome {
    status: u16,
    code: String,
    event: String,
}

async fn outcome(resp: reqwest::Response) -> Outcome {
    let status = resp.status().as_u16();
    let event = event_id(&resp);
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    Outcome {
        status,
        code: body["error"].as_str().unwrap_or_default().to_string(),
        event,
    }
}

impl Env {
    /// A chat completion through HTTPS_PROXY as `principal` (id, token),
    /// optionally presenting `mandate` inside the tunnel.
    async fn proxy_chat_as(&self, principal: (&str, &str), mandate: Option<&str>) -> Outcome {
        let url = format!(
            "https://{}:{}@127.0.0.1:{}",
            principal.0,
            principal.1,
            self.gw.addr.port()
        );
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(self.ca())
            .proxy(reqwest::Proxy::all(url).unwrap())
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let mut req = client.post(CHAT).json(&chat());
        if let Some(m) = mandate {
            req = req.header("x-caracal-mandate", m);
        }
        outcome(req.send().await.unwrap()).await
    }

    async fn proxy_chat(&self, mandate: Option<&str>) -> Outcome {
        self.proxy_chat_as((&self.agent_id, &self.token), mandate)
            .await
    }

    /// A chat completion in base_url mode with the agent's token.
    async fn base_chat(&self, mandate: Option<&str>) -> Outcome {
        let mut req = self
            .direct_client()
            .post(format!("{}/v1/chat/completions", self.base_url("openai")))
            .bearer_auth(&self.token)
            .json(&chat());
        if let Some(m) = mandate {
            req = req.header("x-caracal-mandate", m);
        }
        outcome(req.send().await.unwrap()).await
    }
}

/// Calls `call` every 25 ms until it is refused with `code`; returns how
/// long that took. Fails after 3 s.
async fn refused_within<F, Fut>(code: &str, mut call: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let start = Instant::now();
    loop {
        let o = call().await;
        if o.status == 403 && o.code == code {
            return start.elapsed();
        }
        assert_eq!(o.status, 200, "unexpected refusal {}", o.code);
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "still not {code} after 3 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn an_unmodified_https_proxy_client_acts_under_its_recorded_mandate() {
    let env = start().await;
    let mandate = env.mandate.clone().unwrap();
    let o = env.proxy_chat(None).await;
    assert_eq!((o.status, o.code.as_str()), (200, ""));
    let e = env.event(&o.event).await;
    assert_eq!((e.decision.as_str(), e.code.as_str()), ("allow", "ok"));
    assert_eq!(e.mandate_id.as_deref(), Some(mandate.id.as_str()));
    // The same mandate presented explicitly, in a tunnel and in base_url mode.
    for o in [
        env.proxy_chat(Some(&mandate.token)).await,
        env.base_chat(Some(&mandate.token)).await,
    ] {
        assert_eq!(o.status, 200, "{}", o.code);
        let e = env.event(&o.event).await;
        assert_eq!(e.mandate_id.as_deref(), Some(mandate.id.as_str()));
    }
    // The mandate header never reaches the provider.
    for seen in env.mock.requests() {
        assert!(!seen.headers.contains_key("x-caracal-mandate"));
    }
}

#[tokio::test]
async fn without_any_mandate_calls_are_mandate_missing_and_recorded_twice() {
    let env = start_bare().await;
    let forwarded = env.mock.requests().len();
    for o in [env.proxy_chat(None).await, env.base_chat(None).await] {
        assert_eq!((o.status, o.code.as_str()), (403, "mandate_missing"));
    }
    assert_eq!(env.mock.requests().len(), forwarded, "a call was forwarded");
    // One call row and one authority row per refusal.
    let calls = env.ledger(2).await;
    assert!(calls
        .iter()
        .all(|e| e.decision.as_str() == "deny" && e.code.as_str() == "mandate_missing"));
    let authority = env.ledger_of("authority", 2).await;
    let denials: Vec<_> = authority
        .iter()
        .filter(|e| e.decision.as_str() == "deny")
        .collect();
    assert_eq!(denials.len(), 2, "{authority:#?}");
    for d in &denials {
        assert_eq!(d.code.as_str(), "mandate_missing");
        assert_eq!(d.resource.as_deref(), Some("chat.completions"));
        assert!(
            calls
                .iter()
                .any(|c| d.detail.as_deref().unwrap().contains(&c.id)),
            "the authority row names its call: {d:?}"
        );
    }
    // Once a mandate is issued, the running gateway admits the call.
    let agent = env.agent_id.clone();
    env.grant(
        &agent,
        &scope(&["chat.completions"], &[Action::Create]),
        600,
    )
    .await;
    refused_within_or_allowed(&env).await;
}

/// Waits (up to 1 s) for a call to be admitted.
async fn refused_within_or_allowed(env: &Env) {
    let start = Instant::now();
    loop {
        let o = env.proxy_chat(None).await;
        if o.status == 200 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "still {} a second after the mandate was issued",
            o.code
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Claims for the agent under the operator's policy, unrecorded.
fn claims(env: &Env, nbf: i64, exp: i64) -> Claims {
    Claims {
        iss: env.authority.ops.id.clone(),
        sub: env.agent_id.clone(),
        jti: uuid::Uuid::now_v7().to_string(),
        iat: nbf,
        nbf,
        exp,
        scope: scope(&["*"], ALL),
        parent: None,
        chain: vec![],
        depth: 0,
        ws: None,
    }
}

#[tokio::test]
async fn each_mandate_denial_has_its_code() {
    let env = start().await;
    let t = now();
    let expired = env.sign(&claims(&env, t - 7200, t - 3600));
    let early = env.sign(&claims(&env, t + 3600, t + 7200));
    let unrecorded = env.sign(&claims(&env, t - 10, t + 600));
    let chat_only = env
        .grant(
            &env.agent_id,
            &scope(&["chat.completions"], &[Action::Create]),
            600,
        )
        .await;
    let revoked = env.grant(&env.agent_id, &scope(&["*"], ALL), 600).await;
    env.revoke(&revoked.id, false).await;
    env.wait_for_snapshot().await;

    let cases: Vec<(&str, String, &str)> = vec![
        ("garbage", "not-a-jwt".into(), "mandate_invalid"),
        ("unrecorded", unrecorded, "mandate_invalid"),
        ("expired", expired, "mandate_expired"),
        ("not yet valid", early, "mandate_not_yet_valid"),
        ("revoked", revoked.token.clone(), "mandate_revoked"),
        ("empty", String::new(), "mandate_missing"),
    ];
    for (name, token, code) in &cases {
        for o in [
            env.proxy_chat(Some(token)).await,
            env.base_chat(Some(token)).await,
        ] {
            assert_eq!((o.status, o.code.as_str()), (403, *code), "{name}");
            let e = env.event(&o.event).await;
            assert_eq!((e.decision.as_str(), e.code.as_str()), ("deny", *code));
        }
    }
    // Out of scope: the chat-only mandate asked to list models.
    let resp = env
        .direct_client()
        .get(format!("{}/v1/models", env.base_url("openai")))
        .bearer_auth(&env.token)
        .header("x-caracal-mandate", &chat_only.token)
        .send()
        .await
        .unwrap();
    let o = outcome(resp).await;
    assert_eq!((o.status, o.code.as_str()), (403, "scope_exceeded"));
    let e = env.event(&o.event).await;
    assert_eq!(e.mandate_id.as_deref(), Some(chat_only.id.as_str()));
    assert_eq!(e.resource.as_deref(), Some("models.list"));
    // Two headers are not one mandate.
    let resp = env
        .direct_client()
        .post(format!("{}/v1/chat/completions", env.base_url("openai")))
        .bearer_auth(&env.token)
        .header("x-caracal-mandate", &chat_only.token)
        .header("x-caracal-mandate", &chat_only.token)
        .json(&chat())
        .send()
        .await
        .unwrap();
    assert_eq!(outcome(resp).await.code, "mandate_invalid");
    // A disabled policy stops every mandate issued under it.
    env.store
        .change_policy(
            &env.authority.policy.id,
            None,
            false,
            &authority::change("incident"),
        )
        .await
        .unwrap();
    let took = refused_within("policy_disabled", || env.proxy_chat(None)).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    env.assert_healthy().await;
}

#[tokio::test]
async fn a_mandate_presented_by_another_principal_is_refused() {
    let env = start().await;
    let mandate = env.mandate.clone().unwrap();
    let (other, other_token) = env.register(PrincipalKind::Agent, "worker-2").await;
    env.wait_for_snapshot().await;
    let forwarded = env.mock.requests().len();
    let o = env
        .proxy_chat_as((&other, &other_token), Some(&mandate.token))
        .await;
    assert_eq!(
        (o.status, o.code.as_str()),
        (403, "mandate_wrong_principal")
    );
    let e = env.event(&o.event).await;
    assert_eq!(e.principal_id.as_deref(), Some(other.as_str()));
    assert_eq!(e.mandate_id.as_deref(), Some(mandate.id.as_str()));
    // Without a mandate of its own, the other principal has nothing either.
    let o = env.proxy_chat_as((&other, &other_token), None).await;
    assert_eq!(o.code, "mandate_missing");
    assert_eq!(env.mock.requests().len(), forwarded);
}

#[tokio::test]
async fn a_delegated_mandate_works_until_its_parent_is_revoked() {
    let env = start_bare().await;
    let parent = env
        .grant(
            &env.agent_id,
            &scope(&["chat.*", "models.list"], &[Action::Create, Action::Read]),
            600,
        )
        .await;
    let (helper, helper_token) = env.register(PrincipalKind::Agent, "helper").await;
    let child = env
        .delegate(
            &parent.id,
            &helper,
            &scope(&["chat.completions"], &[Action::Create]),
            300,
        )
        .await;
    env.wait_for_snapshot().await;
    // The helper acts under the child, explicitly and by selection.
    let as_helper = (helper.as_str(), helper_token.as_str());
    for mandate in [Some(child.token.as_str()), None] {
        let o = env.proxy_chat_as(as_helper, mandate).await;
        assert_eq!(o.status, 200, "{}", o.code);
        let e = env.event(&o.event).await;
        assert_eq!(e.mandate_id.as_deref(), Some(child.id.as_str()));
    }
    // Revoking only the parent stops the child within a second.
    env.revoke(&parent.id, false).await;
    let took = refused_within("mandate_revoked", || {
        env.proxy_chat_as(as_helper, Some(&child.token))
    })
    .await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let o = env.proxy_chat_as(as_helper, None).await;
    assert_eq!(o.code, "mandate_revoked");
    // The refusal's authority event names the child (written shortly after).
    env.event(&o.event).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = env
            .store
            .query_ledger(&LedgerFilter {
                kind: Some(caracal_gateway::ledger::EventKind::Authority),
                mandate_id: Some(child.id.clone()),
                ..LedgerFilter::default()
            })
            .await
            .unwrap();
        if rows.iter().any(|e| e.code.as_str() == "mandate_revoked") {
            break;
        }
        assert!(Instant::now() < deadline, "{rows:#?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn tightening_the_policy_while_running_refuses_within_a_second() {
    let env = start().await;
    let o = env.proxy_chat(None).await;
    assert_eq!(o.status, 200);
    env.tighten_policy(&scope(&["models.list"], &[Action::Read]))
        .await;
    let took = refused_within("scope_exceeded", || env.proxy_chat(None)).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    // What the policy still covers keeps working.
    let r = env
        .proxy_client("https", true)
        .get(MODELS)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn expired_recorded_mandates_are_reported_as_expired() {
    let env = start_bare().await;
    let t = now();
    let mut c = claims(&env, t - 7200, t - 60);
    c.scope = scope(&["chat.completions"], &[Action::Create]);
    let mut record = MandateRecord::issued(&c, &env.authority.policy.id, 1);
    record.created_at = jiff::Timestamp::now().to_string();
    env.store.insert_mandate(&record).await.unwrap();
    env.wait_for_snapshot().await;
    let o = env.proxy_chat(None).await;
    assert_eq!((o.status, o.code.as_str()), (403, "mandate_expired"));
}
