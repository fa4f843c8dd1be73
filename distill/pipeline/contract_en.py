"""English synthetic contracts, same five elements and the same kinds of look-alikes as the Chinese ones.

The answer keys stay Chinese (甲方 = Party A, 乙方 = Party B, ...) so one answer format covers both
languages; names and the breach clause are copied in English, the amount and date are canonicalised.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

from distill.pipeline.contract_parts import (
    EN_CITIES,
    EN_GOODS,
    EN_SERVICES,
    ContractBody,
    ContractKind,
    PartyBlock,
    assemble_body,
    date_fact,
    draw_draft,
    money_fact,
    penalty_value,
)


def _money(rng: random.Random, label: str, value: int) -> tuple[str, dict]:
    return money_fact(rng, "en", label, value)


def _day(rng: random.Random, label: str, day: dt.date) -> tuple[str, dict]:
    return date_fact(rng, "en", label, day)


def _lease(rng: random.Random, signing: dt.date) -> ContractKind:
    monthly = rng.randrange(2000, 30001, 500)
    months = rng.choice((6, 12, 24))
    monthly_text, monthly_fact = _money(rng, "monthly rent", monthly)
    deposit_text, deposit_fact = _money(rng, "security deposit", monthly * rng.choice((1, 2)))
    start_text, start_fact = _day(rng, "lease start", signing + dt.timedelta(days=rng.randint(1, 30)))
    return ContractKind(
        title="LEASE AGREEMENT",
        role_a="Lessor",
        role_b="Lessee",
        payer="Party B",
        subject=f"Party A leases the premises at {rng.randint(1, 999)} Park Road, {rng.choice(EN_CITIES)} to Party B.",
        amount_label="total rent",
        amount=monthly * months,
        payment=f"Monthly rent is {monthly_text} for {months} months; total rent is {{amount}}. "
        f"Security deposit: {deposit_text}.",
        other_amounts=[monthly_fact, deposit_fact],
        term=f"The lease starts on {start_text}.",
        other_dates=[start_fact],
    )


def _purchase(rng: random.Random, signing: dt.date) -> ContractKind:
    goods, unit = rng.choice(EN_GOODS)
    price = rng.randrange(800, 20001, 100)
    quantity = rng.randint(2, 120)
    total = price * quantity
    deposit_text, deposit_fact = _money(rng, "down payment", total // 10 // 100 * 100 or 100)
    delivery_text, delivery_fact = _day(rng, "delivery date", signing + dt.timedelta(days=rng.randint(7, 90)))
    return ContractKind(
        title="PURCHASE CONTRACT",
        role_a="Buyer",
        role_b="Seller",
        payer="Party A",
        subject=f"Party B sells {quantity} {unit} of {goods} to Party A at {price} yuan each.",
        amount_label="total contract price",
        amount=total,
        payment=f"The total contract price is {{amount}}. A down payment of {deposit_text} is due within five days.",
        other_amounts=[deposit_fact],
        term=f"Delivery shall be made by {delivery_text}.",
        other_dates=[delivery_fact],
    )


def _service(rng: random.Random, signing: dt.date) -> ContractKind:
    total = rng.randrange(10_000, 2_000_001, 1000)
    first_text, first_fact = _money(rng, "first installment", total * 3 // 10 // 100 * 100)
    end_text, end_fact = _day(rng, "service end date", signing + dt.timedelta(days=rng.randint(60, 365)))
    return ContractKind(
        title="SERVICE AGREEMENT",
        role_a="Client",
        role_b="Service Provider",
        payer="Party A",
        subject=f"Party B shall provide {rng.choice(EN_SERVICES)} services to Party A.",
        amount_label="total service fee",
        amount=total,
        payment=f"The total service fee is {{amount}}, with a first installment of {first_text}.",
        other_amounts=[first_fact],
        term=f"Services continue until {end_text}.",
        other_dates=[end_fact],
    )


_KINDS: tuple[Callable[[random.Random, dt.date], ContractKind], ...] = (_lease, _purchase, _service)


def _breach(rng: random.Random, kind: ContractKind) -> tuple[str, dict | None]:
    performer = "Party B" if kind.payer == "Party A" else "Party A"
    trigger = rng.choice(
        (
            "If either party breaches this Agreement",
            f"If {kind.payer} fails to pay on time",
            f"If {performer} fails to perform its obligations",
        )
    )
    penalty = None
    consequence = rng.choice(
        (
            f"it shall pay liquidated damages of {rng.choice((5, 10, 20))}% of the total contract price",
            "it shall compensate the other party for all losses caused",
            "penalty",
        )
    )
    if consequence == "penalty":
        text, penalty = _money(rng, "liquidated damages", penalty_value(rng, kind.amount))
        consequence = f"it shall pay liquidated damages of {text}"
    body = f"{trigger}, {consequence}."
    if rng.random() < 0.4:
        body += f" A delay of more than {rng.choice((15, 30))} days entitles the other party to terminate."
    return body, penalty


def _party_block(rng: random.Random, kind: ContractKind, a: str, b: str) -> PartyBlock:
    style = rng.choice(("plain", "party_role", "hereinafter", "narrative"))
    if style == "narrative":
        fa, fb = f'{a} ("Party A")', f'{b} ("Party B")'
        return PartyBlock([f"This Agreement is entered into by {fa} and {fb}."], style, [fa], [fb])
    line_a, line_b = {
        "plain": (f"Party A: {a}", f"Party B: {b}"),
        "party_role": (f"Party A ({kind.role_a}): {a}", f"Party B ({kind.role_b}): {b}"),
        "hereinafter": (
            f'{kind.role_a} (hereinafter "Party A"): {a}',
            f'{kind.role_b} (hereinafter "Party B"): {b}',
        ),
    }[style]
    lines = [line_a, line_b] if rng.random() < 0.75 else [line_b, line_a]
    return PartyBlock(lines, style, [line_a], [line_b])


def build_en_contract(rng: random.Random) -> ContractBody:
    """One English contract with its canonical answer and the facts behind it."""
    draft = draw_draft(rng, "en", _KINDS, _breach, _party_block)
    kind, names, party_block = draft.kind, draft.names, draft.party_block
    amount, date = draft.amount, draft.date
    others, closing = [], []
    if rng.random() < 0.5:
        others.append({"role": "Guarantor", "name": names.party(person_share=0.5)})
        party_block.lines.append(f"Guarantor: {others[-1]['name']}")
    if rng.random() < 0.4:
        others.append({"role": "Witness", "name": names.person()})
        closing.append(f"Witness: {others[-1]['name']}")

    date_place = rng.choice(("top", "bottom"))
    date_label = "Date of signing" if date_place == "top" else "Signed on"
    breach_heading = rng.choice(("Breach of Contract", "Liability for Breach", "Default"))
    tail = [
        (breach_heading, draft.breach),
        ("Governing Law", "This Agreement is governed by the laws of the PRC."),
    ]
    if rng.random() < 0.5:
        tail.append(
            ("Confidentiality", "Each party shall keep the other party's business information confidential.")
        )
    rng.shuffle(tail)
    clauses = [
        ("Subject", kind.subject),
        ("Price and Payment", kind.payment.format(amount=amount[1])),
        ("Term", kind.term),
        *tail,
    ]

    lines = [
        kind.title,
        f"Contract No.: {rng.choice(('CN', 'AGR', 'PC'))}-{draft.signing.year}-{rng.randint(1, 99999):05d}",
    ]
    if date_place == "top":
        lines.append(f"{date_label}: {date[1]}")
    lines += party_block.lines
    for index, (heading, body) in enumerate(clauses, start=1):
        lines.append(f"{index}. {heading}: {body}")
    if date_place == "bottom":
        closing.append(f"{date_label}: {date[1]}")
    lines += closing

    return assemble_body(
        lines,
        draft,
        other_parties=others,
        date_label=date_label,
        breach_heading=breach_heading,
        tail=tail,
    )
