use super::*;
use crate::authority::mandate::Claims;
use crate::authority::Scope;
use crate::model::Action;
use crate::store::prelude::*;
use crate::store::MandateState;

use crate::store::test_fixture::Fixture;

async fn fixture() -> Fixture {
    crate::store::test_fixture::fixture(true, 3).await
}

/// Records mandate `jti` under `parent` (when given), issued at `iat`.
async fn record(
    f: &Fixture,
    jti: &str,
    parent: Option<&MandateRecord>,
    iat: i64,
    res: &str,
) -> MandateRecord {
    let (iss, chain) = match parent {
        Some(p) => {
            let mut chain = p.chain.clone();
            chain.push(p.jti.clone());
            (f.bot.clone(), chain)
        }
        None => (f.boss.clone(), vec![]),
    };
    let claims = Claims {
        iss,
        sub: f.bot.clone(),
        jti: jti.into(),
        iat,
        nbf: iat,
        exp: 1000,
        scope: Scope::new(vec![res.into()], vec![Action::Create]),
        parent: parent.map(|p| p.jti.clone()),
        depth: chain.len() as u32,
        chain,
        ws: None,
    };
    let r = MandateRecord::issued(&claims, &f.policy.0, f.policy.1);
    f.store.insert_mandate(&r).await.unwrap();
    r
}

fn by(reason: &str) -> Revocation {
    Revocation {
        revoked_by: "op".into(),
        reason: reason.into(),
        at: 500,
    }
}

fn jtis(v: &[MandateRecord]) -> Vec<&str> {
    v.iter().map(|m| m.jti.as_str()).collect()
}

#[tokio::test]
async fn revoking_one_mandate_with_and_without_cascade() {
    let f = fixture().await;
    let root = record(&f, "r", None, 100, "chat.completions").await;
    let child = record(&f, "c", Some(&root), 110, "chat.completions").await;
    record(&f, "g", Some(&child), 120, "chat.completions").await;
    record(&f, "other", None, 130, "chat.completions").await;

    let v = f.store.state_version().await.unwrap();
    let done = f
        .store
        .revoke_mandate("c", false, &by("leak"))
        .await
        .unwrap();
    assert_eq!(jtis(&done.revoked), ["c"]);
    assert!(f.store.state_version().await.unwrap() > v);
    let g = f.store.get_mandate("g").await.unwrap();
    assert_eq!(g.revoked_at, None);
    let revoked = f.store.load_state().await.unwrap().revoked;
    assert_eq!(
        g.state(0, |j| revoked.iter().any(|r| r == j)),
        MandateState::RevokedByAncestor
    );

    let done = f
        .store
        .revoke_mandate("r", true, &by("incident"))
        .await
        .unwrap();
    assert_eq!(jtis(&done.revoked), ["r", "g"]);
    assert_eq!(jtis(&done.already), ["c"]);
    let g = f.store.get_mandate("g").await.unwrap();
    assert_eq!(
        (
            g.revoked_at,
            g.revoke_reason.as_deref(),
            g.revoked_by.as_deref()
        ),
        (Some(500), Some("incident"), Some("op"))
    );
    assert_eq!(f.store.get_mandate("other").await.unwrap().revoked_at, None);
    // The first reason is kept.
    let c = f.store.get_mandate("c").await.unwrap();
    assert_eq!(c.revoke_reason.as_deref(), Some("leak"));

    // Again: nothing new, no state change.
    let v = f.store.state_version().await.unwrap();
    let done = f.store.revoke_mandate("r", true, &by("x")).await.unwrap();
    assert!(done.revoked.is_empty());
    assert_eq!(done.already.len(), 3);
    assert_eq!(f.store.state_version().await.unwrap(), v);

    let err = f.store.revoke_mandate("nope", false, &by("x")).await;
    assert!(matches!(err, Err(StoreError::NotFound(_))));
}

/// What `selector` would revoke (a dry run).
async fn sel(f: &Fixture, selector: Selector) -> Vec<String> {
    let r = f
        .store
        .revoke_matching(&selector, &by("x"), true)
        .await
        .unwrap();
    r.revoked.into_iter().map(|m| m.jti).collect()
}

#[tokio::test]
async fn bulk_selection_dry_run_and_tree() {
    let f = fixture().await;
    let root = record(&f, "r", None, 100, "chat.completions").await;
    let child = record(&f, "c", Some(&root), 110, "chat.*").await;
    record(&f, "e", None, 200, "embeddings").await;

    assert_eq!(sel(&f, Selector::Issuer(f.boss.clone())).await, ["r", "e"]);
    assert_eq!(sel(&f, Selector::Issuer(f.bot.clone())).await, ["c"]);
    assert_eq!(
        sel(&f, Selector::Subject(f.bot.clone())).await,
        ["r", "c", "e"]
    );
    assert_eq!(sel(&f, Selector::IssuedBefore(110)).await, ["r"]);
    assert_eq!(
        sel(&f, Selector::Resource("chat.*".into())).await,
        ["r", "c"]
    );
    // An exact name selects the entries that cover it.
    assert_eq!(
        sel(&f, Selector::Resource("chat.completions".into())).await,
        ["r", "c"]
    );
    assert_eq!(
        sel(&f, Selector::Resource("embeddings".into())).await,
        ["e"]
    );
    assert!(sel(&f, Selector::Resource("images".into()))
        .await
        .is_empty());

    // The dry runs changed nothing.
    let v = f.store.state_version().await.unwrap();
    assert!(f.store.load_state().await.unwrap().revoked.is_empty());
    let done = f
        .store
        .revoke_matching(&Selector::Resource("chat.*".into()), &by("x"), false)
        .await
        .unwrap();
    assert_eq!(jtis(&done.revoked), ["r", "c"]);
    assert!(f.store.state_version().await.unwrap() > v);

    let tree = f.store.mandate_tree(&child.jti).await.unwrap();
    assert_eq!(jtis(&tree), ["r", "c"]);
    let tree = f.store.mandate_tree("e").await.unwrap();
    assert_eq!(jtis(&tree), ["e"]);
}
