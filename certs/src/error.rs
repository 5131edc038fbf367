//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong loading, creating or using certificates.
///
/// File errors always carry the path involved, so a CLI can print them as-is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// Reading, writing or renaming a file failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("reading", "writing", ...).
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file exists but does not hold what it should (no PEM block, not a CA, key mismatch...).
    #[error("{}: {problem}", path.display())]
    Invalid {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A certificate file could not be parsed as X.509.
    #[error("{}: cannot parse certificate: {source}", path.display())]
    Parse {
        /// The offending file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: rcgen::Error,
    },
    /// Only one of the CA certificate and key exists; refusing to overwrite the other.
    #[error(
        "{} exists but {} is missing; restore it, or delete both to create a new CA",
        present.display(),
        missing.display()
    )]
    Incomplete {
        /// The file that exists.
        present: PathBuf,
        /// The file that does not.
        missing: PathBuf,
    },
    /// A host or certificate name is not a valid DNS name or IP literal.
    #[error("invalid name {name:?}: {problem}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was rejected.
        problem: &'static str,
    },
    /// Certificate or key generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls rejected a key, a certificate chain or a configuration.
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    /// Building a certificate verifier failed.
    #[error("certificate verifier: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
}

impl CertError {
    /// An I/O error for `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// An invalid-content error for `path`.
    pub(crate) fn invalid(path: impl Into<PathBuf>, problem: &'static str) -> Self {
        Self::Invalid {
            path: path.into(),
            problem,
        }
    }
}
