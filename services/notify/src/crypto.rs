//! Encryption at rest of personal data (contacts, outcome notes).
//!
//! ChaCha20-Poly1305 (`ring`), a random 96-bit nonce per value, the household
//! or incident id as associated data (a ciphertext moved to another row does
//! not decrypt). Stored as `key_id | nonce | ciphertext+tag`, so keys rotate:
//! new writes use the current key, old rows still decrypt with retired keys.

use crate::error::NotifyError;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use std::path::Path;

pub struct Cipher {
    /// (key id, key); the first encrypts.
    keys: Vec<(u8, LessSafeKey)>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cipher")
            .field(
                "key_ids",
                &self.keys.iter().map(|k| k.0).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn key(bytes: &[u8]) -> Result<LessSafeKey, NotifyError> {
    let k = UnboundKey::new(&CHACHA20_POLY1305, bytes)
        .map_err(|_| NotifyError::Config("contact key must be 32 bytes".into()))?;
    Ok(LessSafeKey::new(k))
}

impl Cipher {
    /// Keys as `id:base64(32 bytes)` lines; the first line encrypts.
    pub fn from_text(text: &str) -> Result<Self, NotifyError> {
        let mut keys = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (id, b64) = line.split_once(':').ok_or_else(|| {
                NotifyError::Config("contact key line: expected id:base64".into())
            })?;
            let id: u8 = id
                .parse()
                .map_err(|_| NotifyError::Config("contact key id must be 0-255".into()))?;
            let raw = B64
                .decode(b64)
                .map_err(|e| NotifyError::Config(format!("contact key base64: {e}")))?;
            keys.push((id, key(&raw)?));
        }
        if keys.is_empty() {
            return Err(NotifyError::Config("contact key file has no key".into()));
        }
        Ok(Cipher {
            keys,
            rng: SystemRandom::new(),
        })
    }

    /// Reads the key file, creating it (mode 0600, one random key) when
    /// `create` and it does not exist.
    pub fn from_file(path: &Path, create: bool) -> Result<Self, NotifyError> {
        if !path.exists() && create {
            let mut raw = [0u8; 32];
            SystemRandom::new()
                .fill(&mut raw)
                .map_err(|_| NotifyError::Config("no randomness".into()))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let text = format!("1:{}\n", B64.encode(raw));
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            std::io::Write::write_all(&mut opts.open(path)?, text.as_bytes())?;
            tracing::warn!(path = %path.display(), "created a new contact encryption key; back it up");
        }
        // Refused if others can read it (see dolbom_options::secret).
        let text = dolbom_options::read_secret_file(path)
            .map_err(|e| NotifyError::Config(format!("contact key file: {e}")))?;
        Self::from_text(text.expose())
    }

    pub fn encrypt(&self, aad: &str, plain: &[u8]) -> Result<Vec<u8>, NotifyError> {
        let (id, k) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| NotifyError::Crypto("no randomness".into()))?;
        let mut buf = plain.to_vec();
        k.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad.as_bytes()),
            &mut buf,
        )
        .map_err(|_| NotifyError::Crypto("seal".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(*id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    pub fn decrypt(&self, aad: &str, sealed: &[u8]) -> Result<Vec<u8>, NotifyError> {
        if sealed.len() < 1 + NONCE_LEN {
            return Err(NotifyError::Crypto("ciphertext too short".into()));
        }
        let k = self
            .keys
            .iter()
            .find(|(id, _)| *id == sealed[0])
            .map(|(_, k)| k)
            .ok_or_else(|| NotifyError::Crypto(format!("unknown key id {}", sealed[0])))?;
        let nonce: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN].try_into().expect("length");
        let mut buf = sealed[1 + NONCE_LEN..].to_vec();
        let plain = k
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut buf,
            )
            .map_err(|_| NotifyError::Crypto("authentication failed".into()))?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_binds_to_the_row_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("contact.key");
        let c = Cipher::from_file(&path, true).unwrap();
        let sealed = c
            .encrypt("hh-1", "홍길동 010-1234-5678".as_bytes())
            .unwrap();
        assert!(!sealed.windows(3).any(|w| w == "010".as_bytes()));
        assert_eq!(
            c.decrypt("hh-1", &sealed).unwrap(),
            "홍길동 010-1234-5678".as_bytes()
        );
        assert!(c.decrypt("hh-2", &sealed).is_err());
        // A second key in front: new writes use key 2, old rows still open.
        let old = std::fs::read_to_string(&path).unwrap();
        let rotated = Cipher::from_text(&format!("2:{}\n{old}", B64.encode([7u8; 32]))).unwrap();
        assert_eq!(
            rotated.decrypt("hh-1", &sealed).unwrap().len(),
            sealed.len() - 29
        );
        assert_eq!(rotated.encrypt("x", b"y").unwrap()[0], 2);
        assert!(Cipher::from_text("1:AAAA").is_err());
    }
}
