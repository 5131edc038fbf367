//! Test fixture shared by the store's tests: a store with a user `boss`,
//! an agent `bot`, and a policy of boss over `chat.*` (create).

use super::prelude::*;
use super::{Change, NewPrincipal, SqliteStore};
use crate::authority::Scope;
use crate::model::{Action, PrincipalKind};
use crate::policy::PolicyDefinition;

pub(crate) struct Fixture {
    pub _dir: tempfile::TempDir,
    pub store: SqliteStore,
    pub boss: String,
    pub bot: String,
    pub policy: (String, u32),
}

pub(crate) async fn fixture(allow_delegation: bool, max_delegation_depth: u32) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("c.db")).await.unwrap();
    let mut ids = Vec::new();
    for (name, kind) in [("boss", PrincipalKind::User), ("bot", PrincipalKind::Agent)] {
        let (p, _) = store
            .register_principal(NewPrincipal {
                kind,
                name: name.into(),
                email: String::new(),
            })
            .await
            .unwrap();
        ids.push(p.id);
    }
    let def = PolicyDefinition {
        scope: Scope::new(vec!["chat.*".into()], vec![Action::Create]),
        max_validity_secs: 3600,
        allow_delegation,
        max_delegation_depth,
        budget: None,
        rate: None,
    };
    let change = Change {
        changed_by: "t".into(),
        reason: "t".into(),
    };
    let policy = store.create_policy(&ids[0], &def, &change).await.unwrap();
    Fixture {
        _dir: dir,
        store,
        bot: ids.pop().unwrap(),
        boss: ids.pop().unwrap(),
        policy: (policy.id, policy.version),
    }
}
