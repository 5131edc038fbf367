//! `$CARACAL_HOME` (default `~/.caracal`): the workspaces it holds and which
//! one is active.
//!
//! ```text
//! $CARACAL_HOME/
//!   active                 name of the active workspace
//!   workspaces/NAME/       one directory per workspace (see WorkspacePaths)
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use crate::fs::write_atomic;
use crate::gateway::{default_config_toml, WorkspacePaths};
use crate::ConfigError;

/// A validated workspace name: 1 to 64 characters of `[A-Za-z0-9_-]`, not
/// starting with `-`, so it is always a safe directory name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkspaceName(String);

impl WorkspaceName {
    pub fn parse(name: &str) -> Result<Self, ConfigError> {
        let bad = |reason| ConfigError::BadWorkspaceName {
            name: name.to_string(),
            reason,
        };
        if name.is_empty() || name.len() > 64 {
            return Err(bad("must be 1 to 64 characters"));
        }
        if name.starts_with('-') {
            return Err(bad("must not start with '-'"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad("may contain only letters, digits, '-' and '_'"));
        }
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkspaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The Caracal home directory.
#[derive(Debug, Clone)]
pub struct CaracalHome {
    root: PathBuf,
}

impl CaracalHome {
    /// Resolves the home from an environment source (`CARACAL_HOME`, else
    /// `HOME/.caracal`). Takes a lookup function so tests never touch the
    /// process environment.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        if let Some(home) = env("CARACAL_HOME").filter(|h| !h.is_empty()) {
            return Ok(Self::at(home));
        }
        let home = env("HOME")
            .filter(|h| !h.is_empty())
            .ok_or(ConfigError::NoHome)?;
        Ok(Self::at(Path::new(&home).join(".caracal")))
    }

    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn workspaces_dir(&self) -> PathBuf {
        self.root.join("workspaces")
    }

    fn active_file(&self) -> PathBuf {
        self.root.join("active")
    }

    /// Paths of the workspace `name` (which need not exist).
    pub fn workspace(&self, name: &WorkspaceName) -> WorkspacePaths {
        WorkspacePaths::new(self.workspaces_dir().join(name.as_str()))
    }

    /// Existing workspaces, sorted by name.
    pub fn list(&self) -> Result<Vec<WorkspaceName>, ConfigError> {
        let dir = self.workspaces_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ConfigError::io("read", dir, e)),
        };
        let mut names: Vec<WorkspaceName> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join(WorkspacePaths::CONFIG_FILE).is_file())
            .filter_map(|e| WorkspaceName::parse(&e.file_name().to_string_lossy()).ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Creates the workspace directory with a default configuration.
    pub fn create(&self, name: &WorkspaceName) -> Result<WorkspacePaths, ConfigError> {
        self.create_with(name, &default_config_toml())
    }

    /// Creates workspace `name` with `config` (already validated) as its
    /// `config.toml`.
    pub fn create_with(
        &self,
        name: &WorkspaceName,
        config: &str,
    ) -> Result<WorkspacePaths, ConfigError> {
        let paths = self.workspace(name);
        if paths.config_file().exists() {
            return Err(ConfigError::WorkspaceExists(name.to_string()));
        }
        for dir in [
            paths.root().to_path_buf(),
            paths.logs_dir(),
            paths.run_dir(),
        ] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| ConfigError::io("create directory", &dir, e))?;
        }
        write_atomic(&paths.config_file(), config.as_bytes(), 0o600)?;
        Ok(paths)
    }

    /// The active workspace's name as recorded, whether or not it exists.
    pub fn active(&self) -> Result<Option<WorkspaceName>, ConfigError> {
        let file = self.active_file();
        match std::fs::read_to_string(&file) {
            Ok(s) if s.trim().is_empty() => Ok(None),
            Ok(s) => WorkspaceName::parse(s.trim()).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ConfigError::io("read", file, e)),
        }
    }

    /// Marks an existing workspace active.
    pub fn set_active(&self, name: &WorkspaceName) -> Result<WorkspacePaths, ConfigError> {
        let paths = self.existing(name)?;
        write_atomic(&self.active_file(), format!("{name}\n").as_bytes(), 0o644)?;
        Ok(paths)
    }

    /// Resolves the workspace a command acts on: `explicit` (the global
    /// `--workspace`) when given, else the active one. Errors say exactly
    /// what is missing and which command fixes it.
    pub fn resolve(
        &self,
        explicit: Option<&str>,
    ) -> Result<(WorkspaceName, WorkspacePaths), ConfigError> {
        let name = match explicit {
            Some(name) => WorkspaceName::parse(name)?,
            None => match self.active()? {
                Some(name) => name,
                None => {
                    let existing = self.list()?;
                    if existing.is_empty() {
                        return Err(ConfigError::NoWorkspaces);
                    }
                    return Err(ConfigError::NoneSelected {
                        existing: join(&existing),
                    });
                }
            },
        };
        let paths = self.existing(&name)?;
        Ok((name, paths))
    }

    fn existing(&self, name: &WorkspaceName) -> Result<WorkspacePaths, ConfigError> {
        let paths = self.workspace(name);
        if paths.config_file().is_file() {
            return Ok(paths);
        }
        let existing = self.list()?;
        if existing.is_empty() {
            return Err(ConfigError::NoWorkspaces);
        }
        Err(ConfigError::UnknownWorkspace {
            name: name.to_string(),
            existing: join(&existing),
        })
    }
}

fn join(names: &[WorkspaceName]) -> String {
    names
        .iter()
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> (tempfile::TempDir, CaracalHome) {
        let dir = tempfile::tempdir().unwrap();
        let home = CaracalHome::at(dir.path());
        (dir, home)
    }

    #[test]
    fn names_are_validated() {
        assert!(WorkspaceName::parse("demo-1_x").is_ok());
        for bad in ["", "-x", "a/b", "..", "a b", &"x".repeat(65)] {
            assert!(WorkspaceName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn env_resolution_prefers_caracal_home() {
        let h = CaracalHome::from_env(|k| (k == "CARACAL_HOME").then(|| "/x".to_string())).unwrap();
        assert_eq!(h.root(), Path::new("/x"));
        let h = CaracalHome::from_env(|k| (k == "HOME").then(|| "/home/u".to_string())).unwrap();
        assert_eq!(h.root(), Path::new("/home/u/.caracal"));
        assert!(matches!(
            CaracalHome::from_env(|_| None),
            Err(ConfigError::NoHome)
        ));
    }

    #[test]
    fn resolve_explains_what_is_missing() {
        let (_d, home) = home();
        let err = home.resolve(None).unwrap_err();
        assert!(matches!(err, ConfigError::NoWorkspaces));
        assert!(err.to_string().contains("caracal workspace create"));

        let demo = WorkspaceName::parse("demo").unwrap();
        home.create(&demo).unwrap();
        let err = home.resolve(None).unwrap_err();
        assert!(err.to_string().contains("caracal workspace use"), "{err}");
        assert!(err.to_string().contains("demo"));

        home.set_active(&demo).unwrap();
        let (name, paths) = home.resolve(None).unwrap();
        assert_eq!(name, demo);
        assert!(paths.config_file().is_file());

        let err = home.resolve(Some("other")).unwrap_err();
        assert!(matches!(err, ConfigError::UnknownWorkspace { .. }), "{err}");
        assert!(matches!(
            home.create(&demo),
            Err(ConfigError::WorkspaceExists(_))
        ));
        assert_eq!(home.list().unwrap(), vec![demo]);
    }
}
