use super::*;
use crate::authority::mandate::Claims;
use crate::model::Action;
use crate::store::prelude::*;

use crate::store::test_fixture::Fixture;

async fn fixture() -> Fixture {
    crate::store::test_fixture::fixture(false, 0).await
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

fn key(kid: &str, byte: u8, retired_at: Option<i64>) -> SigningKeyRow {
    SigningKeyRow {
        kid: kid.into(),
        public_key: [byte; 32],
        created_at: 10,
        retired_at,
    }
}

#[tokio::test]
async fn mandates_are_recorded_listed_and_bump_the_state_version() {
    let f = fixture().await;
    let before = f.store.state_version().await.unwrap();
    let record = MandateRecord::issued(&claims(&f, "m-1"), &f.policy.0, f.policy.1);
    f.store.insert_mandate(&record).await.unwrap();
    assert!(f.store.state_version().await.unwrap() > before);
    assert_eq!(f.store.get_mandate("m-1").await.unwrap(), record);

    let err = f.store.insert_mandate(&record).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let err = f.store.get_mandate("m-2").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");

    let mut other = MandateRecord::issued(&claims(&f, "m-2"), &f.policy.0, f.policy.1);
    other.subject_id = "nobody".into();
    let err = f.store.insert_mandate(&other).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");

    let by_subject = MandateFilter {
        subject_id: Some(f.bot.clone()),
        issuer_id: None,
    };
    assert_eq!(f.store.list_mandates(&by_subject).await.unwrap().len(), 1);
    let by_issuer = MandateFilter {
        subject_id: None,
        issuer_id: Some(f.bot.clone()),
    };
    assert!(f.store.list_mandates(&by_issuer).await.unwrap().is_empty());
    let all = f.store.list_mandates(&MandateFilter::default()).await;
    assert_eq!(all.unwrap(), vec![record]);
}

#[tokio::test]
async fn revoked_jtis_and_keys_are_part_of_the_state() {
    let f = fixture().await;
    for jti in ["m-1", "m-2"] {
        let record = MandateRecord::issued(&claims(&f, jti), &f.policy.0, f.policy.1);
        f.store.insert_mandate(&record).await.unwrap();
    }
    sqlx::query("UPDATE mandates SET revoked_at = 5, revoked_by = 'op' WHERE jti = 'm-2'")
        .execute(f.store.pool())
        .await
        .unwrap();
    let keys = vec![key("k-a", 1, Some(50)), key("k-b", 2, None)];
    assert!(f.store.sync_signing_keys(&keys).await.unwrap());
    let rows = f.store.load_state().await.unwrap();
    assert_eq!(rows.revoked, vec!["m-2".to_string()]);
    assert_eq!(rows.signing_keys, keys);
}

#[tokio::test]
async fn key_sync_mirrors_the_keyring_and_only_bumps_on_change() {
    let f = fixture().await;
    let keys = vec![key("k-a", 1, None)];
    assert!(f.store.sync_signing_keys(&keys).await.unwrap());
    let v = f.store.state_version().await.unwrap();
    assert!(!f.store.sync_signing_keys(&keys).await.unwrap());
    assert_eq!(
        f.store.state_version().await.unwrap(),
        v,
        "no change, no bump"
    );

    // Rotation retires k-a and adds k-b; pruning later drops k-a.
    let rotated = vec![key("k-a", 1, Some(20)), key("k-b", 2, None)];
    assert!(f.store.sync_signing_keys(&rotated).await.unwrap());
    assert_eq!(f.store.list_signing_keys().await.unwrap(), rotated);
    assert!(f.store.state_version().await.unwrap() > v);
    let pruned = vec![key("k-b", 2, None)];
    assert!(f.store.sync_signing_keys(&pruned).await.unwrap());
    assert_eq!(f.store.list_signing_keys().await.unwrap(), pruned);

    // A kid never changes its public key.
    let err = f
        .store
        .sync_signing_keys(&[key("k-b", 9, None)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(f.store.list_signing_keys().await.unwrap(), pruned);
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
