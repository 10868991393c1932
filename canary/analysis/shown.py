"""A number printed beside its limit, with the digits that show which side of the limit it is on.

A reason is read by a person deciding whether to trust a rollback, so a value rounded onto its limit
misleads: an error-rate increase of 1.04 points printed to two digits read "+1 points, limit +1" on a
FAIL. Every number a reason compares with a limit goes through `beside`: the usual digits, and more
only where fewer would put it on the other side of the limit (or on it).

Lengths of time are said here too, in one format, the one the policy and the flags are written in
(`duration`: '2h5m'; `about`, the same rounded, for lengths that are no setting).
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_DOWN, Context, Decimal


def beside(x: float, limit: float | None, digits: int = 3, *, fixed: bool = False, sign: bool = False) -> str:
    """`x` formatted with at least `digits` significant digits (`fixed`: decimals), more until the
    printed number lies on the same side of `limit` as `x` (above, below, or equal): `beside(1.04, 1, 2)`
    is '1.04', `beside(1.3, 1, 2)` '1.3', `beside(20.4, 20, 0, fixed=True, sign=True)` '+20.4'. `sign`
    prints a leading +. NaN/inf as '?' (inf: 'inf' with its sign); no limit: the usual digits."""
    x = float(x)  # a numpy scalar too
    if not math.isfinite(x):
        return "?" if math.isnan(x) else ("+inf" if x > 0 and sign else "inf" if x > 0 else "-inf")
    if fixed and abs(x) >= HUGE:  # decimals of 1e302 are its 303 digits: significant ones instead
        fixed, digits = False, max(digits, 3)
    spec = ("+" if sign else "") + "." + "{}" + ("f" if fixed else "g")
    want = _side(x, limit)
    for d in range(digits, digits + 18):
        text = format(x, spec.format(d))
        if want is None or _side(float(text), limit) == want:
            return text
    return repr(x)


HUGE = 1e15  # from here on a number prints with significant digits, never all of its own (1e+300, not 301 digits)


def whole(x: float) -> str:
    """A count (or a large factor) rounded to a whole number with its digits, '12,345', below HUGE; from
    there 4 significant digits, '9.007e+15', '1e+300' (a count from Prometheus or a file is any float);
    '?' for NaN, 'inf' for infinity."""
    x = float(x)
    if not math.isfinite(x):
        return "?" if math.isnan(x) else "inf" if x > 0 else "-inf"
    return f"{x:,.0f}" if abs(x) < HUGE else f"{x:.4g}"


def integer(n: int) -> str:
    """An integer as a message prints it (a value from a file or a policy, which JSON and Python keep exact at
    any size): its digits below HUGE; from there 4 significant digits, cut (never rounded up past it), and how
    many digits it has: '1e+400 (401 digits)', '1.234e+19 (20 digits)'. The first 40 of its digits told
    nothing of its size, and a float cannot hold it (1e400); Decimal reads it past Python's 4,300-digit limit
    on printing an int."""
    if abs(n) < HUGE:
        return str(n)
    return f"{_significant(Decimal(n))} ({Decimal(n).adjusted() + 1} digits)"


_NUMBER_TEXT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def spelled(text: str) -> str | None:
    """The number a text spells (a quoted value in a policy), at 4 significant digits: '1e+400', '1e-301'
    for 401 characters of '1000...' or '0.000...1' (cut to its first characters, the second read as 0);
    None when the text is no plain decimal number."""
    if not _NUMBER_TEXT.fullmatch(text.strip()):
        return None
    d = Decimal(text.strip())
    return "0" if d.is_zero() else _significant(d)


def _significant(d: Decimal) -> str:
    """`d` at 4 significant digits, cut toward zero, trailing zeros dropped: '0.5', '1234', '1e+400',
    '9.999e+34' (an exponent past the 4 digits, and below 1e-4, as `:.4g` writes them)."""
    d = Context(prec=4, rounding=ROUND_DOWN).plus(d)
    text, _, exponent = format(d, "f" if -4 <= d.adjusted() < 4 else "e").partition("e")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text}e{exponent}" if exponent else text


def _side(x: float, limit: float | None) -> int | None:
    if limit is None or not math.isfinite(limit):
        return None
    return int(x > limit) - int(x < limit)


def exact(limit: float) -> str:
    """A limit as a reason prints it: 15 significant digits, so it is the policy's number (1000.006, not
    `:g`'s 1000.01, beside which a FAIL's 1000.007 read as on the limit) without float noise (0.2 * 100
    is '20'). NaN/inf as `beside` prints them."""
    limit = float(limit)
    return format(limit, ".15g") if math.isfinite(limit) else beside(limit, None)


HUGE_S = 1e12  # seconds (31,700 years) from which a length is no sum of units: '1e+40s', as a policy's typo wrote it


def duration(seconds: float) -> str:
    """A length of time as the policy and the flags write one (Go's units, largest first, no spaces), exactly:
    '500ms', '45s', '1m30s', '2h5m', '26h', '1h2m3.004s'; what `policy_fields.parse_duration` reads back to the
    same seconds (to the microsecond). From HUGE_S on, seconds alone ('1e+40s'); '?' and 'inf' as `whole`.
    The one format of every length a person reads (decision 495): "26h" beside "26.0 h" and "3 h 2 min" read as
    three conventions, and none of them as what the reader types into `--window` or a policy."""
    s = float(seconds)
    if not math.isfinite(s):
        return whole(s)
    if s < 0:
        return "-" + duration(-s)
    if s >= HUGE_S:
        return f"{s:g}s"
    us = round(s * 1_000_000)
    if us == 0:
        return "0s"
    if us < 1_000_000:
        return f"{us / 1000:g}ms"
    h, us = divmod(us, 3_600_000_000)
    m, us = divmod(us, 60_000_000)
    # digits from the integer microseconds: `:g`'s six significant ones said 1.234567 s as '1.23457s'
    sec = f"{us // 1_000_000}s" if us % 1_000_000 == 0 else f"{us // 1_000_000}.{us % 1_000_000:06d}".rstrip("0") + "s"
    return "".join(part for part, n in ((f"{h}h", h), (f"{m}m", m), (sec, us)) if n)


def duration_beside(seconds: float, limit: float) -> str:
    """`duration(seconds)` for a message that compares it with `limit`: where the two read the same though they
    differ (the format keeps microseconds, so a smaller excess, `10m0.0000001s`, read "10m is longer than 10m"),
    the seconds with the digits that show which side of the limit it is on (`beside`): '600.0000001s'."""
    text = duration(seconds)
    if seconds != limit and math.isfinite(seconds) and math.isfinite(limit) and text == duration(limit):
        return beside(seconds, limit, 7) + "s"
    return text


def about(seconds: float) -> str:
    """A length said roughly, in `duration`'s format: to the second below 10 minutes, to the minute from
    there ('45s', '9m12s', '45m', '1h42m', '26h'); a negative length (clocks apart) is '0s'. For the lengths
    that are no setting (how long Prometheus was down, since an episode opened), whose seconds are noise."""
    s = float(seconds)
    if not math.isfinite(s):
        return duration(s)
    unit = 60 if s >= 600 else 1
    return duration(max(0, round(s / unit)) * unit)
