//! Who is calling: broadcaster API keys and the admin key (ADR 0006).
//!
//! A key is a 256-bit random token shown once (`lk_` + 43 base64url characters).
//! Only `sha256(token)` is kept: in memory for lookups and, durably, in an
//! append-only file of issue/revoke records (`DATA/api-keys.jsonl`, mode 0600,
//! fsync'd). A single unsalted SHA-256 is enough for a token with 256 bits of
//! entropy: there is nothing to guess, and a slow hash would only slow every
//! request. The file is re-read when a lookup misses and the file changed, so
//! `ledger api-key create` works while the server runs.
//!
//! The admin key (create broadcasters, issue and revoke keys, auditors' endpoints)
//! is separate: the server is given its hash only.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ledger_types::{BroadcasterId, Timestamp};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use uuid::Uuid;

use crate::error::ApiError;
use crate::SharedState;

pub const API_KEY_PREFIX: &str = "lk_";
pub const ADMIN_KEY_PREFIX: &str = "lka_";

#[derive(Debug, Error)]
pub enum KeyFileError {
    /// The key file could not be read or written (names the I/O error kind only).
    #[error("api key file i/o error: {0}")]
    Io(String),
    #[error("api key file is corrupt at line {0}")]
    Corrupt(usize),
    #[error("no api key with this id")]
    UnknownKey,
}

fn io(e: std::io::Error) -> KeyFileError {
    KeyFileError::Io(e.kind().to_string())
}

/// A fresh random token with the given prefix.
pub fn new_token(prefix: &str) -> String {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(raw))
}

pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equality that takes the same time whatever the inputs.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One line of the key file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum KeyRecord {
    Issued {
        key_id: Uuid,
        broadcaster_id: BroadcasterId,
        token_sha256: String,
        at: Timestamp,
        #[serde(default)]
        label: Option<String>,
    },
    Revoked {
        key_id: Uuid,
        at: Timestamp,
    },
}

/// What a key is, as listed to the admin (never the token or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    pub key_id: Uuid,
    pub broadcaster_id: BroadcasterId,
    pub issued_at: Timestamp,
    pub revoked: bool,
    pub label: Option<String>,
}

#[derive(Debug, Default)]
struct Keys {
    by_hash: HashMap<[u8; 32], Uuid>,
    info: HashMap<Uuid, KeyInfo>,
    /// Length of the file when last read (to notice writes by another process).
    file_len: u64,
}

impl Keys {
    fn apply(&mut self, r: KeyRecord, line: usize) -> Result<(), KeyFileError> {
        match r {
            KeyRecord::Issued {
                key_id,
                broadcaster_id,
                token_sha256,
                at,
                label,
            } => {
                let h: [u8; 32] = hex::decode(&token_sha256)
                    .ok()
                    .and_then(|v| v.try_into().ok())
                    .ok_or(KeyFileError::Corrupt(line))?;
                self.by_hash.insert(h, key_id);
                self.info.insert(
                    key_id,
                    KeyInfo {
                        key_id,
                        broadcaster_id,
                        issued_at: at,
                        revoked: false,
                        label,
                    },
                );
            }
            KeyRecord::Revoked { key_id, .. } => {
                if let Some(i) = self.info.get_mut(&key_id) {
                    i.revoked = true;
                }
            }
        }
        Ok(())
    }
}

/// The broadcaster API keys: an in-memory map from token hash to key, backed by an
/// append-only file (or by nothing, for tests).
#[derive(Debug)]
pub struct ApiKeys {
    path: Option<PathBuf>,
    keys: RwLock<Keys>,
    write: Mutex<()>,
    /// Milliseconds since `epoch` of the last look at the file.
    checked_ms: AtomicU64,
    epoch: Instant,
}

/// How often a running server looks for keys issued or revoked by another process.
const RECHECK: Duration = Duration::from_secs(1);

impl ApiKeys {
    /// Keys held in memory only (tests).
    pub fn in_memory() -> Self {
        Self {
            path: None,
            keys: RwLock::new(Keys::default()),
            write: Mutex::new(()),
            checked_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Opens (or starts) the key file at `path`.
    pub fn open(path: &Path) -> Result<Self, KeyFileError> {
        let me = Self {
            path: Some(path.to_owned()),
            keys: RwLock::new(Keys::default()),
            write: Mutex::new(()),
            checked_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        };
        me.reload()?;
        Ok(me)
    }

    fn reload(&self) -> Result<(), KeyFileError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(e)),
        };
        let mut keys = Keys::default();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let r: KeyRecord =
                serde_json::from_str(line).map_err(|_| KeyFileError::Corrupt(i + 1))?;
            keys.apply(r, i + 1)?;
        }
        keys.file_len = text.len() as u64;
        if let Ok(mut k) = self.keys.write() {
            *k = keys;
        }
        Ok(())
    }

    fn changed_on_disk(&self) -> bool {
        let Some(path) = &self.path else { return false };
        let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        self.keys.read().map(|k| k.file_len != len).unwrap_or(false)
    }

    fn lookup(&self, h: &[u8; 32]) -> Option<(BroadcasterId, Uuid)> {
        let k = self.keys.read().ok()?;
        let id = k.by_hash.get(h)?;
        let info = k.info.get(id)?;
        (!info.revoked).then_some((info.broadcaster_id, info.key_id))
    }

    /// The broadcaster a token belongs to, if the token is a live key.
    pub fn authenticate(&self, token: &str) -> Option<BroadcasterId> {
        self.authenticate_key(token).map(|(b, _)| b)
    }

    /// The broadcaster a token belongs to and the key's id, if the token is a live
    /// key.
    pub fn authenticate_key(&self, token: &str) -> Option<(BroadcasterId, Uuid)> {
        if !token.starts_with(API_KEY_PREFIX) || token.len() > 128 {
            return None;
        }
        let h = token_hash(token);
        // At most once a second, pick up revocations made by another process.
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.checked_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= RECHECK.as_millis() as u64
            && self
                .checked_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            && self.changed_on_disk()
        {
            let _ = self.reload();
        }
        if let Some(found) = self.lookup(&h) {
            return Some(found);
        }
        if self.changed_on_disk() && self.reload().is_ok() {
            return self.lookup(&h);
        }
        None
    }

    fn append(&self, r: &KeyRecord) -> Result<(), KeyFileError> {
        let _one_writer = self
            .write
            .lock()
            .map_err(|_| KeyFileError::Io("lock".into()))?;
        // Pick up keys written by another process first, so the in-memory map and
        // the recorded file length stay in step with the file.
        if self.changed_on_disk() {
            self.reload()?;
        }
        let mut line = serde_json::to_vec(r).map_err(|_| KeyFileError::Io("encode".into()))?;
        line.push(b'\n');
        if let Some(path) = &self.path {
            let mut opts = OpenOptions::new();
            opts.create(true).append(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                opts.mode(0o600);
            }
            let mut f = opts.open(path).map_err(io)?;
            f.write_all(&line).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        let mut k = self
            .keys
            .write()
            .map_err(|_| KeyFileError::Io("lock".into()))?;
        k.apply(r.clone(), 0)?;
        k.file_len += line.len() as u64;
        Ok(())
    }

    /// Issues a new key for `b`; returns its id and the token (shown once).
    pub fn issue(
        &self,
        b: BroadcasterId,
        label: Option<String>,
    ) -> Result<(KeyInfo, String), KeyFileError> {
        let token = new_token(API_KEY_PREFIX);
        let key_id = Uuid::new_v4();
        let at = Timestamp::now();
        self.append(&KeyRecord::Issued {
            key_id,
            broadcaster_id: b,
            token_sha256: hex::encode(token_hash(&token)),
            at,
            label: label.clone(),
        })?;
        Ok((
            KeyInfo {
                key_id,
                broadcaster_id: b,
                issued_at: at,
                revoked: false,
                label,
            },
            token,
        ))
    }

    /// Revokes a key; revoking twice is a no-op.
    pub fn revoke(&self, key_id: Uuid) -> Result<KeyInfo, KeyFileError> {
        let known = self
            .keys
            .read()
            .ok()
            .and_then(|k| k.info.get(&key_id).cloned());
        let Some(mut info) = known else {
            return Err(KeyFileError::UnknownKey);
        };
        if !info.revoked {
            self.append(&KeyRecord::Revoked {
                key_id,
                at: Timestamp::now(),
            })?;
        }
        info.revoked = true;
        Ok(info)
    }

    /// Every key of `b` (or of all broadcasters).
    pub fn list(&self, b: Option<BroadcasterId>) -> Vec<KeyInfo> {
        let mut v: Vec<KeyInfo> = self
            .keys
            .read()
            .map(|k| {
                k.info
                    .values()
                    .filter(|i| b.is_none_or(|b| i.broadcaster_id == b))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by_key(|i| (i.issued_at, i.key_id));
        v
    }
}

/// The admin key's hash.
#[derive(Clone)]
pub struct AdminKey([u8; 32]);

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminKey(<hash>)")
    }
}

impl AdminKey {
    pub fn from_token(token: &str) -> Self {
        Self(token_hash(token))
    }

    /// From the 64 hex characters of `sha256(token)`.
    pub fn from_hash_hex(s: &str) -> Option<Self> {
        hex::decode(s.trim())
            .ok()
            .and_then(|v| v.try_into().ok())
            .map(Self)
    }

    pub fn hash_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn matches(&self, token: &str) -> bool {
        ct_eq(&self.0, &token_hash(token))
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The calling broadcaster, from a broadcaster API key. Every tenant endpoint takes
/// one and scopes everything it reads or writes to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenant(pub BroadcasterId);

/// The broadcaster and key id of a request's broadcaster API key, or 401.
fn broadcaster_key(parts: &mut Parts, state: &SharedState) -> Result<KeyedTenant, ApiError> {
    let token = bearer(parts).ok_or_else(ApiError::unauthorized)?;
    let (b, key_id) = state
        .keys
        .authenticate_key(token)
        .ok_or_else(ApiError::unauthorized)?;
    parts.extensions.insert(Tenant(b));
    Ok(KeyedTenant {
        broadcaster_id: b,
        key_id,
    })
}

impl FromRequestParts<SharedState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        broadcaster_key(parts, state).map(|k| Tenant(k.broadcaster_id))
    }
}

/// The calling broadcaster and the id of the API key it used (recorded as the
/// actor of an erasure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedTenant {
    pub broadcaster_id: BroadcasterId,
    pub key_id: Uuid,
}

impl KeyedTenant {
    /// The actor the events record.
    pub fn actor(&self) -> ledger_events::Actor {
        ledger_events::Actor::Broadcaster {
            broadcaster_id: self.broadcaster_id,
            key_id: Some(ledger_types::KeyId::from_uuid(self.key_id)),
        }
    }
}

impl FromRequestParts<SharedState> for KeyedTenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        broadcaster_key(parts, state)
    }
}

/// Who calls an operation open to broadcasters and to the platform operator
/// (erasure requests): a broadcaster with the id of the API key it used, or the
/// operator with the admin key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Broadcaster {
        broadcaster_id: BroadcasterId,
        key_id: Uuid,
    },
    Operator,
}

impl Caller {
    /// The actor the events record.
    pub fn actor(&self) -> ledger_events::Actor {
        match *self {
            Caller::Broadcaster {
                broadcaster_id,
                key_id,
            } => KeyedTenant {
                broadcaster_id,
                key_id,
            }
            .actor(),
            Caller::Operator => ledger_events::Actor::Operator,
        }
    }
}

impl FromRequestParts<SharedState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(ApiError::unauthorized)?;
        if token.starts_with(ADMIN_KEY_PREFIX) && state.admin.matches(token) {
            return Ok(Caller::Operator);
        }
        let k = broadcaster_key(parts, state)?;
        Ok(Caller::Broadcaster {
            broadcaster_id: k.broadcaster_id,
            key_id: k.key_id,
        })
    }
}

/// The operator, from the admin key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admin;

impl FromRequestParts<SharedState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(ApiError::unauthorized)?;
        if state.admin.matches(token) {
            Ok(Admin)
        } else {
            Err(ApiError::unauthorized())
        }
    }
}

/// The broadcaster of a request's bearer token, if any (for the idempotency layer,
/// which runs before the handler's extractor).
pub fn tenant_of(parts: &Parts, keys: &Arc<ApiKeys>) -> Option<BroadcasterId> {
    bearer(parts).and_then(|t| keys.authenticate(t))
}

/// The scope under which the idempotency layer keeps a request's answers: the
/// broadcaster of its API key, or, for the admin key, the nil id (no broadcaster
/// has it), so the operator's writes are retried safely too.
pub fn idempotency_scope(parts: &Parts, state: &SharedState) -> Option<BroadcasterId> {
    let token = bearer(parts)?;
    if token.starts_with(ADMIN_KEY_PREFIX) && state.admin.matches(token) {
        return Some(BroadcasterId::from_uuid(Uuid::nil()));
    }
    state.keys.authenticate(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_a_reopen_and_revocation_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-keys.jsonl");
        let b = BroadcasterId::new();
        let keys = ApiKeys::open(&path).unwrap();
        let (info, token) = keys.issue(b, Some("ci".into())).unwrap();
        assert_eq!(keys.authenticate(&token), Some(b));
        assert_eq!(keys.authenticate("lk_nope"), None);
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&token), "the token itself is never stored");
        let again = ApiKeys::open(&path).unwrap();
        assert_eq!(again.authenticate(&token), Some(b));
        again.revoke(info.key_id).unwrap();
        // The first instance sees the revocation written by the second once it
        // re-reads the file; a fresh instance sees it at once.
        assert_eq!(ApiKeys::open(&path).unwrap().authenticate(&token), None);
    }

    #[test]
    fn a_key_written_by_another_process_is_found_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-keys.jsonl");
        let server = ApiKeys::open(&path).unwrap();
        let cli = ApiKeys::open(&path).unwrap();
        let b = BroadcasterId::new();
        let (_, token) = cli.issue(b, None).unwrap();
        assert_eq!(server.authenticate(&token), Some(b));
    }

    #[test]
    fn the_admin_key_is_compared_by_hash() {
        let t = new_token(ADMIN_KEY_PREFIX);
        let k = AdminKey::from_token(&t);
        assert!(k.matches(&t));
        assert!(!k.matches("lka_other"));
        let again = AdminKey::from_hash_hex(&k.hash_hex()).unwrap();
        assert!(again.matches(&t));
    }
}
