//! Typed configuration shared by the Caracal gateway and the `caracal` CLI:
//! where workspaces live on disk, the validated gateway configuration, and
//! the deployment (embedded or distributed) a workspace is.
#![forbid(unsafe_code)]

mod deployment;
mod error;
pub mod fs;
mod gateway;
pub mod home;

pub use deployment::{
    distributed_config_toml, redact_url, Deployment, DeploymentKind, Distributed, NewDistributed,
    Service, DEPLOYMENT_ENV,
};
pub use error::ConfigError;
pub use gateway::{
    default_config_toml, AllowlistDefault, Config, Limits, Overrides, RawConfig, WorkspacePaths,
};
pub use home::{CaracalHome, WorkspaceName};
