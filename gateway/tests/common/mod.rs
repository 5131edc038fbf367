//! Test harness: a real gateway on ephemeral ports, in a temporary
//! workspace, in front of the real mock provider.
#![allow(dead_code)]

pub mod authority;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use caracal_config::Config;
use caracal_gateway::catalog::template_catalog;
use caracal_gateway::ledger::LedgerEvent;
use caracal_gateway::model::{Credential, PatternType, PrincipalKind, ProviderDef, Template};
use caracal_gateway::store::{LedgerFilter, NewPrincipal, SqliteStore, Store};
use caracal_gateway::RunningGateway;
use caracal_load_tests::mock::{self, MockConfig, MockHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A port nothing listens on now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends SIGTERM to `child` and asserts it exits, successfully, within
/// `within` (killing it otherwise); how long it took.
pub async fn stop_within(child: &mut std::process::Child, within: Duration) -> Duration {
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let stopped = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if stopped.elapsed() > within {
            child.kill().unwrap();
            panic!("still running {within:?} after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    stopped.elapsed()
}

pub const OPENAI_KEY: &str = "sk-upstream-openai";
pub const ANTHROPIC_KEY: &str = "sk-upstream-anthropic";

pub struct Env {
    pub dir: tempfile::TempDir,
    pub gw: RunningGateway,
    pub mock: MockHandle,
    pub store: Arc<dyn Store>,
    pub agent_id: String,
    pub token: String,
    pub ca_pem: String,
    pub authority: authority::Authority,
    /// The agent's mandate over everything (`None` from [`start_bare`]).
    pub mandate: Option<authority::Issued>,
    pub config: Config,
}

/// Test configuration: ephemeral ports, short timeouts, 1 MiB bodies.
fn config(dir: &Path) -> Config {
    let text = r#"
[gateway]
listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:0"
[limits]
max_request_body_bytes = 1048576
header_read_timeout_secs = 1
idle_timeout_secs = 2
upstream_response_timeout_secs = 5
"#;
    Config::parse(text, &dir.join("config.toml")).unwrap()
}

pub fn provider(name: &str, template: Template, base_url: &str, host: &str) -> ProviderDef {
    let (credentials, default_headers) = match template {
        Template::Anthropic => (
            vec![Credential {
                header: "x-api-key".into(),
                value: ANTHROPIC_KEY.into(),
            }],
            vec![("anthropic-version".to_string(), "2023-06-01".to_string())],
        ),
        _ => (
            vec![Credential {
                header: "authorization".into(),
                value: format!("Bearer {OPENAI_KEY}"),
            }],
            vec![],
        ),
    };
    ProviderDef {
        name: name.into(),
        template,
        base_url: base_url.into(),
        hosts: vec![host.into()],
        credentials,
        default_headers,
        pinned_headers: vec![],
        // The mock provider's per-request controls.
        allow_headers: vec!["x-mock-*".into()],
        catalog: template_catalog(template),
        passthrough: false,
        allow_private_network: true,
    }
}

/// A workspace with two providers in front of the mock (hosts
/// api.openai.com and api.anthropic.com), one agent, and an allowlist
/// permitting chat completions, model listing and Anthropic messages.
pub async fn start() -> Env {
    start_with(MockConfig::default()).await
}

pub async fn start_with(mock_config: MockConfig) -> Env {
    start_custom(mock_config, |_| {}).await
}

/// Like [`start`], with the configuration adjusted by `adjust`.
pub async fn start_custom(mock_config: MockConfig, adjust: impl FnOnce(&mut Config)) -> Env {
    boot(mock_config, adjust, true).await
}

/// Like [`start`], but the agent holds no mandate yet.
pub async fn start_bare() -> Env {
    boot(MockConfig::default(), |_| {}, false).await
}

async fn boot(mock_config: MockConfig, adjust: impl FnOnce(&mut Config), grant: bool) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    adjust(&mut config);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.database).await.unwrap());
    let mock = mock::start("127.0.0.1:0".parse().unwrap(), mock_config)
        .await
        .unwrap();
    let (agent, token) = seed(&*store, &mock.base_url()).await;
    let authority = authority::Authority::create(&*store).await;
    let gw = caracal_gateway::start(config.clone()).await.unwrap();
    let ca_pem = gw.ca_pem();
    let mut env = Env {
        dir,
        gw,
        mock,
        store,
        agent_id: agent.id,
        token,
        ca_pem,
        authority,
        mandate: None,
        config,
    };
    if grant {
        let everything = authority::scope(&["*"], authority::ALL);
        let agent = env.agent_id.clone();
        env.mandate = Some(env.grant(&agent, &everything, 3600).await);
        env.wait_for_snapshot().await;
    }
    env
}

/// The test workspace's content: two providers in front of the mock at
/// `mock_url` (hosts api.openai.com and api.anthropic.com), and the agent
/// `worker-1` with the usual allowlist; the agent and its token.
pub async fn seed(
    store: &dyn Store,
    mock_url: &str,
) -> (caracal_gateway::model::Principal, String) {
    for (name, template, host) in [
        ("openai", Template::Openai, "api.openai.com"),
        ("anthropic", Template::Anthropic, "api.anthropic.com"),
    ] {
        store
            .put_provider(&provider(name, template, mock_url, host), false)
            .await
            .unwrap();
    }
    let (agent, token) = store
        .register_principal(NewPrincipal {
            kind: PrincipalKind::Agent,
            name: "worker-1".into(),
            email: "worker@example.com".into(),
        })
        .await
        .unwrap();
    allow_usual(store, &agent.id).await;
    (agent, token)
}

/// 1000 USD per million tokens for `provider`'s `model` (a token costs
/// 0.001, so costs are easy to reason about).
pub fn dear_price(provider: &str, model: &str) -> caracal_gateway::pricing::PriceRow {
    use caracal_gateway::money::{parse_amount, Currency};
    use caracal_gateway::pricing::{PriceRow, PriceSource};
    let thousand = parse_amount("1000").unwrap();
    PriceRow::model(
        provider,
        model,
        Currency::USD,
        thousand,
        thousand,
        None,
        None,
        PriceSource::Set,
    )
}

/// The allowlist every test principal gets: chat completions, model
/// listing and Anthropic messages.
pub async fn allow_usual(store: &dyn Store, principal_id: &str) {
    for (pattern, kind) in [
        (
            "https://api.openai.com/v1/chat/completions",
            PatternType::Glob,
        ),
        ("*://api.openai.com/v1/models", PatternType::Glob),
        (
            r"https://api\.anthropic\.com/v1/messages",
            PatternType::Regex,
        ),
    ] {
        store
            .add_allowlist(principal_id, pattern, kind)
            .await
            .unwrap();
    }
}

impl Env {
    /// Stops the gateway (it finishes its in-flight calls and drains its
    /// ledger), then starts a fresh one on the same workspace, as `caracal
    /// down` and `caracal up` do: nothing in memory survives, the database
    /// does. The new gateway listens on new ports.
    pub async fn restart(self) -> Env {
        let Env {
            dir,
            gw,
            mock,
            store,
            agent_id,
            token,
            ca_pem,
            authority,
            mandate,
            config,
        } = self;
        gw.shutdown().await;
        let mut fresh = config.clone();
        fresh.listen = "127.0.0.1:0".parse().unwrap();
        fresh.metrics_listen = "127.0.0.1:0".parse().unwrap();
        let gw = caracal_gateway::start(fresh).await.unwrap();
        Env {
            dir,
            gw,
            mock,
            store,
            agent_id,
            token,
            ca_pem,
            authority,
            mandate,
            config,
        }
    }

    /// Waits until the running gateway's snapshot has caught up with the
    /// store (every change so far is enforced).
    pub async fn wait_for_snapshot(&self) {
        let want = self.store.state_version().await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.gw.snapshot_version() < want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the snapshot never reached version {want}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn ca(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap()
    }

    fn builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(self.ca())
            .timeout(Duration::from_secs(20))
    }

    /// A client using the gateway as HTTPS proxy (`scheme` is the scheme
    /// of the proxy URL: TLS to the proxy or not).
    pub fn proxy_client(&self, scheme: &str, http1_only: bool) -> reqwest::Client {
        let url = format!(
            "{scheme}://{}:{}@127.0.0.1:{}",
            self.agent_id,
            self.token,
            self.gw.addr.port()
        );
        let mut b = self.builder().proxy(reqwest::Proxy::all(url).unwrap());
        if http1_only {
            b = b.http1_only();
        }
        b.build().unwrap()
    }

    /// A client without proxy, for base_url mode.
    pub fn direct_client(&self) -> reqwest::Client {
        self.builder().no_proxy().build().unwrap()
    }

    pub fn base_url(&self, provider: &str) -> String {
        format!("https://127.0.0.1:{}/{provider}", self.gw.addr.port())
    }

    /// Waits until the ledger holds at least `n` call events, returns them.
    pub async fn ledger(&self, n: usize) -> Vec<LedgerEvent> {
        self.ledger_of("call", n).await
    }

    /// Waits until the ledger holds at least `n` events of `kind`.
    pub async fn ledger_of(&self, kind: &str, n: usize) -> Vec<LedgerEvent> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let filter = LedgerFilter {
            kind: Some(kind.parse().expect("an event kind")),
            ..LedgerFilter::default()
        };
        loop {
            let events = self.store.query_ledger(&filter).await.unwrap();
            if events.len() >= n || tokio::time::Instant::now() > deadline {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits for the ledger event with this id.
    pub async fn event(&self, id: &str) -> LedgerEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let events = self
                .store
                .query_ledger(&LedgerFilter::default())
                .await
                .unwrap();
            if let Some(e) = events.into_iter().find(|e| e.id == id) {
                return e;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "event {id} never written"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn basic(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.agent_id, self.token))
    }

    /// Sends raw bytes on a plain connection and returns what comes back
    /// until the peer closes or `wait` passes.
    pub async fn raw(&self, bytes: &[u8], wait: Duration) -> String {
        let mut s = tokio::net::TcpStream::connect(self.gw.addr).await.unwrap();
        let _ = s.write_all(bytes).await;
        read_some(&mut s, wait).await
    }

    /// Like [`Self::raw`] but reads until `needle` appears (or `wait`).
    pub async fn raw_until(&self, bytes: &[u8], needle: &str, wait: Duration) -> String {
        let mut s = tokio::net::TcpStream::connect(self.gw.addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        while !String::from_utf8_lossy(&out).contains(needle) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, s.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Sends a base_url chat completion `body` on a plain connection (the
    /// mock waits 1.5 s before answering) and hangs up after 400 ms.
    pub async fn leave_before_the_answer(&self, body: &str) {
        let req = format!(
            "POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             x-mock-latency-ms: 1500\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.token,
            body.len()
        );
        let mut s = tokio::net::TcpStream::connect(self.gw.addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        drop(s);
    }

    pub async fn assert_healthy(&self) {
        assert_eq!(self.health().await.status(), 200, "gateway stopped serving");
    }

    /// `GET /health` on the gateway port.
    /// The gateway's Prometheus metrics, as text. The recorder is the
    /// process's: tests in the same binary count into it too.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.gw.metrics_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Adds a passthrough provider `echo` of `template` in front of the
    /// mock's echo endpoint (host echo.example.com, on the agent's
    /// allowlist), adjusted by `adjust`.
    pub async fn add_echo_provider(
        &self,
        template: Template,
        adjust: impl FnOnce(&mut ProviderDef),
    ) {
        let mut def = provider("echo", template, &self.mock.base_url(), "echo.example.com");
        def.passthrough = true;
        adjust(&mut def);
        self.store.put_provider(&def, false).await.unwrap();
        self.store
            .add_allowlist(&self.agent_id, "*://echo.example.com/*", PatternType::Glob)
            .await
            .unwrap();
        self.wait_for_snapshot().await;
    }

    pub async fn health(&self) -> reqwest::Response {
        self.direct_client()
            .get(format!("https://127.0.0.1:{}/health", self.gw.addr.port()))
            .send()
            .await
            .unwrap()
    }
}

/// The ledger event id the gateway put on a forwarded response.
pub fn event_id(resp: &reqwest::Response) -> String {
    resp.headers()["x-caracal-event-id"]
        .to_str()
        .unwrap()
        .to_string()
}

/// Reads until close, a complete response (by Content-Length) or `wait`.
pub async fn read_some(s: &mut tokio::net::TcpStream, wait: Duration) -> String {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&out);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
            });
            if len.is_some_and(|n| body.len() >= n) {
                break;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Status code of a raw HTTP response ("HTTP/1.1 403 …" → 403).
pub fn status_of(resp: &str) -> u16 {
    resp.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The JSON `error` code of a raw response body.
pub fn code_of(resp: &str) -> String {
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_default()
}
