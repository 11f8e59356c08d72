//! Secrets in options: a [`Secret`] value never shows in `Debug` output or
//! logs, and [`read_secret_file`] reads a key or password file only when
//! its permissions keep it private.
//!
//! Permissions: a secret file must not be writable or executable by anyone
//! but its owner, nor readable by others. 0600 and 0400 pass; so do 0640 and
//! 0440, because Kubernetes hands a Secret volume to a non-root pod through
//! its `fsGroup` (group read). 0644, 0660 or 0666 are refused.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A secret string from the options (an API key, a webhook secret, a
/// password). `Debug` prints `<redacted>`; only [`Secret::expose`] gives the
/// value, at the one place that sends it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value, for the request that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("<redacted>")
        }
    }
}

/// A secret file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: mode {mode:04o} is too open for a secret (use 0600, or 0640 for a pod's fsGroup)"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path}: empty")]
    Empty { path: PathBuf },
}

/// Bits a secret file must not have: group write/execute and anything for
/// others, and the owner's execute bit.
#[cfg(unix)]
const FORBIDDEN: u32 = 0o137;

/// Refuses a secret file whose permissions are wider than the rule above.
/// Symbolic links are followed (Kubernetes mounts Secrets through them).
pub fn check_private(path: &Path) -> Result<(), SecretFileError> {
    let meta = std::fs::metadata(path).map_err(|source| SecretFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & FORBIDDEN != 0 {
            return Err(SecretFileError::TooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Ok(())
}

/// Reads a private secret file as bytes.
pub fn read_secret_bytes(path: &Path) -> Result<Vec<u8>, SecretFileError> {
    check_private(path)?;
    let bytes = std::fs::read(path).map_err(|source| SecretFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.is_empty() {
        return Err(SecretFileError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// Reads a private secret file as text, without its trailing newline.
pub fn read_secret_file(path: &Path) -> Result<Secret, SecretFileError> {
    let bytes = read_secret_bytes(path)?;
    let text = String::from_utf8(bytes).map_err(|_| SecretFileError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"),
    })?;
    let value = text.trim_end_matches(['\r', '\n']);
    if value.is_empty() {
        return Err(SecretFileError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::from("hunter2-hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
        assert_eq!(s.expose(), "hunter2-hunter2");
        // Serialized as the plain string, so options layer as before.
        #[derive(Serialize, Deserialize, Debug)]
        struct O {
            api_key: Secret,
        }
        let o: O = toml::from_str("api_key = \"abc\"").unwrap();
        assert_eq!(o.api_key.expose(), "abc");
        assert!(!format!("{o:?}").contains("abc"));
    }

    #[cfg(unix)]
    #[test]
    fn secret_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("key");
        std::fs::write(&f, "s3cret\n").unwrap();
        for (mode, ok) in [
            (0o600, true),
            (0o400, true),
            (0o640, true),
            (0o440, true),
            (0o644, false),
            (0o660, false),
            (0o666, false),
            (0o700, false),
            (0o604, false),
        ] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            let r = read_secret_file(&f);
            assert_eq!(r.is_ok(), ok, "mode {mode:o}: {r:?}");
            if ok {
                assert_eq!(r.unwrap().expose(), "s3cret");
            } else {
                assert!(r.unwrap_err().to_string().contains("too open"));
            }
        }
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&f, "\n").unwrap();
        assert!(matches!(
            read_secret_file(&f),
            Err(SecretFileError::Empty { .. })
        ));
        assert!(matches!(
            read_secret_file(&dir.path().join("missing")),
            Err(SecretFileError::Io { .. })
        ));
    }
}
