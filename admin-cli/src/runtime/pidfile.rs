//! The pid file of a gateway started by `caracal up` (`run/gateway.pid`,
//! just the pid) and the state file beside it (`run/gateway.json`: the pid
//! and the addresses the gateway really listens on, which `--listen` may
//! have changed), plus liveness checks and signals.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use caracal_config::fs::write_atomic;
use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};

/// What the pid file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidState {
    /// No pid file.
    Missing,
    /// A pid file naming no live gateway (or not a pid at all).
    Stale(Option<u32>),
    /// A live gateway process.
    Running(u32),
}

/// Where a running gateway listens, recorded when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    pub pid: u32,
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
}

pub fn check(pid_file: &Path) -> anyhow::Result<PidState> {
    let text = match std::fs::read_to_string(pid_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(PidState::Missing),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", pid_file.display())),
    };
    Ok(match text.trim().parse::<u32>() {
        Ok(pid) if pid != std::process::id() && is_gateway(pid) => PidState::Running(pid),
        Ok(pid) => PidState::Stale(Some(pid)),
        Err(_) => PidState::Stale(None),
    })
}

fn state_file(pid_file: &Path) -> PathBuf {
    pid_file.with_file_name("gateway.json")
}

/// Records a started gateway: the state file first, then the pid file.
pub fn write(pid_file: &Path, state: &RunState) -> anyhow::Result<()> {
    write_atomic(
        &state_file(pid_file),
        &serde_json::to_vec_pretty(state)?,
        0o644,
    )?;
    write_atomic(pid_file, format!("{}\n", state.pid).as_bytes(), 0o644)?;
    Ok(())
}

/// The state recorded by the gateway with `pid`, if any.
pub fn read_state(pid_file: &Path, pid: u32) -> Option<RunState> {
    let text = std::fs::read(state_file(pid_file)).ok()?;
    serde_json::from_slice::<RunState>(&text)
        .ok()
        .filter(|s| s.pid == pid)
}

/// Removes the pid and state files (missing files are fine).
pub fn remove(pid_file: &Path) {
    let _ = std::fs::remove_file(pid_file);
    let _ = std::fs::remove_file(state_file(pid_file));
}

/// Removes the files only while they still name `pid`.
pub fn remove_if_ours(pid_file: &Path, pid: u32) {
    let ours = std::fs::read_to_string(pid_file)
        .map(|t| t.trim() == pid.to_string())
        .unwrap_or(false);
    if ours {
        remove(pid_file);
    }
}

fn pid(pid: u32) -> Option<Pid> {
    i32::try_from(pid).ok().and_then(Pid::from_raw)
}

/// Whether `pid` is a live process (zombies count as dead).
pub fn alive(raw: u32) -> bool {
    let Some(p) = pid(raw) else { return false };
    let exists = match rustix::process::test_kill_process(p) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    };
    exists && !zombie(raw)
}

/// Whether `pid` is alive and (where /proc tells) a caracal process, so a
/// recycled pid never gets our SIGTERM.
fn is_gateway(raw: u32) -> bool {
    alive(raw)
        && std::fs::read(format!("/proc/{raw}/cmdline"))
            .map(|cmd| cmd.windows(7).any(|w| w == b"caracal"))
            .unwrap_or(true)
}

fn zombie(raw: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{raw}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
        })
        .unwrap_or(false)
}

/// Sends SIGTERM.
pub fn terminate(raw: u32) -> std::io::Result<()> {
    let p = pid(raw).ok_or_else(|| std::io::Error::other(format!("{raw} is not a valid pid")))?;
    rustix::process::kill_process(p, Signal::TERM).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_files_are_read_and_judged() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("run/gateway.pid");
        assert_eq!(check(&file).unwrap(), PidState::Missing);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "garbage").unwrap();
        assert_eq!(check(&file).unwrap(), PidState::Stale(None));
        // Our own pid is never "another gateway".
        std::fs::write(&file, format!("{}\n", std::process::id())).unwrap();
        assert!(matches!(check(&file).unwrap(), PidState::Stale(Some(_))));
        let state = RunState {
            pid: 4_000_000,
            listen: "127.0.0.1:1".parse().unwrap(),
            metrics_listen: "127.0.0.1:2".parse().unwrap(),
        };
        write(&file, &state).unwrap();
        assert_eq!(check(&file).unwrap(), PidState::Stale(Some(4_000_000)));
        assert_eq!(read_state(&file, 4_000_000), Some(state));
        assert_eq!(read_state(&file, 1), None);
        remove_if_ours(&file, 1);
        assert!(file.exists());
        remove_if_ours(&file, 4_000_000);
        assert!(!file.exists() && !state_file(&file).exists());
    }

    #[test]
    fn liveness() {
        assert!(alive(std::process::id()));
        assert!(!alive(0));
        assert!(!alive(u32::MAX));
    }
}
