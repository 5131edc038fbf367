//! SQLite-specific mandate tests: rows corrupted behind the store's back
//! and the schema's own checks (the contract is tested in
//! `crate::conformance::store`); and how a record ranks its states.

use super::*;
use crate::authority::mandate::Claims;
use crate::model::{Action, PrincipalKind};
use crate::policy::PolicyDefinition;
use crate::store::prelude::*;
use crate::store::{Change, NewPrincipal};

/// A store with a user `boss`, an agent `bot`, and a policy of boss over
/// `chat.*` (create).
struct Fixture {
    _dir: tempfile::TempDir,
    store: SqliteStore,
    boss: String,
    bot: String,
    policy: (String, u32),
}

async fn fixture() -> Fixture {
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
        allow_delegation: false,
        max_delegation_depth: 0,
        budget: None,
        rate: None,
        max_in_flight: None,
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

fn claims(f: &Fixture, jti: &str) -> Claims {
    Claims {
        iss: f.boss.clone(),
        sub: f.bot.clone(),
        jti: jti.into(),
        iat: 100,
        nbf: 100,
        exp: 1000,
        scope: Scope::new(vec!["chat.completions".into()], vec![Action::Create]),
        parent: None,
        chain: vec![],
        depth: 0,
        ws: None,
    }
}

#[tokio::test]
async fn corrupt_rows_are_errors_not_panics() {
    let f = fixture().await;
    let record = MandateRecord::issued(&claims(&f, "m-1"), &f.policy.0, f.policy.1);
    f.store.insert_mandate(&record).await.unwrap();
    for (column, value) in [("scope", "{not json"), ("chain", "[1, 2]")] {
        sqlx::query(&format!(
            "UPDATE mandates SET {column} = ? WHERE jti = 'm-1'"
        ))
        .bind(value)
        .execute(f.store.pool())
        .await
        .unwrap();
        let err = f.store.get_mandate("m-1").await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{column}: {err}");
        let err = f.store.list_mandates(&MandateFilter::default()).await;
        assert!(matches!(err, Err(StoreError::Corrupt { .. })), "{column}");
    }
    sqlx::query("UPDATE mandates SET chain = '[]', scope = ?, depth = -1")
        .bind(serde_json::to_string(&record.scope).unwrap())
        .execute(f.store.pool())
        .await
        .unwrap();
    let err = f.store.get_mandate("m-1").await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");

    // A short public key fails the table's CHECK; a schema without it
    // would still be caught on read.
    let short = sqlx::query("INSERT INTO signing_keys VALUES ('k-x', x'0102', 1, NULL)")
        .execute(f.store.pool())
        .await;
    assert!(short.is_err());
}

#[tokio::test]
async fn state_ranks_revocation_over_an_ancestors_over_expiry() {
    let f = fixture().await;
    let mut c = claims(&f, "m-1");
    c.parent = Some("p".into());
    c.chain = vec!["p".into()];
    c.depth = 1;
    let mut m = MandateRecord::issued(&c, &f.policy.0, f.policy.1);
    let none = |_: &str| false;
    let parent_revoked = |j: &str| j == "p";
    assert_eq!(m.state(999, none), MandateState::Active);
    assert_eq!(m.state(1000, none), MandateState::Expired);
    assert_eq!(
        m.state(1000, parent_revoked),
        MandateState::RevokedByAncestor
    );
    m.revoked_at = Some(5);
    assert_eq!(m.state(1000, parent_revoked), MandateState::Revoked);
    assert_eq!(
        MandateState::RevokedByAncestor.as_str(),
        "revoked-by-ancestor"
    );
}
