//! Who is calling, and which municipality they may see.
//!
//! Owns the bearer tokens of the municipality API and the scope check every
//! gRPC call makes.
//!
//! - **Tokens** are JWTs signed with Ed25519 (`alg: EdDSA`, `jsonwebtoken` on
//!   `ring`). The national operator holds the signing key and mints tokens
//!   (`dolbom token`); the notify service holds only public keys, so a
//!   compromised API server cannot mint. The header's `kid` picks the key, so
//!   keys rotate by adding a new public key before the old one is retired.
//!   Claims: `iss = "dolbom"`, `aud = "dolbom.v1"`, `sub` (the caller: a
//!   system or person id, never a name), `role` (`municipality` or
//!   `national`), `muni` (the 5-digit 시군구 code, required for the
//!   municipality role), `pii` (may read personal contact data), `iat`, `exp`,
//!   `jti` (the token's id, for revocation).
//! - **Lifetime**: `exp - iat` is capped when a token is minted and again
//!   when it is verified ([`DEFAULT_MAX_LIFETIME_S`] unless configured), and
//!   a token issued in the future is refused.
//! - **Revocation** ([`Revocations`]): by token id or by subject (all its
//!   tokens, or those issued before a time), from a file the service
//!   reloads. A long call (a watch stream) re-checks its token with
//!   [`Verifier::still_valid`] and ends when it expires or is revoked.
//! - **[`Principal`]** is what a verified token says. [`Principal::may_access`]
//!   is the one tenant check: a municipality principal sees only its own
//!   municipality; the national role sees all.
//!
//! Data flow: `dolbom token` → [`SigningKey::mint`] → the caller sends
//! `authorization: Bearer <token>` → the notify service's interceptor calls
//! [`Verifier::verify_header`] → handlers check [`Principal::may_access`]
//! against the resource's municipality.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::KeyPair;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

mod revocation;
pub use revocation::Revocations;

/// The longest token lifetime (`exp - iat`) minted and accepted unless
/// configured otherwise: 90 days.
pub const DEFAULT_MAX_LIFETIME_S: u64 = 90 * 86_400;

pub const ISSUER: &str = "dolbom";
pub const AUDIENCE: &str = "dolbom.v1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("malformed authorization: {0}")]
    Malformed(String),
    #[error("token rejected: {0}")]
    Invalid(String),
    #[error("token signed with unknown key id {0:?}")]
    UnknownKey(String),
    #[error("invalid principal: {0}")]
    Principal(String),
    #[error("key: {0}")]
    Key(String),
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("token revoked")]
    Revoked,
    #[error("token expired")]
    Expired,
    #[error("token lifetime of {got_s} s exceeds the maximum of {max_s} s")]
    Lifetime { got_s: u64, max_s: u64 },
}

/// The token behind a verified call, for re-checking a long one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// `jti` (empty for tokens minted before ids existed).
    pub id: String,
    pub subject: String,
    pub issued_at: u64,
    pub expires_at: u64,
}

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A 시군구 (or one of its 읍면동 offices): its own municipality only.
    Municipality,
    /// A national platform operator: every municipality.
    National,
}

/// A verified caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The token subject: a system or staff id, never a name.
    pub subject: String,
    pub role: Role,
    /// The caller's municipality (municipality role only).
    pub municipality: Option<String>,
    /// May read personal contact data (every read is audited).
    pub personal_data: bool,
}

fn valid_municipality(code: &str) -> bool {
    code.len() == 5 && code.bytes().all(|b| b.is_ascii_digit())
}

impl Principal {
    pub fn national(subject: &str) -> Self {
        Principal {
            subject: subject.into(),
            role: Role::National,
            municipality: None,
            personal_data: true,
        }
    }

    pub fn municipality(subject: &str, code: &str, personal_data: bool) -> Self {
        Principal {
            subject: subject.into(),
            role: Role::Municipality,
            municipality: Some(code.into()),
            personal_data,
        }
    }

    pub fn validate(&self) -> Result<(), AuthError> {
        if self.subject.is_empty() || self.subject.len() > 128 {
            return Err(AuthError::Principal("sub must be 1-128 characters".into()));
        }
        match (self.role, &self.municipality) {
            (Role::Municipality, Some(m)) if valid_municipality(m) => Ok(()),
            (Role::Municipality, _) => Err(AuthError::Principal(
                "the municipality role needs a 5-digit muni".into(),
            )),
            (Role::National, None) => Ok(()),
            (Role::National, Some(_)) => {
                Err(AuthError::Principal("the national role has no muni".into()))
            }
        }
    }

    /// The one tenant check: may this caller see `municipality`'s data?
    pub fn may_access(&self, municipality: &str) -> bool {
        match self.role {
            Role::National => true,
            Role::Municipality => self.municipality.as_deref() == Some(municipality),
        }
    }

    /// The municipality a listing addresses: a municipality caller may leave
    /// it empty (its own); the national role must name one. `None` when the
    /// caller may not see the one named.
    pub fn listing_scope(&self, requested: &str) -> Result<Option<String>, AuthError> {
        match (self.role, requested.is_empty()) {
            (Role::Municipality, true) => Ok(self.municipality.clone()),
            (Role::National, true) => Err(AuthError::Principal(
                "the national role must name a municipality_code".into(),
            )),
            (_, false) => Ok(self.may_access(requested).then(|| requested.to_string())),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    muni: Option<String>,
    #[serde(default)]
    pii: bool,
    iat: u64,
    exp: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    jti: String,
}

/// A random 128-bit token id, hex.
fn token_id() -> Result<String, AuthError> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| AuthError::Key("no randomness for a token id".into()))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The national operator's signing key (Ed25519, PKCS#8).
pub struct SigningKey {
    kid: String,
    pkcs8: Vec<u8>,
    key: EncodingKey,
    public: [u8; 32],
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn check_kid(kid: &str) -> Result<(), AuthError> {
    if kid.is_empty()
        || kid.len() > 64
        || !kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(AuthError::Key(
            "key id must be 1-64 characters of [A-Za-z0-9._-]".into(),
        ));
    }
    Ok(())
}

impl SigningKey {
    /// A fresh random key.
    pub fn generate(kid: &str) -> Result<Self, AuthError> {
        let rng = ring::rand::SystemRandom::new();
        let doc = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|e| AuthError::Key(e.to_string()))?;
        Self::from_pkcs8(kid, doc.as_ref())
    }

    pub fn from_pkcs8(kid: &str, pkcs8: &[u8]) -> Result<Self, AuthError> {
        check_kid(kid)?;
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|e| AuthError::Key(format!("not an Ed25519 PKCS#8 key: {e}")))?;
        let public: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| AuthError::Key("public key length".into()))?;
        Ok(SigningKey {
            kid: kid.into(),
            pkcs8: pkcs8.to_vec(),
            key: EncodingKey::from_ed_der(pkcs8),
            public,
        })
    }

    /// `kid:base64(pkcs8)`, the key file format.
    pub fn to_text(&self) -> String {
        format!("{}:{}", self.kid, B64.encode(&self.pkcs8))
    }

    pub fn from_text(text: &str) -> Result<Self, AuthError> {
        let (kid, b64) = text
            .trim()
            .split_once(':')
            .ok_or_else(|| AuthError::Key("expected kid:base64".into()))?;
        let der = B64
            .decode(b64)
            .map_err(|e| AuthError::Key(format!("base64: {e}")))?;
        Self::from_pkcs8(kid, &der)
    }

    /// Writes a fresh key to `path` (readable by its owner only); an
    /// existing file is never overwritten.
    pub fn create_file(kid: &str, path: &std::path::Path) -> Result<Self, AuthError> {
        let key = Self::generate(kid)?;
        let file_error = |e: std::io::Error| AuthError::KeyFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        std::io::Write::write_all(
            &mut o.open(path).map_err(file_error)?,
            format!("{}\n", key.to_text()).as_bytes(),
        )
        .map_err(file_error)?;
        Ok(key)
    }

    /// Reads a key file written by [`SigningKey::create_file`].
    /// Reads a key file from [`SigningKey::create_file`]; refused if others
    /// can read it (see `dolbom_options::secret`).
    pub fn from_file(path: &std::path::Path) -> Result<Self, AuthError> {
        dolbom_options::check_private(path).map_err(|e| AuthError::KeyFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_text(&read_file(path)?)
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            kid: self.kid.clone(),
            public: self.public,
        }
    }

    /// A token for `principal`, valid from `now_s` for `ttl_s` seconds (at
    /// most [`DEFAULT_MAX_LIFETIME_S`]).
    pub fn mint(&self, principal: &Principal, now_s: u64, ttl_s: u64) -> Result<String, AuthError> {
        self.mint_with_id(principal, now_s, ttl_s, DEFAULT_MAX_LIFETIME_S)
            .map(|(t, _)| t)
    }

    /// [`mint`](Self::mint) with the lifetime cap `max_s`; returns the token
    /// and its id (for revoking it).
    pub fn mint_with_id(
        &self,
        principal: &Principal,
        now_s: u64,
        ttl_s: u64,
        max_s: u64,
    ) -> Result<(String, String), AuthError> {
        principal.validate()?;
        if ttl_s == 0 || ttl_s > max_s {
            return Err(AuthError::Lifetime {
                got_s: ttl_s,
                max_s,
            });
        }
        let jti = token_id()?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: principal.subject.clone(),
            role: principal.role,
            muni: principal.municipality.clone(),
            pii: principal.personal_data,
            iat: now_s,
            exp: now_s + ttl_s,
            jti: jti.clone(),
        };
        let token = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| AuthError::Key(e.to_string()))?;
        Ok((token, jti))
    }
}

/// A public key the API accepts tokens from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyingKey {
    pub kid: String,
    pub public: [u8; 32],
}

impl VerifyingKey {
    /// `kid:base64(raw 32-byte public key)`.
    pub fn to_text(&self) -> String {
        format!("{}:{}", self.kid, B64.encode(self.public))
    }

    pub fn from_text(text: &str) -> Result<Self, AuthError> {
        let (kid, b64) = text
            .trim()
            .split_once(':')
            .ok_or_else(|| AuthError::Key("expected kid:base64".into()))?;
        check_kid(kid)?;
        let raw = B64
            .decode(b64)
            .map_err(|e| AuthError::Key(format!("base64: {e}")))?;
        let public: [u8; 32] = raw
            .try_into()
            .map_err(|_| AuthError::Key("an Ed25519 public key is 32 bytes".into()))?;
        Ok(VerifyingKey {
            kid: kid.into(),
            public,
        })
    }
}

/// Checks bearer tokens against the configured public keys.
#[derive(Clone)]
pub struct Verifier {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
    max_lifetime_s: u64,
    revoked: Arc<RwLock<Revocations>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Verifier {
    pub fn new(keys: &[VerifyingKey]) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        Verifier {
            keys: keys
                .iter()
                .map(|k| (k.kid.clone(), DecodingKey::from_ed_der(&k.public)))
                .collect(),
            validation,
            max_lifetime_s: DEFAULT_MAX_LIFETIME_S,
            revoked: Arc::default(),
        }
    }

    /// Accepts tokens living at most `max_s` seconds (`exp - iat`).
    pub fn with_max_lifetime(mut self, max_s: u64) -> Self {
        self.max_lifetime_s = max_s;
        self
    }

    /// Replaces the revocation list (clones of this verifier share it).
    pub fn set_revocations(&self, r: Revocations) {
        *self.revoked.write().unwrap_or_else(|p| p.into_inner()) = r;
    }

    fn is_revoked(&self, t: &TokenInfo) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .revokes(t)
    }

    /// Whether a token verified earlier still holds at `now_s`: not
    /// expired, not revoked since.
    pub fn still_valid(&self, t: &TokenInfo, now_s: u64) -> Result<(), AuthError> {
        if now_s > t.expires_at {
            return Err(AuthError::Expired);
        }
        if self.is_revoked(t) {
            return Err(AuthError::Revoked);
        }
        Ok(())
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_token(token).map(|(p, _)| p)
    }

    /// Verifies a token; returns the caller and the token's own facts.
    pub fn verify_token(&self, token: &str) -> Result<(Principal, TokenInfo), AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::Invalid(format!("algorithm {:?}", header.alg)));
        }
        let kid = header.kid.unwrap_or_default();
        let key = self
            .keys
            .get(&kid)
            .ok_or_else(|| AuthError::UnknownKey(kid.clone()))?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let c = data.claims;
        let lifetime = c.exp.saturating_sub(c.iat);
        if lifetime > self.max_lifetime_s {
            return Err(AuthError::Lifetime {
                got_s: lifetime,
                max_s: self.max_lifetime_s,
            });
        }
        if c.iat > unix_now() + self.validation.leeway {
            return Err(AuthError::Invalid("issued in the future".into()));
        }
        let info = TokenInfo {
            id: c.jti,
            subject: c.sub.clone(),
            issued_at: c.iat,
            expires_at: c.exp,
        };
        if self.is_revoked(&info) {
            return Err(AuthError::Revoked);
        }
        let p = Principal {
            subject: c.sub,
            role: c.role,
            municipality: c.muni,
            personal_data: c.pii,
        };
        p.validate()?;
        Ok((p, info))
    }

    /// Verifies the value of an `authorization` header (`Bearer <token>`).
    pub fn verify_header(&self, value: Option<&str>) -> Result<Principal, AuthError> {
        self.verify_header_token(value).map(|(p, _)| p)
    }

    /// [`verify_header`](Self::verify_header) with the token's facts.
    pub fn verify_header_token(
        &self,
        value: Option<&str>,
    ) -> Result<(Principal, TokenInfo), AuthError> {
        let v = value.ok_or(AuthError::Missing)?;
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .ok_or_else(|| AuthError::Malformed("expected `Bearer <token>`".into()))?;
        self.verify_token(token.trim())
    }
}

/// A key or revocation file's text; an error names the file.
fn read_file(path: &std::path::Path) -> Result<String, AuthError> {
    std::fs::read_to_string(path).map_err(|e| AuthError::KeyFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Seconds since the Unix epoch (for minting).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (SigningKey, Verifier) {
        let k = SigningKey::generate("k1").unwrap();
        let v = Verifier::new(&[k.verifying_key()]);
        (k, v)
    }

    #[test]
    fn tokens_round_trip_with_their_scope() {
        let (k, v) = setup();
        let p = Principal::municipality("seoul-jongno-system", "11110", false);
        let t = k.mint(&p, unix_now(), 3600).unwrap();
        let got = v.verify_header(Some(&format!("Bearer {t}"))).unwrap();
        assert_eq!(got, p);
        assert!(got.may_access("11110"));
        assert!(!got.may_access("11140"));
        assert_eq!(got.listing_scope("").unwrap().as_deref(), Some("11110"));
        assert_eq!(got.listing_scope("11140").unwrap(), None);
        let n = v
            .verify(
                &k.mint(&Principal::national("ops-1"), unix_now(), 60)
                    .unwrap(),
            )
            .unwrap();
        assert!(n.may_access("11140") && n.personal_data);
        assert!(n.listing_scope("").is_err());
    }

    #[test]
    fn forged_expired_and_foreign_tokens_are_rejected() {
        let (k, v) = setup();
        let p = Principal::municipality("a", "11110", false);
        // Expired an hour ago (beyond the 30 s leeway).
        let old = k.mint(&p, unix_now() - 7200, 3600).unwrap();
        assert!(matches!(v.verify(&old), Err(AuthError::Invalid(_))));
        // Signed by a key this verifier does not know under the same kid.
        let other = SigningKey::generate("k1").unwrap();
        let forged = other.mint(&p, unix_now(), 3600).unwrap();
        assert!(matches!(v.verify(&forged), Err(AuthError::Invalid(_))));
        // Unknown kid.
        let k2 = SigningKey::generate("k2").unwrap();
        let t = k2.mint(&p, unix_now(), 3600).unwrap();
        assert_eq!(v.verify(&t), Err(AuthError::UnknownKey("k2".into())));
        // Tampered claims: swap the payload of a municipality token.
        let good = k.mint(&p, unix_now(), 3600).unwrap();
        let nat = k.mint(&Principal::national("x"), unix_now(), 3600).unwrap();
        let parts: Vec<&str> = good.split('.').collect();
        let nat_parts: Vec<&str> = nat.split('.').collect();
        let spliced = format!("{}.{}.{}", parts[0], nat_parts[1], parts[2]);
        assert!(v.verify(&spliced).is_err());
        assert_eq!(v.verify_header(None), Err(AuthError::Missing));
        assert!(matches!(
            v.verify_header(Some("Basic abc")),
            Err(AuthError::Malformed(_))
        ));
        assert!(v.verify("not.a.jwt").is_err());
    }

    #[test]
    fn lifetimes_are_capped_at_both_ends_and_revocation_takes_effect() {
        let (k, v) = setup();
        let p = Principal::municipality("a", "11110", false);
        // Minting beyond the cap is refused.
        assert!(matches!(
            k.mint(&p, unix_now(), DEFAULT_MAX_LIFETIME_S + 1),
            Err(AuthError::Lifetime { .. })
        ));
        assert!(k.mint(&p, unix_now(), 0).is_err());
        // A verifier with a shorter cap refuses a token minted for longer.
        let (long, _) = k
            .mint_with_id(&p, unix_now(), 30 * 86_400, u64::MAX)
            .unwrap();
        let strict = Verifier::new(&[k.verifying_key()]).with_max_lifetime(86_400);
        assert!(matches!(
            strict.verify(&long),
            Err(AuthError::Lifetime { .. })
        ));
        assert!(v.verify(&long).is_ok());
        // Issued an hour in the future.
        let future = k.mint(&p, unix_now() + 3600, 3600).unwrap();
        assert!(v.verify(&future).is_err());
        // Revoked by id, then by subject; a verified token re-checked.
        let (t, id) = k.mint_with_id(&p, unix_now(), 3600, 3600).unwrap();
        let (_, info) = v.verify_token(&t).unwrap();
        assert_eq!(info.id, id);
        assert_eq!(id.len(), 32);
        assert_eq!(v.still_valid(&info, unix_now()), Ok(()));
        let shared = v.clone();
        shared.set_revocations(Revocations::parse(&format!("jti {id}"), "t").unwrap());
        assert_eq!(v.verify(&t), Err(AuthError::Revoked));
        assert_eq!(v.still_valid(&info, unix_now()), Err(AuthError::Revoked));
        let other = k.mint(&p, unix_now(), 3600).unwrap();
        assert!(v.verify(&other).is_ok());
        v.set_revocations(Revocations::parse("sub a", "t").unwrap());
        assert_eq!(v.verify(&other), Err(AuthError::Revoked));
        v.set_revocations(Revocations::default());
        assert!(v.verify(&other).is_ok());
        assert_eq!(
            v.still_valid(&info, info.expires_at + 1),
            Err(AuthError::Expired)
        );
    }

    #[test]
    fn keys_round_trip_through_text_and_bad_principals_are_refused() {
        let k = SigningKey::generate("2026-11").unwrap();
        let k2 = SigningKey::from_text(&k.to_text()).unwrap();
        assert_eq!(k2.verifying_key(), k.verifying_key());
        let vk = VerifyingKey::from_text(&k.verifying_key().to_text()).unwrap();
        assert_eq!(vk, k.verifying_key());
        assert!(VerifyingKey::from_text("k:AAAA").is_err());
        assert!(SigningKey::generate("bad kid").is_err());
        let bad = Principal::municipality("a", "1111", false);
        assert!(k.mint(&bad, unix_now(), 60).is_err());
        let mut nat = Principal::national("a");
        nat.municipality = Some("11110".into());
        assert!(k.mint(&nat, unix_now(), 60).is_err());
    }
}
