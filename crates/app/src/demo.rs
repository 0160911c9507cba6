//! A realistic, deterministic demo data set: four broadcasters (white-label and
//! shared), customers with varied international personal data, some linked to
//! several broadcasters, subscriptions (active and terminated), a year of payments
//! in several currencies, and some refunds.
//!
//! The same seed always gives the same commands, so tests can regenerate the
//! plaintext they need to scan for without the ledger ever writing it down. Every
//! command goes through the real aggregate before it is sealed and stored.

use ledger_command::{Customer, CustomerCommand};
use ledger_events::{Answer, Integration, Profile, ProfilePatch};
use ledger_store::AppendRequest;
use ledger_types::{
    BroadcasterId, Currency, CustomerId, Money, OfferId, PaymentId, RefundId, SubscriptionId,
    Timestamp,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tracing::debug;
use uuid::Uuid;

use crate::{encode_customer_event, AppError, Ledger};

const DAY: i64 = 86_400_000;
/// The demo year ends on 2026-11-29T00:00Z and starts 365 days before.
const YEAR_END: i64 = 20_786 * DAY;
const YEAR_START: i64 = YEAR_END - 365 * DAY;

#[derive(Debug, Clone)]
pub struct Offer {
    pub id: OfferId,
    pub price_minor: i64,
    pub period_days: i64,
}

#[derive(Debug, Clone)]
pub struct DemoBroadcaster {
    pub id: BroadcasterId,
    pub name: &'static str,
    pub integration: Integration,
    pub currency: Currency,
    pub offers: Vec<Offer>,
}

#[derive(Debug, Clone)]
pub struct DemoCustomer {
    pub id: CustomerId,
    pub commands: Vec<CustomerCommand>,
}

#[derive(Debug, Clone)]
pub struct DemoData {
    pub broadcasters: Vec<DemoBroadcaster>,
    pub customers: Vec<DemoCustomer>,
}

/// Example ids for trying each erasure outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Samples {
    /// White-label, exclusive, no active subscription: erasure allowed.
    pub erasable: Vec<(BroadcasterId, CustomerId)>,
    /// Refused with ACTIVE_SUBSCRIPTION.
    pub active_subscription: Vec<(BroadcasterId, CustomerId)>,
    /// Refused with SHARED_ACROSS_BROADCASTERS.
    pub shared_account: Vec<(BroadcasterId, CustomerId)>,
    /// Refused with NOT_WHITE_LABEL.
    pub not_white_label: Vec<(BroadcasterId, CustomerId)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DemoSummary {
    pub broadcasters: usize,
    pub customers: usize,
    pub events: usize,
    pub samples: Samples,
}

fn uuid(rng: &mut StdRng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.gen()).into_uuid()
}

fn offers(list: &[(&str, i64, i64)]) -> Vec<Offer> {
    list.iter()
        .map(|(id, price, days)| Offer {
            id: OfferId::parse(id).unwrap_or_else(|_| unreachable!("static offer ids are valid")),
            price_minor: *price,
            period_days: *days,
        })
        .collect()
}

fn currency(code: &str) -> Currency {
    Currency::parse(code).unwrap_or_else(|_| unreachable!("static currency codes are valid"))
}

const FIRST: &[&str] = &[
    "Amélie",
    "Bartholomew",
    "Chiamaka",
    "Dmitri",
    "Eleanor",
    "Francisco",
    "Giulia",
    "Hiroshi",
    "Ingrid",
    "Jakub",
    "Kateřina",
    "Lorenzo",
    "Magdalena",
    "Nikolaos",
    "Oluwaseun",
    "Pernille",
    "Quentin",
    "Rosalind",
    "Søren",
    "Thandiwe",
    "Ulrich",
    "Valentina",
    "Wojciech",
    "Ximena",
    "Yevgenia",
    "Zoë",
    "Benedikt",
    "Cristóbal",
    "Dagmar",
    "Émile",
    "Fionnuala",
    "Gwendolyn",
    "Henrietta",
    "Isidora",
    "Joaquín",
    "Leopoldine",
    "Maximilian",
    "Nathaniel",
    "Ottilie",
    "Priyanka",
    "Rasmus",
    "Sebastián",
    "Theodora",
    "Wilhelmina",
    "Anneliese",
    "Bogdana",
];
const LAST: &[&str] = &[
    "Abernathy",
    "Bergström",
    "Castellanos",
    "Dąbrowski",
    "Esposito",
    "Fitzgerald",
    "Gallagher",
    "Hakobyan",
    "Ishikawa",
    "Janssens",
    "Kowalczyk",
    "Lindqvist",
    "Mastroianni",
    "Nakashima",
    "Oyelaran",
    "Papadopoulos",
    "Quintanilla",
    "Rautenberg",
    "Szymańska",
    "Thorvaldsen",
    "Underwood",
    "Vasquez-Ortega",
    "Wiśniewski",
    "Yamaguchi",
    "Zimmermann",
    "Achterberg",
    "Bouchard",
    "Christensen",
    "Delacroix",
    "Ekwueme",
    "Fernández",
    "Grünewald",
    "Halvorsen",
    "Ivanovska",
    "Jovanović",
    "Kristiansen",
    "Lefebvre",
    "Montgomery",
    "Nørgaard",
    "Ostrowski",
];
const STREETS: &[&str] = &[
    "Keizersgracht",
    "Rue de Rivoli",
    "Calle de Alcalá",
    "Via Garibaldi",
    "Karl-Marx-Allee",
    "Nowy Świat",
    "Drottninggatan",
    "Baker Street",
    "Vesterbrogade",
    "Rua Augusta",
    "Mannerheimintie",
    "Ringstraße",
    "Andrássy út",
    "Grafton Street",
    "Storgata",
];
const CITIES: &[(&str, &str)] = &[
    ("Amsterdam", "Netherlands"),
    ("Paris", "France"),
    ("Madrid", "Spain"),
    ("Milano", "Italy"),
    ("Berlin", "Germany"),
    ("Warszawa", "Poland"),
    ("Stockholm", "Sweden"),
    ("London", "United Kingdom"),
    ("København", "Denmark"),
    ("Lisboa", "Portugal"),
    ("Helsinki", "Finland"),
    ("Wien", "Austria"),
    ("Budapest", "Hungary"),
    ("Dublin", "Ireland"),
    ("Oslo", "Norway"),
];
const DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "example.net",
    "mail.example",
    "post.example",
];
const COMPANIES: &[&str] = &[
    "Vandersloot Logistics",
    "Brightwater Analytics",
    "Kowalski & Partners",
    "Nordlys Design",
    "Ferreira Consultoria",
    "Atelier Moreau",
    "Hansen Bygg",
    "Lindgren Foods",
];
const QUESTIONS: &[&str] = &[
    "Which sport do you follow most closely?",
    "How did you hear about us?",
    "What is your favourite film genre?",
];
const ANSWERS: &[&[&str]] = &[
    &["Ice hockey", "Handball", "Cycling", "Formula 1", "Biathlon"],
    &[
        "A friend told me",
        "Podcast advert",
        "Saw it at the stadium",
        "Newsletter",
    ],
    &["Documentaries", "Film noir", "Animation", "Science fiction"],
];

fn pick<'a, T>(rng: &mut StdRng, xs: &'a [T]) -> &'a T {
    &xs[rng.gen_range(0..xs.len())]
}

fn ip(rng: &mut StdRng) -> String {
    if rng.gen_bool(0.8) {
        // Documentation and private ranges only.
        let nets = [(192, 0, 2), (198, 51, 100), (203, 0, 113)];
        let (a, b, c) = nets[rng.gen_range(0..nets.len())];
        format!("{a}.{b}.{c}.{}", rng.gen_range(1..255))
    } else {
        format!(
            "2001:db8:{:x}:{:x}::{:x}",
            rng.gen_range(1..0xffff),
            rng.gen_range(1..0xffff),
            rng.gen_range(1..0xffff)
        )
    }
}

fn ascii_fold(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'á' | 'à' | 'ą' => 'a',
            'é' | 'ë' | 'è' | 'ě' => 'e',
            'í' => 'i',
            'ó' | 'ö' | 'ø' => 'o',
            'ú' | 'ü' => 'u',
            'ñ' | 'ń' => 'n',
            'ś' | 'š' => 's',
            'ř' => 'r',
            'ł' => 'l',
            'ć' | 'č' => 'c',
            other => other,
        })
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect::<String>()
        .to_lowercase()
}

fn profile(rng: &mut StdRng, n: usize) -> Profile {
    let first = *pick(rng, FIRST);
    let last = *pick(rng, LAST);
    let (city, country) = *pick(rng, CITIES);
    let mut salt = [0u8; 16];
    rng.fill(&mut salt);
    let mut hash = [0u8; 32];
    rng.fill(&mut hash);
    Profile {
        email: format!(
            "{}.{}{}@{}",
            ascii_fold(first),
            ascii_fold(last),
            n,
            pick(rng, DOMAINS)
        ),
        password_hash: format!(
            "$argon2id$v=19$m=65536,t=3,p=4${}${}",
            hex_lower(&salt),
            hex_lower(&hash)
        ),
        first_name: first.to_owned(),
        last_name: last.to_owned(),
        address: Some(format!(
            "{} {}, {:05} {city}, {country}",
            pick(rng, STREETS),
            rng.gen_range(1..240),
            rng.gen_range(1000..99_999)
        )),
        company_name: rng.gen_bool(0.25).then(|| pick(rng, COMPANIES).to_string()),
        phone_number: rng.gen_bool(0.85).then(|| {
            format!(
                "+{} {} {:03} {:04}",
                rng.gen_range(30..49),
                rng.gen_range(600..799),
                rng.gen_range(0..1000),
                rng.gen_range(0..10_000)
            )
        }),
        custom_answers: (0..rng.gen_range(0..=2))
            .map(|q| Answer {
                question: QUESTIONS[q].to_owned(),
                answer: format!(
                    "{} (#{})",
                    pick(rng, ANSWERS[q]),
                    rng.gen_range(100..10_000)
                ),
            })
            .collect(),
        registration_ip: Some(ip(rng)),
    }
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Generates the demo data set deterministically from `seed`.
pub fn generate(seed: u64, customers: usize) -> DemoData {
    let mut rng = StdRng::seed_from_u64(seed);
    let broadcasters = vec![
        DemoBroadcaster {
            id: BroadcasterId::from_uuid(uuid(&mut rng)),
            name: "Northwind Stream",
            integration: Integration::WhiteLabel,
            currency: currency("EUR"),
            offers: offers(&[
                ("monthly-basic", 799, 30),
                ("monthly-premium", 1_499, 30),
                ("annual", 14_900, 365),
            ]),
        },
        DemoBroadcaster {
            id: BroadcasterId::from_uuid(uuid(&mut rng)),
            name: "Fjord Sports",
            integration: Integration::WhiteLabel,
            currency: currency("NOK"),
            offers: offers(&[("season-pass", 99_900, 365), ("monthly", 14_900, 30)]),
        },
        DemoBroadcaster {
            id: BroadcasterId::from_uuid(uuid(&mut rng)),
            name: "Kestrel Media Group",
            integration: Integration::Shared,
            currency: currency("USD"),
            offers: offers(&[("monthly", 999, 30), ("weekly-pass", 299, 7)]),
        },
        DemoBroadcaster {
            id: BroadcasterId::from_uuid(uuid(&mut rng)),
            name: "Lumen Cinema",
            integration: Integration::Shared,
            currency: currency("GBP"),
            offers: offers(&[("monthly", 699, 30), ("annual", 6_900, 365)]),
        },
    ];
    let mut out = Vec::with_capacity(customers);
    for n in 0..customers {
        let id = CustomerId::from_uuid(uuid(&mut rng));
        let home = match rng.gen_range(0..100) {
            0..=34 => 0,
            35..=59 => 1,
            60..=84 => 2,
            _ => 3,
        };
        let b = &broadcasters[home];
        let reg = YEAR_START + rng.gen_range(0..300) * DAY + rng.gen_range(0..DAY);
        let mut cmds: Vec<CustomerCommand> = vec![CustomerCommand::Register {
            customer_id: id,
            broadcaster_id: b.id,
            profile: profile(&mut rng, n),
            at: Timestamp::from_millis(reg),
        }];
        // Shared accounts: customers of shared broadcasters often use both; a few
        // white-label customers were also signed up through a shared partner.
        let link_to = match home {
            2 if rng.gen_bool(0.3) => Some(3),
            3 if rng.gen_bool(0.3) => Some(2),
            0 | 1 if rng.gen_bool(0.05) => Some(2),
            _ => None,
        };
        if let Some(other) = link_to {
            cmds.push(CustomerCommand::Link {
                broadcaster_id: broadcasters[other].id,
                at: Timestamp::from_millis(reg + DAY),
            });
        }
        for _ in 0..rng.gen_range(0..5) {
            let t = reg + rng.gen_range(1..(YEAR_END - reg).max(2));
            cmds.push(CustomerCommand::RecordLogin {
                broadcaster_id: b.id,
                ip: ip(&mut rng),
                at: Timestamp::from_millis(t),
            });
        }
        if rng.gen_bool(0.1) {
            let mut patch = ProfilePatch::default();
            patch.phone_number = Some(format!("+44 7700 9{:05}", rng.gen_range(0..100_000)));
            cmds.push(CustomerCommand::UpdateProfile {
                broadcaster_id: b.id,
                patch,
                at: Timestamp::from_millis(reg + 2 * DAY),
            });
        }
        let subs = match rng.gen_range(0..100) {
            0..=19 => 0,
            20..=84 => 1,
            _ => 2,
        };
        for _ in 0..subs {
            let offer = pick(&mut rng, &b.offers).clone();
            let sub = SubscriptionId::from_uuid(uuid(&mut rng));
            let start = reg + rng.gen_range(0..30) * DAY + rng.gen_range(1..DAY);
            if start >= YEAR_END - DAY {
                continue;
            }
            let end = rng
                .gen_bool(0.45)
                .then(|| start + rng.gen_range(20..300) * DAY)
                .filter(|e| *e < YEAR_END - DAY);
            cmds.push(CustomerCommand::StartSubscription {
                broadcaster_id: b.id,
                subscription_id: sub,
                offer_id: offer.id.clone(),
                ends_at: None,
                at: Timestamp::from_millis(start),
            });
            let stop = end.unwrap_or(YEAR_END);
            let mut t = start + 1;
            while t < stop {
                let payment = PaymentId::from_uuid(uuid(&mut rng));
                let amount = Money::new(offer.price_minor, b.currency);
                cmds.push(CustomerCommand::CapturePayment {
                    broadcaster_id: b.id,
                    payment_id: payment,
                    offer_id: offer.id.clone(),
                    subscription_id: Some(sub),
                    amount,
                    payer_ip: rng.gen_bool(0.7).then(|| ip(&mut rng)),
                    at: Timestamp::from_millis(t),
                });
                if rng.gen_bool(0.03) && t + 3 * DAY < YEAR_END {
                    let part = if rng.gen_bool(0.5) {
                        offer.price_minor
                    } else {
                        offer.price_minor / 2
                    };
                    cmds.push(CustomerCommand::RefundPayment {
                        broadcaster_id: b.id,
                        refund_id: RefundId::from_uuid(uuid(&mut rng)),
                        payment_id: payment,
                        amount: Money::new(part, b.currency),
                        at: Timestamp::from_millis(t + 3 * DAY),
                    });
                }
                t += offer.period_days * DAY;
            }
            if let Some(end) = end {
                cmds.push(CustomerCommand::TerminateSubscription {
                    broadcaster_id: b.id,
                    subscription_id: sub,
                    at: Timestamp::from_millis(end),
                });
            }
        }
        cmds.sort_by_key(command_time);
        out.push(DemoCustomer { id, commands: cmds });
    }
    DemoData {
        broadcasters,
        customers: out,
    }
}

fn command_time(c: &CustomerCommand) -> i64 {
    match c {
        CustomerCommand::Register { at, .. }
        | CustomerCommand::Link { at, .. }
        | CustomerCommand::UpdateProfile { at, .. }
        | CustomerCommand::RecordLogin { at, .. }
        | CustomerCommand::StartSubscription { at, .. }
        | CustomerCommand::TerminateSubscription { at, .. }
        | CustomerCommand::CapturePayment { at, .. }
        | CustomerCommand::RefundPayment { at, .. }
        | CustomerCommand::Anonymize { at, .. }
        | CustomerCommand::AnonymizeAsOperator { at, .. }
        | CustomerCommand::ReapplyErasure { at, .. } => at.millis(),
    }
}

impl DemoCustomer {
    /// Every personal string this customer's commands carry (for residue scans).
    pub fn personal_strings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.commands {
            match c {
                CustomerCommand::Register { profile: p, .. } => {
                    out.extend([
                        p.email.clone(),
                        p.password_hash.clone(),
                        p.first_name.clone(),
                        p.last_name.clone(),
                    ]);
                    out.extend(p.address.clone());
                    out.extend(p.company_name.clone());
                    out.extend(p.phone_number.clone());
                    out.extend(p.registration_ip.clone());
                    out.extend(p.custom_answers.iter().map(|a| a.answer.clone()));
                }
                CustomerCommand::UpdateProfile { patch, .. } => {
                    out.extend(patch.phone_number.clone());
                }
                CustomerCommand::RecordLogin { ip, .. } => out.push(ip.clone()),
                CustomerCommand::CapturePayment { payer_ip, .. } => out.extend(payer_ip.clone()),
                _ => {}
            }
        }
        out
    }
}

/// Writes the demo data through the real aggregate into the ledger, in bulk.
pub async fn load(ledger: &Ledger, data: &DemoData) -> Result<DemoSummary, AppError> {
    let now = Timestamp::now();
    for b in &data.broadcasters {
        ledger
            .register_broadcaster(
                b.id,
                b.name,
                b.integration,
                Timestamp::from_millis(YEAR_START),
            )
            .await?;
    }
    let mut events = data.broadcasters.len();
    let mut samples = Samples::default();
    for chunk in data.customers.chunks(500) {
        let ids: Vec<CustomerId> = chunk.iter().map(|c| c.id).collect();
        ledger.keyring().ensure_keys(&ids)?;
        let mut requests = Vec::with_capacity(chunk.len());
        for dc in chunk {
            let mut customer = Customer::default();
            let mut new = Vec::new();
            for cmd in &dc.commands {
                for e in customer.handle(cmd)? {
                    customer.apply(&e);
                    new.push(encode_customer_event(ledger.keyring(), dc.id, e, now)?);
                }
            }
            events += new.len();
            classify(&customer, dc.id, data, &mut samples);
            requests.push(AppendRequest {
                stream: ledger_events::streams::customer(dc.id),
                expected: ledger_store::ExpectedVersion::NoStream,
                events: new,
            });
        }
        ledger.store().append_batch(requests).await?;
        debug!(customers = chunk.len(), "demo batch stored");
    }
    Ok(DemoSummary {
        broadcasters: data.broadcasters.len(),
        customers: data.customers.len(),
        events,
        samples,
    })
}

fn classify(c: &Customer, id: CustomerId, data: &DemoData, s: &mut Samples) {
    const KEEP: usize = 5;
    let Some(home) = c.registered_by() else {
        return;
    };
    let Some(b) = data.broadcasters.iter().find(|b| b.id == home) else {
        return;
    };
    let list = match (b.integration, c.broadcasters().len() > 1) {
        (Integration::Shared, _) => &mut s.not_white_label,
        (Integration::WhiteLabel, true) => &mut s.shared_account,
        (Integration::WhiteLabel, false) if !c.active_subscriptions().is_empty() => {
            &mut s.active_subscription
        }
        (Integration::WhiteLabel, false) => &mut s.erasable,
    };
    if list.len() < KEEP {
        list.push((home, id));
    }
}
