//! Mandates for the test workspace: an operator (`ops`, a user) with one
//! policy over everything, and helpers to issue, delegate, sign and revoke
//! exactly as the CLI does (same library functions, same store calls).

use caracal_gateway::authority::delegate::{self, DelegateRequest};
use caracal_gateway::authority::issue::{self, IssueRequest};
use caracal_gateway::authority::keys::Keyring;
use caracal_gateway::authority::mandate::{self, Claims};
use caracal_gateway::authority::Scope;
use caracal_gateway::model::{Action, Principal, PrincipalKind};
use caracal_gateway::policy::{Policy, PolicyDefinition};
use caracal_gateway::store::{
    Change, MandateRecord, NewPrincipal, Revocation, SigningKeyRow, Store,
};

use super::Env;

/// Every action, for scopes written by hand.
pub const ALL: &[Action] = &[Action::Read, Action::Create, Action::Update, Action::Delete];

pub fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

pub fn scope(resources: &[&str], actions: &[Action]) -> Scope {
    Scope::new(
        resources.iter().map(|r| r.to_string()).collect(),
        actions.to_vec(),
    )
}

pub fn change(reason: &str) -> Change {
    Change {
        changed_by: "test".into(),
        reason: reason.into(),
    }
}

/// The operator, its keyring (published to the store) and its policy.
pub struct Authority {
    pub keyring: Keyring,
    pub ops: Principal,
    pub policy: Policy,
}

impl Authority {
    pub async fn create(store: &dyn Store) -> Authority {
        let (ops, _) = store
            .register_principal(NewPrincipal {
                kind: PrincipalKind::User,
                name: "ops".into(),
                email: "ops@example.com".into(),
            })
            .await
            .unwrap();
        let policy = store
            .create_policy(
                &ops.id,
                &PolicyDefinition {
                    scope: scope(&["*"], ALL),
                    max_validity_secs: 24 * 3600,
                    allow_delegation: true,
                    max_delegation_depth: 4,
                    budget: None,
                    rate: None,
                    max_in_flight: None,
                },
                &change("tests act under it"),
            )
            .await
            .unwrap();
        let keyring = Keyring::generate(now()).unwrap();
        let rows = SigningKeyRow::of_keyring(&keyring);
        store.sync_signing_keys(&rows).await.unwrap();
        Authority {
            keyring,
            ops,
            policy,
        }
    }
}

/// A freshly issued mandate.
#[derive(Debug, Clone)]
pub struct Issued {
    pub id: String,
    pub token: String,
}

impl Env {
    /// Issues a root mandate from `ops` to `subject`.
    pub async fn grant(&self, subject: &str, scope: &Scope, valid_secs: i64) -> Issued {
        let subject = self.principal_by_id(subject).await;
        let policies = self.store.list_policies(None).await.unwrap();
        let issued = issue::issue(
            &policies,
            &IssueRequest {
                issuer: &self.authority.ops,
                subject: &subject,
                scope,
                validity_secs: valid_secs,
                now: now(),
                workspace: None,
            },
        )
        .unwrap();
        self.record(&issued).await
    }

    /// Delegates `parent` to `to`, as `caracal authority delegate` does.
    pub async fn delegate(&self, parent: &str, to: &str, scope: &Scope, valid_secs: i64) -> Issued {
        let parent = self.store.get_mandate(parent).await.unwrap();
        let delegator = self.principal_by_id(&parent.subject_id).await;
        let child = self.principal_by_id(to).await;
        let policy = self
            .store
            .list_policies(None)
            .await
            .unwrap()
            .into_iter()
            .find(|p| p.id == parent.policy_id)
            .unwrap();
        let issued = delegate::delegate(&DelegateRequest {
            parent: &parent,
            parent_subject_kind: delegator.kind,
            child_subject: &child,
            scope,
            validity_secs: valid_secs,
            now: now(),
            policy: &policy,
            revoked: None,
            workspace: None,
        })
        .unwrap();
        self.record(&issued).await
    }

    async fn record(&self, issued: &issue::Issued) -> Issued {
        let token = mandate::issue(&self.authority.keyring, &issued.claims).unwrap();
        let record =
            MandateRecord::issued(&issued.claims, &issued.policy_id, issued.policy_version);
        self.store.insert_mandate(&record).await.unwrap();
        Issued {
            id: issued.claims.jti.clone(),
            token,
        }
    }

    /// Signs arbitrary claims with the workspace key (nothing is recorded).
    pub fn sign(&self, claims: &Claims) -> String {
        mandate::issue(&self.authority.keyring, claims).unwrap()
    }

    pub async fn revoke(&self, id: &str, cascade: bool) {
        self.store
            .revoke_mandate(
                id,
                cascade,
                &Revocation {
                    revoked_by: "test".into(),
                    reason: "test revocation".into(),
                    at: now(),
                },
            )
            .await
            .unwrap();
    }

    /// Narrows the operator's policy to `scope` (a new version).
    pub async fn tighten_policy(&self, scope: &Scope) {
        let mut definition = self.authority.policy.definition.clone();
        definition.scope = scope.clone();
        self.store
            .change_policy(
                &self.authority.policy.id,
                Some(&definition),
                true,
                &change("tightened by a test"),
            )
            .await
            .unwrap();
    }

    /// Registers another principal with the same allowlist as the agent;
    /// returns its id and token.
    pub async fn register(&self, kind: PrincipalKind, name: &str) -> (String, String) {
        let (p, token) = self
            .store
            .register_principal(NewPrincipal {
                kind,
                name: name.into(),
                email: format!("{name}@example.com"),
            })
            .await
            .unwrap();
        super::allow_usual(&*self.store, &p.id).await;
        (p.id, token)
    }

    async fn principal_by_id(&self, id: &str) -> Principal {
        self.store
            .list_principals()
            .await
            .unwrap()
            .into_iter()
            .find(|p| p.id == id)
            .unwrap_or_else(|| panic!("no principal {id}"))
    }
}
