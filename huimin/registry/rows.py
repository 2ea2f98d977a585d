"""Row checkers shared by every list the bureau imports (the application list in
``huimin.registry.importer``, the payout list in ``notify.payouts``).

Each ``parse_*`` takes a cell's text and the row's list of problems: it returns the
checked value, or appends a reason in plain Chinese (never an ID or phone number:
cell values are quoted through ``quoted``) and returns an empty value.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import date
from decimal import Decimal, InvalidOperation

from huimin.personal import PersonalDataError, mask_text, normalise_id

NUMERIC_ID = "身份证号被Excel当成了数字，后几位已经丢了，请把这一列设为文本后重新填写"
MAX_AMOUNT = Decimal("99999999.99")  # Numeric(10, 2)

# The bureau's older or shorter names for its programmes.
PROGRAMME_ALIASES: dict[str, str] = {
    "最低生活保障": "低保", "城乡低保": "低保", "农村低保": "低保", "城市低保": "低保",
    "特困": "特困供养", "五保": "特困供养", "五保供养": "特困供养",
    "特困人员供养": "特困供养", "特困人员救助供养": "特困供养",
    "残疾人生活补贴": "困难残疾人生活补贴",
    "护理补贴": "重度残疾人护理补贴", "残疾人护理补贴": "重度残疾人护理补贴",
    "孤儿": "孤儿基本生活费", "孤儿基本生活保障": "孤儿基本生活费",
}

INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")
_DATE = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
                   r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?")
_COMPACT_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")
_SCIENTIFIC = re.compile(r"\d+(?:\.\d+)?[eE][+-]?\d+|\d{15,}\.0+")
_AMOUNT = re.compile(r"-?\d+(?:\.\d+)?")
_DIGIT_RUN = re.compile(r"\d{7,}")


def clean_cell(value: str) -> str:
    """A cell's text without invisible characters and surrounding spaces."""
    return INVISIBLE.sub("", value).strip()


def cell_text(values: Mapping[str, str], column: str) -> str:
    """A cell's value, cleaned and in half-width form (NFKC)."""
    return unicodedata.normalize("NFKC", clean_cell(values.get(column) or ""))


def parse_id_number(raw: str, problems: list[str]) -> str:
    """The checked ID number, or "" (and a problem) when it is missing or wrong."""
    raw = raw.lstrip("'")
    if not raw:
        problems.append("身份证号是空的")
    elif _SCIENTIFIC.fullmatch(raw):
        problems.append(NUMERIC_ID)
    else:
        try:
            return normalise_id(raw)
        except PersonalDataError as exc:
            problems.append(str(exc))
    return ""


def quoted(value: str) -> str:
    """A cell's value quoted in a reason: short, and never an ID or phone number."""
    value = _DIGIT_RUN.sub("…", mask_text(value))
    return value if len(value) <= 20 else value[:20] + "…"


def parse_name(raw: str, problems: list[str]) -> str:
    """The name as registered (NFKC, padding between Chinese characters removed)."""
    name = unicodedata.normalize("NFKC", raw)
    # Spaces padding a Chinese name out to line up in Excel: 张  三.
    name = re.sub(r"(?<=[\u4e00-\u9fff])\s+(?=[\u4e00-\u9fff])", "", name)
    name = re.sub(r"\s+", " ", name)
    if not name:
        problems.append("姓名是空的")
    elif not 2 <= len(name) <= 20:
        problems.append("姓名应为2到20个字")
    elif re.search(r"\d", name):
        problems.append("姓名里不应有数字")
    return name


def parse_choice(value: str, column: str, allowed: tuple[str, ...], aliases: dict[str, str],
            problems: list[str]) -> str | None:
    compact = re.sub(r"\s+", "", value)
    if compact in allowed:
        return compact
    if compact in aliases:
        return aliases[compact]
    if not compact:
        problems.append(f"{column}是空的")
    else:
        problems.append(f"{column}“{quoted(value)}”不认识，应为：{'、'.join(allowed)}")
    return None


def parse_date(value: str, column: str, problems: list[str], *, required: bool) -> date | None:
    if not value:
        if required:
            problems.append(f"{column}是空的")
        return None
    match = _DATE.fullmatch(value) or _COMPACT_DATE.fullmatch(value)
    if match:
        try:
            day = date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            problems.append(f"{column}“{quoted(value)}”不是真实的日期")
            return None
        if 1990 <= day.year <= 2100:
            return day
    problems.append(f"{column}“{quoted(value)}”看不懂，请写成 2026-11-28 这样")
    return None


def parse_amount(value: str, problems: list[str], column: str = "月补助金额", *,
            required: bool = False, positive: bool = False) -> Decimal | None:
    """An amount in yuan, to the fen (``￥1,200.5元`` is 1200.50); ``positive`` refuses 0."""
    value = re.sub(r"[,，\s]", "", value).removesuffix("元").lstrip("¥￥")
    if not value:
        if required:
            problems.append(f"{column}是空的")
        return None
    if not _AMOUNT.fullmatch(value):
        problems.append(f"{column}“{quoted(value)}”不是数字")
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        problems.append(f"{column}“{quoted(value)}”不是数字")
        return None
    if amount < 0:
        problems.append(f"{column}不能是负数")
    elif positive and amount == 0:
        problems.append(f"{column}不能是0")
    elif amount != amount.quantize(Decimal("0.01")):
        problems.append(f"{column}最多两位小数（到分）")
    elif amount > MAX_AMOUNT:
        problems.append(f"{column}太大")
    else:
        return amount.quantize(Decimal("0.01"))
    return None
