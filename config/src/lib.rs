//! Typed configuration shared by the Caracal gateway and the `caracal` CLI:
//! where workspaces live on disk, and the validated gateway configuration.
#![forbid(unsafe_code)]

mod error;
pub mod fs;
mod gateway;
pub mod home;

pub use error::ConfigError;
pub use gateway::{
    default_config_toml, distributed_config_toml, redact_url, AllowlistDefault, Config, Deployment,
    DeploymentKind, Distributed, Limits, NewDistributed, Overrides, RawConfig, Service,
    WorkspacePaths, DEPLOYMENT_ENV,
};
pub use home::{CaracalHome, WorkspaceName};
