//! The one error type of the load generator: everything that stops a run
//! before it starts. Failed requests during a run are not errors here;
//! they are counted in the [`Summary`](super::Summary).

use std::path::PathBuf;

/// Why a load run could not be configured or started.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid duration {0:?}: expected a number with a unit, e.g. 500ms, 10s, 1m")]
    Duration(String),
    #[error("invalid header {0:?}: expected 'Name: value'")]
    Header(String),
    #[error("invalid method {0:?}: expected GET or POST")]
    Method(String),
    #[error("--duration must be more than zero")]
    EmptyWindow,
    #[error("--rate must be a number of requests per second above zero, not {0}")]
    Rate(f64),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no PEM certificate in {0}")]
    NoCertificate(PathBuf),
    #[error("invalid certificate in {path}: {source}")]
    Certificate {
        path: PathBuf,
        source: reqwest::Error,
    },
    #[error("invalid proxy URL: {0}")]
    Proxy(reqwest::Error),
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
}
