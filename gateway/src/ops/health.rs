//! Readiness made of named guards: `/health` answers 200 only when every
//! guard holds, and otherwise 503 naming the ones that do not.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
