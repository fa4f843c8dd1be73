"""The contract generator's ground truth agrees with its text, checked with a parser written independently here."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from distill.errors import UserError
from distill.pipeline.contract_formats import chinese_integer
from distill.pipeline.contract_parts import FIELDS
from distill.pipeline.contracts import canonical_answer, generate_contracts, load_truth, make_contract_sets

_CN_DIGITS = {c: i for i, c in enumerate("零一二三四五六七八九")} | {
    c: i for i, c in enumerate("零壹贰叁肆伍陆柒捌玖")
}
_CN_DIGITS["〇"] = 0
_CN_SMALL_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
_CN_BIG_UNITS = {"万": 10_000, "亿": 100_000_000}
_MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]


def parse_chinese_number(text: str) -> int:
    """Textbook left-to-right reading; accepts 零 or its omission, 十 or 一十."""
    total, section, digit = 0, 0, None
    for char in text:
        if char in _CN_DIGITS:
            digit = _CN_DIGITS[char]
        elif char in _CN_SMALL_UNITS:
            section += (1 if digit is None else digit) * _CN_SMALL_UNITS[char]
            digit = None
        elif char in _CN_BIG_UNITS:
            section += digit or 0
            total = (
                (total + section) * _CN_BIG_UNITS[char]
                if char == "亿"
                else total + section * _CN_BIG_UNITS[char]
            )
            section, digit = 0, None
        else:
            raise ValueError(f"not a Chinese numeral: {char!r} in {text!r}")
    return total + section + (digit or 0)


def parse_amount(text: str) -> int:
    """Yuan in any way the task's contracts write money; independent of pipeline.contract_formats."""
    compact = text.replace(" ", "")
    if match := re.fullmatch(r"人民币([零壹贰叁肆伍陆柒捌玖拾佰仟万亿]+)元整(?:\(¥([\d,]+)\.00\))?", compact):
        value = parse_chinese_number(match.group(1))
        if match.group(2):
            assert int(match.group(2).replace(",", "")) == value, f"大写 and digits disagree in {text!r}"
        return value
    if match := re.fullmatch(r"人民币([一二三四五六七八九十百千]+)万元", compact):
        return parse_chinese_number(match.group(1)) * 10_000
    if match := re.fullmatch(r"([\d.]+)万元", compact):
        return round(float(match.group(1)) * 10_000)
    if match := re.fullmatch(r"(?:¥|RMB)([\d.]+)(?:M|million)", compact):
        return round(float(match.group(1)) * 1_000_000)
    if match := re.fullmatch(r"(?:¥|RMB|CNY|人民币)?([\d,]+)(?:\.00)?(?:元|yuan)?", compact):
        return int(match.group(1).replace(",", ""))
    raise ValueError(f"not an amount: {text!r}")


def parse_date(text: str) -> str:
    if match := re.fullmatch(r"(\d{4})[年/.-](\d{1,2})[月/.-](\d{1,2})日?", text):
        return dt.date(*map(int, match.groups())).isoformat()
    if match := re.fullmatch(
        r"([〇一二三四五六七八九]{4})年([一二三四五六七八九十]+)月([一二三四五六七八九十]+)日", text
    ):
        year = int("".join(str(_CN_DIGITS[c]) for c in match.group(1)))
        return dt.date(
            year, parse_chinese_number(match.group(2)), parse_chinese_number(match.group(3))
        ).isoformat()
    if match := re.fullmatch(r"([A-Za-z]+) (\d{1,2}), (\d{4})", text):
        return dt.date(
            int(match.group(3)), _MONTHS.index(match.group(1).lower()) + 1, int(match.group(2))
        ).isoformat()
    if match := re.fullmatch(r"(\d{1,2}) ([A-Za-z]+) (\d{4})", text):
        return dt.date(
            int(match.group(3)), _MONTHS.index(match.group(2).lower()) + 1, int(match.group(1))
        ).isoformat()
    raise ValueError(f"not a date: {text!r}")


@pytest.mark.parametrize(
    ("value", "upper", "lower"),
    [
        (500_000, "伍拾万", "五十万"),
        (120_000, "壹拾贰万", "十二万"),
        (10_200, "壹万零贰佰", "一万零二百"),
        (1_000_500, "壹佰万零伍佰", "一百万零五百"),
        (100_000_000, "壹亿", "一亿"),
        (2_516_000, "贰佰伍拾壹万陆仟", "二百五十一万六千"),
        (7, "柒", "七"),
    ],
)
def test_chinese_numerals_hand_checked(value, upper, lower):
    assert chinese_integer(value, upper=True) == upper
    assert chinese_integer(value, upper=False) == lower
    assert parse_chinese_number(upper) == value


def test_chinese_numerals_round_trip_through_an_independent_parser():
    for value in [*range(0, 2000, 7), *range(9_990, 1_000_000, 9_973), 10_005_000, 3_000_000_070]:
        for upper in (True, False):
            assert parse_chinese_number(chinese_integer(value, upper=upper)) == value


@pytest.fixture(scope="module")
def contracts():
    return list(generate_contracts("train", 400, seed=7))


def test_every_truth_value_is_in_the_text_and_parses_back(contracts):
    formats_seen = set()
    for contract in contracts:
        text, truth, facts = contract.text, contract.truth, contract.facts
        assert list(truth) == list(FIELDS)
        assert truth["甲方"] in text and truth["乙方"] in text, contract.id
        assert truth["甲方"] != truth["乙方"]
        assert truth["违约条款"] in text and len(truth["违约条款"]) >= 15
        breach_line = next(line for line in text.splitlines() if truth["违约条款"] in line)
        assert facts["breach_heading"] in breach_line
        assert facts["amount"]["text"] in text
        assert parse_amount(facts["amount"]["text"]) == int(truth["金额"]), contract.id
        assert facts["date"]["text"] in text
        assert parse_date(facts["date"]["text"]) == truth["签订日期"], contract.id
        formats_seen.add((contract.language, facts["amount"]["format"]))
        formats_seen.add((contract.language, facts["date"]["format"]))
    assert {("zh", "upper"), ("zh", "wan"), ("zh", "million"), ("zh", "commas")} <= formats_seen
    assert {("zh", "hanzi"), ("zh", "iso"), ("zh", "digits"), ("en", "month-first")} <= formats_seen


def test_look_alikes_are_present_and_differ_from_the_truth(contracts):
    with_other_party = with_other_amount = with_other_date = b_listed_first = 0
    for contract in contracts:
        text, truth, facts = contract.text, contract.truth, contract.facts
        parties = (truth["甲方"], truth["乙方"])
        for other in facts["other_parties"]:
            assert other["name"] in text
            assert all(other["name"] not in party and party not in other["name"] for party in parties)
            with_other_party += 1
        for other in facts["other_amounts"]:
            assert other["text"] in text
            assert parse_amount(other["text"]) == other["value"] != int(truth["金额"])
            with_other_amount += 1
        for other in facts["other_dates"]:
            assert other["text"] in text
            assert parse_date(other["text"]) == other["iso"] != truth["签订日期"]
            with_other_date += 1
        for evidence in facts["evidence_a"]:
            assert evidence in text and truth["甲方"] in text
        b_listed_first += text.find(truth["乙方"]) < text.find(truth["甲方"])
    total = len(contracts)
    assert (
        with_other_party > total * 0.4 and with_other_amount > total * 0.6 and with_other_date > total * 0.9
    )
    assert b_listed_first > total * 0.1, "party B must sometimes come first, or position alone would answer"


def test_party_a_is_not_always_labelled_甲方_on_its_own_line(contracts):
    zh = [c for c in contracts if c.language == "zh"]
    styles = {c.facts["party_style"] for c in zh}
    assert {"plain", "role_only", "narrative", "hereinafter"} <= styles
    role_only = next(c for c in zh if c.facts["party_style"] == "role_only")
    assert f"甲方:{role_only.truth['甲方']}" not in role_only.text
    assert f"{role_only.facts['role_a']}为甲方" in role_only.text


def test_generation_is_deterministic_per_seed_and_varied_across_seeds():
    first = [c.text for c in generate_contracts("train", 30, seed=3)]
    again = [c.text for c in generate_contracts("train", 30, seed=3)]
    other = [c.text for c in generate_contracts("train", 30, seed=4)]
    assert first == again
    assert not set(first) & set(other)
    assert len(set(first)) == 30


def test_lengths_suit_a_small_student(contracts):
    zh = [len(c.text) for c in contracts if c.language == "zh"]
    assert 200 <= min(zh) and max(zh) <= 420 and 250 <= sum(zh) / len(zh) <= 380


def test_contract_sets_are_independent_and_well_formed(tmp_path):
    sets = make_contract_sets(tmp_path, train_count=40, eval_count=15)
    train = [json.loads(line) for line in sets.train_path.read_text(encoding="utf-8").splitlines()]
    held_out = [json.loads(line) for line in sets.eval_path.read_text(encoding="utf-8").splitlines()]
    assert len(train) == 40 and len(held_out) == 15
    assert all(set(row) == {"id", "input"} for row in train)
    assert all(set(row) == {"id", "input", "reference"} for row in held_out)
    assert not {r["id"] for r in train} & {r["id"] for r in held_out}
    assert not {r["input"] for r in train} & {r["input"] for r in held_out}
    truth = {c.id: c for c in load_truth(sets.truth_path)}
    assert len(truth) == 55
    for row in held_out:
        reference = json.loads(row["reference"])
        assert list(reference) == list(FIELDS)
        assert row["reference"] == canonical_answer(truth[row["id"]].truth)
        assert truth[row["id"]].text == row["input"]
    # the same seeds give the same bytes
    again = make_contract_sets(tmp_path / "again", train_count=40, eval_count=15)
    assert again.eval_path.read_bytes() == sets.eval_path.read_bytes()


def test_contract_sets_refuse_a_shared_seed(tmp_path):
    with pytest.raises(UserError, match="must differ"):
        make_contract_sets(tmp_path, train_count=5, eval_count=5, train_seed=3, eval_seed=3)
