//! Integration tests: the built `caracal` binary against a temporary
//! $CARACAL_HOME, checking exit codes, stdout and stderr. One test binary;
//! the groups live in tests/cli/.

#[path = "cli/allowlist.rs"]
mod allowlist;
#[path = "cli/authority.rs"]
mod authority;
#[path = "cli/delegation.rs"]
mod delegation;
#[path = "cli/distributed.rs"]
mod distributed;
#[path = "cli/ledger.rs"]
mod ledger;
#[path = "cli/merkle.rs"]
mod merkle;
#[path = "cli/policy.rs"]
mod policy;
#[path = "cli/pricebook.rs"]
mod pricebook;
#[path = "cli/principal.rs"]
mod principal;
#[path = "cli/provider.rs"]
mod provider;
#[path = "cli/provider_check.rs"]
mod provider_check;
#[path = "cli/recovery.rs"]
mod recovery;
#[path = "cli/runtime.rs"]
mod runtime;
#[path = "cli/support.rs"]
mod support;
#[path = "cli/workspace.rs"]
mod workspace;
