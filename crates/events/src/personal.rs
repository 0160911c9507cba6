//! Personal data blocks: plaintext only in memory, sealed everywhere else.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The message serde reports when asked to encode an open block; the codec maps it
/// to `CodecError::Unsealed`.
pub(crate) const UNSEALED_MARKER: &str = "personal block is not sealed";

/// The categories of personal data the ledger holds (the erasure help article's
/// list, plus email, which the platform also holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonalCategory {
    Email,
    Password,
    FirstName,
    LastName,
    Address,
    CompanyName,
    PhoneNumber,
    CustomAnswers,
    IpAddresses,
}

impl PersonalCategory {
    pub const ALL: [PersonalCategory; 9] = [
        PersonalCategory::Email,
        PersonalCategory::Password,
        PersonalCategory::FirstName,
        PersonalCategory::LastName,
        PersonalCategory::Address,
        PersonalCategory::CompanyName,
        PersonalCategory::PhoneNumber,
        PersonalCategory::CustomAnswers,
        PersonalCategory::IpAddresses,
    ];
}

/// Ciphertext of one personal block: `[format version][nonce][AEAD ciphertext]`,
/// stored as unpadded URL-safe base64. Opaque to everything but the crypto crate.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedBox(Vec<u8>);

impl SealedBox {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SealedBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedBox({} bytes)", self.0.len())
    }
}

/// A block of personal data inside an event.
#[derive(Clone, PartialEq)]
pub enum Personal<T> {
    /// Plaintext, in memory only: cannot be serialized.
    Open(T),
    /// Ciphertext under the customer's data key.
    Sealed(SealedBox),
}

impl<T> Personal<T> {
    pub fn as_open(&self) -> Option<&T> {
        match self {
            Personal::Open(t) => Some(t),
            Personal::Sealed(_) => None,
        }
    }
    pub fn as_sealed(&self) -> Option<&SealedBox> {
        match self {
            Personal::Sealed(s) => Some(s),
            Personal::Open(_) => None,
        }
    }
}

impl<T> fmt::Debug for Personal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Personal::Open(_) => f.write_str("Personal(<open, redacted>)"),
            Personal::Sealed(s) => write!(f, "Personal({s:?})"),
        }
    }
}

impl<T> Serialize for Personal<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Personal::Sealed(b) => s.serialize_str(&URL_SAFE_NO_PAD.encode(&b.0)),
            Personal::Open(_) => Err(serde::ser::Error::custom(UNSEALED_MARKER)),
        }
    }
}

impl<'de, T> Deserialize<'de> for Personal<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        URL_SAFE_NO_PAD
            .decode(s.as_bytes())
            .map(|b| Personal::Sealed(SealedBox(b)))
            .map_err(|_| serde::de::Error::custom("sealed block is not base64url"))
    }
}

macro_rules! redacted_debug {
    ($($t:ty),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($t), "(<redacted>)"))
            }
        }
    )*};
}

/// One custom question answered at registration. Both the question's wording (free
/// text) and the answer count as personal data.
///
/// Every opened personal type here is zeroized when dropped (`ZeroizeOnDrop`): an
/// opened value lives in memory for one request, and its bytes must not stay in
/// freed memory after the customer is erased.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    pub question: String,
    pub answer: String,
}

/// The profile given at registration.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub email: String,
    pub password_hash: String,
    pub first_name: String,
    pub last_name: String,
    pub address: Option<String>,
    pub company_name: Option<String>,
    pub phone_number: Option<String>,
    #[serde(default)]
    pub custom_answers: Vec<Answer>,
    pub registration_ip: Option<String>,
}

/// A change of profile: `None` leaves a field as it was.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    pub email: Option<String>,
    pub password_hash: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub address: Option<String>,
    pub company_name: Option<String>,
    pub phone_number: Option<String>,
}

impl ProfilePatch {
    pub fn is_empty(&self) -> bool {
        *self == ProfilePatch::default()
    }

    /// Applies the patch to a profile.
    pub fn apply_to(&self, p: &mut Profile) {
        // The old value is zeroized before the new one is written over it (a
        // longer value would otherwise move to a new buffer and free the old
        // one as it was).
        fn set(dst: &mut String, v: &Option<String>) {
            if let Some(v) = v {
                dst.zeroize();
                dst.push_str(v);
            }
        }
        fn set_opt(dst: &mut Option<String>, v: &Option<String>) {
            if let Some(v) = v {
                dst.zeroize();
                *dst = Some(v.clone());
            }
        }
        set(&mut p.email, &self.email);
        set(&mut p.password_hash, &self.password_hash);
        set(&mut p.first_name, &self.first_name);
        set(&mut p.last_name, &self.last_name);
        set_opt(&mut p.address, &self.address);
        set_opt(&mut p.company_name, &self.company_name);
        set_opt(&mut p.phone_number, &self.phone_number);
    }
}

/// Personal detail of a login.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct LoginData {
    pub ip: String,
}

/// Personal detail of a payment.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct PaymentData {
    pub ip: Option<String>,
}

redacted_debug!(Answer, Profile, ProfilePatch, LoginData, PaymentData);
