//! Authority: scopes, signed mandates, delegation and the decisions over
//! them. Everything here is pure (no I/O, the clock is a parameter), so the
//! gateway and the CLI (`caracal authority enforce`) run the same code.

pub mod scope;

pub use scope::Scope;
pub mod decide;
pub mod delegate;
pub mod delegation;
pub mod issue;
pub mod keys;
pub mod mandate;
pub mod record;
pub mod view;
