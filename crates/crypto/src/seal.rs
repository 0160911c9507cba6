//! The sealed block format: `[0x01][24-byte random nonce][XChaCha20-Poly1305 ciphertext]`.
//! Associated data: `"ledger.seal.v1" || customer id (16 bytes) || event id (16 bytes)`.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ledger_events::SealedBox;
use ledger_types::{CustomerId, EventId};
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::CryptoError;

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 24;
const SEAL_DOMAIN: &[u8] = b"ledger.seal.v1";

/// A customer's 256-bit data key. Zeroed on drop; never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; 32]);

impl DataKey {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self(k)
    }
    pub(crate) fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }
    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }
}

impl DataKey {
    /// HMAC-SHA-256 under this key, for values derived from a customer's data that
    /// must become unlinkable when the key is destroyed (see
    /// `Keyring::derive_id`).
    pub(crate) fn mac(&self, domain: &[u8], message: &[u8]) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        m.update(domain);
        m.update(&[0]);
        m.update(message);
        m.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

fn aad(customer: CustomerId, event: EventId) -> [u8; 46] {
    let mut a = [0u8; 46];
    a[..14].copy_from_slice(SEAL_DOMAIN);
    a[14..30].copy_from_slice(customer.as_bytes());
    a[30..].copy_from_slice(event.as_bytes());
    a
}

/// Seals a personal block for `customer` in event `event`.
pub fn seal_block<T: Serialize>(
    key: &DataKey,
    customer: CustomerId,
    event: EventId,
    value: &T,
) -> Result<SealedBox, CryptoError> {
    let plain = Zeroizing::new(serde_json::to_vec(value).map_err(|_| CryptoError::Codec)?);
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ct = key
        .cipher()
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: &aad(customer, event),
            },
        )
        .map_err(|_| CryptoError::Codec)?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(SealedBox::from_bytes(out))
}

/// Opens a sealed block; fails if the key, the binding or the bytes are wrong.
pub fn open_block<T: DeserializeOwned>(
    key: &DataKey,
    customer: CustomerId,
    event: EventId,
    sealed: &SealedBox,
) -> Result<T, CryptoError> {
    let b = sealed.as_bytes();
    if b.len() < 1 + NONCE_LEN + 16 || b[0] != FORMAT_V1 {
        return Err(CryptoError::BadFormat);
    }
    let plain = Zeroizing::new(
        key.cipher()
            .decrypt(
                XNonce::from_slice(&b[1..1 + NONCE_LEN]),
                Payload {
                    msg: &b[1 + NONCE_LEN..],
                    aad: &aad(customer, event),
                },
            )
            .map_err(|_| CryptoError::Unauthentic)?,
    );
    serde_json::from_slice(&plain).map_err(|_| CryptoError::Codec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_events::LoginData;

    #[test]
    fn a_sealed_block_opens_only_with_its_key_customer_and_event() {
        let k = DataKey::generate();
        let (c, e) = (CustomerId::new(), EventId::new());
        let v = LoginData {
            ip: "203.0.113.9".into(),
        };
        let s = seal_block(&k, c, e, &v).unwrap();
        assert!(!String::from_utf8_lossy(s.as_bytes()).contains("203.0.113.9"));
        let back: LoginData = open_block(&k, c, e, &s).unwrap();
        assert_eq!(back.ip, "203.0.113.9");
        assert!(open_block::<LoginData>(&DataKey::generate(), c, e, &s).is_err());
        assert!(open_block::<LoginData>(&k, CustomerId::new(), e, &s).is_err());
        assert!(open_block::<LoginData>(&k, c, EventId::new(), &s).is_err());
        let mut bytes = s.as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(open_block::<LoginData>(&k, c, e, &SealedBox::from_bytes(bytes)).is_err());
    }
}
