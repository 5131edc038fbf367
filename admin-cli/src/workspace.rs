//! `caracal workspace`: create, select, show and list workspaces.

use caracal_config::WorkspaceName;
use clap::Subcommand;
use serde::Serialize;

use crate::context::Context;
use crate::output::{self, Exit, Io};

#[derive(Debug, Subcommand)]
pub enum WorkspaceCmd {
    /// Create a workspace with a default config.toml. The first workspace
    /// created (while none is active) also becomes the active one.
    Create {
        /// Workspace name: 1-64 characters of letters, digits, '-' and '_'.
        name: String,
    },
    /// Make NAME the active workspace (what commands act on without --workspace).
    Use {
        /// Name of an existing workspace.
        name: String,
    },
    /// Show the workspace commands act on (--workspace, else the active one).
    Current {
        /// Print JSON ({"name", "path", "active"}) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List workspaces; the active one is marked.
    List {
        /// Print a JSON array of {"name", "path", "active"} instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct Row {
    name: String,
    path: String,
    active: bool,
}

pub fn run(cmd: WorkspaceCmd, ctx: &Context, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    let home = ctx.home();
    match cmd {
        WorkspaceCmd::Create { name } => {
            let name = WorkspaceName::parse(&name)?;
            // An active file naming a removed workspace counts as none.
            let active = home
                .active()?
                .filter(|a| home.workspace(a).config_file().is_file());
            let paths = home.create(&name)?;
            writeln!(
                io.out,
                "created workspace {name} at {}",
                paths.root().display()
            )?;
            if active.is_none() {
                home.set_active(&name)?;
                writeln!(io.out, "{name} is now the active workspace")?;
            } else {
                writeln!(
                    io.out,
                    "make it the active workspace with `caracal workspace use {name}`"
                )?;
            }
        }
        WorkspaceCmd::Use { name } => {
            let name = WorkspaceName::parse(&name)?;
            let paths = home.set_active(&name)?;
            writeln!(
                io.out,
                "active workspace: {name} ({})",
                paths.root().display()
            )?;
        }
        WorkspaceCmd::Current { json } => {
            let ws = ctx.workspace()?;
            let row = Row {
                active: home.active()?.as_ref() == Some(&ws.name),
                name: ws.name.to_string(),
                path: ws.paths.root().display().to_string(),
            };
            if json {
                output::json(io.out, &row)?;
            } else {
                let how = if row.active {
                    "active"
                } else {
                    "selected by --workspace"
                };
                writeln!(io.out, "{} ({how})\n{}", row.name, row.path)?;
            }
        }
        WorkspaceCmd::List { json } => {
            let active = home.active()?;
            let rows: Vec<Row> = home
                .list()?
                .into_iter()
                .map(|n| Row {
                    active: active.as_ref() == Some(&n),
                    path: home.workspace(&n).root().display().to_string(),
                    name: n.to_string(),
                })
                .collect();
            if json {
                output::json(io.out, &rows)?;
            } else if rows.is_empty() {
                writeln!(
                    io.out,
                    "no workspaces yet; create one with `caracal workspace create NAME`"
                )?;
            } else {
                let mut t = output::table(&["", "NAME", "PATH"]);
                for r in &rows {
                    t.add_row([if r.active { "*" } else { "" }, &r.name, &r.path]);
                }
                output::print_table(io.out, &t)?;
            }
        }
    }
    Ok(Exit::Success)
}
