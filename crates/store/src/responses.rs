//! Durable answers to write requests, so that a client's retry with the same
//! idempotency key gets the first answer again, even after a restart.
//!
//! Why here: a write and the answer that acknowledges it should live in the same
//! store, so that a backup or a failover carries both or neither. The embedded
//! store keeps them in a table of the event database, written by its writer thread
//! in the same group commits as appends; a server store in a table of its
//! database. Only answers that hold no personal data are ever saved (ids,
//! positions, receipts): the caller decides which, and nothing here looks inside.
//!
//! An answer is saved after the write it acknowledges committed. A crash between
//! the two leaves no answer, and the retry runs the command again; the commands are
//! shaped so that this is safe (ids derived from the idempotency key, client-chosen
//! ids, erasure returning its first receipt).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use ledger_types::Timestamp;

use crate::StoreError;

/// Who a key belongs to (a broadcaster's id): keys of different callers never meet.
pub type Scope = [u8; 16];

/// A saved answer.
#[derive(Clone, PartialEq, Eq)]
pub struct SavedResponse {
    /// SHA-256 of the request (method, path, query, body): the same key with a
    /// different request is refused, never answered with this.
    pub fingerprint: [u8; 32],
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub saved_at: Timestamp,
}

impl std::fmt::Debug for SavedResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedResponse")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Longest idempotency key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 255;
/// Largest answer saved, in bytes.
pub const MAX_SAVED_BODY_BYTES: usize = 256 * 1024;

/// Where saved answers live.
#[async_trait]
pub trait ResponseStore: Send + Sync + std::fmt::Debug + 'static {
    /// The answer saved under `(scope, key)`, if any.
    async fn recall(&self, scope: Scope, key: &str) -> Result<Option<SavedResponse>, StoreError>;
    /// Saves (durably) the answer under `(scope, key)`, replacing any older one.
    async fn remember(
        &self,
        scope: Scope,
        key: &str,
        response: SavedResponse,
    ) -> Result<(), StoreError>;
    /// Forgets every answer saved before `before`, then the oldest beyond `keep`.
    /// Returns how many were forgotten.
    async fn expire(&self, before: Timestamp, keep: usize) -> Result<u64, StoreError>;
}

/// Checks what every backend refuses to save.
pub fn validate_saved(key: &str, response: &SavedResponse) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(StoreError::Invalid(format!(
            "an idempotency key has 1 to {MAX_KEY_BYTES} bytes"
        )));
    }
    if response.body.len() > MAX_SAVED_BODY_BYTES {
        return Err(StoreError::Invalid(format!(
            "a saved answer has at most {MAX_SAVED_BODY_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Saved answers in memory only: for backends without a table of their own
/// (KurrentDB keeps events only) and for tests. Lost at restart.
#[derive(Debug, Default)]
pub struct MemoryResponses {
    map: Mutex<HashMap<(Scope, String), SavedResponse>>,
}

impl MemoryResponses {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ResponseStore for MemoryResponses {
    async fn recall(&self, scope: Scope, key: &str) -> Result<Option<SavedResponse>, StoreError> {
        let m = self
            .map
            .lock()
            .map_err(|_| StoreError::Backend("response map poisoned".into()))?;
        Ok(m.get(&(scope, key.to_owned())).cloned())
    }

    async fn remember(
        &self,
        scope: Scope,
        key: &str,
        response: SavedResponse,
    ) -> Result<(), StoreError> {
        validate_saved(key, &response)?;
        self.map
            .lock()
            .map_err(|_| StoreError::Backend("response map poisoned".into()))?
            .insert((scope, key.to_owned()), response);
        Ok(())
    }

    async fn expire(&self, before: Timestamp, keep: usize) -> Result<u64, StoreError> {
        let mut m = self
            .map
            .lock()
            .map_err(|_| StoreError::Backend("response map poisoned".into()))?;
        let n = m.len();
        m.retain(|_, r| r.saved_at >= before);
        if m.len() > keep {
            let mut ages: Vec<(Timestamp, (Scope, String))> =
                m.iter().map(|(k, r)| (r.saved_at, k.clone())).collect();
            ages.sort();
            let drop = ages.len() - keep;
            for (_, k) in ages.into_iter().take(drop) {
                m.remove(&k);
            }
        }
        Ok((n - m.len()) as u64)
    }
}

/// The checks every [`ResponseStore`] must pass, on a fresh, empty store: recall
/// after remember, scopes kept apart, replacement, refusal of oversized input, and
/// expiry by age and by count. Test support: it panics by design.
pub async fn conformance(store: &dyn ResponseStore) {
    let at = |ms| Timestamp::from_millis(1_700_000_000_000 + ms);
    let saved = |n: u8, ms| SavedResponse {
        fingerprint: [n; 32],
        status: 201,
        content_type: Some("application/json".into()),
        body: format!("{{\"n\":{n}}}").into_bytes(),
        saved_at: at(ms),
    };
    let (a, b) = ([1u8; 16], [2u8; 16]);
    assert_eq!(store.recall(a, "k").await.unwrap(), None, "empty store");
    store.remember(a, "k", saved(1, 0)).await.unwrap();
    assert_eq!(store.recall(a, "k").await.unwrap(), Some(saved(1, 0)));
    assert_eq!(
        store.recall(b, "k").await.unwrap(),
        None,
        "scopes are apart"
    );
    store.remember(a, "k", saved(2, 1)).await.unwrap();
    assert_eq!(store.recall(a, "k").await.unwrap(), Some(saved(2, 1)));
    let long = "x".repeat(MAX_KEY_BYTES + 1);
    assert!(matches!(
        store.remember(a, &long, saved(3, 2)).await,
        Err(StoreError::Invalid(_))
    ));
    let mut big = saved(3, 2);
    big.body = vec![b'x'; MAX_SAVED_BODY_BYTES + 1];
    assert!(matches!(
        store.remember(a, "big", big).await,
        Err(StoreError::Invalid(_))
    ));
    for i in 0..10u8 {
        store
            .remember(b, &format!("n{i}"), saved(i, 100 + i64::from(i)))
            .await
            .unwrap();
    }
    // By age: the answer saved at 1 ms goes.
    assert_eq!(store.expire(at(50), usize::MAX).await.unwrap(), 1);
    assert_eq!(store.recall(a, "k").await.unwrap(), None);
    // By count: the oldest beyond 4 go.
    assert_eq!(store.expire(at(0), 4).await.unwrap(), 6);
    for i in 0..10u8 {
        let kept = store.recall(b, &format!("n{i}")).await.unwrap().is_some();
        assert_eq!(kept, i >= 6, "answer {i}");
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_memory_store_conforms() {
        super::conformance(&super::MemoryResponses::new()).await;
    }
}
