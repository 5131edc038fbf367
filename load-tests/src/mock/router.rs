//! Request dispatch. Every request passes here in this order: route,
//! record, then the route's handler. Provider endpoints additionally parse
//! the control headers, read the body, wait the latency, honour
//! `x-mock-status`, and only then parse the JSON.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use serde_json::json;

use super::body::{json_response, read_limited, MockBody, MAX_REQUEST_BODY};
use super::controls::Controls;
use super::errors::{ApiError, Provider};
use super::record::{header_map, RecordedRequest};
use super::request::JsonRequest;
use super::sse::Pacing;
use super::usage::completion_tokens;
use super::{anthropic, echo, openai, responses, State};

/// Everything a provider handler needs to answer one request.
pub(crate) struct Ctx {
    pub(crate) state: Arc<State>,
    pub(crate) controls: Controls,
}

impl Ctx {
    /// Pacing for this request's stream: its gate, else its chunk delay.
    pub(crate) fn pacing(&self) -> Pacing {
        Pacing {
            chunk_delay: self.controls.chunk_delay,
            gate: self
                .controls
                .gate
                .clone()
                .map(|name| (Arc::clone(&self.state.gates), name)),
        }
    }

    /// Completion tokens for a request that asked for at most `max`.
    pub(crate) fn completion_tokens(&self, max: Option<u64>) -> u64 {
        completion_tokens(max, self.state.config.completion_tokens)
    }

    pub(crate) fn next_id(&self, prefix: &str) -> String {
        self.state.next_id(prefix)
    }
}

/// The provider API endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    Messages,
    Models,
    Model(String),
}

impl Endpoint {
    /// Messages are Anthropic's; the shared model routes are Anthropic's
    /// when the client sends `anthropic-version`; the rest are OpenAI's.
    fn provider(&self, headers: &HeaderMap) -> Provider {
        match self {
            Endpoint::Messages => Provider::Anthropic,
            Endpoint::Models | Endpoint::Model(_) if headers.contains_key("anthropic-version") => {
                Provider::Anthropic
            }
            _ => Provider::OpenAi,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Health,
    Echo,
    GateRelease(String),
    Api(Endpoint),
    MethodNotAllowed(&'static str),
    NotFound,
}

/// Pure routing on method and path.
fn route(method: &Method, path: &str) -> Route {
    let only = |allowed: Method, route: Route| {
        if *method == allowed {
            route
        } else if allowed == Method::GET {
            Route::MethodNotAllowed("GET")
        } else {
            Route::MethodNotAllowed("POST")
        }
    };
    match path {
        "/health" => only(Method::GET, Route::Health),
        "/v1/chat/completions" => only(Method::POST, Route::Api(Endpoint::ChatCompletions)),
        "/v1/completions" => only(Method::POST, Route::Api(Endpoint::Completions)),
        "/v1/embeddings" => only(Method::POST, Route::Api(Endpoint::Embeddings)),
        "/v1/responses" => only(Method::POST, Route::Api(Endpoint::Responses)),
        "/v1/messages" => only(Method::POST, Route::Api(Endpoint::Messages)),
        "/v1/models" => only(Method::GET, Route::Api(Endpoint::Models)),
        "/_mock/echo" => Route::Echo,
        p if p.starts_with("/_mock/echo/") => Route::Echo,
        p => {
            if let Some(id) = p.strip_prefix("/v1/models/").filter(|id| !id.is_empty()) {
                return only(Method::GET, Route::Api(Endpoint::Model(id.to_owned())));
            }
            let gate = p
                .strip_prefix("/_mock/gates/")
                .and_then(|rest| rest.strip_suffix("/release"))
                .filter(|name| !name.is_empty() && !name.contains('/'));
            match gate {
                Some(name) => only(Method::POST, Route::GateRelease(name.to_owned())),
                None => Route::NotFound,
            }
        }
    }
}

/// Answers one request; never fails (errors become error responses).
pub(crate) async fn handle<B>(state: Arc<State>, req: Request<B>) -> Response<MockBody>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let route = route(req.method(), req.uri().path());
    tracing::debug!(method = %req.method(), uri = %req.uri(), ?route, "request");
    if !matches!(route, Route::GateRelease(_)) {
        state.recorder.push(RecordedRequest {
            method: req.method().to_string(),
            path: req.uri().path().to_owned(),
            query: req.uri().query().map(str::to_owned),
            headers: header_map(req.headers()),
        });
    }
    match route {
        Route::Health => json_response(StatusCode::OK, &json!({"status": "ok"})),
        Route::Echo => echo::echo(req).await,
        Route::GateRelease(name) => {
            state.gates.release(&name);
            json_response(StatusCode::OK, &json!({"gate": name, "released": true}))
        }
        Route::Api(endpoint) => {
            let provider = endpoint.provider(req.headers());
            api(state, req, endpoint, provider)
                .await
                .unwrap_or_else(|error| error.into_response(provider))
        }
        Route::MethodNotAllowed(allow) => {
            let message = format!("{} is not allowed here; use {allow}", req.method());
            let mut response = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, message)
                .into_response(Provider::OpenAi);
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            response
        }
        Route::NotFound => {
            let message = format!("Unknown request URL: {} {}", req.method(), req.uri().path());
            ApiError::new(StatusCode::NOT_FOUND, message).into_response(Provider::OpenAi)
        }
    }
}

async fn api<B>(
    state: Arc<State>,
    req: Request<B>,
    endpoint: Endpoint,
    provider: Provider,
) -> Result<Response<MockBody>, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let controls =
        Controls::from_headers(req.headers(), &state.config).map_err(ApiError::bad_request)?;
    let body = read_limited(req.into_body(), MAX_REQUEST_BODY).await?;
    if !controls.latency.is_zero() {
        tokio::time::sleep(controls.latency).await;
    }
    if let Some(status) = controls.status {
        let message = format!("mock error requested by x-mock-status: {status}");
        return Err(ApiError::new(status, message));
    }
    let ctx = Ctx { state, controls };
    let parse = || JsonRequest::parse(&body);
    match (endpoint, provider) {
        (Endpoint::Models, Provider::Anthropic) => Ok(anthropic::models()),
        (Endpoint::Model(id), Provider::Anthropic) => Ok(anthropic::model(&id)),
        (Endpoint::Models, Provider::OpenAi) => Ok(openai::models()),
        (Endpoint::Model(id), Provider::OpenAi) => Ok(openai::model(&id)),
        (Endpoint::ChatCompletions, _) => openai::chat(&ctx, &parse()?),
        (Endpoint::Completions, _) => openai::completions(&ctx, &parse()?),
        (Endpoint::Embeddings, _) => openai::embeddings(&ctx, &parse()?),
        (Endpoint::Responses, _) => responses::responses(&ctx, &parse()?),
        (Endpoint::Messages, _) => anthropic::messages(&ctx, &parse()?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let post = Method::POST;
        let get = Method::GET;
        assert_eq!(route(&get, "/health"), Route::Health);
        assert_eq!(
            route(&post, "/v1/chat/completions"),
            Route::Api(Endpoint::ChatCompletions)
        );
        assert_eq!(
            route(&get, "/v1/chat/completions"),
            Route::MethodNotAllowed("POST")
        );
        assert_eq!(
            route(&get, "/v1/models/gpt-4o"),
            Route::Api(Endpoint::Model("gpt-4o".into()))
        );
        assert_eq!(route(&get, "/v1/models/"), Route::NotFound);
        assert_eq!(route(&Method::PUT, "/_mock/echo/a/b"), Route::Echo);
        assert_eq!(route(&get, "/_mock/echoes"), Route::NotFound);
        assert_eq!(
            route(&post, "/_mock/gates/g1/release"),
            Route::GateRelease("g1".into())
        );
        assert_eq!(route(&post, "/_mock/gates//release"), Route::NotFound);
        assert_eq!(route(&post, "/v2/chat"), Route::NotFound);
    }

    #[test]
    fn model_routes_follow_anthropic_version() {
        let mut headers = HeaderMap::new();
        assert_eq!(Endpoint::Models.provider(&headers), Provider::OpenAi);
        headers.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        assert_eq!(Endpoint::Models.provider(&headers), Provider::Anthropic);
        assert_eq!(
            Endpoint::Messages.provider(&HeaderMap::new()),
            Provider::Anthropic
        );
    }
}
