//! Durable file I/O: whole-file reads with path-carrying errors, and
//! atomic writes (temp file in the same directory, fsync, rename, fsync dir).

use std::fs;
use std::path::Path;

use crate::CertError;

/// Who may read a written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Owner read/write only (0600): private keys.
    Private,
    /// World-readable (0644, minus umask): certificates.
    Public,
}

/// Reads `path` as UTF-8 text.
pub(crate) fn read_text(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|e| CertError::io("reading", path, e))
}

/// Whether `path` exists (following symlinks); errors other than "not found" are reported.
pub(crate) fn exists(path: &Path) -> Result<bool, CertError> {
    path.try_exists()
        .map_err(|e| CertError::io("checking", path, e))
}

/// Replaces `path` with `contents` so that readers see either the old or the
/// new file, never a partial one (see [`caracal_config::fs::write_atomic_io`]).
/// A `Private` file is created with mode 0600 from the start, so the secret is
/// never readable by others, even briefly.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], access: Access) -> Result<(), CertError> {
    let mode = match access {
        Access::Private => 0o600,
        Access::Public => 0o644,
    };
    caracal_config::fs::write_atomic_io(path, contents, mode)
        .map_err(|e| CertError::io("writing", path, e))
}

/// Warns when a private key file is readable by group or others.
pub(crate) fn warn_if_exposed(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format_args!("{:o}", mode & 0o777),
                    "private key file is accessible to other users; chmod 600 it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replaces_and_creates_parents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/file.pem");
        write_atomic(&path, b"one", Access::Public).unwrap();
        write_atomic(&path, b"two", Access::Public).unwrap();
        assert_eq!(read_text(&path).unwrap(), "two");
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("file.pem")]);
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        write_atomic(&path, b"secret", Access::Private).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn read_missing_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.pem");
        let err = read_text(&path).unwrap_err();
        assert!(err.to_string().contains("nope.pem"), "{err}");
        assert!(!exists(&path).unwrap());
    }
}
