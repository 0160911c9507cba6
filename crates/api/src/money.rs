//! Money on the wire: totals that stay exact in every JSON reader, currencies with
//! their minor-unit digits, and the OpenAPI schemas that say so.
//!
//! A single amount is at most `Money::MAX_AMOUNT` (10^12 minor units), below 2^53,
//! so it is always a JSON number. A total is a sum of amounts (`i128` in the
//! projections) and can grow past 2^53, beyond which a JavaScript client (any
//! reader that parses JSON numbers as IEEE doubles) silently rounds it. So a total
//! is a JSON number while `|total| <= 2^53 - 1` (every figure a real broadcaster
//! produces, and exactly what was sent before), and a base-10 string beyond: exact
//! everywhere, never rounded, and the schema says `oneOf: [integer, string]`.

use ledger_types::{Currency, Money};
use serde::{Serialize, Serializer};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType};
use utoipa::openapi::{KnownFormat, RefOr, Type};

/// 2^53 - 1, the largest integer every JSON reader holds exactly.
pub const MAX_SAFE_INTEGER: i128 = (1 << 53) - 1;

/// A sum of amounts in minor units, as the API sends it: a JSON integer within
/// +-(2^53 - 1), a base-10 string beyond (the `Total` schema).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Total(i128);

impl Total {
    pub fn new(minor: i128) -> Self {
        Self(minor)
    }
    pub fn get(self) -> i128 {
        self.0
    }
}

impl Serialize for Total {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match i64::try_from(self.0) {
            Ok(small) if self.0.abs() <= MAX_SAFE_INTEGER => s.serialize_i64(small),
            _ => s.serialize_str(&self.0.to_string()),
        }
    }
}

impl utoipa::PartialSchema for Total {
    fn schema() -> RefOr<Schema> {
        total_schema().into()
    }
}

impl utoipa::ToSchema for Total {}

/// The schema of a total: an integer within +-(2^53 - 1), else a base-10 string.
fn total_schema() -> Schema {
    Schema::OneOf(
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::Integer))
                    .minimum(Some(-MAX_SAFE_INTEGER as f64))
                    .maximum(Some(MAX_SAFE_INTEGER as f64)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .pattern(Some("^-?[0-9]{16,40}$")),
            )
            .description(Some(
                "Minor units. A JSON integer while its magnitude is at most 2^53-1 \
                 (exact in every JSON reader), a base-10 string beyond (exact too).",
            ))
            .build(),
    )
}

/// The schema of one payment or refund amount: 1 to `Money::MAX_AMOUNT`.
pub fn amount_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Integer))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(1))
        .maximum(Some(Money::MAX_AMOUNT as f64))
        .description(Some(
            "Integer minor units (cents, pence, yen), 1 to 1000000000000 (10^12).",
        ))
        .build()
        .into()
}

/// The schema of a currency code in a request: an ISO 4217 code with minor units.
pub fn currency_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .pattern(Some("^[A-Z]{3}$"))
        .enum_values(Some(Currency::iso_codes()))
        .description(Some(
            "An ISO 4217 currency code with minor units, e.g. EUR.",
        ))
        .build()
        .into()
}

/// The schema of the minor-unit digits of a currency (`null` for a code stored
/// before codes were checked against the ISO list).
pub fn exponent_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
        .minimum(Some(0))
        .maximum(Some(4))
        .description(Some(
            "Digits of the currency's minor unit (ISO 4217): 2 for EUR (1999 is 19.99), \
             0 for JPY, 3 for BHD.",
        ))
        .build()
        .into()
}

/// The schema of an id: a UUID in canonical form (lower-case, hyphenated).
pub fn uuid_schema() -> Schema {
    id_schema(SchemaType::Type(Type::String))
}

/// An optional id in a request body: a canonical UUID, or null (= absent).
pub fn optional_uuid_schema() -> Schema {
    id_schema(SchemaType::from_iter([Type::String, Type::Null]))
}

fn id_schema(ty: SchemaType) -> Schema {
    ObjectBuilder::new()
        .schema_type(ty)
        .format(Some(SchemaFormat::Custom("uuid".into())))
        .pattern(Some(ledger_types::CANONICAL_UUID_PATTERN))
        .min_length(Some(36))
        .max_length(Some(36))
        .build()
        .into()
}

/// `deserialize_with` for an `i64` field: a JSON integer, or a number with no
/// fractional part (`94.0`), which JSON Schema counts as an integer too.
pub fn whole_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(Whole)
        .and_then(|v| i64::try_from(v).map_err(|_| serde::de::Error::custom("invalid value")))
}

/// `deserialize_with` for a `u64` field: a whole number as in [`whole_i64`].
pub fn whole_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(Whole)
        .and_then(|v| u64::try_from(v).map_err(|_| serde::de::Error::custom("invalid value")))
}

/// `deserialize_with` for an `Option<u64>` field (with `#[serde(default)]`): null,
/// or a whole number as in [`whole_i64`].
pub fn whole_u64_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v: Option<WholeValue> = serde::Deserialize::deserialize(d)?;
    v.map(|w| u64::try_from(w.0).map_err(|_| serde::de::Error::custom("invalid value")))
        .transpose()
}

struct WholeValue(i128);

impl<'de> serde::Deserialize<'de> for WholeValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Whole).map(WholeValue)
    }
}

struct Whole;

/// 2^53: the first whole number a JSON number read as a float may not hold exactly.
const MAX_EXACT_FLOAT: f64 = 9_007_199_254_740_992.0;

impl serde::de::Visitor<'_> for Whole {
    type Value = i128;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a whole number")
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i128, E> {
        Ok(v.into())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i128, E> {
        Ok(v.into())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i128, E> {
        // Every whole number up to 2^53 - 1 (the largest any schema here allows)
        // is exact as a float; beyond, a float is no longer one exact number.
        if v.fract() == 0.0 && v.abs() < MAX_EXACT_FLOAT {
            Ok(v as i128)
        } else {
            Err(E::invalid_type(serde::de::Unexpected::Float(v), &self))
        }
    }
}

/// [`uuid_schema`] as a `RefOr`, for path parameters.
pub fn uuid_param_schema() -> RefOr<Schema> {
    uuid_schema().into()
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    struct Position {
        #[serde(deserialize_with = "super::whole_u64")]
        position: u64,
    }

    fn position(json: &str) -> Result<u64, serde_json::Error> {
        serde_json::from_str::<Position>(json).map(|p| p.position)
    }

    /// A whole number written as a float is an integer (JSON Schema), up to the
    /// schemas' largest (2^53 - 1); Schemathesis sent 9007199254740990.0 and got
    /// 400 while the document allowed it.
    #[test]
    fn whole_floats_up_to_2_pow_53_minus_1_are_integers() {
        assert_eq!(position(r#"{"position": 94.0}"#).unwrap(), 94);
        assert_eq!(
            position(r#"{"position": 9007199254740990.0}"#).unwrap(),
            9_007_199_254_740_990
        );
        assert_eq!(
            position(r#"{"position": 9007199254740991.0}"#).unwrap(),
            9_007_199_254_740_991
        );
        assert!(position(r#"{"position": 9007199254740992.0}"#).is_err());
        assert!(position(r#"{"position": 1.5}"#).is_err());
        assert!(position(r#"{"position": -1}"#).is_err());
    }
}
