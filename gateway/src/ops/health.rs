//! Readiness made of named guards: `/health` answers 200 only when every
//! guard holds, and otherwise 503 naming the ones that do not.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::proxy::respond::{self, Body};

/// The guards. Each is flipped by the component it describes.
#[derive(Clone, Default)]
pub struct Health {
    guards: Vec<(&'static str, Arc<AtomicBool>)>,
}

/// What `/health` reports (also parsed back by `caracal status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    pub status: String,
    pub checks: std::collections::BTreeMap<String, bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing: Vec<String>,
}

impl Health {
    /// Adds a named guard (`snapshot`, `store`, `ledger`, …).
    pub fn guard(&mut self, name: &'static str, flag: Arc<AtomicBool>) {
        self.guards.push((name, flag));
    }

    pub fn report(&self) -> HealthReport {
        let checks: std::collections::BTreeMap<String, bool> = self
            .guards
            .iter()
            .map(|(n, f)| (n.to_string(), f.load(Ordering::Relaxed)))
            .collect();
        let failing: Vec<String> = checks
            .iter()
            .filter(|(_, ok)| !**ok)
            .map(|(n, _)| n.clone())
            .collect();
        HealthReport {
            status: if failing.is_empty() {
                "ok"
            } else {
                "unavailable"
            }
            .into(),
            checks,
            failing,
        }
    }

    pub fn response(&self) -> Response<Body> {
        let report = self.report();
        let status = if report.failing.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        respond::json(status, &serde_json::to_value(&report).unwrap_or_default())
    }
}

/// Whether every certificate in `expiries` stays valid for `margin` more
/// at `now`; logs the first that does not.
pub fn certificates_ok(
    expiries: &[(&'static str, SystemTime)],
    margin: Duration,
    now: SystemTime,
) -> bool {
    let horizon = now.checked_add(margin).unwrap_or(now);
    match expiries.iter().find(|(_, not_after)| *not_after <= horizon) {
        None => true,
        Some((what, not_after)) => {
            let at = jiff::Timestamp::try_from(*not_after)
                .map_or_else(|_| "?".to_string(), |t| t.to_string());
            tracing::warn!(
                certificate = what,
                not_after = at,
                "{what} expires within the configured margin; renew it (restart the gateway to reissue its certificate)"
            );
            false
        }
    }
}

/// Keeps the `tls` guard true while every certificate stays valid for
/// `margin` more, checking every minute until `stop`.
pub async fn watch_expiry(
    expiries: Vec<(&'static str, SystemTime)>,
    margin: Duration,
    guard: Arc<AtomicBool>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        let ok = certificates_ok(&expiries, margin, SystemTime::now());
        guard.store(ok, Ordering::Relaxed);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_guard_makes_it_unavailable() {
        let mut h = Health::default();
        let store = Arc::new(AtomicBool::new(true));
        h.guard("store", store.clone());
        h.guard("ledger", Arc::new(AtomicBool::new(true)));
        assert_eq!(h.response().status(), StatusCode::OK);
        store.store(false, Ordering::Relaxed);
        let r = h.report();
        assert_eq!(r.failing, vec!["store".to_string()]);
        assert_eq!(h.response().status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}

#[cfg(test)]
mod expiry_tests {
    use super::*;

    #[test]
    fn certificates_fail_the_guard_within_the_margin() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = Duration::from_secs(86_400);
        let margin = day * 14;
        let far = now + day * 300;
        assert!(certificates_ok(
            &[("ca", far), ("server", far)],
            margin,
            now
        ));
        // Expiring in 13 days: inside a 14-day margin.
        assert!(!certificates_ok(
            &[("ca", far), ("server", now + day * 13)],
            margin,
            now
        ));
        // Exactly at the margin counts as expiring.
        assert!(!certificates_ok(&[("ca", now + margin)], margin, now));
        assert!(certificates_ok(
            &[("ca", now + margin + Duration::from_secs(1))],
            margin,
            now
        ));
        // Already expired.
        assert!(!certificates_ok(&[("ca", now - day)], margin, now));
    }
}
