//! Running the binary against a temporary Caracal home.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Home {
    dir: tempfile::TempDir,
}

/// What one run printed and how it exited.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:?}"))
    }
}

impl Home {
    /// An empty home: no workspace.
    pub fn empty() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A home with workspace `demo`, active.
    pub fn with_workspace() -> Self {
        let home = Self::empty();
        home.ok(&["workspace", "create", "demo"]);
        home
    }

    /// A home with workspace `demo` and the `openai` template provider
    /// (real base URL, never called).
    pub fn with_openai_provider() -> Self {
        let home = Self::with_workspace();
        home.add_openai_provider();
        home
    }

    /// Adds the `openai` template provider to the active workspace.
    pub fn add_openai_provider(&self) {
        self.ok(&[
            "provider",
            "add",
            "openai",
            "--template",
            "openai",
            "--base-url",
            "https://api.openai.com",
            "--credential",
            "sk-test",
        ]);
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn workspace_dir(&self, name: &str) -> PathBuf {
        self.root().join("workspaces").join(name)
    }

    /// The command with a clean environment (no inherited workspace or
    /// credential).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_caracal"));
        cmd.args(args)
            .env("CARACAL_HOME", self.root())
            .env("HOME", self.root())
            .env_remove("CARACAL_WORKSPACE")
            .env_remove("CARACAL_PROVIDER_CREDENTIAL")
            .env_remove("RUST_LOG");
        cmd
    }

    pub fn run_cmd(mut cmd: Command) -> Out {
        let out = cmd.output().expect("run caracal");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Out {
        Self::run_cmd(self.command(args))
    }

    /// Runs and asserts exit code 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.code, 0, "caracal {args:?} failed: {out:?}");
        out.stdout
    }

    /// Runs and asserts exit code 0; parses stdout as JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run(args);
        assert_eq!(out.code, 0, "caracal {args:?} failed: {out:?}");
        out.json()
    }

    /// Runs and asserts exit code `code`; returns stderr.
    pub fn fails(&self, code: i32, args: &[&str]) -> Out {
        let out = self.run(args);
        assert_eq!(
            out.code, code,
            "caracal {args:?}: expected exit {code}: {out:?}"
        );
        out
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
