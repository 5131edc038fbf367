//! Certificates for the Caracal gateway.
//!
//! Each workspace has its own CA ([`CertAuthority`]). It signs the gateway's
//! TLS listener certificate ([`ensure_server_cert`]) and, for `CONNECT`
//! tunnels that the gateway intercepts, a leaf per destination host minted on
//! the fly ([`LeafMinter`]). Clients trust the CA's PEM to verify both.
//! All TLS configurations use the ring provider explicitly.
#![forbid(unsafe_code)]

mod ca;
mod cache;
mod error;
mod files;
mod minter;
mod names;
mod pem;
mod server;
mod tls;

#[cfg(test)]
mod test_support;

pub use ca::CertAuthority;
pub use error::CertError;
pub use minter::LeafMinter;
pub use server::ensure_server_cert;
pub use tls::{not_after, server_config, IssuedCert};
