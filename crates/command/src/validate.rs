//! Input checks on the personal data carried by commands.
//!
//! Each check names the field that failed and a fixed reason; none of them ever puts
//! the offending value into the refusal, because the value is personal data.
//!
//! Every text field refuses control characters (Unicode category `Cc`: U+0000 to
//! U+001F and U+007F to U+009F, NUL included). None belongs in a name, an address
//! or an answer, and each is a hazard downstream: NUL truncates C strings and is
//! refused by PostgreSQL `text`, CR/LF forge lines in CSV exports and logs, ESC
//! drives terminals. Nothing else is special: any other Unicode is accepted.

use std::net::IpAddr;

use ledger_events::{Profile, ProfilePatch};
use ledger_types::Money;

use crate::Refusal;

/// Longest accepted email address, in characters (RFC 5321's path limit minus the
/// brackets; counted in characters, as the OpenAPI `maxLength` counts).
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest accepted first or last name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest accepted free text (address, company, phone, custom questions and answers,
/// password hash), in characters.
pub const MAX_TEXT_CHARS: usize = 2000;
/// Most custom answers a profile may carry.
pub const MAX_CUSTOM_ANSWERS: usize = 50;
/// Largest payment or refund, in minor units (the type's own bound).
pub const MAX_AMOUNT: i64 = Money::MAX_AMOUNT;

fn no_control(field: &'static str, v: &str) -> Result<(), Refusal> {
    if v.chars().any(char::is_control) {
        return Err(Refusal::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn email(field: &'static str, v: &str) -> Result<(), Refusal> {
    if v.chars().count() > MAX_EMAIL_LEN {
        return Err(Refusal::invalid(field, "longer than 254 characters"));
    }
    no_control(field, v)?;
    match v.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            Ok(())
        }
        _ => Err(Refusal::invalid(
            field,
            "must contain exactly one '@' between a non-empty local part and domain",
        )),
    }
}

fn name(field: &'static str, v: &str) -> Result<(), Refusal> {
    if v.trim().is_empty() {
        return Err(Refusal::invalid(field, "must not be empty"));
    }
    if v.chars().count() > MAX_NAME_CHARS {
        return Err(Refusal::invalid(field, "longer than 200 characters"));
    }
    no_control(field, v)
}

fn text(field: &'static str, v: &str) -> Result<(), Refusal> {
    if v.chars().count() > MAX_TEXT_CHARS {
        return Err(Refusal::invalid(field, "longer than 2000 characters"));
    }
    no_control(field, v)
}

fn opt_text(field: &'static str, v: Option<&String>) -> Result<(), Refusal> {
    v.map_or(Ok(()), |v| text(field, v))
}

fn password_hash(field: &'static str, v: &str) -> Result<(), Refusal> {
    if v.is_empty() {
        return Err(Refusal::invalid(field, "must not be empty"));
    }
    text(field, v)
}

/// An IP address as `std::net::IpAddr` parses it (v4 dotted quad or v6).
pub(crate) fn ip(field: &'static str, v: &str) -> Result<(), Refusal> {
    v.parse::<IpAddr>()
        .map(|_| ())
        .map_err(|_| Refusal::invalid(field, "not an IP address"))
}

pub(crate) fn profile(p: &Profile) -> Result<(), Refusal> {
    email("email", &p.email)?;
    password_hash("password_hash", &p.password_hash)?;
    name("first_name", &p.first_name)?;
    name("last_name", &p.last_name)?;
    opt_text("address", p.address.as_ref())?;
    opt_text("company_name", p.company_name.as_ref())?;
    opt_text("phone_number", p.phone_number.as_ref())?;
    if p.custom_answers.len() > MAX_CUSTOM_ANSWERS {
        return Err(Refusal::invalid("custom_answers", "more than 50 answers"));
    }
    for a in &p.custom_answers {
        text("custom_answers.question", &a.question)?;
        text("custom_answers.answer", &a.answer)?;
    }
    if let Some(v) = &p.registration_ip {
        ip("registration_ip", v)?;
    }
    Ok(())
}

pub(crate) fn patch(p: &ProfilePatch) -> Result<(), Refusal> {
    if p.is_empty() {
        return Err(Refusal::invalid("patch", "changes nothing"));
    }
    if let Some(v) = &p.email {
        email("email", v)?;
    }
    if let Some(v) = &p.password_hash {
        password_hash("password_hash", v)?;
    }
    if let Some(v) = &p.first_name {
        name("first_name", v)?;
    }
    if let Some(v) = &p.last_name {
        name("last_name", v)?;
    }
    opt_text("address", p.address.as_ref())?;
    opt_text("company_name", p.company_name.as_ref())?;
    opt_text("phone_number", p.phone_number.as_ref())?;
    Ok(())
}

/// A payment's or refund's amount: 1 to [`MAX_AMOUNT`] minor units, in a currency of
/// the ISO 4217 list (a `Money` built with `Money::new` can hold anything).
pub(crate) fn amount(m: &Money) -> Result<(), Refusal> {
    if m.minor() <= 0 {
        Err(Refusal::invalid(
            "amount",
            "must be a positive integer of minor units",
        ))
    } else if m.minor() > MAX_AMOUNT {
        Err(Refusal::invalid(
            "amount",
            "must not exceed 1000000000000 minor units",
        ))
    } else if !m.currency().is_iso() {
        Err(Refusal::invalid(
            "amount.currency",
            "must be an ISO 4217 currency code with minor units",
        ))
    } else {
        Ok(())
    }
}
