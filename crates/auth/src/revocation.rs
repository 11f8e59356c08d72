//! Revoked tokens: by token id (`jti`) or by subject, read from a file the
//! operator edits (the notify service reloads it while running).
//!
//! The file, one entry per line (`#` starts a comment):
//!
//! ```text
//! jti 6f1c0d1e2a7b4c59a0e3d2b1c4f5a6b7    # one token (`dolbom token mint` prints its id)
//! sub jongno-system                       # every token of a subject
//! sub busan-jung-system 1764547200        # its tokens issued before (unix seconds)
//! ```

use crate::{AuthError, TokenInfo};
use std::collections::{HashMap, HashSet};

/// What is revoked. See the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revocations {
    ids: HashSet<String>,
    /// Subject → tokens issued before this (unix seconds) are revoked.
    subjects: HashMap<String, u64>,
}

impl Revocations {
    /// Parses the file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, AuthError> {
        let mut r = Revocations::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let bad = |reason: &str| AuthError::KeyFile {
                path: origin.to_string(),
                reason: format!("line {}: {reason}", n + 1),
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["jti", id] => {
                    r.ids.insert((*id).to_string());
                }
                ["sub", subject] => {
                    r.subjects.insert((*subject).to_string(), u64::MAX);
                }
                ["sub", subject, before] => {
                    let before: u64 = before
                        .parse()
                        .map_err(|_| bad("the time must be unix seconds"))?;
                    let e = r.subjects.entry((*subject).to_string()).or_insert(0);
                    *e = (*e).max(before);
                }
                _ => {
                    return Err(bad(
                        "expected `jti <id>`, `sub <subject>` or `sub <subject> <unix seconds>`",
                    ))
                }
            }
        }
        Ok(r)
    }

    /// Reads and parses a revocation file.
    pub fn load(path: &std::path::Path) -> Result<Self, AuthError> {
        Self::parse(&crate::read_file(path)?, &path.display().to_string())
    }

    /// Whether `t` is revoked.
    pub fn revokes(&self, t: &TokenInfo) -> bool {
        (!t.id.is_empty() && self.ids.contains(&t.id))
            || self
                .subjects
                .get(&t.subject)
                .is_some_and(|&before| before == u64::MAX || t.issued_at < before)
    }

    /// Entries (token ids and subjects).
    pub fn len(&self) -> usize {
        self.ids.len() + self.subjects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: &str, subject: &str, issued_at: u64) -> TokenInfo {
        TokenInfo {
            id: id.into(),
            subject: subject.into(),
            issued_at,
            expires_at: issued_at + 3600,
        }
    }

    #[test]
    fn revokes_by_id_by_subject_and_by_subject_before_a_time() {
        let r = Revocations::parse(
            "# revoked\njti abc\n\nsub lost-laptop\nsub rotated 1000 # keys rotated\n",
            "t",
        )
        .unwrap();
        assert_eq!(r.len(), 3);
        assert!(r.revokes(&token("abc", "x", 5)));
        assert!(!r.revokes(&token("abd", "x", 5)));
        assert!(r.revokes(&token("", "lost-laptop", 5_000_000)));
        assert!(r.revokes(&token("z", "rotated", 999)));
        assert!(!r.revokes(&token("z", "rotated", 1000)));
        // A token without an id is never matched by an empty id entry.
        assert!(!r.revokes(&token("", "x", 5)));
    }

    #[test]
    fn a_malformed_line_names_the_file_and_line() {
        let e = Revocations::parse("jti a\nrevoke everything\n", "revoked.txt").unwrap_err();
        assert!(
            e.to_string().contains("revoked.txt") && e.to_string().contains("line 2"),
            "{e}"
        );
        assert!(Revocations::parse("sub a yesterday", "f").is_err());
    }
}
