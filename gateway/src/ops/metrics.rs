//! Prometheus metrics: one recorder per process, rendered on the metrics
//! listener (`GET /metrics`).

use std::net::SocketAddr;
use std::sync::OnceLock;

use http::{Response, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::proxy::respond;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle (None if
/// another recorder was installed first).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("caracal_gateway_request_duration_seconds".into()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0, 30.0, 60.0, 120.0,
                    ],
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        "caracal_gateway_requests_total",
        "Calls by decision (allow, deny, error) and code"
    );
    metrics::describe_histogram!(
        "caracal_gateway_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time from request to the end of the response body"
    );
    metrics::describe_gauge!(
        "caracal_gateway_requests_in_flight",
        "Requests being enforced or streamed"
    );
    metrics::describe_counter!(
        "caracal_ledger_events_written_total",
        "Ledger events written"
    );
    metrics::describe_counter!(
        "caracal_snapshot_reloads_total",
        "Snapshot rebuilds by result"
    );
    metrics::describe_gauge!(
        "caracal_snapshot_version",
        "State version of the active snapshot"
    );
    metrics::describe_counter!(
        "caracal_gateway_connections_rejected_total",
        "Connections closed because max_connections was reached"
    );
}

/// Serves `GET /metrics` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    handle: Option<PrometheusHandle>,
    shutdown: CancellationToken,
) {
    loop {
        let (tcp, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let handle = handle.clone();
                async move {
                    let resp = match (req.uri().path(), &handle) {
                        ("/metrics", Some(h)) => {
                            let mut r = Response::new(respond::full(h.render()));
                            r.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static("text/plain; version=0.0.4"),
                            );
                            r
                        }
                        _ => respond::json(
                            StatusCode::NOT_FOUND,
                            &serde_json::json!({"error": "not_found"}),
                        ),
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
