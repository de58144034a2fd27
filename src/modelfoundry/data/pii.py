"""Personal data in a table, found before any compute is spent on it: e-mail addresses, phone numbers (mainland
China mobiles and landlines, international and North American formats), Chinese resident ID numbers (date and
checksum checked), bank-card numbers (Luhn checked), IPv4/IPv6 addresses, and name columns (by their header).

Regular expressions with checksums, not a model: presidio needs a spaCy pipeline that cannot be installed offline,
and a checksum rejects the random digit runs (order numbers, amounts) that a pattern alone would flag. Each finding
is named by its 0-based row; `redact` and `pseudonymise` rewrite one value (foundry data clean, generation guards)."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterator
from datetime import date

import pandas as pd

KINDS = ("email", "phone", "cn_id", "bank_card", "ip", "name")
"""What the scan reports, in the order they are looked for (an 18-digit ID is not also a card number)."""

TAGS = {"email": "[EMAIL]", "phone": "[PHONE]", "cn_id": "[ID]", "bank_card": "[CARD]", "ip": "[IP]", "name": "[NAME]"}

NAME_HEADERS = re.compile(r"^(?:(?:first|last|full|given|family|sur|middle|user|customer|patient|client|student|"
                          r"employee|contact)[ _-]?)?name$|^(?:姓名|名字|客户姓名|患者姓名|联系人|姓|名)$", re.I)
"""Column headers that hold people's names. Names in running text are not detected (see the module docstring)."""

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def cn_id_valid(s: str) -> bool:
    """GB 11643-1999: 17 digits (region, birth date YYYYMMDD, sequence) and a check character 0-9 or X."""
    if len(s) != 18 or not s[:17].isdigit() or s[0] == "0":
        return False
    try:
        born = date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return False
    if not 1900 <= born.year <= date.today().year:
        return False
    check = "10X98765432"[sum(int(c) * w for c, w in zip(s[:17], _ID_WEIGHTS)) % 11]
    return s[17].upper() == check


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# issuer prefixes and the lengths their cards have (ISO/IEC 7812): a Luhn-valid digit run is a card number only when a
# scheme issues that prefix at that length, so most order numbers and timestamps that pass Luhn by chance are not flagged
_SCHEMES = [(r"4", (13, 16, 19)), (r"5[1-5]|2(?:2[2-9][1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)", (16,)), (r"3[47]", (15,)),
            (r"6011|65|64[4-9]", (16, 17, 18, 19)), (r"62", (16, 17, 18, 19)), (r"35", (16, 17, 18, 19)), (r"2131|1800", (15,)),
            (r"3(?:0[0-5]|[689])", (14, 15, 16, 17, 18, 19)), (r"5[06-9]|6\d|0604", tuple(range(12, 20)))]
_SCHEME_RES = [(re.compile(p), lengths) for p, lengths in _SCHEMES]


def card_valid(digits: str) -> bool:
    """Luhn-valid, 12-19 digits, an issuer prefix at a length it issues, and not shaped like a resident ID (18 digits
    with a 19xx/20xx birth year in place: an ID whose check character is wrong is a typo, not a card)."""
    if not 12 <= len(digits) <= 19 or not luhn_valid(digits):
        return False
    if len(digits) == 18 and digits[6:8] in ("19", "20"):
        return False
    return any(r.match(digits) and len(digits) in lengths for r, lengths in _SCHEME_RES)


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


_PHONE_WORDS = re.compile(r"(?:phone|tel|call|mobile|cell|fax|contact|电话|手机|联系|致电|拨打|号码)(?:\W{1,3}\w{1,12}){0,2}\W{0,3}$", re.I)


def _phone_context(text: str, start: int) -> bool:
    """A bare 10-digit run is a phone number only where a phone word comes at most two words before it ('call
    5551234567', 'contact me at 5551234567')."""
    return bool(_PHONE_WORDS.search(text[max(0, start - 40): start]))


def _ipv6(s: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(s), ipaddress.IPv6Address)
    except ValueError:
        return False


# (kind, pattern, check on (the text, the match)). Digit runs are bounded by non-digits, never by \b: Chinese characters
# count as word characters, and "手机13812345678，" must match.
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
PATTERNS: list[tuple[str, re.Pattern, Callable[[str, re.Match], bool] | None]] = [
    ("email", re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}"
                         r"(?![A-Za-z0-9-])"), None),
    ("cn_id", re.compile(r"(?<![\dA-Za-z])\d{17}[\dXx](?![\dA-Za-z])"), lambda t, m: cn_id_valid(m.group())),
    ("bank_card", re.compile(r"(?<![\dA-Za-z-])(?:\d{4}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,4})?|\d{4}[ -]\d{6}[ -]\d{4,5})"
                             r"(?![\dA-Za-z-]|\.\d)"
                             r"|(?<![\dA-Za-z-])\d{12,19}(?![\dA-Za-z-])"),
     lambda t, m: card_valid(_digits(m.group()))),
    ("phone", re.compile(
        r"(?:(?<![\d+])(?:\+?86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)"          # mainland mobile, 11 digits
        r"|(?<![\d+])0\d{2,3}-\d{7,8}(?!\d)"                                  # mainland landline with area code
        r"|\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,4}){1,4}(?!\d)"  # international, +country code
        r"|(?<![\d+])\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}(?!\d)"                   # North American (555) 123-4567
        r"|(?<![\d+])00\d{1,3}[ -]\d{3}[ .-]\d{3}[ .-]\d{4}(?!\d)"              # 001-555-123-4567
        r"|(?<![\d.+-])\d{3}[.-]\d{3}[.-]\d{4}(?!\d|[.-]\d)"                     # 555-123-4567
        r")(?:\s?(?:x|ext\.?|转)\s?\d{1,5}(?!\d))?"), None),                       # an extension: x123, ext. 12, 转8021
    ("phone", re.compile(r"(?<![\d.+-])\d{10}(?!\d|[.-]\d)"), lambda t, m: _phone_context(t, m.start())),
    ("ip", re.compile(rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\d|\.\d)"), None),
    ("ip", re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])"),
     lambda t, m: _ipv6(m.group())),
]


def find(text: str) -> Iterator[tuple[str, int, int]]:
    """(kind, start, end) of each piece of personal data in one text; a span claimed by an earlier kind is not
    matched again by a later one."""
    taken: list[tuple[int, int]] = []
    for kind, pattern, check in PATTERNS:
        for m in pattern.finditer(text):
            a, b = m.span()
            if any(a < y and x < b for x, y in taken):
                continue
            if check is None or check(text, m):
                taken.append((a, b))
                yield kind, a, b


def mask(value: str) -> str:
    """What a report may show: the shape of a finding, most of it starred (`j***@example.com`, `138******78`)."""
    if "@" in value:
        user, _, host = value.partition("@")
        return user[:1] + "***@" + host
    keep = [i for i, c in enumerate(value) if c.isalnum()]
    shown = set(keep[:3] + keep[-2:]) if len(keep) > 8 else set(keep[:1])
    return "".join(c if i in shown or not c.isalnum() else "*" for i, c in enumerate(value))


def pseudonym(kind: str, value: str) -> str:
    """The same value always becomes the same token (joins and counts still work). A pseudonym, not anonymity: a
    phone number's hash can be found again by hashing every number."""
    return f"{kind}_{hashlib.sha256(value.encode('utf-8')).hexdigest()[:12]}"


def rewrite(text: str, how: str) -> tuple[str, list[str]]:
    """`text` with each finding replaced by its tag (how=redact) or pseudonym (how=hash); and the kinds replaced."""
    out, last, kinds = [], 0, []
    for kind, a, b in sorted(find(text), key=lambda f: f[1]):
        out += [text[last:a], TAGS[kind] if how == "redact" else pseudonym(kind, text[a:b])]
        kinds.append(kind)
        last = b
    return "".join(out) + text[last:], kinds


def masked(text: str) -> str:
    """`text` with each finding masked in place: what a change log may keep of a cell that held personal data."""
    out, last = [], 0
    for _, a, b in sorted(find(text), key=lambda f: f[1]):
        out += [text[last:a], mask(text[a:b])]
        last = b
    return "".join(out) + text[last:]


def _as_text(s: pd.Series) -> pd.Series | None:
    """The cells worth scanning, as strings: text columns, and integer columns (a phone or card number read as a
    number); floats and booleans never hold these."""
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_float_dtype(s):
        return None
    if pd.api.types.is_integer_dtype(s):
        return s.dropna().astype("int64").astype(str)
    return s.dropna().map(lambda v: v if isinstance(v, str) else str(v) if isinstance(v, (int, float)) else None).dropna()


def _codes_under_bare_name(header: str, s: pd.Series) -> bool:
    """A column headed just "name" whose values are short upper-case codes (stock tickers, product codes: AAPL,
    XOM) names things, not people; a qualified header (customer_name, 姓名) is always read as people's names."""
    values = s.dropna().astype(str)
    return header.lower() == "name" and len(values) > 0 and values.str.fullmatch(r"[A-Z0-9][A-Z0-9.\-]{0,5}").mean() > 0.9


def scan_frame(df: pd.DataFrame, examples: int = 3) -> dict:
    """{column: {kind: {count, rows, examples}}} for every column that holds personal data: `count` findings, the
    0-based `rows` they are in, a few masked `examples`. An integer column is reported only when most of its
    values (>= 80%) are one kind: a random 16-digit number passes the Luhn check one time in ten."""
    found: dict[str, dict] = {}
    for col in df.columns:
        header = str(col).strip()
        textual = pd.api.types.is_object_dtype(df[col]) or pd.api.types.is_string_dtype(df[col])
        if NAME_HEADERS.match(header) and textual and not _codes_under_bare_name(header, df[col]):
            rows = [int(i) for i in df.index[df[col].notna()]]
            if rows:
                found[header] = {"name": {"count": len(rows), "rows": rows, "by": "column header",
                                          "examples": [mask(str(df.at[r, col])) for r in rows[:examples]]}}
            continue
        cells = _as_text(df[col])
        if cells is None or cells.empty:
            continue
        kinds: dict[str, dict] = {}
        for i, text in cells.items():
            for kind, a, b in find(text):
                k = kinds.setdefault(kind, {"count": 0, "rows": [], "examples": []})
                k["count"] += 1
                if not k["rows"] or k["rows"][-1] != int(i):
                    k["rows"].append(int(i))
                if len(k["examples"]) < examples:
                    k["examples"].append(mask(text[a:b]))
        if pd.api.types.is_integer_dtype(df[col]):
            kinds = {k: v for k, v in kinds.items() if len(v["rows"]) >= 0.8 * len(cells)}
        if kinds:
            found[header] = kinds
    return found


def summary(pii: dict) -> str:
    """One line a person reads: `email: 120 rows; phone: 118 rows`, per column."""
    return "; ".join(f"'{c}' " + ", ".join(f"{k}: {len(v['rows'])} rows" for k, v in kinds.items())
                     for c, kinds in pii.items())


class OutputGuard:
    """What a generator may be asked and may say: prompts matching a block-list pattern are refused, and personal
    data in generated text is redacted to its tags ([EMAIL], [PHONE], ...). Counts what it did (`counts`)."""

    def __init__(self, redact_pii: bool = False, block: list[str] | None = None):
        self.redact_pii = redact_pii
        self.block = [(p, re.compile(p, re.I)) for p in (block or [])]
        self.counts: dict[str, int] = {"prompts_blocked": 0, **{f"redacted_{k}": 0 for k in KINDS if k != "name"}}

    @property
    def active(self) -> bool:
        return self.redact_pii or bool(self.block)

    def blocked(self, prompt: str) -> str | None:
        """The block-list pattern the prompt matches (counted), or None."""
        for text, pattern in self.block:
            if pattern.search(prompt):
                self.counts["prompts_blocked"] += 1
                return text
        return None

    def clean(self, text: str) -> tuple[str, list[str]]:
        """The text with personal data redacted (when redact_pii), and the kinds redacted (counted)."""
        if not self.redact_pii:
            return text, []
        out, kinds = rewrite(text, "redact")
        for k in kinds:
            self.counts[f"redacted_{k}"] += 1
        return out, kinds


def check_patterns(patterns: list[str], where: str) -> list[str]:
    """Block-list patterns are regular expressions: a broken one is named, not discovered at the first prompt."""
    for p in patterns:
        try:
            re.compile(p)
        except re.error as exc:
            raise ValueError(f"{where}: {p!r} is not a regular expression ({exc})") from None
    return patterns
