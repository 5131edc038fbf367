//! `caracal principal` and `caracal agent`: who may call through the
//! gateway. A token is shown once, at registration; only its hash is kept.

use anyhow::bail;
use caracal_gateway::model::{Principal, PrincipalKind};
use caracal_gateway::store::{NewPrincipal, Store};
use clap::{Subcommand, ValueEnum};
use serde::Serialize;

use crate::context::Context;
use crate::output::{self, Exit, Io};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    /// An AI agent calling providers.
    Agent,
    /// A person.
    User,
    /// A non-AI service.
    Service,
}

impl From<KindArg> for PrincipalKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Agent => Self::Agent,
            KindArg::User => Self::User,
            KindArg::Service => Self::Service,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PrincipalCmd {
    /// Register a principal and print its token (shown only this once).
    Register {
        /// What kind of principal this is.
        #[arg(long = "type", value_enum)]
        kind: KindArg,
        /// Unique name (also accepted wherever an id is, e.g. --agent-id).
        #[arg(long)]
        name: String,
        /// Contact email of the principal or its owner.
        #[arg(long)]
        email: String,
        /// Print JSON ({"id", "token", "type", "name", "email", "created_at"}).
        #[arg(long)]
        json: bool,
    },
    /// List principals (never their tokens).
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCmd {
    /// Register an agent (a principal of type agent owned by --owner) and print
    /// its token (shown only this once).
    Create {
        /// Unique agent name.
        #[arg(long)]
        name: String,
        /// What the agent is for (printed back; not stored).
        #[arg(long)]
        description: Option<String>,
        /// Email of the agent's owner.
        #[arg(long)]
        owner: String,
        /// Print JSON ({"id", "token", "type", "name", "email", "description", ...}).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct Row<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    email: &'a str,
    created_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
}

impl<'a> Row<'a> {
    fn new(p: &'a Principal) -> Self {
        Self {
            id: &p.id,
            kind: p.kind.as_str(),
            name: &p.name,
            email: &p.email,
            created_at: &p.created_at,
            token: None,
            description: None,
        }
    }
}

pub async fn run(cmd: PrincipalCmd, ctx: &Context, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    let opened = ctx.workspace()?.store().await?;
    let store: &dyn caracal_gateway::store::Store = &*opened;
    match cmd {
        PrincipalCmd::Register {
            kind,
            name,
            email,
            json,
        } => register(store, kind.into(), name, email, None, json, io).await,
        PrincipalCmd::List { json } => {
            let all = store.list_principals().await?;
            let rows: Vec<Row> = all.iter().map(Row::new).collect();
            if json {
                output::json(io.out, &rows)?;
            } else if rows.is_empty() {
                writeln!(
                    io.out,
                    "no principals yet; register one with `caracal principal register`"
                )?;
            } else {
                let mut t = output::table(&["ID", "TYPE", "NAME", "EMAIL", "CREATED"]);
                for r in &rows {
                    t.add_row([r.id, r.kind, r.name, r.email, r.created_at]);
                }
                output::print_table(io.out, &t)?;
            }
            Ok(Exit::Success)
        }
    }
}

pub async fn run_agent(cmd: AgentCmd, ctx: &Context, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    let opened = ctx.workspace()?.store().await?;
    let store: &dyn caracal_gateway::store::Store = &*opened;
    match cmd {
        AgentCmd::Create {
            name,
            description,
            owner,
            json,
        } => {
            register(
                store,
                PrincipalKind::Agent,
                name,
                owner,
                description,
                json,
                io,
            )
            .await
        }
    }
}

async fn register(
    store: &dyn Store,
    kind: PrincipalKind,
    name: String,
    email: String,
    description: Option<String>,
    json: bool,
    io: &mut Io<'_>,
) -> anyhow::Result<Exit> {
    let name = name.trim().to_string();
    if name.is_empty()
        || name.len() > 128
        || name.contains(':')
        || name.chars().any(char::is_control)
    {
        bail!("--name must be 1-128 characters without ':' or control characters");
    }
    let email = email.trim().to_string();
    if !email
        .split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
        || email.contains(char::is_whitespace)
    {
        bail!("{email:?} is not an email address");
    }
    let (principal, token) = store
        .register_principal(NewPrincipal { kind, name, email })
        .await?;
    let warning = "save this token now: it is stored only as a hash and cannot be shown again";
    if json {
        let mut row = Row::new(&principal);
        row.token = Some(&token);
        row.description = description.as_deref();
        output::json(io.out, &row)?;
        writeln!(io.err, "{warning}")?;
    } else {
        writeln!(
            io.out,
            "registered {} {}",
            principal.kind.as_str(),
            principal.name
        )?;
        writeln!(io.out, "id:    {}", principal.id)?;
        writeln!(io.out, "email: {}", principal.email)?;
        if let Some(d) = &description {
            writeln!(io.out, "description: {d}")?;
        }
        writeln!(io.out, "token: {token}")?;
        writeln!(io.out, "\n{warning}")?;
        writeln!(
            io.out,
            "allow the URLs it may call with `caracal allowlist create --agent-id {} --pattern ... --pattern-type glob`",
            principal.name
        )?;
    }
    Ok(Exit::Success)
}
