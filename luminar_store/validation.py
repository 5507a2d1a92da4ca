"""Checks at the door: every value is validated here before any SQL runs.

Each function returns the clean value or raises ``ValidationError(field, rule)``; the message names the field and
the rule, never echoes a secret, and cuts long values short. The database's CHECK constraints stay behind these as
the last line for writers that bypass Python.

Example::

    >>> latitude("geotag.lat", 95)
    Traceback (most recent call last):
    ...
    luminar_store.errors.ValidationError: geotag.lat: must be between -90 and 90, got 95
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from luminar_store.errors import ValidationError
from luminar_store.limits import MAX_FUTURE_SKEW, MAX_UID, MIN_TIMESTAMP

__all__ = [
    "MAX_FUTURE_SKEW",
    "integer",
    "uid",
    "number",
    "unit_interval",
    "severity",
    "latitude",
    "longitude",
    "geotag",
    "text",
    "optional_text",
    "slug",
    "uuid_value",
    "uuid_list",
    "aware_datetime",
    "NAIVE_TIMESTAMP_RULES",
    "set_naive_timestamps",
    "naive_timestamps",
    "choice",
    "mapping",
    "string_list",
    "json_list",
    "items_of",
    "sha256_hex",
]

_SLUG = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _show(value: Any) -> str:
    try:
        shown = repr(value)
    except (RecursionError, ValueError):  # nested thousands deep; an int of more than 4,300 digits
        return f"a {type(value).__name__} too large to show"
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _unicode(field: str, value: str) -> str:
    """``value`` when PostgreSQL can store it: no NUL byte, and valid Unicode (a lone surrogate such as
    ``"\\ud800"`` cannot be encoded in UTF-8)."""
    if "\x00" in value:
        raise ValidationError(field, "must not contain NUL bytes")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValidationError(field, f"must be valid Unicode text, got a lone surrogate at position "
                                         f"{exc.start}") from None
    return value


def _bounded(field: str, value: Any, minimum: Any, maximum: Any, fmt: str) -> Any:
    """``value`` when within ``[minimum, maximum]`` (either may be None); the refusal shows numbers with ``fmt``."""
    if minimum is not None and value < minimum:
        raise ValidationError(field, f"must be at least {minimum:{fmt}}, got {_shown(value, fmt)}")
    if maximum is not None and value > maximum:
        raise ValidationError(field, f"must be at most {maximum:{fmt}}, got {_shown(value, fmt)}")
    return value


def _shown(value: Any, fmt: str) -> str:
    """A number in a refusal: formatted with ``fmt``, or cut short like any value (10**400 has 401 digits)."""
    return format(value, fmt) if fmt else _show(value)


def integer(field: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An ``int`` (never a bool, float or string) within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, f"must be an integer, got {type(value).__name__} {_show(value)}")
    return _bounded(field, value, minimum, maximum, "")


def uid(field: str, value: Any) -> int:
    """A miner or validator uid: an integer from 0 to 2**31-1."""
    return integer(field, value, minimum=0, maximum=MAX_UID)


def number(field: str, value: Any, *, minimum: float | None = None, maximum: float | None = None) -> float:
    """A finite real number (int or float, never bool or NaN/inf) within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise ValidationError(field, f"must be a number, got {type(value).__name__} {_show(value)}")
    try:
        value = float(value)  # 10**400 overflows; Decimal("sNaN") cannot be converted
    except (OverflowError, ValueError):
        raise ValidationError(field, f"must be a finite number within the range of a double, got "
                                     f"{_show(value)}") from None
    if not math.isfinite(value):
        raise ValidationError(field, f"must be a finite number, got {value}")
    if minimum is not None and maximum is not None and not (minimum <= value <= maximum):
        raise ValidationError(field, f"must be between {minimum:g} and {maximum:g}, got {value:g}")
    return _bounded(field, value, minimum, maximum, "g")


def unit_interval(field: str, value: Any) -> float:
    """A score or confidence: a finite number in [0, 1]."""
    return number(field, value, minimum=0.0, maximum=1.0)


def severity(field: str, value: Any) -> int:
    """A severity or risk level: an integer from 1 to 5."""
    return integer(field, value, minimum=1, maximum=5)


def latitude(field: str, value: Any) -> float:
    """Degrees north in [-90, 90]. PostGIS would silently wrap 95 to 85: refused here."""
    return number(field, value, minimum=-90.0, maximum=90.0)


def longitude(field: str, value: Any) -> float:
    """Degrees east in [-180, 180]."""
    return number(field, value, minimum=-180.0, maximum=180.0)


def geotag(field: str, value: Any) -> tuple[float, float]:
    """``{"lat": .., "lng": ..}`` as the nodes' protocol sends it (``lon``/``longitude``/``latitude`` also read).

    Returns ``(latitude, longitude)``.
    """
    if not isinstance(value, Mapping):
        raise ValidationError(field, f'must be a mapping like {{"lat": 40.7, "lng": -74.0}}, got {_show(value)}')
    lat_key = next((k for k in ("lat", "latitude") if k in value), None)
    lng_key = next((k for k in ("lng", "lon", "longitude") if k in value), None)
    if lat_key is None:
        raise ValidationError(f"{field}.lat", "is required")
    if lng_key is None:
        raise ValidationError(f"{field}.lng", "is required")
    return latitude(f"{field}.lat", value[lat_key]), longitude(f"{field}.lng", value[lng_key])


def text(field: str, value: Any, *, max_length: int = 10_000) -> str:
    """Non-blank text of at most ``max_length`` characters, without NUL bytes (PostgreSQL cannot store them)."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be text, got {type(value).__name__} {_show(value)}")
    if not value.strip():
        raise ValidationError(field, "must not be empty")
    if len(value) > max_length:
        raise ValidationError(field, f"must be at most {max_length} characters, got {len(value)}")
    return _unicode(field, value)


def optional_text(field: str, value: Any, *, max_length: int = 10_000) -> str | None:
    """Like ``text`` but ``None`` is allowed."""
    return None if value is None else text(field, value, max_length=max_length)


def slug(field: str, value: Any) -> str:
    """A lower-case word such as a crime type: ``[a-z][a-z0-9_]{0,63}`` (``"Armed Robbery"`` becomes
    ``armed_robbery``)."""
    if isinstance(value, str):
        value = re.sub(r"[\s\-]+", "_", value.strip().lower())
    value = text(field, value, max_length=64)
    if not _SLUG.match(value):
        raise ValidationError(field, f"must be a lower-case word of letters, digits and _, got {_show(value)}")
    return value


def uuid_value(field: str, value: Any) -> uuid.UUID:
    """A UUID, given as ``uuid.UUID`` or its text form."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise ValidationError(field, f"must be a UUID, got {_show(value)}")


def _items(field: str, value: Any, max_items: int, what: str) -> list[Any]:
    """The items of a list-like ``value`` (``None``: none), at most ``max_items``; a text is not a list."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValidationError(field, f"must be a list of {what}, got {_show(value)}")
    items = list(value)
    if len(items) > max_items:
        raise ValidationError(field, f"must hold at most {max_items} items, got {len(items)}")
    return items


def uuid_list(field: str, value: Any, *, max_items: int = 10_000) -> list[uuid.UUID]:
    """A list (or tuple) of UUIDs, duplicates removed in order."""
    items = _items(field, value, max_items, "UUIDs")
    out = [uuid_value(f"{field}[{i}]", item) for i, item in enumerate(items)]
    return list(dict.fromkeys(out))


#: How a naive ``datetime`` (no ``tzinfo``) is read: ``local``, the node's local time (what ``datetime.now()``
#: means, and Python's own rule for naive values: ``value.astimezone()``); ``utc``; or ``refuse`` (a
#: ``ValidationError``). Set per process from ``LUMINAR_NAIVE_TIMESTAMPS`` when a ``Database`` is built.
NAIVE_TIMESTAMP_RULES = ("local", "utc", "refuse")
_naive_rule = "local"


def set_naive_timestamps(rule: str) -> None:
    """Choose how naive datetimes are read from now on in this process (one of ``NAIVE_TIMESTAMP_RULES``).
    Raises ``ValidationError`` for another word."""
    global _naive_rule
    _naive_rule = choice("LUMINAR_NAIVE_TIMESTAMPS", rule, NAIVE_TIMESTAMP_RULES)


def naive_timestamps() -> str:
    """The rule naive datetimes are read by in this process (``local`` unless set)."""
    return _naive_rule


def aware_datetime(field: str, value: Any, *, now: datetime | None = None, allow_future: bool = False) -> datetime:
    """A timezone-aware ``datetime`` (ISO 8601 text also accepted), not before ``MIN_TIMESTAMP`` (1970) and not more
    than ``MAX_FUTURE_SKEW`` in the future unless ``allow_future``. A naive value (the nodes build theirs with
    ``datetime.now()``) is read by the process's rule (``naive_timestamps()``): as local time (the default), as
    UTC, or refused."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(field, f"must be an ISO 8601 timestamp, got {_show(value)}") from None
    if not isinstance(value, datetime):
        raise ValidationError(field, f"must be a datetime, got {type(value).__name__} {_show(value)}")
    try:  # at the ends of datetime's range, moving to UTC or comparing overflows
        if value.tzinfo is None or value.utcoffset() is None:
            if _naive_rule == "local":
                value = value.replace(tzinfo=None).astimezone()
            elif _naive_rule == "utc":
                value = value.replace(tzinfo=timezone.utc)
            else:
                raise ValidationError(field, "must be timezone-aware (e.g. datetime.now(timezone.utc)), got a naive "
                                             "datetime (LUMINAR_NAIVE_TIMESTAMPS=refuse)")
        early = value < MIN_TIMESTAMP
        ahead = None if allow_future else value - (now or datetime.now(timezone.utc))
    except ValidationError:
        raise
    except (OverflowError, ValueError):
        raise ValidationError(field, f"is out of range: times from {MIN_TIMESTAMP:%Y-%m-%d} (UTC) are accepted, got "
                                     f"{_show(value)}") from None
    if early:
        raise ValidationError(field, f"must not lie before {MIN_TIMESTAMP:%Y-%m-%d} (UTC), got {_show(value)}")
    if ahead is not None and ahead > MAX_FUTURE_SKEW:
        raise ValidationError(field, f"lies more than {MAX_FUTURE_SKEW} in the future: {value.isoformat()}")
    return value


def choice(field: str, value: Any, allowed: Iterable[str]) -> str:
    """One of the ``allowed`` words."""
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(field, f"must be one of {', '.join(allowed)}, got {_show(value)}")
    return value


def mapping(field: str, value: Any) -> dict[str, Any]:
    """A JSON object: a mapping with string keys whose text holds no NUL bytes (``None`` becomes ``{}``)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(field, f"must be a mapping (JSON object), got {type(value).__name__}")
    return _check_json(field, value)


#: The largest whole number a JSON value may hold: 1,000 digits (Python refuses to print more than 4,300 digits;
#: the database's numeric would keep them, but no figure of the network needs them).
MAX_JSON_DIGITS = 1000
_MAX_JSON_BITS = int(MAX_JSON_DIGITS * math.log2(10))


def _check_json(field: str, value: Any, depth: int = 0) -> Any:
    """``value`` checked, as plain JSON: every mapping a ``dict`` and every list or tuple a ``list`` (a nested
    ``MappingProxyType`` passed the checks but then failed ``json.dumps`` with a ``TypeError``)."""
    if depth > 32:
        raise ValidationError(field, "is nested too deeply (more than 32 levels)")
    if isinstance(value, Mapping):
        plain = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(field, f"keys must be text, got {_show(key)}")
            _unicode(field, key)
            plain[key] = _check_json(f"{field}.{key}", item, depth + 1)
        return plain
    if isinstance(value, (list, tuple)):
        return [_check_json(f"{field}[{i}]", item, depth + 1) for i, item in enumerate(value)]
    if isinstance(value, str):
        _unicode(field, value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(field, f"must be a finite number, got {value}")
    elif isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > _MAX_JSON_BITS:
            raise ValidationError(field, f"must be a number of at most {MAX_JSON_DIGITS} digits")
    elif value is not None and not isinstance(value, bool):
        raise ValidationError(field, f"must be JSON (text, number, bool, list, mapping), got {type(value).__name__}")
    return value


def string_list(field: str, value: Any, *, max_items: int = 100, max_length: int = 2048) -> list[str]:
    """A list of non-empty texts (``None`` becomes ``[]``)."""
    items = _items(field, value, max_items, "text")
    return [text(f"{field}[{i}]", item, max_length=max_length) for i, item in enumerate(items)]


def items_of(field: str, value: Any, what: str) -> Iterable[Any]:
    """``value`` when it can be streamed item by item (a list, tuple, generator ...): not a text, a mapping or a
    single object, which would fail half-way through a bulk call."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise ValidationError(field, f"must be a list or an iterable of {what}, got {type(value).__name__}")
    return value


def json_list(field: str, value: Any, *, max_items: int = 100) -> list[Any]:
    """A list of JSON values (text, numbers, booleans, mappings, lists; ``None`` becomes ``[]``), such as the
    entities a miner extracted from a report."""
    return _check_json(field, _items(field, value, max_items, "JSON values"))


def sha256_hex(field: str, value: Any) -> str:
    """A SHA-256 digest as 64 lower-case hex characters."""
    if not isinstance(value, str) or not _SHA256.match(value.lower()):
        raise ValidationError(field, f"must be a SHA-256 digest (64 hex characters), got {_show(value)}")
    return value.lower()
