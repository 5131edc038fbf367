//! The metrics listener: Prometheus metrics (one recorder per process,
//! `GET /metrics`) and the live standing of a principal's budgets
//! (`GET /budgets?principal=ID`, what `caracal ledger query --time-window`
//! reads for the amounts reserved by calls in flight).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use http::{Method, Response, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jiff::Timestamp;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::budget::charge::Plan;
use crate::budget::counters::{BoxFuture, Counters};
use crate::money::fmt_amount;
use crate::proxy::respond;
use crate::snapshot::SnapshotCell;

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
                .set_buckets_for_metric(
                    Matcher::Full("caracal_ledger_writer_batch_seconds".into()),
                    &[
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
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
    metrics::describe_gauge!(
        "caracal_kafka_consumer_lag",
        "Messages of an assigned partition after the ledger writers' committed offset"
    );
    metrics::describe_gauge!(
        "caracal_dlq_size",
        "Messages in the dead-letter queue (the dead_letters table)"
    );
    metrics::describe_counter!(
        "caracal_ledger_writer_events_total",
        "Ledger rows inserted by the ledger writer"
    );
    metrics::describe_gauge!(
        "caracal_ledger_writer_events_per_second",
        "Ledger rows inserted per second over the last report interval"
    );
    metrics::describe_counter!(
        "caracal_ledger_writer_duplicates_total",
        "Events the ledger already held (redeliveries), skipped"
    );
    metrics::describe_counter!(
        "caracal_ledger_writer_dead_letters_total",
        "Messages sent to the dead-letter queue, by reason"
    );
    metrics::describe_counter!(
        "caracal_ledger_writer_db_errors_total",
        "Failed database writes of the ledger writer (each is retried)"
    );
    metrics::describe_histogram!(
        "caracal_ledger_writer_batch_seconds",
        metrics::Unit::Seconds,
        "Time to store a batch and commit its offsets"
    );
}

/// Answers `GET /budgets` for one principal id: the JSON document
/// [`budgets_json`] builds.
pub type BudgetReport = Arc<dyn Fn(&str) -> BoxFuture<Value> + Send + Sync>;

/// The report of the budgets in the snapshot `cell` holds, standing in
/// `counters`, at the time of each request.
pub fn budget_report(cell: SnapshotCell, counters: Arc<dyn Counters>) -> BudgetReport {
    Arc::new(move |principal: &str| {
        let plan = cell.load().budgets.get(principal).cloned();
        let counters = counters.clone();
        let principal = principal.to_string();
        Box::pin(async move {
            budgets_json(
                &principal,
                plan.as_deref(),
                counters.as_ref(),
                Timestamp::now(),
            )
            .await
        })
    })
}

/// `{"principal", "budgets": [...]}`: each budget line of `plan` (none when
/// the principal has no budget) with its current window at `now` and what
/// `counters` hold in it, ordered by policy id. Amounts are decimal
/// strings, instants RFC 3339 in UTC.
/// A budget whose counters cannot be read reports the error instead.
pub async fn budgets_json(
    principal: &str,
    plan: Option<&Plan>,
    counters: &dyn Counters,
    now: Timestamp,
) -> Value {
    let mut lines: Vec<_> = plan.map(|p| p.lines.iter().collect()).unwrap_or_default();
    lines.sort_by(|a, b| (&a.id.policy_id, &a.id.window).cmp(&(&b.id.policy_id, &b.id.window)));
    let mut budgets: Vec<Value> = Vec::with_capacity(lines.len());
    for line in lines {
        let s = match counters.standing(principal, line, now).await {
            Ok(s) => s,
            Err(e) => {
                budgets.push(json!({
                    "policy_id": line.id.policy_id,
                    "error": e.to_string(),
                }));
                continue;
            }
        };
        budgets.push(json!({
                "policy_id": line.id.policy_id,
                "policy_version": line.policy_version,
                "limit": fmt_amount(line.limit),
                "currency": line.currency.as_str(),
                "period": line.spec.period().as_str(),
                "window_type": line.spec.window_type().as_str(),
                "timezone": line.spec.timezone(),
                "window_start": s.window_start.to_string(),
                "window_end": s.window_end.to_string(),
                "resets_at": s.resets_at.to_string(),
                "spent": fmt_amount(s.spent),
                "reserved": fmt_amount(s.reserved),
                "remaining": fmt_amount(s.remaining(line.limit)),
        }));
    }
    json!({"principal": principal, "budgets": budgets})
}

/// The principal id of a `/budgets` query string: exactly one non-empty,
/// validly percent-encoded `principal` parameter; other parameters are
/// refused, so a typo is not mistaken for an empty answer.
fn principal_param(query: Option<&str>) -> Result<String, String> {
    let query = query.unwrap_or_default();
    let mut found = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "principal" {
            return Err(format!("unknown parameter {key:?}; use ?principal=ID"));
        }
        if found.is_some() {
            return Err("principal is given more than once".into());
        }
        found = Some(decode(value).ok_or("principal is not validly percent-encoded UTF-8")?);
    }
    match found {
        Some(p) if !p.is_empty() => Ok(p),
        _ => Err("missing principal: use /budgets?principal=ID".into()),
    }
}

/// Strict percent-decoding (`+` is a space, as in forms): None for a bad
/// escape or bytes that are not UTF-8.
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Serves `GET /metrics` and `GET /budgets?principal=ID` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    handle: Option<PrometheusHandle>,
    budgets: BudgetReport,
    shutdown: CancellationToken,
) {
    loop {
        let (tcp, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
        };
        let handle = handle.clone();
        let budgets = budgets.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let handle = handle.clone();
                let budgets = budgets.clone();
                async move {
                    let resp = match (req.uri().path(), &handle) {
                        ("/budgets", _) if req.method() != Method::GET => respond::json(
                            StatusCode::METHOD_NOT_ALLOWED,
                            &json!({"error": "method_not_allowed", "message": "use GET"}),
                        ),
                        ("/budgets", _) => match principal_param(req.uri().query()) {
                            Ok(principal) => {
                                respond::json(StatusCode::OK, &budgets(&principal).await)
                            }
                            Err(message) => respond::json(
                                StatusCode::BAD_REQUEST,
                                &json!({"error": "bad_request", "message": message}),
                            ),
                        },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::counters::{CounterId, InProcessCounters, Line, ReservationId};
    use crate::budget::window::{Period, WindowSpec, WindowType};
    use crate::money::{parse_amount, Currency, Decimal};

    fn d(s: &str) -> Decimal {
        parse_amount(s).unwrap()
    }

    fn line(policy: &str, limit: &str, spec: WindowSpec) -> Line {
        Line {
            id: CounterId::new(policy, &spec),
            policy_version: 3,
            limit: d(limit),
            currency: Currency::USD,
            spec,
        }
    }

    #[tokio::test]
    async fn budgets_report_the_live_counters_of_the_current_window() {
        let now: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
        let daily = line(
            "p-day",
            "5",
            WindowSpec::new(Period::Daily, WindowType::Calendar, "Europe/Berlin").unwrap(),
        );
        let hourly = line(
            "p-hour",
            "1",
            WindowSpec::new(Period::Hourly, WindowType::Calendar, "UTC").unwrap(),
        );
        let counters = InProcessCounters::default();
        // 1.25 spent this local day, 0.75 the day before (not counted).
        let spent = [
            ("2026-11-22T08:00:00Z", "1.25"),
            ("2026-11-21T08:00:00Z", "0.75"),
        ]
        .map(|(t, a)| (t.parse::<Timestamp>().unwrap(), d(a)));
        assert!(counters
            .prime("agent-1", &daily.id, &daily.spec, spent.to_vec())
            .await
            .unwrap());
        let id = ReservationId::new();
        let held = counters
            .reserve(
                "agent-1",
                id,
                &[daily.clone(), hourly.clone()],
                d("0.5"),
                now,
            )
            .await
            .unwrap();
        let plan = Plan {
            lines: vec![hourly, daily],
            ..Plan::default()
        };
        let v = budgets_json("agent-1", Some(&plan), &counters, now).await;
        assert_eq!(v["principal"], "agent-1");
        let budgets = v["budgets"].as_array().unwrap();
        assert_eq!(budgets.len(), 2, "{v}");
        assert_eq!(
            budgets[0],
            json!({
                "policy_id": "p-day",
                "policy_version": 3,
                "limit": "5.00",
                "currency": "USD",
                "period": "daily",
                "window_type": "calendar",
                "timezone": "Europe/Berlin",
                "window_start": "2026-11-21T23:00:00Z",
                "window_end": "2026-11-22T23:00:00Z",
                "resets_at": "2026-11-22T23:00:00Z",
                "spent": "1.25",
                "reserved": "0.50",
                "remaining": "3.25",
            })
        );
        assert_eq!(budgets[1]["policy_id"], "p-hour");
        assert_eq!(budgets[1]["spent"], "0.00");
        assert_eq!(budgets[1]["remaining"], "0.50");
        assert_eq!(budgets[1]["resets_at"], "2026-11-22T11:00:00Z");
        // Settled: the reservation becomes spend.
        counters.settle(&held, d("0.2"), now).await.unwrap();
        let v = budgets_json("agent-1", Some(&plan), &counters, now).await;
        assert_eq!(v["budgets"][0]["spent"], "1.45");
        assert_eq!(v["budgets"][0]["reserved"], "0.00");
        // A principal without budgets has an empty list.
        assert_eq!(
            budgets_json("nobody", None, &counters, now).await,
            json!({"principal": "nobody", "budgets": []})
        );
    }

    #[test]
    fn the_principal_parameter_is_required_and_decoded() {
        assert_eq!(
            principal_param(Some("principal=agent-1")).unwrap(),
            "agent-1"
        );
        assert_eq!(
            principal_param(Some("principal=a%2Fb+c%C3%A9")).unwrap(),
            "a/b cé"
        );
        for bad in [
            None,
            Some(""),
            Some("principal="),
            Some("principal"),
            Some("agent=x"),
            Some("principal=a&principal=b"),
            Some("principal=a&x=1"),
            Some("principal=%zz"),
            Some("principal=%4"),
            Some("principal=%ff"),
        ] {
            assert!(principal_param(bad).is_err(), "{bad:?}");
        }
    }
}
