//! Typed configuration shared by the Caracal gateway and the `caracal` CLI:
//! where workspaces live on disk, and the validated gateway configuration.
#![forbid(unsafe_code)]

mod error;
pub mod fs;
mod gateway;
pub mod home;

pub use error::ConfigError;
pub use gateway::{AllowlistDefault, Config, Limits, Overrides, RawConfig, WorkspacePaths};
pub use home::{CaracalHome, WorkspaceName};
