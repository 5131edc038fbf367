//! `caracal authority graph` and `list`: recorded mandates and where
//! each stands (active, expired, revoked, revoked by an ancestor).

use std::collections::{HashMap, HashSet};

use caracal_gateway::store::{MandateFilter, MandateRecord, Store};
use clap::Args;
use serde_json::{json, Value};

use super::{fmt_time, now};
use crate::context;
use crate::output::{self, Exit, Io};

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Any mandate of the tree; the tree is shown from its root.
    #[arg(long, value_name = "ID")]
    mandate_id: String,
    /// Print the tree as nested JSON objects (children under "children").
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only mandates issued to this principal (id or name).
    #[arg(long, value_name = "ID")]
    subject: Option<String>,
    /// Only mandates issued by this principal (id or name).
    #[arg(long, value_name = "ID")]
    issuer: Option<String>,
    /// Print JSON (an array of mandates with their state) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Each record's state at `now`, given every revoked jti of the workspace.
fn states(records: &[MandateRecord], revoked: &HashSet<String>, now: i64) -> Vec<&'static str> {
    records
        .iter()
        .map(|m| m.state(now, |j| revoked.contains(j)).as_str())
        .collect()
}

async fn revoked_set(store: &dyn Store) -> anyhow::Result<HashSet<String>> {
    Ok(store.load_state().await?.revoked.into_iter().collect())
}

fn name<'a>(names: &'a HashMap<String, String>, id: &'a str) -> &'a str {
    names.get(id).map_or(id, String::as_str)
}

fn node(m: &MandateRecord, state: &str, names: &HashMap<String, String>) -> Value {
    json!({
        "id": m.jti,
        "issuer": m.issuer_id,
        "issuer_name": name(names, &m.issuer_id),
        "subject": m.subject_id,
        "subject_name": name(names, &m.subject_id),
        "parent": m.parent_jti,
        "scope": m.scope,
        "exp": m.exp,
        "expires_at": fmt_time(m.exp),
        "depth": m.depth,
        "state": state,
        "policy_id": m.policy_id,
        "policy_version": m.policy_version,
        "revoked_at": m.revoked_at,
        "revoke_reason": m.revoke_reason,
    })
}

pub async fn graph(args: GraphArgs, store: &dyn Store, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    let tree = store.mandate_tree(&args.mandate_id).await?;
    let names = context::principal_names(store).await?;
    let revoked = revoked_set(store).await?;
    let states = states(&tree, &revoked, now());
    // Children of each jti, in tree order (oldest first).
    let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, m) in tree.iter().enumerate() {
        if let Some(p) = &m.parent_jti {
            children.entry(p.as_str()).or_default().push(i);
        }
    }
    let Some(root) = tree.iter().position(|m| m.parent_jti.is_none()) else {
        anyhow::bail!("mandate {}: its root is not recorded", args.mandate_id);
    };
    let ctx = Tree {
        tree: &tree,
        states: &states,
        children: &children,
        names: &names,
        marked: &args.mandate_id,
    };
    if args.json {
        output::json(io.out, &ctx.json(root))?;
    } else {
        ctx.text(root, 0, io)?;
    }
    Ok(Exit::Success)
}

struct Tree<'a> {
    tree: &'a [MandateRecord],
    states: &'a [&'static str],
    children: &'a HashMap<&'a str, Vec<usize>>,
    names: &'a HashMap<String, String>,
    /// The mandate asked about, marked in the text form.
    marked: &'a str,
}

impl Tree<'_> {
    fn kids(&self, i: usize) -> &[usize] {
        self.children
            .get(self.tree[i].jti.as_str())
            .map_or(&[], Vec::as_slice)
    }

    fn json(&self, i: usize) -> Value {
        let mut v = node(&self.tree[i], self.states[i], self.names);
        let kids: Vec<Value> = self.kids(i).iter().map(|&k| self.json(k)).collect();
        v["children"] = Value::Array(kids);
        v
    }

    fn text(&self, i: usize, indent: usize, io: &mut Io<'_>) -> anyhow::Result<()> {
        let m = &self.tree[i];
        let actions: Vec<&str> = m.scope.actions.iter().map(|a| a.as_str()).collect();
        writeln!(
            io.out,
            "{:indent$}{} [{}] {} -> {}  {} : {}  depth {}  expires {}{}",
            "",
            m.jti,
            self.states[i],
            name(self.names, &m.issuer_id),
            name(self.names, &m.subject_id),
            m.scope.resources.join(", "),
            actions.join(", "),
            m.depth,
            fmt_time(m.exp),
            if m.jti == self.marked { "  <" } else { "" },
            indent = indent * 2,
        )?;
        for &k in self.kids(i) {
            self.text(k, indent + 1, io)?;
        }
        Ok(())
    }
}

pub async fn list(args: ListArgs, store: &dyn Store, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    let filter = MandateFilter {
        subject_id: match &args.subject {
            Some(p) => Some(context::principal(store, p).await?.id),
            None => None,
        },
        issuer_id: match &args.issuer {
            Some(p) => Some(context::principal(store, p).await?.id),
            None => None,
        },
    };
    let records = store.list_mandates(&filter).await?;
    let names = context::principal_names(store).await?;
    let revoked = revoked_set(store).await?;
    let states = states(&records, &revoked, now());
    if args.json {
        let rows: Vec<Value> = records
            .iter()
            .zip(&states)
            .map(|(m, s)| node(m, s, &names))
            .collect();
        output::json(io.out, &rows)?;
        return Ok(Exit::Success);
    }
    let mut table = output::table(&[
        "ID", "STATE", "ISSUER", "SUBJECT", "SCOPE", "DEPTH", "EXPIRES",
    ]);
    for (m, s) in records.iter().zip(&states) {
        let actions: Vec<&str> = m.scope.actions.iter().map(|a| a.as_str()).collect();
        table.add_row(vec![
            m.jti.clone(),
            s.to_string(),
            name(&names, &m.issuer_id).to_string(),
            name(&names, &m.subject_id).to_string(),
            format!("{} : {}", m.scope.resources.join(", "), actions.join(", ")),
            m.depth.to_string(),
            fmt_time(m.exp),
        ]);
    }
    output::print_table(io.out, &table)?;
    Ok(Exit::Success)
}
