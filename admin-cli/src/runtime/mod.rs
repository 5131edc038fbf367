//! Running the gateway: `caracal up`, `down`, `status` and `logs`.

pub mod logs;
pub mod pidfile;
pub mod up;

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::bail;
use caracal_gateway::ops::health::HealthReport;
use clap::Args;
use serde::Serialize;

use crate::context::Context;
use crate::output::{self, Exit, Io};
use crate::probe;
use pidfile::PidState;

/// How long `caracal down` waits for the gateway to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON ({"workspace", "running", "pid", "listen", "healthy",
    /// "health": {"status", "checks", "failing"}, "error"}) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Status {
    workspace: String,
    running: bool,
    pid: Option<u32>,
    listen: String,
    healthy: bool,
    health: Option<HealthReport>,
    error: Option<String>,
}

/// `caracal status`: the pid file, then /health of the listen address the
/// running gateway recorded (else the configured one).
pub async fn status(args: StatusArgs, ctx: &Context, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    let ws = ctx.workspace()?;
    let config = &ws.config;
    let pid = match pidfile::check(&config.pid_file)? {
        PidState::Running(pid) => Some(pid),
        PidState::Missing | PidState::Stale(_) => None,
    };
    let listen = pid
        .and_then(|p| pidfile::read_state(&config.pid_file, p))
        .map(|s| s.listen)
        .unwrap_or(config.listen);
    // Without a CA the gateway has never started in this workspace.
    let probed = if pid.is_some() || config.ca_cert.exists() {
        Some(probe::probe_health_at(listen, &config.ca_cert).await)
    } else {
        None
    };
    let (health, error) = match probed {
        Some(Ok(report)) => (Some(report), None),
        Some(Err(e)) => (None, Some(output::error_chain(&e))),
        None => (None, None),
    };
    let s = Status {
        workspace: ws.name.to_string(),
        running: pid.is_some() || health.is_some(),
        healthy: health.as_ref().is_some_and(|h| h.status == "ok"),
        pid,
        listen: listen.to_string(),
        health,
        error,
    };
    if args.json {
        output::json(io.out, &s)?;
    } else {
        print_status(io.out, &s)?;
    }
    Ok(Exit::from_ok(s.healthy))
}

fn print_status(out: &mut dyn Write, s: &Status) -> anyhow::Result<()> {
    match (s.running, s.pid) {
        (false, _) => {
            writeln!(out, "gateway of workspace {}: not running", s.workspace)?;
            writeln!(out, "start it with `caracal up --detach`")?;
            return Ok(());
        }
        (true, Some(pid)) => writeln!(
            out,
            "gateway of workspace {}: running (pid {pid})",
            s.workspace
        )?,
        (true, None) => writeln!(
            out,
            "gateway of workspace {}: answering, but not started by `caracal up` (no pid file)",
            s.workspace
        )?,
    }
    writeln!(out, "listen: https://{}", s.listen)?;
    match (&s.health, &s.error) {
        (Some(h), _) => {
            let checks: Vec<String> = h
                .checks
                .iter()
                .map(|(name, ok)| format!("{name} {}", if *ok { "ok" } else { "FAILING" }))
                .collect();
            writeln!(out, "health: {} ({})", h.status, checks.join(", "))?;
        }
        (None, Some(e)) => writeln!(out, "health: no answer: {e}")?,
        (None, None) => writeln!(out, "health: not checked")?,
    }
    Ok(())
}

/// `caracal down`: SIGTERM to the pid file's process, then wait for it.
pub async fn down(ctx: &Context, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    let ws = ctx.workspace()?;
    let pid_file = &ws.config.pid_file;
    let pid = match pidfile::check(pid_file)? {
        PidState::Missing => {
            writeln!(io.out, "not running (no pid file)")?;
            return Ok(Exit::Success);
        }
        PidState::Stale(pid) => {
            pidfile::remove(pid_file);
            let which = pid.map(|p| format!(" for pid {p}")).unwrap_or_default();
            writeln!(io.out, "not running (removed a stale pid file{which})")?;
            return Ok(Exit::Success);
        }
        PidState::Running(pid) => pid,
    };
    if let Err(e) = pidfile::terminate(pid) {
        bail!("cannot send SIGTERM to the gateway (pid {pid}): {e}");
    }
    let started = Instant::now();
    while pidfile::alive(pid) {
        if started.elapsed() >= STOP_TIMEOUT {
            bail!(
                "the gateway (pid {pid}) is still running {} s after SIGTERM; `kill -KILL {pid}` forces it to stop",
                STOP_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pidfile::remove_if_ours(pid_file, pid);
    writeln!(io.out, "gateway stopped (pid {pid})")?;
    Ok(Exit::Success)
}
