//! Signed checkpoints: the tree's size and root, signed with the
//! workspace's ledger key (Ed25519, separate from the mandate keys), in the
//! C2SP `tlog-checkpoint` signed-note text format
//! (<https://c2sp.org/tlog-checkpoint>, <https://c2sp.org/signed-note>):
//!
//! ```text
//! caracal.ledger/0193c1d2-…           origin: the log's identity (the key's name)
//! 1000                                tree size
//! nND/nri//U0xuHUrYSy0HtMeal2vzD9V4k/BO79C+QeI=   root hash, base64
//! time 2026-11-30T17:00:00Z           extension line: when it was sealed
//!
//! — caracal.ledger/0193c1d2-… <base64 of key id ‖ Ed25519 signature>
//! ```
//!
//! The time is an extension line, so it is signed with the tree head;
//! verifiers that do not know it ignore it, as the format requires. The
//! public key is a signed-note verifier key (`name+id+base64`), what
//! `caracal merkle public-key` prints and witnesses are configured with.

use std::path::Path;

use base64::Engine as _;
use jiff::Timestamp;
use signed_note::{Note, Signer as _, StandardSigner, StandardVerifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash};

use super::MerkleError;

/// The prefix of the origin (and key name) of every workspace's log.
pub const ORIGIN_PREFIX: &str = "caracal.ledger/";

/// A workspace's ledger signing key.
#[derive(Clone)]
pub struct LedgerKey {
    signer: StandardSigner,
    public: String,
}

impl std::fmt::Debug for LedgerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl LedgerKey {
    /// A new key for a new log: the signed-note private key text (keep it
    /// secret; [`LedgerKey::parse`] reads it back).
    pub fn generate() -> String {
        let origin = format!("{ORIGIN_PREFIX}{}", uuid::Uuid::now_v7());
        signed_note::generate_key(&mut rand::rngs::OsRng, &origin).0
    }

    /// Reads a private key as [`LedgerKey::generate`] writes it.
    pub fn parse(text: &str) -> Result<Self, MerkleError> {
        let text = text.trim();
        let signer = StandardSigner::new(text)
            .map_err(|e| MerkleError::Key(format!("not a ledger signing key: {e}")))?;
        // PRIVATE+KEY+<name>+<id>+<base64(0x01 ‖ seed)>: the verifier key
        // is derived from the seed.
        // The name has no '+'; base64 may.
        let seed = text
            .splitn(5, '+')
            .nth(4)
            .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
            .and_then(|k| <[u8; 32]>::try_from(k.get(1..)?).ok())
            .ok_or_else(|| MerkleError::Key("not an Ed25519 ledger signing key".into()))?;
        let verifying = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        let public = signed_note::new_ed25519_verifier_key(signer.name(), &verifying);
        Ok(Self { signer, public })
    }

    /// Reads the key file at `path`.
    pub fn load(path: &Path) -> Result<Self, MerkleError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            MerkleError::Key(format!(
                "cannot read the ledger signing key {}: {e}",
                path.display()
            ))
        })?;
        Self::parse(&text)
    }

    /// Reads the key file at `path`, creating it (mode 0600) with a new key
    /// when there is none. Never replaces an existing file.
    pub fn load_or_create(path: &Path) -> Result<Self, MerkleError> {
        if !path.exists() {
            let text = Self::generate();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    MerkleError::Key(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(path) {
                Ok(mut f) => {
                    use std::io::Write as _;
                    f.write_all(format!("{text}\n").as_bytes())
                        .and_then(|()| f.sync_all())
                        .map_err(|e| {
                            MerkleError::Key(format!("cannot write {}: {e}", path.display()))
                        })?;
                }
                // Another process made it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(MerkleError::Key(format!(
                        "cannot create {}: {e}",
                        path.display()
                    )))
                }
            }
        }
        Self::load(path)
    }

    /// The log's origin: the key's name.
    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// The signed-note verifier key (`name+id+base64`).
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// The signed checkpoint of a tree of `size` leaves with `root`,
    /// sealed at `time`.
    pub fn sign(&self, size: u64, root: Hash, time: Timestamp) -> Result<String, MerkleError> {
        let extension = format!("time {}\n", time.round(jiff::Unit::Second).unwrap_or(time));
        let body = Checkpoint::new(self.origin(), size, root, &extension)
            .map_err(|_| MerkleError::Key("the key's name is not a valid log origin".into()))?;
        let mut note = Note::new(&body.to_bytes(), &[])
            .map_err(|e| MerkleError::Key(format!("cannot make a checkpoint note: {e}")))?;
        note.add_sigs(&[&self.signer])
            .map_err(|e| MerkleError::Key(format!("cannot sign a checkpoint: {e}")))?;
        String::from_utf8(note.to_bytes())
            .map_err(|_| MerkleError::Key("a checkpoint note is not UTF-8".into()))
    }
}

impl LedgerKey {
    /// `text` (lines ending in a newline) as a note signed with the ledger
    /// key: how records other than checkpoints (ledger snapshots) are
    /// bound to the key.
    pub fn sign_text(&self, text: &str) -> Result<String, MerkleError> {
        let mut note = Note::new(text.as_bytes(), &[])
            .map_err(|e| MerkleError::Key(format!("cannot make a signed note: {e}")))?;
        note.add_sigs(&[&self.signer])
            .map_err(|e| MerkleError::Key(format!("cannot sign a note: {e}")))?;
        String::from_utf8(note.to_bytes())
            .map_err(|_| MerkleError::Key("a signed note is not UTF-8".into()))
    }
}

/// Checks a note signed by [`LedgerKey::sign_text`] against the verifier
/// key `public_key`; answers its text.
pub fn verify_text(note: &str, public_key: &str) -> Result<String, CheckpointError> {
    let verifier = StandardVerifier::new(public_key.trim())
        .map_err(|e| CheckpointError::BadPublicKey(e.to_string()))?;
    let note =
        Note::from_bytes(note.as_bytes()).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    note.verify(&VerifierList::new(vec![Box::new(verifier)]))
        .map_err(|e| CheckpointError::BadSignature(e.to_string()))?;
    String::from_utf8(note.text().to_vec()).map_err(|_| CheckpointError::BadBody)
}

/// A checkpoint whose signature verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// The `time` extension line, when there is one.
    pub time: Option<Timestamp>,
}

/// Why a checkpoint does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("the public key is not a signed-note Ed25519 verifier key ({0})")]
    BadPublicKey(String),
    #[error("the checkpoint is not a signed note ({0})")]
    Malformed(String),
    #[error("the checkpoint's signature does not verify with the public key ({0})")]
    BadSignature(String),
    #[error("the checkpoint's text is not a tlog-checkpoint")]
    BadBody,
    #[error("the checkpoint is for log {found:?}, the key for {expected:?}")]
    WrongOrigin { expected: String, found: String },
}

/// Checks `note` against the verifier key `public_key` and reads it.
pub fn verify(note: &str, public_key: &str) -> Result<Verified, CheckpointError> {
    let name = signed_note::Verifier::name(
        &StandardVerifier::new(public_key.trim())
            .map_err(|e| CheckpointError::BadPublicKey(e.to_string()))?,
    )
    .to_string();
    let text = verify_text(note, public_key)?;
    let body = Checkpoint::from_bytes(text.as_bytes()).map_err(|_| CheckpointError::BadBody)?;
    if body.origin() != name {
        return Err(CheckpointError::WrongOrigin {
            expected: name,
            found: body.origin().to_string(),
        });
    }
    let time = body
        .extension()
        .lines()
        .find_map(|l| l.strip_prefix("time "))
        .and_then(|t| t.parse::<Timestamp>().ok());
    Ok(Verified {
        origin: body.origin().to_string(),
        size: body.size(),
        root: *body.hash(),
        time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> Hash {
        tlog_tiles::record_hash(b"x")
    }

    #[test]
    fn a_signed_checkpoint_verifies_and_reads_back() {
        let key = LedgerKey::parse(&LedgerKey::generate()).unwrap();
        let at: Timestamp = "2026-11-30T17:00:00.7Z".parse().unwrap();
        let note = key.sign(1000, root(), at).unwrap();
        let lines: Vec<&str> = note.lines().collect();
        assert_eq!(lines[0], key.origin());
        assert_eq!(lines[1], "1000");
        assert_eq!(lines[3], "time 2026-11-30T17:00:01Z");
        assert_eq!(lines[4], "");
        assert!(
            lines[5].starts_with(&format!("— {} ", key.origin())),
            "{note}"
        );
        let v = verify(&note, key.public_key()).unwrap();
        assert_eq!((v.size, v.root), (1000, root()));
        assert_eq!(v.time, Some("2026-11-30T17:00:01Z".parse().unwrap()));
    }

    #[test]
    fn tampered_checkpoints_and_wrong_keys_are_refused() {
        let key = LedgerKey::parse(&LedgerKey::generate()).unwrap();
        let other = LedgerKey::parse(&LedgerKey::generate()).unwrap();
        let note = key.sign(5, root(), Timestamp::UNIX_EPOCH).unwrap();
        // Another size, same signature.
        let forged = note.replacen("\n5\n", "\n6\n", 1);
        assert!(matches!(
            verify(&forged, key.public_key()),
            Err(CheckpointError::BadSignature(_))
        ));
        // Another key's signature.
        assert!(matches!(
            verify(&note, other.public_key()),
            Err(CheckpointError::BadSignature(_))
        ));
        // A signature line replaced by the other key's over the same text.
        let theirs = other.sign(5, root(), Timestamp::UNIX_EPOCH).unwrap();
        let sig = theirs.lines().last().unwrap();
        let swapped = format!("{}\n{sig}\n", note.rsplit_once("\n—").unwrap().0);
        assert!(verify(&swapped, key.public_key()).is_err());
        assert!(matches!(
            verify(&note, "not a key"),
            Err(CheckpointError::BadPublicKey(_))
        ));
        assert!(verify("", key.public_key()).is_err());
        assert!(verify("\u{0}\n\n— x", key.public_key()).is_err());
    }

    #[test]
    fn keys_round_trip_and_garbage_is_refused() {
        let text = LedgerKey::generate();
        let a = LedgerKey::parse(&text).unwrap();
        let b = LedgerKey::parse(&format!("  {text}\n")).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        assert!(a.origin().starts_with(ORIGIN_PREFIX));
        for bad in [
            "",
            "PRIVATE+KEY+x+00000000+AAAA",
            "hello",
            &text[..text.len() - 4],
        ] {
            assert!(LedgerKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_key_file_is_created_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/ledger.key");
        let a = LedgerKey::load_or_create(&path).unwrap();
        let b = LedgerKey::load_or_create(&path).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "junk").unwrap();
        assert!(LedgerKey::load_or_create(&path).is_err());
    }
}
