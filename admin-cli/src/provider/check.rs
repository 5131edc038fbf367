//! `caracal provider test`: one real request upstream, through the same
//! client (TLS roots, private-address guard) the gateway forwards with.

use std::io::Write;
use std::time::{Duration, Instant};

use caracal_config::Config;
use caracal_gateway::model::{ProviderDef, Template};
use caracal_gateway::provider::Provider;
use caracal_gateway::proxy::{respond, upstream, Upstream};
use http_body_util::{BodyExt, Limited};
use serde::Serialize;

use crate::output::{self, Exit, Io};

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default, Serialize)]
struct Report {
    provider: String,
    valid: bool,
    url: Option<String>,
    reachable: bool,
    status: Option<u16>,
    latency_ms: Option<u64>,
    /// Reachable, no 5xx, credential accepted.
    ok: bool,
    error: Option<String>,
    /// Start of the upstream's error body, for 4xx/5xx answers.
    detail: Option<String>,
}

pub async fn run(
    def: ProviderDef,
    config: &Config,
    json: bool,
    io: &mut Io<'_>,
) -> anyhow::Result<Exit> {
    let mut report = Report {
        provider: def.name.clone(),
        ..Report::default()
    };
    let path = match def.template {
        Template::Generic => "/",
        Template::Openai | Template::Anthropic => "/v1/models",
    };
    match Provider::new(def) {
        Ok(provider) => {
            report.valid = true;
            probe(&provider, path, config, &mut report).await?;
        }
        Err(e) => report.error = Some(format!("invalid definition: {e}")),
    }
    if json {
        output::json(io.out, &report)?;
    } else {
        print(io.out, &report)?;
    }
    Ok(Exit::from_ok(report.ok))
}

async fn probe(
    provider: &Provider,
    path: &str,
    config: &Config,
    report: &mut Report,
) -> anyhow::Result<()> {
    let uri = provider.upstream_uri(path)?;
    report.url = Some(uri.to_string());
    let upstream = Upstream::new(
        config.limits.upstream_connect_timeout,
        config.upstream_ca_file.as_deref(),
    )?;
    let mut request = http::Request::get(uri).body(respond::empty())?;
    let headers = request.headers_mut();
    for (name, value) in provider.default_headers.iter().chain(&provider.credentials) {
        headers.insert(name.clone(), value.clone());
    }
    let started = Instant::now();
    let client = upstream.client(provider.def.allow_private_network);
    let response = match tokio::time::timeout(TIMEOUT, client.request(request)).await {
        Err(_) => {
            report.error = Some(format!("no response within {} s", TIMEOUT.as_secs()));
            return Ok(());
        }
        Ok(Err(e)) => {
            report.error = Some(match upstream::forbidden_in(&e) {
                Some(f) => format!(
                    "{f}; add the provider with --allow-private-network if that is intended"
                ),
                None => output::error_chain(&anyhow::Error::new(e)),
            });
            return Ok(());
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    report.reachable = true;
    report.status = Some(status.as_u16());
    report.latency_ms = Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
    if status.as_u16() >= 400 {
        let remaining = TIMEOUT.saturating_sub(started.elapsed());
        let body = tokio::time::timeout(
            remaining,
            Limited::new(response.into_body(), 4096).collect(),
        )
        .await;
        if let Ok(Ok(body)) = body {
            let text = String::from_utf8_lossy(&body.to_bytes()).trim().to_string();
            report.detail =
                Some(text.chars().take(300).collect()).filter(|t: &String| !t.is_empty());
        }
    }
    report.ok = status.as_u16() < 500
        && status != http::StatusCode::UNAUTHORIZED
        && status != http::StatusCode::FORBIDDEN;
    if status == http::StatusCode::UNAUTHORIZED || status == http::StatusCode::FORBIDDEN {
        report.error = Some(format!(
            "the provider rejected the credential ({status}); replace it with `caracal provider add {} ... --replace`",
            provider.name()
        ));
    } else if status.is_server_error() {
        report.error = Some(format!("the provider answered {status}"));
    }
    Ok(())
}

fn print(out: &mut dyn Write, r: &Report) -> anyhow::Result<()> {
    match &r.url {
        Some(url) => writeln!(out, "provider {}: GET {url}", r.provider)?,
        None => writeln!(out, "provider {}", r.provider)?,
    }
    if let (Some(status), Some(ms)) = (r.status, r.latency_ms) {
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        writeln!(out, "reachable: HTTP {status} {reason} in {ms} ms")?;
    } else if r.valid {
        writeln!(out, "unreachable")?;
    }
    if let Some(e) = &r.error {
        writeln!(out, "error: {e}")?;
    }
    if let Some(d) = &r.detail {
        writeln!(out, "upstream said: {d}")?;
    }
    writeln!(out, "{}", if r.ok { "ok" } else { "FAILED" })?;
    Ok(())
}
