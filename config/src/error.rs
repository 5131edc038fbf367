//! The one error type of configuration loading and workspace resolution.

use std::path::PathBuf;

/// What went wrong while resolving a workspace or loading its configuration.
/// Messages are written for the operator and say what fixes the problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration in {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("invalid workspace name {name:?}: {reason}")]
    BadWorkspaceName { name: String, reason: &'static str },
    #[error("no workspace exists yet; create one with `caracal workspace create NAME`")]
    NoWorkspaces,
    #[error(
        "no workspace is selected; choose one with `caracal workspace use NAME` (existing: {existing})"
    )]
    NoneSelected { existing: String },
    #[error("workspace {name:?} does not exist (existing: {existing}); create it with `caracal workspace create {name}`")]
    UnknownWorkspace { name: String, existing: String },
    #[error("workspace {0:?} already exists")]
    WorkspaceExists(String),
    #[error("cannot find a home directory: set CARACAL_HOME or HOME")]
    NoHome,
}

impl ConfigError {
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
}
