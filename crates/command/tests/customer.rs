//! Given/when/then tests of the Customer aggregate, one rule per test.

mod support;

use ledger_command::{BroadcasterRef, Customer, CustomerCommand, Integration, Refusal};
use ledger_events::{
    Answer, BroadcasterRegistered, CustomerEvent, CustomerRegistered, LoginData, LoginRecorded,
    PaymentCaptured, PaymentData, PaymentRefunded, Personal, ProfilePatch, ProfileUpdated,
    SubscriptionStarted,
};
use support::*;

// ------------------------------------------------------- registration, visibility

#[test]
fn registering_a_new_customer_records_the_profile_in_an_open_block() {
    let state = given([])
        .when(register(ours(), profile()))
        .then_events(vec![CustomerEvent::Registered(CustomerRegistered {
            customer_id: customer_id(),
            broadcaster_id: ours(),
            at: at(10),
            profile: Personal::Open(profile()),
        })]);
    assert!(state.exists());
    assert_eq!(state.id(), Some(customer_id()));
    assert_eq!(state.registered_by(), Some(ours()));
    assert!(state.is_visible_to(ours()));
    assert!(!state.is_visible_to(other_tenant()));
    assert_eq!(
        state.broadcasters().iter().copied().collect::<Vec<_>>(),
        vec![ours()]
    );
}

#[test]
fn a_customer_that_does_not_exist_is_visible_to_nobody() {
    let state = Customer::default();
    assert!(!state.exists());
    assert_eq!(state.id(), None);
    assert!(!state.is_visible_to(ours()));
}

#[test]
fn registering_an_existing_customer_id_is_refused_with_customer_exists() {
    given([registered_with(ours())])
        .when(register(other_tenant(), profile()))
        .then_refused("CUSTOMER_EXISTS");
}

#[test]
fn registering_again_after_anonymization_is_still_refused_with_customer_exists() {
    given([registered_with(ours()), anonymized_by(ours())])
        .when(register(ours(), profile()))
        .then_refused("CUSTOMER_EXISTS");
}

#[test]
fn every_command_on_a_customer_that_was_never_registered_is_not_found() {
    let mut commands = every_command_naming(ours());
    commands.push(link(ours()));
    for cmd in commands {
        let name = cmd.name();
        let r = given([]).when(cmd).then_refused("NOT_FOUND");
        assert_eq!(r, Refusal::NotFound, "{name}");
    }
}

#[test]
fn another_tenant_gets_not_found_for_every_command() {
    let history = [
        registered_with(ours()),
        started(sub(1), ours()),
        captured(pay(1), ours(), eur(1000)),
    ];
    for cmd in every_command_naming(other_tenant()) {
        given(history.clone()).when(cmd).then_refused("NOT_FOUND");
    }
    // Even with input that would otherwise be invalid: the tenant learns nothing.
    given(history.clone())
        .when(update(other_tenant(), ProfilePatch::default()))
        .then_refused("NOT_FOUND");
    given(history.clone())
        .when(capture(other_tenant(), pay(1), None, eur(0), Some("nope")))
        .then_refused("NOT_FOUND");
    // And the same after erasure.
    let mut erased = vec![registered_with(ours()), anonymized_by(ours())];
    erased.push(captured(pay(1), ours(), eur(1000)));
    for cmd in every_command_naming(other_tenant()) {
        given(erased.clone()).when(cmd).then_refused("NOT_FOUND");
    }
}

#[test]
fn a_linked_broadcaster_can_see_and_act_on_the_shared_customer() {
    let state = given([registered_with(ours())])
        .when(link(shared_broadcaster()))
        .then_events(vec![linked_at_10(shared_broadcaster())]);
    assert!(state.is_visible_to(shared_broadcaster()));
    assert_eq!(state.broadcasters().len(), 2);
    given([registered_with(ours()), linked(shared_broadcaster())])
        .when(login(shared_broadcaster(), "2001:db8::1"))
        .then_accepted();
}

fn linked_at_10(b: ledger_types::BroadcasterId) -> CustomerEvent {
    CustomerEvent::Linked(ledger_events::CustomerLinked {
        broadcaster_id: b,
        at: at(10),
    })
}

#[test]
fn linking_an_unknown_customer_is_not_found() {
    given([]).when(link(ours())).then_refused("NOT_FOUND");
}

#[test]
fn linking_an_already_linked_broadcaster_is_refused_with_already_linked() {
    given([registered_with(ours())])
        .when(link(ours()))
        .then_refused("ALREADY_LINKED");
    given([registered_with(ours()), linked(shared_broadcaster())])
        .when(link(shared_broadcaster()))
        .then_refused("ALREADY_LINKED");
}

#[test]
fn linking_after_anonymization_is_refused_with_customer_anonymized() {
    given([registered_with(ours()), anonymized_by(ours())])
        .when(link(shared_broadcaster()))
        .then_refused("CUSTOMER_ANONYMIZED");
}

// ------------------------------------------------------------------ input checks

fn invalid(r: &Refusal) -> &'static str {
    match r {
        Refusal::InvalidInput { field, .. } => field,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[track_caller]
fn register_is_invalid(p: ledger_events::Profile, field: &str) {
    let r = given([])
        .when(register(ours(), p))
        .then_refused("INVALID_INPUT");
    assert_eq!(invalid(&r), field);
}

#[test]
fn an_email_without_exactly_one_at_sign_is_invalid_input() {
    for bad in [
        "ada.example.org",
        "ada@@example.org",
        "a@b@c",
        "@example.org",
        "ada@",
    ] {
        register_is_invalid(
            {
                let mut v = profile();
                v.email = bad.into();
                v
            },
            "email",
        );
    }
}

#[test]
fn an_email_longer_than_254_bytes_is_invalid_input() {
    let local = "a".repeat(64);
    let ok = format!("{local}@{}", "d".repeat(254 - 65));
    assert_eq!(ok.len(), 254);
    given([])
        .when(register(ours(), {
            let mut v = profile();
            v.email = ok.clone();
            v
        }))
        .then_accepted();
    register_is_invalid(
        {
            let mut v = profile();
            v.email = format!("{ok}d");
            v
        },
        "email",
    );
}

#[test]
fn empty_or_over_long_names_are_invalid_input() {
    for (first, last, field) in [
        ("", "Lovelace", "first_name"),
        ("   ", "Lovelace", "first_name"),
        ("Ada", "", "last_name"),
        (&*"é".repeat(201), "Lovelace", "first_name"),
        ("Ada", &*"x".repeat(201), "last_name"),
    ] {
        register_is_invalid(
            {
                let mut v = profile();
                v.first_name = first.into();
                v.last_name = last.into();
                v
            },
            field,
        );
    }
    // 200 characters (400 bytes) is still fine: limits count characters.
    given([])
        .when(register(ours(), {
            let mut v = profile();
            v.first_name = "é".repeat(200);
            v
        }))
        .then_accepted();
}

#[test]
fn free_text_longer_than_2000_characters_is_invalid_input() {
    let long = "x".repeat(2001);
    let ok = "x".repeat(2000);
    register_is_invalid(
        {
            let mut v = profile();
            v.address = Some(long.clone());
            v
        },
        "address",
    );
    register_is_invalid(
        {
            let mut v = profile();
            v.company_name = Some(long.clone());
            v
        },
        "company_name",
    );
    register_is_invalid(
        {
            let mut v = profile();
            v.phone_number = Some(long.clone());
            v
        },
        "phone_number",
    );
    register_is_invalid(
        {
            let mut v = profile();
            v.custom_answers = vec![Answer {
                question: long.clone(),
                answer: "a".into(),
            }];
            v
        },
        "custom_answers.question",
    );
    register_is_invalid(
        {
            let mut v = profile();
            v.custom_answers = vec![Answer {
                question: "q".into(),
                answer: long.clone(),
            }];
            v
        },
        "custom_answers.answer",
    );
    register_is_invalid(
        {
            let mut v = profile();
            v.password_hash = long;
            v
        },
        "password_hash",
    );
    given([])
        .when(register(ours(), {
            let mut v = profile();
            v.address = Some(ok);
            v
        }))
        .then_accepted();
}

#[test]
fn control_characters_in_any_text_field_are_invalid_input() {
    for bad in [
        "Ada\0",
        "Ada\nLovelace",
        "\u{1b}[31m",
        "x\u{7f}",
        "x\u{85}",
        "\r",
    ] {
        let text = Some(bad.to_owned());
        let answer = |question: &str, answer: &str| Answer {
            question: question.into(),
            answer: answer.into(),
        };
        let cases = [
            (
                {
                    let mut v = profile();
                    v.email = format!("a{bad}@example.org");
                    v
                },
                "email",
            ),
            (
                {
                    let mut v = profile();
                    v.password_hash = bad.into();
                    v
                },
                "password_hash",
            ),
            (
                {
                    let mut v = profile();
                    v.first_name = format!("A{bad}");
                    v
                },
                "first_name",
            ),
            (
                {
                    let mut v = profile();
                    v.last_name = format!("L{bad}");
                    v
                },
                "last_name",
            ),
            (
                {
                    let mut v = profile();
                    v.address = text.clone();
                    v
                },
                "address",
            ),
            (
                {
                    let mut v = profile();
                    v.company_name = text.clone();
                    v
                },
                "company_name",
            ),
            (
                {
                    let mut v = profile();
                    v.phone_number = text.clone();
                    v
                },
                "phone_number",
            ),
            (
                {
                    let mut v = profile();
                    v.custom_answers = vec![answer(bad, "a")];
                    v
                },
                "custom_answers.question",
            ),
            (
                {
                    let mut v = profile();
                    v.custom_answers = vec![answer("q", bad)];
                    v
                },
                "custom_answers.answer",
            ),
        ];
        for (p, field) in cases {
            register_is_invalid(p, field);
        }
        let r = given([registered_with(ours())])
            .when(update(ours(), {
                let mut v = ProfilePatch::default();
                v.first_name = Some(format!("A{bad}"));
                v
            }))
            .then_refused("INVALID_INPUT");
        assert_eq!(invalid(&r), "first_name");
    }
    // Other Unicode is fine: accents, CJK, emoji, a non-breaking space, tabs are not.
    given([])
        .when(register(ours(), {
            let mut v = profile();
            v.first_name = "Zoë 山田 \u{a0}🙂".into();
            v
        }))
        .then_accepted();
}

#[test]
fn more_than_fifty_custom_answers_are_invalid_input() {
    let answers = |n: usize| {
        (0..n)
            .map(|i| Answer {
                question: format!("q{i}"),
                answer: "a".into(),
            })
            .collect::<Vec<_>>()
    };
    register_is_invalid(
        {
            let mut v = profile();
            v.custom_answers = answers(51);
            v
        },
        "custom_answers",
    );
    given([])
        .when(register(ours(), {
            let mut v = profile();
            v.custom_answers = answers(50);
            v
        }))
        .then_accepted();
}

#[test]
fn an_empty_password_hash_is_invalid_input() {
    register_is_invalid(
        {
            let mut v = profile();
            v.password_hash = String::new();
            v
        },
        "password_hash",
    );
}

#[test]
fn a_registration_ip_that_does_not_parse_is_invalid_input() {
    register_is_invalid(
        {
            let mut v = profile();
            v.registration_ip = Some("192.0.2.300".into());
            v
        },
        "registration_ip",
    );
    given([])
        .when(register(ours(), {
            let mut v = profile();
            v.registration_ip = None;
            v
        }))
        .then_accepted();
}

#[test]
fn an_empty_profile_patch_is_invalid_input() {
    let r = given([registered_with(ours())])
        .when(update(ours(), ProfilePatch::default()))
        .then_refused("INVALID_INPUT");
    assert_eq!(invalid(&r), "patch");
}

#[test]
fn a_profile_patch_is_recorded_in_an_open_block_and_checked_field_by_field() {
    given([registered_with(ours())])
        .when(update(ours(), new_email()))
        .then_events(vec![CustomerEvent::ProfileUpdated(ProfileUpdated {
            broadcaster_id: ours(),
            at: at(10),
            patch: Personal::Open(new_email()),
        })]);
    let cases = [
        (
            {
                let mut v = ProfilePatch::default();
                v.email = Some("no-at-sign".into());
                v
            },
            "email",
        ),
        (
            {
                let mut v = ProfilePatch::default();
                v.password_hash = Some(String::new());
                v
            },
            "password_hash",
        ),
        (
            {
                let mut v = ProfilePatch::default();
                v.first_name = Some(String::new());
                v
            },
            "first_name",
        ),
        (
            {
                let mut v = ProfilePatch::default();
                v.last_name = Some("x".repeat(201));
                v
            },
            "last_name",
        ),
        (
            {
                let mut v = ProfilePatch::default();
                v.address = Some("x".repeat(2001));
                v
            },
            "address",
        ),
        (
            {
                let mut v = ProfilePatch::default();
                v.company_name = Some("x".repeat(2001));
                v
            },
            "company_name",
        ),
        (
            {
                let mut v = ProfilePatch::default();
                v.phone_number = Some("x".repeat(2001));
                v
            },
            "phone_number",
        ),
    ];
    for (patch, field) in cases {
        let r = given([registered_with(ours())])
            .when(update(ours(), patch))
            .then_refused("INVALID_INPUT");
        assert_eq!(invalid(&r), field);
    }
}

#[test]
fn a_login_records_its_ip_in_an_open_block() {
    given([registered_with(ours())])
        .when(login(ours(), "203.0.113.5"))
        .then_events(vec![CustomerEvent::LoginRecorded(LoginRecorded {
            broadcaster_id: ours(),
            at: at(10),
            login: Personal::Open(LoginData {
                ip: "203.0.113.5".into(),
            }),
        })]);
}

#[test]
fn a_login_from_an_ip_that_does_not_parse_is_invalid_input() {
    for bad in ["", "localhost", "203.0.113", "::g"] {
        let r = given([registered_with(ours())])
            .when(login(ours(), bad))
            .then_refused("INVALID_INPUT");
        assert_eq!(invalid(&r), "ip");
    }
}

#[test]
fn refusals_never_echo_the_invalid_value() {
    let secret = "ada.lovelace.secret-address.example";
    let r = given([])
        .when(register(ours(), {
            let mut v = profile();
            v.email = secret.into();
            v
        }))
        .then_refused("INVALID_INPUT");
    assert!(!r.to_string().contains(secret));
    assert!(!format!("{r:?}").contains(secret));
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains(secret), "{json}");
    assert!(!json.contains("Lovelace"), "{json}");
}

#[test]
fn non_positive_amounts_are_invalid_input() {
    let history = [registered_with(ours()), captured(pay(1), ours(), eur(1000))];
    for amount in [eur(0), eur(-5)] {
        let r = given(history.clone())
            .when(capture(ours(), pay(2), None, amount, None))
            .then_refused("INVALID_INPUT");
        assert_eq!(invalid(&r), "amount");
        let r = given(history.clone())
            .when(refund_of(ours(), refund(1), pay(1), amount))
            .then_refused("INVALID_INPUT");
        assert_eq!(invalid(&r), "amount");
    }
}

#[test]
fn amounts_above_ten_to_the_twelve_minor_units_are_invalid_input() {
    let max = ledger_types::Money::MAX_AMOUNT;
    let history = [registered_with(ours()), captured(pay(1), ours(), eur(max))];
    for amount in [eur(max + 1), eur(i64::MAX)] {
        let r = given(history.clone())
            .when(capture(ours(), pay(2), None, amount, None))
            .then_refused("INVALID_INPUT");
        assert_eq!(invalid(&r), "amount");
        assert!(!r.to_string().contains(&amount.minor().to_string()), "{r}");
        let r = given(history.clone())
            .when(refund_of(ours(), refund(1), pay(1), amount))
            .then_refused("INVALID_INPUT");
        assert_eq!(invalid(&r), "amount");
    }
    given(history.clone())
        .when(capture(ours(), pay(2), None, eur(max), None))
        .then_accepted();
    given(history)
        .when(refund_of(ours(), refund(1), pay(1), eur(max)))
        .then_accepted();
}

#[test]
fn a_currency_off_the_iso_list_is_invalid_input() {
    let zzz = ledger_types::Money::new(100, ledger_types::Currency::from_stored("ZZZ").unwrap());
    let r = given([registered_with(ours())])
        .when(capture(ours(), pay(1), None, zzz, None))
        .then_refused("INVALID_INPUT");
    assert_eq!(invalid(&r), "amount.currency");
}

// ----------------------------------------------------------------- subscriptions

#[test]
fn starting_a_subscription_records_it_as_active() {
    let state = given([registered_with(ours())])
        .when(start(ours(), sub(1)))
        .then_events(vec![CustomerEvent::SubscriptionStarted(
            SubscriptionStarted {
                subscription_id: sub(1),
                broadcaster_id: ours(),
                offer_id: offer("premium-monthly"),
                at: at(10),
                ends_at: None,
            },
        )]);
    assert_eq!(state.active_subscriptions(), vec![sub(1)]);
    let s = state.subscription(sub(1)).unwrap();
    assert!(s.is_active());
    assert_eq!(s.broadcaster_id, ours());
}

#[test]
fn a_subscription_whose_end_is_not_after_its_start_is_refused_as_a_conflict_with_now() {
    for end in [at(10), at(9)] {
        let mut cmd = start(ours(), sub(1));
        if let CustomerCommand::StartSubscription { ends_at, .. } = &mut cmd {
            *ends_at = Some(end);
        }
        let r = given([registered_with(ours())])
            .when(cmd)
            .then_refused("ENDS_AT_PASSED");
        assert_eq!(r, Refusal::EndsAtPassed);
    }
}

#[test]
fn starting_a_subscription_with_an_existing_id_is_refused_with_subscription_exists() {
    given([registered_with(ours()), started(sub(1), ours())])
        .when(start(ours(), sub(1)))
        .then_refused("SUBSCRIPTION_EXISTS");
    // Terminated ids are not reused either.
    given([
        registered_with(ours()),
        started(sub(1), ours()),
        terminated(sub(1)),
    ])
    .when(start(ours(), sub(1)))
    .then_refused("SUBSCRIPTION_EXISTS");
}

#[test]
fn terminating_an_active_subscription_makes_it_inactive() {
    let state = given([registered_with(ours()), started(sub(1), ours())])
        .when(terminate(ours(), sub(1)))
        .then_events(vec![CustomerEvent::SubscriptionTerminated(
            ledger_events::SubscriptionTerminated {
                subscription_id: sub(1),
                at: at(10),
            },
        )]);
    assert!(state.active_subscriptions().is_empty());
    assert_eq!(
        state.subscription(sub(1)).unwrap().terminated_at,
        Some(at(10))
    );
}

#[test]
fn terminating_an_unknown_subscription_is_refused_with_subscription_not_found() {
    given([registered_with(ours())])
        .when(terminate(ours(), sub(1)))
        .then_refused("SUBSCRIPTION_NOT_FOUND");
}

#[test]
fn terminating_another_broadcasters_subscription_is_refused_with_subscription_not_found() {
    given([
        registered_with(ours()),
        linked(shared_broadcaster()),
        started(sub(1), shared_broadcaster()),
    ])
    .when(terminate(ours(), sub(1)))
    .then_refused("SUBSCRIPTION_NOT_FOUND");
}

#[test]
fn terminating_an_already_terminated_subscription_is_refused_with_subscription_not_active() {
    given([
        registered_with(ours()),
        started(sub(1), ours()),
        terminated(sub(1)),
    ])
    .when(terminate(ours(), sub(1)))
    .then_refused("SUBSCRIPTION_NOT_ACTIVE");
}

#[test]
fn active_subscriptions_are_sorted_and_exclude_terminated_ones() {
    let state = Customer::from_events(&[
        registered_with(ours()),
        linked(shared_broadcaster()),
        started(sub(3), ours()),
        started(sub(1), shared_broadcaster()),
        started(sub(2), ours()),
        terminated(sub(2)),
    ]);
    assert_eq!(state.active_subscriptions(), vec![sub(1), sub(3)]);
    assert_eq!(state.subscriptions().count(), 3);
}

// ---------------------------------------------------------------------- payments

#[test]
fn capturing_a_payment_records_amount_offer_subscription_and_payer_ip() {
    let state = given([registered_with(ours()), started(sub(1), ours())])
        .when(capture(
            ours(),
            pay(1),
            Some(sub(1)),
            eur(1999),
            Some("198.51.100.7"),
        ))
        .then_events(vec![CustomerEvent::PaymentCaptured(PaymentCaptured {
            payment_id: pay(1),
            broadcaster_id: ours(),
            offer_id: offer("premium-monthly"),
            subscription_id: Some(sub(1)),
            amount: eur(1999),
            at: at(10),
            payer: Personal::Open(PaymentData {
                ip: Some("198.51.100.7".into()),
            }),
        })]);
    let p = state.payment(pay(1)).unwrap();
    assert_eq!(p.amount, eur(1999));
    assert_eq!(p.refunded, eur(0));
    assert_eq!(p.refundable(), eur(1999));
    assert_eq!(state.payments().count(), 1);
}

#[test]
fn capturing_a_duplicate_payment_id_is_refused_with_payment_exists() {
    given([registered_with(ours()), captured(pay(1), ours(), eur(500))])
        .when(capture(ours(), pay(1), None, eur(500), None))
        .then_refused("PAYMENT_EXISTS");
}

#[test]
fn capturing_against_an_unknown_or_foreign_subscription_is_refused_with_subscription_not_found() {
    given([registered_with(ours())])
        .when(capture(ours(), pay(1), Some(sub(1)), eur(500), None))
        .then_refused("SUBSCRIPTION_NOT_FOUND");
    given([
        registered_with(ours()),
        linked(shared_broadcaster()),
        started(sub(1), shared_broadcaster()),
    ])
    .when(capture(ours(), pay(1), Some(sub(1)), eur(500), None))
    .then_refused("SUBSCRIPTION_NOT_FOUND");
}

#[test]
fn capturing_against_a_terminated_subscription_of_the_same_broadcaster_is_accepted() {
    given([
        registered_with(ours()),
        started(sub(1), ours()),
        terminated(sub(1)),
    ])
    .when(capture(ours(), pay(1), Some(sub(1)), eur(500), None))
    .then_accepted();
}

#[test]
fn a_payer_ip_that_does_not_parse_is_invalid_input() {
    let r = given([registered_with(ours())])
        .when(capture(ours(), pay(1), None, eur(500), Some("not an ip")))
        .then_refused("INVALID_INPUT");
    assert_eq!(invalid(&r), "payer_ip");
}

#[test]
fn a_partial_refund_copies_broadcaster_and_offer_from_the_payment() {
    let mut payment = captured(pay(1), ours(), eur(1000));
    if let CustomerEvent::PaymentCaptured(p) = &mut payment {
        p.offer_id = offer("annual");
    }
    let state = given([registered_with(ours()), payment])
        .when(refund_of(ours(), refund(1), pay(1), eur(300)))
        .then_events(vec![CustomerEvent::PaymentRefunded(PaymentRefunded {
            refund_id: refund(1),
            payment_id: pay(1),
            broadcaster_id: ours(),
            offer_id: offer("annual"),
            amount: eur(300),
            at: at(10),
        })]);
    let p = state.payment(pay(1)).unwrap();
    assert_eq!(
        p.amount,
        eur(1000),
        "a refund never changes the captured amount"
    );
    assert_eq!(p.refunded, eur(300));
    assert_eq!(p.refundable(), eur(700));
    assert_eq!(state.refund(refund(1)).unwrap().amount, eur(300));
    assert_eq!(state.refunds().count(), 1);
}

#[test]
fn refunding_an_unknown_payment_is_refused_with_payment_not_found() {
    given([registered_with(ours())])
        .when(refund_of(ours(), refund(1), pay(1), eur(100)))
        .then_refused("PAYMENT_NOT_FOUND");
}

#[test]
fn refunding_another_broadcasters_payment_is_refused_with_payment_not_found() {
    given([
        registered_with(ours()),
        linked(shared_broadcaster()),
        captured(pay(1), shared_broadcaster(), eur(1000)),
    ])
    .when(refund_of(ours(), refund(1), pay(1), eur(100)))
    .then_refused("PAYMENT_NOT_FOUND");
}

#[test]
fn refunding_with_a_duplicate_refund_id_is_refused_with_refund_exists() {
    given([
        registered_with(ours()),
        captured(pay(1), ours(), eur(1000)),
        refunded(refund(1), pay(1), ours(), eur(100)),
    ])
    .when(refund_of(ours(), refund(1), pay(1), eur(100)))
    .then_refused("REFUND_EXISTS");
}

#[test]
fn refunding_in_another_currency_is_refused_with_currency_mismatch() {
    given([registered_with(ours()), captured(pay(1), ours(), eur(1000))])
        .when(refund_of(ours(), refund(1), pay(1), usd(100)))
        .then_refused("CURRENCY_MISMATCH");
}

#[test]
fn refunding_more_than_is_left_is_refused_and_says_how_much_is_refundable() {
    let r = given([
        registered_with(ours()),
        captured(pay(1), ours(), eur(1000)),
        refunded(refund(1), pay(1), ours(), eur(600)),
    ])
    .when(refund_of(ours(), refund(2), pay(1), eur(401)))
    .then_refused("REFUND_EXCEEDS_PAYMENT");
    assert_eq!(
        r,
        Refusal::RefundExceedsPayment {
            refundable: eur(400)
        }
    );
}

#[test]
fn refunds_can_add_up_to_exactly_the_captured_amount_and_no_further() {
    let events = given([
        registered_with(ours()),
        captured(pay(1), ours(), eur(1000)),
        refunded(refund(1), pay(1), ours(), eur(600)),
    ])
    .when(refund_of(ours(), refund(2), pay(1), eur(400)))
    .then_accepted();
    let mut history = vec![
        registered_with(ours()),
        captured(pay(1), ours(), eur(1000)),
        refunded(refund(1), pay(1), ours(), eur(600)),
    ];
    history.extend(events);
    let r = given(history)
        .when(refund_of(ours(), refund(3), pay(1), eur(1)))
        .then_refused("REFUND_EXCEEDS_PAYMENT");
    assert_eq!(r, Refusal::RefundExceedsPayment { refundable: eur(0) });
}

#[test]
fn a_refund_larger_than_any_sum_does_not_overflow() {
    // A capture of i64::MAX predates `Money::MAX_AMOUNT`; such events stay in logs.
    let r = given([
        registered_with(ours()),
        captured(pay(1), ours(), eur(i64::MAX)),
        refunded(refund(1), pay(1), ours(), eur(i64::MAX - 1)),
    ])
    .when(refund_of(ours(), refund(2), pay(1), eur(2)))
    .then_refused("REFUND_EXCEEDS_PAYMENT");
    assert_eq!(r, Refusal::RefundExceedsPayment { refundable: eur(1) });
}

// --------------------------------------------------------------------- anonymize

#[test]
fn a_white_label_broadcaster_can_anonymize_its_exclusive_customer() {
    let state = given([
        registered_with(ours()),
        started(sub(1), ours()),
        terminated(sub(1)),
        captured(pay(1), ours(), eur(1000)),
    ])
    .when(anonymize(white_label(ours()), request(7)))
    .then_events(vec![CustomerEvent::Anonymized(receipt_by_us(request(7)))]);
    assert_eq!(state.anonymized(), Some(&receipt_by_us(request(7))));
    assert!(state.is_anonymized());
    // Still visible to its broadcaster (as a tombstone), and revenue is untouched.
    assert!(state.is_visible_to(ours()));
    assert_eq!(state.payment(pay(1)).unwrap().amount, eur(1000));
}

#[test]
fn the_erasure_receipt_lists_every_category_and_precondition() {
    let events = given([registered_with(ours())])
        .when(anonymize(white_label(ours()), request(1)))
        .then_accepted();
    let [CustomerEvent::Anonymized(r)] = events.as_slice() else {
        panic!("expected exactly one Anonymized event, got {events:?}");
    };
    assert_eq!(r.categories, ledger_events::PersonalCategory::ALL.to_vec());
    assert_eq!(r.preconditions, ledger_events::Precondition::ALL.to_vec());
    assert_eq!(r.customer_id, customer_id());
    assert_eq!(r.broadcaster_id, ours());
    assert_eq!(r.request_id, request(1));
}

#[test]
fn anonymizing_is_refused_while_a_subscription_is_active_and_lists_it() {
    let r = given([
        registered_with(ours()),
        started(sub(2), ours()),
        started(sub(1), ours()),
        started(sub(3), ours()),
        terminated(sub(3)),
    ])
    .when(anonymize(white_label(ours()), request(1)))
    .then_refused("ACTIVE_SUBSCRIPTION");
    assert_eq!(
        r,
        Refusal::ActiveSubscription {
            subscriptions: vec![sub(1), sub(2)]
        }
    );
}

#[test]
fn anonymizing_is_accepted_once_the_last_subscription_is_terminated() {
    let history = vec![registered_with(ours()), started(sub(1), ours())];
    given(history.clone())
        .when(anonymize(white_label(ours()), request(1)))
        .then_refused("ACTIVE_SUBSCRIPTION");
    let mut history = history;
    history.push(terminated(sub(1)));
    given(history)
        .when(anonymize(white_label(ours()), request(1)))
        .then_accepted();
}

#[test]
fn a_broadcaster_with_a_shared_integration_is_refused_with_not_white_label() {
    given([registered_with(shared_broadcaster())])
        .when(anonymize(shared(shared_broadcaster()), request(1)))
        .then_refused("NOT_WHITE_LABEL");
}

#[test]
fn a_customer_linked_to_several_broadcasters_is_refused_with_shared_across_broadcasters() {
    given([registered_with(ours()), linked(other_tenant())])
        .when(anonymize(white_label(ours()), request(1)))
        .then_refused("SHARED_ACROSS_BROADCASTERS");
    // Also for the broadcaster that was linked later.
    given([registered_with(ours()), linked(other_tenant())])
        .when(anonymize(white_label(other_tenant()), request(1)))
        .then_refused("SHARED_ACROSS_BROADCASTERS");
}

#[test]
fn a_tenant_that_cannot_see_the_customer_cannot_anonymize_it_and_gets_not_found() {
    given([registered_with(ours())])
        .when(anonymize(white_label(other_tenant()), request(1)))
        .then_refused("NOT_FOUND");
    given([registered_with(ours()), anonymized_by(ours())])
        .when(anonymize(white_label(other_tenant()), request(1)))
        .then_refused("NOT_FOUND");
}

#[test]
fn anonymize_refusals_come_in_the_documented_order() {
    let all_blockers = vec![
        registered_with(ours()),
        linked(shared_broadcaster()),
        started(sub(1), shared_broadcaster()),
    ];
    given(all_blockers.clone())
        .when(anonymize(shared(ours()), request(1)))
        .then_refused("NOT_WHITE_LABEL");
    given(all_blockers.clone())
        .when(anonymize(white_label(ours()), request(1)))
        .then_refused("SHARED_ACROSS_BROADCASTERS");
    given([registered_with(ours()), started(sub(1), ours())])
        .when(anonymize(shared(ours()), request(1)))
        .then_refused("NOT_WHITE_LABEL");
}

#[test]
fn repeated_anonymize_returns_no_new_events_and_the_first_receipt_stays() {
    let first = receipt(ours(), request(1), at(6));
    let history = vec![registered_with(ours()), anonymized_by(ours())];
    let state = given(history.clone())
        .when(anonymize(white_label(ours()), request(2)))
        .then_no_events();
    assert_eq!(state.anonymized(), Some(&first));
    // The repeat is idempotent before the integration check too: the erasure
    // already happened, so there is nothing left to refuse.
    given(history.clone())
        .when(anonymize(shared(ours()), request(3)))
        .then_no_events();
    // A second receipt in the log (say, a concurrent writer) never replaces the first.
    let mut odd = history;
    odd.push(CustomerEvent::Anonymized(receipt(
        ours(),
        request(2),
        at(9),
    )));
    assert_eq!(Customer::from_events(&odd).anonymized(), Some(&first));
}

#[test]
fn erasure_blockers_lists_every_blocker_in_order_for_a_dry_run() {
    let state = Customer::from_events(&[
        registered_with(ours()),
        linked(shared_broadcaster()),
        started(sub(2), shared_broadcaster()),
        started(sub(1), ours()),
    ]);
    assert_eq!(
        state.erasure_blockers(&shared(ours())),
        Ok(vec![
            Refusal::NotWhiteLabel,
            Refusal::SharedAcrossBroadcasters,
            Refusal::ActiveSubscription {
                subscriptions: vec![sub(1), sub(2)]
            },
        ])
    );
    // handle refuses with exactly the first blocker.
    assert_eq!(
        state.handle(&anonymize(shared(ours()), request(1))),
        Err(Refusal::NotWhiteLabel)
    );
}

#[test]
fn erasure_blockers_is_not_found_for_a_tenant_that_cannot_see_the_customer() {
    let state = Customer::from_events(&[registered_with(ours())]);
    assert_eq!(
        state.erasure_blockers(&white_label(other_tenant())),
        Err(Refusal::NotFound)
    );
    assert_eq!(
        Customer::default().erasure_blockers(&white_label(ours())),
        Err(Refusal::NotFound)
    );
}

#[test]
fn erasure_blockers_is_empty_for_an_erasable_or_already_anonymized_customer() {
    let erasable = Customer::from_events(&[registered_with(ours())]);
    assert_eq!(erasable.erasure_blockers(&white_label(ours())), Ok(vec![]));
    let erased = Customer::from_events(&[registered_with(ours()), anonymized_by(ours())]);
    assert_eq!(erased.erasure_blockers(&white_label(ours())), Ok(vec![]));
}

// ---------------------------------------------------------------- after erasure

fn erased_history() -> Vec<CustomerEvent> {
    vec![
        registered_with(ours()),
        started(sub(1), ours()),
        captured(pay(1), ours(), eur(1000)),
        terminated(sub(1)),
        anonymized_by(ours()),
    ]
}

#[test]
fn personal_data_writes_after_erasure_are_refused_with_customer_anonymized() {
    for cmd in [
        update(ours(), new_email()),
        login(ours(), "203.0.113.5"),
        link(other_tenant()),
        start(ours(), sub(2)),
        capture(ours(), pay(2), None, eur(500), Some("203.0.113.5")),
    ] {
        let name = cmd.name();
        let r = given(erased_history())
            .when(cmd)
            .then_refused("CUSTOMER_ANONYMIZED");
        assert_eq!(r, Refusal::CustomerAnonymized, "{name}");
    }
}

#[test]
fn revenue_without_personal_data_still_flows_after_erasure() {
    let state = given(erased_history())
        .when(capture(ours(), pay(2), Some(sub(1)), eur(500), None))
        .then_events(vec![CustomerEvent::PaymentCaptured(PaymentCaptured {
            payment_id: pay(2),
            broadcaster_id: ours(),
            offer_id: offer("premium-monthly"),
            subscription_id: Some(sub(1)),
            amount: eur(500),
            at: at(10),
            payer: Personal::Open(PaymentData::default()),
        })]);
    assert_eq!(state.payment(pay(2)).unwrap().amount, eur(500));
}

#[test]
fn refunds_of_old_payments_are_accepted_after_erasure() {
    let state = given(erased_history())
        .when(refund_of(ours(), refund(1), pay(1), eur(1000)))
        .then_events(vec![CustomerEvent::PaymentRefunded(PaymentRefunded {
            refund_id: refund(1),
            payment_id: pay(1),
            broadcaster_id: ours(),
            offer_id: offer("premium-monthly"),
            amount: eur(1000),
            at: at(10),
        })]);
    assert_eq!(state.payment(pay(1)).unwrap().refundable(), eur(0));
    // And the usual refund rules still hold.
    given(erased_history())
        .when(refund_of(ours(), refund(1), pay(1), eur(1001)))
        .then_refused("REFUND_EXCEEDS_PAYMENT");
}

#[test]
fn terminating_after_erasure_follows_the_normal_rules() {
    given(erased_history())
        .when(terminate(ours(), sub(1)))
        .then_refused("SUBSCRIPTION_NOT_ACTIVE");
    given(erased_history())
        .when(terminate(ours(), sub(2)))
        .then_refused("SUBSCRIPTION_NOT_FOUND");
}

// ------------------------------------------------------------------------- apply

#[test]
fn apply_accepts_sealed_personal_blocks_and_folds_to_the_same_state() {
    let history = vec![
        registered_with(ours()),
        linked(shared_broadcaster()),
        CustomerEvent::ProfileUpdated(ProfileUpdated {
            broadcaster_id: ours(),
            at: at(1),
            patch: Personal::Open(new_email()),
        }),
        CustomerEvent::LoginRecorded(LoginRecorded {
            broadcaster_id: ours(),
            at: at(1),
            login: Personal::Open(LoginData {
                ip: "192.0.2.1".into(),
            }),
        }),
        started(sub(1), ours()),
        captured(pay(1), ours(), eur(1000)),
        refunded(refund(1), pay(1), ours(), eur(10)),
        terminated(sub(1)),
        anonymized_by(ours()),
    ];
    let sealed_history: Vec<_> = history.iter().map(seal).collect();
    assert_ne!(history, sealed_history);
    let open = Customer::from_events(&history);
    assert_eq!(Customer::from_events(&sealed_history), open);
    // Decisions are the same too: the aggregate never needs plaintext.
    let cmd = refund_of(ours(), refund(2), pay(1), eur(990));
    assert_eq!(
        Customer::from_events(&sealed_history).handle(&cmd),
        open.handle(&cmd)
    );
}

#[test]
fn apply_absorbs_odd_histories_without_failing() {
    let mut second_registration = registered_with(other_tenant());
    if let CustomerEvent::Registered(r) = &mut second_registration {
        r.customer_id = ledger_types::CustomerId::new();
    }
    let state = Customer::from_events(&[
        // Events before registration do not make the customer exist.
        terminated(sub(9)),
        refunded(refund(9), pay(9), ours(), eur(5)),
        registered_with(ours()),
        second_registration,
        captured(pay(1), ours(), eur(1000)),
        captured(pay(1), ours(), eur(7)),
        refunded(refund(1), pay(1), ours(), usd(10)),
        refunded(refund(2), pay(2), ours(), eur(10)),
        refunded(refund(3), pay(1), ours(), eur(100)),
        refunded(refund(3), pay(1), ours(), eur(900)),
        started(sub(1), ours()),
        started(sub(1), other_tenant()),
        terminated(sub(1)),
        terminated(sub(1)),
        terminated(sub(2)),
    ]);
    assert_eq!(
        state.id(),
        Some(customer_id()),
        "the first registration wins"
    );
    assert_eq!(state.registered_by(), Some(ours()));
    assert!(!state.is_visible_to(other_tenant()));
    let p = state.payment(pay(1)).unwrap();
    assert_eq!(p.amount, eur(1000), "the first capture wins");
    assert_eq!(
        p.refunded,
        eur(100),
        "only well-formed, first-seen refunds count"
    );
    assert_eq!(state.refunds().count(), 1);
    assert!(state.refund(refund(9)).is_none());
    assert_eq!(state.subscription(sub(1)).unwrap().broadcaster_id, ours());
    assert!(state.active_subscriptions().is_empty());
    assert!(state.subscription(sub(2)).is_none());
}

#[test]
fn apply_of_a_refund_above_the_captured_amount_keeps_refundable_at_zero() {
    let state = Customer::from_events(&[
        registered_with(ours()),
        captured(pay(1), ours(), eur(100)),
        refunded(refund(1), pay(1), ours(), eur(i64::MAX)),
        refunded(refund(2), pay(1), ours(), eur(i64::MAX)),
    ]);
    let p = state.payment(pay(1)).unwrap();
    assert_eq!(p.refunded, eur(i64::MAX));
    assert_eq!(p.refundable(), eur(0));
}

// ------------------------------------------------------------ refusals, commands

#[test]
fn every_refusal_has_its_documented_code() {
    let table = [
        (Refusal::NotFound, "NOT_FOUND"),
        (Refusal::NotWhiteLabel, "NOT_WHITE_LABEL"),
        (
            Refusal::SharedAcrossBroadcasters,
            "SHARED_ACROSS_BROADCASTERS",
        ),
        (
            Refusal::ActiveSubscription {
                subscriptions: vec![sub(1)],
            },
            "ACTIVE_SUBSCRIPTION",
        ),
        (Refusal::CustomerAnonymized, "CUSTOMER_ANONYMIZED"),
        (Refusal::CustomerExists, "CUSTOMER_EXISTS"),
        (Refusal::AlreadyLinked, "ALREADY_LINKED"),
        (Refusal::SubscriptionExists, "SUBSCRIPTION_EXISTS"),
        (Refusal::SubscriptionNotFound, "SUBSCRIPTION_NOT_FOUND"),
        (Refusal::SubscriptionNotActive, "SUBSCRIPTION_NOT_ACTIVE"),
        (Refusal::PaymentExists, "PAYMENT_EXISTS"),
        (Refusal::PaymentNotFound, "PAYMENT_NOT_FOUND"),
        (Refusal::RefundExists, "REFUND_EXISTS"),
        (
            Refusal::RefundExceedsPayment { refundable: eur(5) },
            "REFUND_EXCEEDS_PAYMENT",
        ),
        (Refusal::CurrencyMismatch, "CURRENCY_MISMATCH"),
        (
            Refusal::InvalidInput {
                field: "email",
                reason: "r",
            },
            "INVALID_INPUT",
        ),
    ];
    for (r, code) in table {
        assert_eq!(r.code(), code);
        assert!(!r.to_string().is_empty());
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["code"], code);
        assert_eq!(json["message"], r.to_string());
    }
}

#[test]
fn refusals_serialize_their_details_for_machines() {
    let r = Refusal::ActiveSubscription {
        subscriptions: vec![sub(1), sub(2)],
    };
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        json["subscriptions"],
        serde_json::json!([sub(1).to_string(), sub(2).to_string()])
    );
    assert!(r.to_string().contains(&sub(2).to_string()));
    let json = serde_json::to_value(Refusal::RefundExceedsPayment {
        refundable: eur(400),
    })
    .unwrap();
    assert_eq!(
        json["refundable"],
        serde_json::json!({"minor": 400, "currency": "EUR"})
    );
    let json = serde_json::to_value(Refusal::InvalidInput {
        field: "email",
        reason: "bad",
    })
    .unwrap();
    assert_eq!(json["field"], "email");
    assert_eq!(json["reason"], "bad");
}

#[test]
fn command_debug_output_redacts_personal_fields() {
    let cmds = [
        register(ours(), profile()),
        update(ours(), new_email()),
        login(ours(), "203.0.113.77"),
        capture(ours(), pay(1), None, eur(1), Some("203.0.113.77")),
    ];
    for cmd in cmds {
        let s = format!("{cmd:?}");
        for personal in [
            "ada@",
            "Lovelace",
            "203.0.113.77",
            "192.0.2.10",
            "new.example",
        ] {
            assert!(!s.contains(personal), "{s}");
        }
        assert!(s.contains(&ours().to_string()), "ids stay visible: {s}");
    }
}

#[test]
fn a_broadcaster_ref_is_built_from_the_broadcaster_registered_event() {
    let e = BroadcasterRegistered {
        broadcaster_id: ours(),
        name: "Acme TV".into(),
        integration: Integration::WhiteLabel,
        at: at(0),
    };
    assert_eq!(BroadcasterRef::from(&e), white_label(ours()));
}

#[test]
fn handle_does_not_change_the_state_it_decides_on() {
    let state = Customer::from_events(&erased_history());
    let before = state.clone();
    let cmd: CustomerCommand = refund_of(ours(), refund(1), pay(1), eur(5));
    let _ = state.handle(&cmd);
    assert_eq!(state, before);
}

// ------------------------------------------------------- forget list (restores)

fn reapply(b: ledger_types::BroadcasterId) -> CustomerCommand {
    CustomerCommand::ReapplyErasure {
        request_id: request(7),
        broadcaster_id: b,
        at: at(90),
    }
}

#[test]
fn an_erasure_on_the_forget_list_is_reapplied_even_with_an_active_subscription_in_a_restored_log() {
    let events = given([
        registered_with(ours()),
        started(sub(1), ours()),
        captured(pay(1), ours(), eur(1000)),
    ])
    .when(reapply(ours()))
    .then_accepted();
    let [CustomerEvent::Anonymized(a)] = events.as_slice() else {
        panic!("expected one CustomerAnonymized, got {events:?}");
    };
    assert_eq!(
        a.preconditions,
        vec![ledger_events::Precondition::OnForgetList]
    );
    assert_eq!(a.categories, ledger_events::PersonalCategory::ALL.to_vec());
    assert_eq!(a.broadcaster_id, ours());
}

#[test]
fn reapplying_an_erasure_the_log_already_holds_records_nothing() {
    given([registered_with(ours()), anonymized_by(ours())])
        .when(reapply(ours()))
        .then_no_events();
}

#[test]
fn reapplying_an_erasure_of_a_customer_the_log_never_registered_is_not_found() {
    given([]).when(reapply(ours())).then_refused("NOT_FOUND");
}
