"""How one amount or one date can be written in a contract: the surface forms the generator draws from.

Chinese contracts write money as 大写 numerals (人民币伍拾万元整), with digits (500,000元), in 万 (50万元)
or in foreign shorthand (¥0.5M); dates as 2024年3月5日, 2024-03-05 or 二〇二四年三月五日. The canonical
answer is always the plain number of yuan and the ISO date, so the student has to convert, not copy.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

_UPPER_DIGITS = "零壹贰叁肆伍陆柒捌玖"
_LOWER_DIGITS = "零一二三四五六七八九"
_UPPER_UNITS = ("", "拾", "佰", "仟")
_LOWER_UNITS = ("", "十", "百", "千")
_GROUP_UNITS = ("", "万", "亿")
_DATE_DIGITS = "〇一二三四五六七八九"
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def _four_digits(value: int, digits: str, units: tuple[str, ...]) -> str:
    """1..9999 in Chinese numerals; inner runs of zeros become one 零, trailing zeros nothing."""
    text, pending_zero = "", False
    for position in (3, 2, 1, 0):
        digit = value // 10**position % 10
        if digit == 0:
            pending_zero = pending_zero or bool(text)
            continue
        if pending_zero:
            text += digits[0]
            pending_zero = False
        text += digits[digit] + units[position]
    return text


def chinese_integer(value: int, *, upper: bool) -> str:
    """``500000`` → 伍拾万 (upper, the financial 大写) or 五十万 (lower)."""
    if not 0 <= value < 10**12:
        raise ValueError(f"cannot write {value} in Chinese numerals")
    digits, units = (_UPPER_DIGITS, _UPPER_UNITS) if upper else (_LOWER_DIGITS, _LOWER_UNITS)
    if value == 0:
        return digits[0]
    groups = []
    while value:
        groups.append(value % 10000)
        value //= 10000
    text, skipped = "", False
    for index in reversed(range(len(groups))):
        group = groups[index]
        if group == 0:
            skipped = skipped or bool(text)
            continue
        if text and (skipped or group < 1000):
            text += digits[0]
        text += _four_digits(group, digits, units) + _GROUP_UNITS[index]
        skipped = False
    if not upper and text.startswith("一十"):
        text = text[1:]  # 十万, not 一十万, in everyday writing
    return text


def _with_commas(value: int) -> str:
    return f"{value:,}"


def _decimal(value: float) -> str:
    """0.5, 12.8, 3 — no trailing zeros."""
    return f"{value:.4f}".rstrip("0").rstrip(".")


# Each format takes the amount in yuan and returns how a contract writes it, or None when it can't be
# written that way exactly (50.5万 is fine, 12.345万 is not something a contract says).
def _zh_upper(value: int) -> str:
    return f"人民币{chinese_integer(value, upper=True)}元整"


def _zh_upper_with_digits(value: int) -> str:
    return f"人民币{chinese_integer(value, upper=True)}元整(¥{_with_commas(value)}.00)"


def _zh_commas(value: int) -> str:
    return f"{_with_commas(value)}元"


def _zh_rmb_digits(value: int) -> str:
    return f"人民币{value}元"


def _zh_yen_sign(value: int) -> str:
    return f"¥{_with_commas(value)}.00"


def _zh_wan(value: int) -> str | None:
    return f"{_decimal(value / 10_000)}万元" if value % 1000 == 0 and value >= 10_000 else None


def _zh_lower_wan(value: int) -> str | None:
    return f"人民币{chinese_integer(value // 10_000, upper=False)}万元" if value % 10_000 == 0 else None


def _million(value: int) -> str | None:
    return f"¥{_decimal(value / 1_000_000)}M" if value % 10_000 == 0 and value >= 100_000 else None


def _en_rmb(value: int) -> str:
    return f"RMB {_with_commas(value)}"


def _en_cny(value: int) -> str:
    return f"CNY {_with_commas(value)}.00"


def _en_million(value: int) -> str | None:
    return f"RMB {_decimal(value / 1_000_000)} million" if value % 10_000 == 0 and value >= 100_000 else None


def _en_yuan(value: int) -> str:
    return f"{_with_commas(value)} yuan"


AmountFormat = Callable[[int], "str | None"]
ZH_AMOUNT_FORMATS: dict[str, AmountFormat] = {
    "upper": _zh_upper,
    "upper+digits": _zh_upper_with_digits,
    "commas": _zh_commas,
    "rmb-digits": _zh_rmb_digits,
    "yen": _zh_yen_sign,
    "wan": _zh_wan,
    "lower-wan": _zh_lower_wan,
    "million": _million,
}
EN_AMOUNT_FORMATS: dict[str, AmountFormat] = {
    "rmb": _en_rmb,
    "cny": _en_cny,
    "million": _en_million,
    "yen": _zh_yen_sign,
    "yuan": _en_yuan,
}


def write_amount(value: int, language: str, rng: random.Random) -> tuple[str, str]:
    """A randomly chosen way to write ``value`` yuan: (format name, text)."""
    formats = ZH_AMOUNT_FORMATS if language == "zh" else EN_AMOUNT_FORMATS
    names = list(formats)
    rng.shuffle(names)
    for name in names:
        text = formats[name](value)
        if text is not None:
            return name, text
    raise AssertionError("the digit formats always apply")


def _zh_date_digits(day: dt.date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def _zh_date_hanzi(day: dt.date) -> str:
    year = "".join(_DATE_DIGITS[int(digit)] for digit in str(day.year))
    return f"{year}年{chinese_integer(day.month, upper=False)}月{chinese_integer(day.day, upper=False)}日"


def _iso(day: dt.date) -> str:
    return day.isoformat()


def _slashes(day: dt.date) -> str:
    return f"{day.year}/{day.month}/{day.day}"


def _dots(day: dt.date) -> str:
    return f"{day.year}.{day.month:02d}.{day.day:02d}"


def _en_month_first(day: dt.date) -> str:
    return f"{_MONTHS[day.month - 1]} {day.day}, {day.year}"


def _en_day_first(day: dt.date) -> str:
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


ZH_DATE_FORMATS: dict[str, Callable[[dt.date], str]] = {
    "digits": _zh_date_digits,
    "hanzi": _zh_date_hanzi,
    "iso": _iso,
    "slashes": _slashes,
    "dots": _dots,
}
EN_DATE_FORMATS: dict[str, Callable[[dt.date], str]] = {
    "month-first": _en_month_first,
    "day-first": _en_day_first,
    "iso": _iso,
}


def write_date(day: dt.date, language: str, rng: random.Random) -> tuple[str, str]:
    """A randomly chosen way to write ``day``: (format name, text)."""
    formats = ZH_DATE_FORMATS if language == "zh" else EN_DATE_FORMATS
    name = rng.choice(list(formats))
    return name, formats[name](day)
