//! `caracal up`: the workspace's gateway in the foreground until SIGINT or
//! SIGTERM, or (`--detach`) the same command in the background, returning
//! once its /health answers 200.

use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use caracal_config::{Config, Overrides};
use clap::Args;

use super::logs::tail_lines;
use super::pidfile::{self, PidState, RunState};
use crate::context::{Context, Workspace};
use crate::output::{Exit, Io};
use crate::probe;

/// How long `--detach` waits for the gateway to become healthy.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Run in the background: start the gateway as its own process (output
    /// appended to logs/gateway.out in the workspace), wait until /health
    /// answers 200, print its pid and return.
    #[arg(long)]
    pub detach: bool,
    /// Address of the proxy / base_url listener, overriding gateway.listen
    /// of config.toml (e.g. 127.0.0.1:8443).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Address of the Prometheus metrics listener, overriding
    /// gateway.metrics_listen of config.toml (e.g. 127.0.0.1:9090).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
}

pub async fn run(args: UpArgs, ctx: &Context, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    let ws = ctx.workspace()?;
    let config = ws.config.clone().with_overrides(&Overrides {
        listen: args.listen,
        metrics_listen: args.metrics_listen,
    });
    match pidfile::check(&config.pid_file)? {
        PidState::Running(pid) => bail!("already running (pid {pid}); `caracal down` stops it"),
        PidState::Stale(_) => pidfile::remove(&config.pid_file),
        PidState::Missing => {}
    }
    if args.detach {
        detach(&args, ctx, &ws, &config, io).await
    } else {
        foreground(config, io).await
    }
}

async fn foreground(config: Config, io: &mut Io<'_>) -> anyhow::Result<Exit> {
    caracal_gateway::ops::logging::init(Some(&config.log_file))
        .with_context(|| format!("cannot open the log file {}", config.log_file.display()))?;
    let pid_file = config.pid_file.clone();
    let ca = config.ca_cert.clone();
    let gateway = caracal_gateway::start(config)
        .await
        .context("the gateway could not start")?;
    let state = RunState {
        pid: std::process::id(),
        listen: gateway.addr,
        metrics_listen: gateway.metrics_addr,
    };
    if let Err(e) = pidfile::write(&pid_file, &state) {
        gateway.shutdown().await;
        return Err(e.context("cannot write the pid file"));
    }
    let announced = (|| -> std::io::Result<()> {
        writeln!(
            io.out,
            "gateway listening on https://{} (pid {})",
            state.listen, state.pid
        )?;
        writeln!(io.out, "metrics on http://{}/metrics", state.metrics_listen)?;
        writeln!(
            io.out,
            "workspace CA: {} (`caracal certs export-ca` prints it)",
            ca.display()
        )?;
        writeln!(io.out, "stop with Ctrl-C or `caracal down`")?;
        io.out.flush()
    })();
    if let Err(e) = announced {
        tracing::warn!("cannot write to standard output: {e}");
    }
    caracal_gateway::runtime::wait_for_signal().await;
    tracing::info!("signal received; shutting down");
    gateway.shutdown().await;
    pidfile::remove_if_ours(&pid_file, state.pid);
    Ok(Exit::Success)
}

async fn detach(
    args: &UpArgs,
    ctx: &Context,
    ws: &Workspace,
    config: &Config,
    io: &mut Io<'_>,
) -> anyhow::Result<Exit> {
    let exe = std::env::current_exe().context("cannot locate the caracal executable")?;
    let logs_dir = ws.paths.logs_dir();
    std::fs::create_dir_all(&logs_dir)
        .with_context(|| format!("cannot create {}", logs_dir.display()))?;
    let out_path = logs_dir.join("gateway.out");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out_path)
        .with_context(|| format!("cannot open {}", out_path.display()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--workspace").arg(ws.name.as_str()).arg("up");
    if let Some(a) = args.listen {
        cmd.arg("--listen").arg(a.to_string());
    }
    if let Some(a) = args.metrics_listen {
        cmd.arg("--metrics-listen").arg(a.to_string());
    }
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    // NO_COLOR: the log lines go to a file, not a terminal.
    cmd.env("CARACAL_HOME", ctx.home().root())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let mut child = cmd.spawn().context("cannot start the gateway process")?;
    let pid = child.id();
    match wait_ready(&mut child, config).await {
        Ok(addr) => {
            writeln!(io.out, "gateway running (pid {pid}) on https://{addr}")?;
            Ok(Exit::Success)
        }
        Err(why) => {
            writeln!(io.err, "last lines of {}:", out_path.display())?;
            if let Ok(tail) = tail_lines(&out_path, 20) {
                io.err.write_all(&tail)?;
            }
            Err(why)
        }
    }
}

/// Polls /health until it answers 200 (returning the listen address), the
/// child exits, or [`READY_TIMEOUT`] passes (then the child is stopped).
async fn wait_ready(child: &mut Child, config: &Config) -> anyhow::Result<SocketAddr> {
    let pid = child.id();
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    while started.elapsed() < READY_TIMEOUT {
        if let Some(status) = child.try_wait()? {
            bail!("the gateway exited ({status}) before it became healthy");
        }
        // Ready means: the child recorded its pid and the address it really
        // bound (port 0 is resolved there), and that address answers 200.
        // Probing the configured address before the record exists could
        // report success while the pid file is still missing.
        let listen = pidfile::read_state(&config.pid_file, pid).map(|s| s.listen);
        if let Some(listen) = listen {
            match probe::probe_health_at(listen, &config.ca_cert).await {
                Ok(report) if report.status == "ok" => return Ok(listen),
                Ok(report) => {
                    last = format!("/health reports failing: {}", report.failing.join(", "))
                }
                Err(e) => last = crate::output::error_chain(&e),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = pidfile::terminate(pid);
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while child.try_wait().ok().flatten().is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    bail!(
        "the gateway did not become healthy within {} s ({last}); it was stopped",
        READY_TIMEOUT.as_secs()
    )
}
