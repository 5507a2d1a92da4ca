"""Inputs: what writers hand in, valid by construction, in the shapes the nodes' protocol sends.

Every input is a frozen, slotted dataclass whose ``__post_init__`` runs the checks of ``luminar_store.validation``
(the one place an input is validated) and raises ``ValidationError`` naming the field, and normalizes the values
(crime types to lower-case words, ``geotag``/``centre`` to ``{"lat": float, "lng": float}``, ``related_reports`` to
UUIDs, a zone's ``boundary`` to a closed GeoJSON Polygon). ``coerce()`` turns a mapping (or another dataclass, or a
pydantic model) into one, reading the protocol's field names as aliases; repositories call it and then trust the
values.

==========================  =========================================================================
input                       accepted aliases
==========================  =========================================================================
RawIncidentReport           ``report_id`` → ``external_id`` (the source's id, whatever its form),
                            ``text_description`` → ``description``, ``user_id`` → ``reporter_id``,
                            ``latitude`` + ``longitude`` → ``geotag``
CrimeEvent                  ``crime_type`` → ``event_type``, ``description`` / ``clustered_summary`` →
                            ``summary``, ``summary_tag`` → ``title``, ``confidence`` → ``confidence_score``,
                            ``severity_level`` → ``severity`` (a word low/medium/high or 1..5),
                            ``latitude`` + ``longitude`` → ``geotag``,
                            ``location``: text → ``location_text``; ``{"coordinates": {"lat", "lng"}, ...}`` →
                            ``geotag`` (its ``address`` → ``location_text``; its other keys kept in
                            ``metadata["location"]``),
                            ``timestamp_range`` ``{"start", "end"}`` → ``timestamp``, ``time_end``,
                            ``related_reports`` / ``source_reports`` items: a UUID in ``related_reports`` is our
                            ``report_id``; any other id is the report's own (``LMR_...``) → ``source_reports``,
                            a miner's own non-UUID ``event_id`` → ``metadata["source_event_id"]``
NewCrimeCluster             ``center`` → ``centre``
NewRiskZone                 (none)
==========================  =========================================================================

Example::

    >>> e = CrimeEvent.coerce({"crime_type": "Armed Robbery", "geotag": {"lat": 40.7, "lng": -74.0},
    ...                        "timestamp": "2025-01-01T12:00:00+00:00", "severity": 4, "confidence_score": 0.9})
    >>> e.event_type, e.latitude
    ('armed_robbery', 40.7)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from luminar_store import validation as v
from luminar_store.errors import ValidationError
from luminar_store.limits import (
    MAX_CRIME_TYPES,
    MAX_IDEMPOTENCY_KEY,
    MAX_RADIUS_M,
    MAX_RINGS,
    MAX_SOURCE_REPORTS,
    MAX_UID,
    MAX_VERTICES,
)
from luminar_store.severity import level_of

__all__ = [
    "REPORT_STATUSES",
    "DEFAULT_REPORT_SOURCE",
    "VERIFICATION_STATUSES",
    "CLUSTER_TYPES",
    "TREND_DIRECTIONS",
    "RawIncidentReport",
    "CrimeEvent",
    "NewCrimeCluster",
    "NewRiskZone",
    "boundary_geojson",
]

#: Life cycle of a raw report: pending → processing (claimed by a miner) → processed | failed | rejected.
REPORT_STATUSES = ("pending", "processing", "processed", "failed", "rejected")
#: The source of a report that names none (the network's apps); also the ``source`` column's default.
DEFAULT_REPORT_SOURCE = "mobile_app"
#: Verdict of the validators on a crime event.
VERIFICATION_STATUSES = ("pending", "verified", "disputed", "rejected")
#: What a cluster groups by (the reference schema's ``cluster_type``), and where a zone's crime is heading.
CLUSTER_TYPES = ("geographic", "temporal", "behavioral")
TREND_DIRECTIONS = ("increasing", "decreasing", "stable")


# Frozen dataclasses normalize their own fields once, in __post_init__.
_set = object.__setattr__
# Crime types recur: each distinct word is checked by validation.slug once (bounded, so it cannot grow forever).
_SLUGS: dict[str, str] = {}


def _slug(field_name: str, value: object) -> str:
    clean = _SLUGS.get(value) if type(value) is str else None  # noqa: E721 - exact str: the cache's keys
    if clean is None:
        clean = v.slug(field_name, value)
        if len(_SLUGS) < 4096:
            _SLUGS[value] = clean  # type: ignore[index]
    return clean


def _geotag(value: object) -> dict[str, float]:
    """validation.geotag, with the protocol's usual form (two floats in range) accepted without the general path."""
    if type(value) is dict:  # noqa: E721
        lat, lng = value.get("lat"), value.get("lng")
        if type(lat) is float and type(lng) is float and -90.0 <= lat <= 90.0 and -180.0 <= lng <= 180.0:  # noqa: E721
            return {"lat": lat, "lng": lng}
    lat, lng = v.geotag("geotag", value)
    return {"lat": lat, "lng": lng}


def _metadata(value: object) -> dict[str, object]:
    """validation.mapping, with a flat dict of ASCII text, 64-bit whole numbers, finite floats, booleans and nulls
    accepted without the general (recursive) path."""
    if type(value) is dict:  # noqa: E721
        for key, item in value.items():
            kind = type(item)
            if type(key) is not str or "\x00" in key or not key.isascii():  # noqa: E721
                break
            if kind is str:
                if "\x00" in item or not item.isascii():
                    break
            elif kind is float:
                if not math.isfinite(item):
                    break
            elif kind is int:
                if item.bit_length() > 63:
                    break
            elif kind is not bool and item is not None:
                break
        else:
            return dict(value)
    return v.mapping("metadata", value)


def _as_mapping(cls: type, value: object, what: str) -> dict[str, object]:
    if type(value) is dict or isinstance(value, Mapping):  # noqa: E721 - the common case without the ABC check
        return dict(value)  # type: ignore[call-overload]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)  # a pydantic model (the nodes' protocol objects)
    if callable(dump) and not isinstance(value, type):
        dumped = dump()
        if isinstance(dumped, Mapping):
            return dict(dumped)
    raise ValidationError(what, f"must be a {cls.__name__} or a mapping with its field names, got "
                                f"{type(value).__name__}")


def _location(data: dict[str, object]) -> None:
    """``latitude`` + ``longitude`` given at the top level become ``geotag``."""
    if "geotag" not in data and "latitude" in data and "longitude" in data:
        data["geotag"] = {"lat": data.pop("latitude"), "lng": data.pop("longitude")}


_SHAPES: dict[type, tuple[frozenset[str], tuple[str, ...]]] = {}


def _shape(cls: type) -> tuple[frozenset[str], tuple[str, ...]]:
    """(field names, required field names) of an input dataclass, computed once."""
    shape = _SHAPES.get(cls)
    if shape is None:
        fields = dataclasses.fields(cls)
        shape = _SHAPES[cls] = (
            frozenset(f.name for f in fields),
            tuple(f.name for f in fields
                  if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING),
        )
    return shape


def _build(cls: type, data: dict[str, object], aliases: Mapping[str, str]) -> object:
    for alias, name in aliases.items():
        if alias in data:
            value = data.pop(alias)
            if data.get(name) is None:
                data[name] = value
            elif value is not None and value != data[name]:
                raise ValidationError(alias, f"is an alias of {name} and both are given with different values")
    names, required = _shape(cls)
    if not names.issuperset(data):
        unknown = sorted(str(k) for k in data if k not in names)
        raise ValidationError(unknown[0], f"is not a field of {cls.__name__}; fields: {', '.join(sorted(names))}")
    for name in required:
        if name not in data:
            raise ValidationError(name, "is required")
    return cls(**data)


class _Located:
    """``latitude`` and ``longitude`` of an input's point: the mapping named by ``POINT`` (``geotag``, or a
    cluster's ``centre``), already normalized to ``{"lat": float, "lng": float}``."""

    __slots__ = ()
    POINT: ClassVar[str] = "geotag"

    @property
    def latitude(self) -> float | None:
        point = getattr(self, self.POINT)
        return None if point is None else point["lat"]

    @property
    def longitude(self) -> float | None:
        point = getattr(self, self.POINT)
        return None if point is None else point["lng"]


@dataclass(frozen=True, slots=True)
class RawIncidentReport(_Located):
    """An unprocessed report from a citizen's app (input of ``store_raw_report``).

    ``external_id``: the report's id at its source (1..200 characters, e.g. ``LMR_20250907_1A2B3C4D`` or a UUID),
    the idempotency key: storing the same ``external_id`` again returns the first ``report_id``. ``description``:
    1..10,000 characters. ``geotag``: ``{"lat": .., "lng": ..}``. ``timestamp``: at most 5 minutes in the future; a
    naive one is read by ``LUMINAR_NAIVE_TIMESTAMPS`` (the node's local time unless set). ``crime_type``: a
    lower-case word (``"Armed Robbery"`` becomes ``armed_robbery``). ``media_hashes``: one per media URL, or none
    at all (URLs stored without hashes). ``source``: the data source (1..100 characters; ``mobile_app`` when not
    given).

    Raises ``ValidationError`` naming the field, e.g. ``geotag.lat: must be between -90 and 90, got 95``.
    """

    external_id: str
    description: str
    geotag: Mapping[str, float]
    timestamp: dt.datetime
    reporter_id: str | None = None
    crime_type: str | None = None
    media_urls: tuple[str, ...] = ()
    media_hashes: tuple[str, ...] = ()
    metadata: Mapping[str, object] = field(default_factory=dict)
    source: str | None = None

    ALIASES: ClassVar[Mapping[str, str]] = {"text_description": "description", "user_id": "reporter_id"}

    def __post_init__(self) -> None:
        _set(self, "external_id", v.text("external_id", self.external_id, max_length=200))
        _set(self, "description", v.text("description", self.description))
        _set(self, "geotag", _geotag(self.geotag))
        _set(self, "timestamp", v.aware_datetime("timestamp", self.timestamp))
        _set(self, "reporter_id", v.optional_text("reporter_id", self.reporter_id, max_length=200))
        _set(self, "crime_type", None if self.crime_type is None else _slug("crime_type", self.crime_type))
        urls = tuple(v.string_list("media_urls", self.media_urls))
        hashes = tuple(v.string_list("media_hashes", self.media_hashes, max_length=256))
        if hashes and len(hashes) != len(urls):
            raise ValidationError("media_hashes", f"must hold one hash per media URL, or none: {len(urls)} URLs, "
                                                  f"{len(hashes)} hashes")
        _set(self, "media_urls", urls)
        _set(self, "media_hashes", hashes)
        _set(self, "metadata", _metadata(self.metadata))
        if self.source is not None:
            _set(self, "source", v.text("source", self.source, max_length=100))

    @classmethod
    def coerce(cls, value: object, *, what: str = "report") -> RawIncidentReport:
        """``value`` itself when it is a ``RawIncidentReport``, else one built from a mapping or dataclass (the
        protocol's ``RawIncidentReport`` as the validators build it, or its dict form).

        The protocol's ``report_id`` is the report's id at its source and is read as ``external_id``, whatever its
        form (``LMR_...``, a UUID). Given beside ``external_id`` it must be the same id, or a UUID: then it is this
        store's own key of a record being stored again, and is ignored. Raises ``ValidationError``.

        Example: ``RawIncidentReport.coerce({"report_id": "LMR_20250907_1A2B3C4D", "text_description": "...", ...})``
        """
        if isinstance(value, cls):
            return value
        data = _as_mapping(cls, value, what)
        if "report_id" in data:
            report_id = data.pop("report_id")
            external_id = data.get("external_id")
            if external_id is None:
                if report_id is not None:
                    data["external_id"] = str(report_id) if isinstance(report_id, uuid.UUID) else report_id
            elif report_id is not None and report_id != external_id and not _is_uuid(report_id):
                raise ValidationError("report_id", "differs from external_id; give only one source id")
        _location(data)
        for key in ("media_urls", "media_hashes"):
            if isinstance(data.get(key), list):
                data[key] = tuple(data[key])
        return _build(cls, data, cls.ALIASES)


def _is_uuid(value: object) -> bool:
    if isinstance(value, uuid.UUID):
        return True
    if isinstance(value, str):
        try:
            uuid.UUID(value)
        except ValueError:
            return False
        return True
    return False


@dataclass(frozen=True, slots=True)
class CrimeEvent(_Located):
    """A crime event produced by a miner from one or more raw reports (input of ``store_crime_event``).

    ``event_type``: a lower-case word. ``severity``: a level 1..5 or one of the miners' words ``low``, ``medium``,
    ``high`` (``luminar_store.severity`` maps them onto 2, 3, 4), or ``None`` when the miner gave none (the report
    flow's events carry no severity; stored as NULL, left out of severity averages). ``confidence_score`` and
    ``risk_score``: 0..1.
    ``geotag``: ``{"lat": .., "lng": ..}``, or ``None``: the point then comes from the source reports (one: its
    point; several: their centroid), and an event with neither is stored *unlocated* (left out of every spatial
    query until ``locate_event`` sets its point). ``timestamp``: at most 5 minutes in the future (a naive one is
    read by ``LUMINAR_NAIVE_TIMESTAMPS``), or ``None``: the earliest source report's time, else the time it was
    stored; ``time_end`` ends its time range (only beside a ``timestamp``, not before it). ``related_reports``:
    ``report_id`` UUIDs of stored raw reports;
    ``source_reports``: the reports' own ids (``LMR_...``), resolved when stored (an unknown one is a
    ``NotFoundError``). ``location_text``, ``time_info``: the miner's free text; ``entities``: a list;
    ``request_id``: the text flow's request. ``verification_status``: ``pending`` (default), ``verified``,
    ``disputed`` or ``rejected``. ``event_id``: optional, chosen by the writer (a UUID).

    Storing is idempotent: an event is known by its ``idempotency_key`` (the writer's own key, 1..200 characters,
    unique per miner), else its ``event_id``, else its natural key (miner, type, time and time range, point or
    location text, related and source reports, title, summary, time text, request); storing it again returns the
    first ``event_id`` and stores nothing (``crime_events.idempotency_key``).

    ``coerce`` reads the network's shapes (see the module's table). Raises ``ValidationError`` naming the field,
    e.g. ``severity: must be at most 5, got 7``.
    """

    event_type: str
    confidence_score: float
    severity: int | None = None
    geotag: Mapping[str, float] | None = None
    timestamp: dt.datetime | None = None
    title: str | None = None
    summary: str | None = None
    related_reports: tuple[uuid.UUID, ...] = ()
    cluster_id: uuid.UUID | None = None
    risk_score: float | None = None
    verification_status: str = "pending"
    metadata: Mapping[str, object] = field(default_factory=dict)
    event_id: uuid.UUID | None = None
    source_reports: tuple[str, ...] = ()
    location_text: str | None = None
    time_info: str | None = None
    entities: tuple[object, ...] = ()
    time_end: dt.datetime | None = None
    request_id: str | None = None
    idempotency_key: str | None = None

    ALIASES: ClassVar[Mapping[str, str]] = {"crime_type": "event_type", "description": "summary",
                                            "confidence": "confidence_score", "severity_level": "severity",
                                            "summary_tag": "title", "clustered_summary": "summary"}

    def __post_init__(self) -> None:
        # The bulk path validates every row: values already in their clean form skip the general validators
        # (each fast test accepts only what the validator would accept unchanged).
        _set(self, "event_type", _slug("event_type", self.event_type))
        if self.geotag is not None:
            _set(self, "geotag", _geotag(self.geotag))
        if self.timestamp is not None:
            _set(self, "timestamp", v.aware_datetime("timestamp", self.timestamp))
        if self.severity is not None and (type(self.severity) is not int  # noqa: E721 - bool is refused
                                          or not 1 <= self.severity <= 5):
            _set(self, "severity", level_of(self.severity) if isinstance(self.severity, str)
                 else v.severity("severity", self.severity))
        if type(self.confidence_score) is not float or not 0.0 <= self.confidence_score <= 1.0:  # noqa: E721
            _set(self, "confidence_score", v.unit_interval("confidence_score", self.confidence_score))
        if self.title is not None:
            _set(self, "title", v.text("title", self.title, max_length=500))
        if self.summary is not None:
            _set(self, "summary", v.text("summary", self.summary))
        if self.related_reports or self.related_reports is None or type(self.related_reports) is not tuple:  # noqa: E721
            _set(self, "related_reports", tuple(v.uuid_list("related_reports", self.related_reports)))
        if self.cluster_id is not None:
            _set(self, "cluster_id", v.uuid_value("cluster_id", self.cluster_id))
        if self.risk_score is not None:
            _set(self, "risk_score", v.unit_interval("risk_score", self.risk_score))
        if self.verification_status not in VERIFICATION_STATUSES:
            v.choice("verification_status", self.verification_status, VERIFICATION_STATUSES)
        _set(self, "metadata", _metadata(self.metadata))
        if self.event_id is not None:
            _set(self, "event_id", v.uuid_value("event_id", self.event_id))
        if self.idempotency_key is not None:
            _set(self, "idempotency_key", v.text("idempotency_key", self.idempotency_key,
                                                 max_length=MAX_IDEMPOTENCY_KEY))
        if (self.source_reports or self.entities or self.location_text is not None or self.time_info is not None
                or self.time_end is not None or self.request_id is not None):
            self._check_network_fields()

    def _check_network_fields(self) -> None:
        """The fields only the network's shapes fill (kept out of the common path: the bulk path checks every
        event)."""
        if self.source_reports:
            ids = v.string_list("source_reports", self.source_reports, max_items=MAX_SOURCE_REPORTS,
                                max_length=200)
            _set(self, "source_reports", tuple(dict.fromkeys(ids)))
        if self.location_text is not None:
            _set(self, "location_text", v.text("location_text", self.location_text, max_length=1000))
        if self.time_info is not None:
            _set(self, "time_info", v.text("time_info", self.time_info, max_length=1000))
        if self.entities:
            _set(self, "entities", tuple(v.json_list("entities", self.entities)))
        if self.time_end is not None:
            _set(self, "time_end", v.aware_datetime("time_end", self.time_end))
            # Without a start of its own the event's time is taken when it is stored (or from its reports): an end
            # given beside it could lie before that time, which the table's CHECK would refuse untyped.
            if self.timestamp is None:
                raise ValidationError("time_end", "needs the event's start (timestamp or timestamp_range.start): "
                                                  "a time range ends after it starts")
            if self.time_end < self.timestamp:
                raise ValidationError("time_end", f"must not be before the start ({self.timestamp.isoformat()})")
        if self.request_id is not None:
            _set(self, "request_id", v.text("request_id", self.request_id, max_length=200))

    @property
    def needs_sources(self) -> bool:
        """True when storing this event must read its source reports first: to resolve their own ids, or to take
        the point or the time from them."""
        return bool(self.source_reports) or (bool(self.related_reports)
                                             and (self.geotag is None or self.timestamp is None))

    @classmethod
    def coerce(cls, value: object, *, what: str = "crime_event") -> CrimeEvent:
        """``value`` itself when it is a ``CrimeEvent``, else one built from a mapping, dataclass or pydantic model
        in any of the network's shapes (see the module's table). Raises ``ValidationError`` naming the field.

        Example: ``CrimeEvent.coerce({"event_type": "theft", "severity": "medium", "location": "Main Street",
        "time_info": "7 PM", "entities": ["red sedan"], "summary": "...", "confidence": 0.85})``
        """
        if isinstance(value, cls):
            return value
        data = _as_mapping(cls, value, what)
        _location(data)
        if not _NETWORK_KEYS.isdisjoint(data):
            _network_event_shapes(data)
        return _build(cls, data, cls.ALIASES)


#: Keys of the network's event shapes that ``_network_event_shapes`` reads (an event with none skips it).
_NETWORK_KEYS = frozenset({"location", "timestamp_range", "related_reports", "source_reports", "event_id",
                           "entities"})


def _agree(data: dict[str, object], name: str, value: object, given_as: str) -> None:
    """Set ``data[name]`` from another shape's field, refusing two different values for one field."""
    if data.get(name) is not None and data[name] != value:
        raise ValidationError(given_as, f"gives {name} a second, different value")
    data[name] = value


def _network_event_shapes(data: dict[str, object]) -> None:
    """Read the miners' event shapes into ``CrimeEvent``'s fields (in place): ``location`` as text or as
    ``{"coordinates": {"lat", "lng"}, ...}``, ``timestamp_range``, report references given as our UUIDs or as the
    reports' own ids, a miner's own non-UUID ``event_id``, and lists for the tuple fields."""
    if "location" in data:
        location = data.pop("location")
        if isinstance(location, str):
            _agree(data, "location_text", location, "location")
        elif isinstance(location, Mapping):
            rest = {k: item for k, item in location.items() if k != "coordinates"}
            if location.get("coordinates") is not None:
                lat, lng = v.geotag("location.coordinates", location["coordinates"])
                _agree(data, "geotag", {"lat": lat, "lng": lng}, "location.coordinates")
            if isinstance(rest.get("address"), str):
                _agree(data, "location_text", rest["address"], "location.address")
            if rest:
                metadata = dict(v.mapping("metadata", data.get("metadata")))
                metadata["location"] = v.mapping("location", rest)
                data["metadata"] = metadata
        elif location is not None:
            raise ValidationError("location", "must be text or a mapping like {\"coordinates\": {\"lat\": .., "
                                              f"\"lng\": ..}}}}, got {type(location).__name__}")
    if "timestamp_range" in data:
        span = data.pop("timestamp_range")
        if span is not None:
            if not isinstance(span, Mapping) or span.get("start") is None:
                raise ValidationError("timestamp_range", 'must be a mapping like {"start": .., "end": ..}')
            _agree(data, "timestamp", v.aware_datetime("timestamp_range.start", span["start"]), "timestamp_range")
            if span.get("end") is not None:
                _agree(data, "time_end", v.aware_datetime("timestamp_range.end", span["end"]), "timestamp_range")
    # Report references: our report_id UUIDs stay related_reports, anything else is a report's own id.
    related: list[object] = []
    sources: list[object] = []
    for name in ("related_reports", "source_reports"):
        items = data.pop(name, None)
        if items is None:
            continue
        for i, item in enumerate(v._items(name, items, MAX_SOURCE_REPORTS, "report ids")):
            if name == "related_reports" and _is_uuid(item):
                related.append(item)
            elif isinstance(item, (str, uuid.UUID)):
                sources.append(str(item))
            else:
                raise ValidationError(f"{name}[{i}]", f"must be a report id, got {type(item).__name__}")
    if related:
        data["related_reports"] = tuple(related)
    if sources:
        data["source_reports"] = tuple(sources)
    event_id = data.get("event_id")
    if event_id is not None and not _is_uuid(event_id):
        # A miner's own event id (not a UUID): kept with the event; the store gives it a UUID event_id.
        metadata = dict(v.mapping("metadata", data.get("metadata")))
        metadata["source_event_id"] = v.text("event_id", event_id, max_length=200)
        data["metadata"] = metadata
        data["event_id"] = None
    if isinstance(data.get("entities"), list):
        data["entities"] = tuple(data["entities"])


def _required(owner: object, name: str, rule: str) -> object:
    value = getattr(owner, name)
    if value is None:
        raise ValidationError(name, rule)
    return value


def _known_fields(cls: type, value: object, what: str, aliases: frozenset[str] = frozenset()) -> dict[str, object]:
    """``value`` as a mapping of ``cls``'s fields; unknown keys are refused naming ``what`` (the whole input)."""
    data = _as_mapping(cls, value, what)
    names = _shape(cls)[0]
    unknown = sorted(str(k) for k in data if k not in names and k not in aliases)
    if unknown:
        raise ValidationError(what, f"unknown fields {', '.join(unknown)}; expected some of {', '.join(sorted(names))}")
    return data


@dataclass(frozen=True, slots=True)
class NewCrimeCluster(_Located):
    """A crime cluster to store (input of ``ClusterRepository.store``); a mapping with the same keys is accepted
    through ``coerce`` (``center`` is read as ``centre``).

    ``centre``: ``{"lat": .., "lng": ..}``. ``radius_m``: metres, 0 < r <= 1,000,000. ``time_start``/``time_end``:
    not in the future, end not before start. ``event_count`` >= 0; ``dominant_crime_type`` a lower-case word;
    ``avg_severity`` in 1..5; ``miner_uid`` a uid; ``metadata`` a JSON object. The reference schema's
    ``cluster_type`` (``geographic``, ``temporal``, ``behavioral``), ``confidence_score`` (0..1) and
    ``pattern_description`` (1..10,000 characters) are optional.

    Raises ``ValidationError`` naming the field (``centre.lat``, ``radius_m``, ``time_end`` ...).
    """

    centre: Mapping[str, float]
    radius_m: float
    time_start: dt.datetime
    time_end: dt.datetime
    event_count: int = 0
    dominant_crime_type: str | None = None
    avg_severity: float | None = None
    miner_uid: int | None = None
    metadata: Mapping[str, object] | None = None
    cluster_type: str | None = None
    confidence_score: float | None = None
    pattern_description: str | None = None

    POINT: ClassVar[str] = "centre"

    def __post_init__(self) -> None:
        lat, lng = v.geotag("centre", _required(self, "centre", 'is required: {"lat": .., "lng": ..}'))
        _set(self, "centre", {"lat": lat, "lng": lng})
        radius = v.number("radius_m", _required(self, "radius_m", "is required (metres, more than 0)"),
                          minimum=0.0, maximum=MAX_RADIUS_M)
        if radius <= 0:
            raise ValidationError("radius_m", "must be more than 0 metres")
        _set(self, "radius_m", radius)
        for name in ("time_start", "time_end"):
            _required(self, name, "is required (a timezone-aware datetime)")
            _set(self, name, v.aware_datetime(name, getattr(self, name)))
        if self.time_end < self.time_start:
            raise ValidationError("time_end", f"must not be before time_start ({self.time_start.isoformat()})")
        _set(self, "event_count", v.integer("event_count", self.event_count, minimum=0, maximum=MAX_UID))
        if self.dominant_crime_type is not None:
            _set(self, "dominant_crime_type", v.slug("dominant_crime_type", self.dominant_crime_type))
        if self.avg_severity is not None:
            _set(self, "avg_severity", v.number("avg_severity", self.avg_severity, minimum=1.0, maximum=5.0))
        if self.miner_uid is not None:
            _set(self, "miner_uid", v.uid("miner_uid", self.miner_uid))
        _set(self, "metadata", v.mapping("metadata", self.metadata))
        if self.cluster_type is not None:
            _set(self, "cluster_type", v.choice("cluster_type", self.cluster_type, CLUSTER_TYPES))
        if self.confidence_score is not None:
            _set(self, "confidence_score", v.unit_interval("confidence_score", self.confidence_score))
        if self.pattern_description is not None:
            _set(self, "pattern_description", v.text("pattern_description", self.pattern_description))

    @classmethod
    def coerce(cls, value: object, *, what: str = "cluster") -> NewCrimeCluster:
        """``value`` itself when it is a ``NewCrimeCluster``, else one built from a mapping or dataclass. Unknown
        keys raise ``ValidationError`` naming ``cluster``; bad values name their field.

        Example: ``NewCrimeCluster.coerce({"center": {"lat": 1, "lng": 2}, "radius_m": 50, ...})``
        """
        if isinstance(value, cls):
            return value
        data = _known_fields(cls, value, what, frozenset({"center"}))
        if "center" in data:
            center = data.pop("center")
            if data.get("centre") is None:
                data["centre"] = center
        for name in ("centre", "radius_m", "time_start", "time_end"):
            data.setdefault(name, None)  # __post_init__ names what is missing, with the rule
        return cls(**data)


# -- risk zone boundaries -----------------------------------------------------------------------------------------

def _ring(field: str, positions: object) -> list[list[float]]:
    """One closed ring of ``[lng, lat]`` positions, checked."""
    if isinstance(positions, (str, bytes, Mapping)) or not isinstance(positions, Sequence):
        raise ValidationError(field, f"must be a list of [lng, lat] positions, got {type(positions).__name__}")
    ring = []
    for i, position in enumerate(positions):
        if isinstance(position, (str, bytes, Mapping)) or not isinstance(position, Sequence) \
                or len(position) not in (2, 3):
            raise ValidationError(f"{field}[{i}]", "must be a [lng, lat] position")
        ring.append([v.longitude(f"{field}[{i}][0]", position[0]), v.latitude(f"{field}[{i}][1]", position[1])])
    return _closed(field, ring)


def _closed(field: str, ring: list[list[float]]) -> list[list[float]]:
    if ring and ring[0] != ring[-1]:
        ring.append(list(ring[0]))
    if len({tuple(p) for p in ring}) < 3:
        raise ValidationError(field, f"needs at least 3 distinct vertices, got {len({tuple(p) for p in ring})}")
    return ring


def boundary_geojson(boundary: object, field: str = "boundary") -> dict[str, object]:
    """A checked GeoJSON Polygon (rings closed) from a vertex list or a GeoJSON Polygon mapping.

    Raises ``ValidationError`` naming the field (``boundary[2].lat``, ``boundary.coordinates[0][3][1]`` ...) for
    out-of-range or non-finite coordinates, fewer than 3 distinct vertices, or another geometry type.

    Example::

        >>> boundary_geojson([{"lat": 0, "lng": 0}, {"lat": 0, "lng": 1}, {"lat": 1, "lng": 1}])["coordinates"]
        [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]]
    """
    if isinstance(boundary, Mapping):
        if boundary.get("type") != "Polygon":
            raise ValidationError(f"{field}.type", f"must be \"Polygon\", got {boundary.get('type')!r}")
        rings = boundary.get("coordinates")
        if isinstance(rings, (str, bytes, Mapping)) or not isinstance(rings, Sequence) or not rings:
            raise ValidationError(f"{field}.coordinates", "must be a list of rings of [lng, lat] positions")
        if len(rings) > MAX_RINGS:
            raise ValidationError(f"{field}.coordinates", f"must hold at most {MAX_RINGS} rings, got {len(rings)}")
        coordinates = [_ring(f"{field}.coordinates[{r}]", ring) for r, ring in enumerate(rings)]
    elif isinstance(boundary, Sequence) and not isinstance(boundary, (str, bytes)):
        vertices = []
        for i, vertex in enumerate(boundary):
            lat, lng = v.geotag(f"{field}[{i}]", vertex)
            vertices.append([lng, lat])
        coordinates = [_closed(field, vertices)]
    else:
        raise ValidationError(field, 'must be a list of {"lat": .., "lng": ..} vertices or a GeoJSON Polygon, '
                                     f"got {type(boundary).__name__}")
    total = sum(len(ring) for ring in coordinates)
    if total > MAX_VERTICES:
        raise ValidationError(field, f"must have at most {MAX_VERTICES} vertices, got {total}")
    return {"type": "Polygon", "coordinates": coordinates}


@dataclass(frozen=True, slots=True)
class NewRiskZone:
    """A risk zone to store (input of ``RiskZoneRepository.store``); a mapping with the same keys is accepted
    through ``coerce``.

    ``name``: 1..200 characters. ``boundary``: a list of at least three ``{"lat": .., "lng": ..}`` vertices (the
    ring is closed automatically) or a GeoJSON Polygon mapping (``{"type": "Polygon", "coordinates": [[[lng, lat],
    ...], ...]}``), kept as the checked GeoJSON Polygon. ``risk_level`` in 1..5, ``risk_score`` in [0, 1];
    ``crime_types`` lower-case words (duplicates dropped); ``valid_from`` defaults to now (``None``),
    ``valid_until`` to never and must come after ``valid_from``; ``metadata`` a JSON object. The reference
    schema's ``crime_density`` (crimes per km², >= 0), ``recent_incidents`` (>= 0, default 0) and
    ``trend_direction`` (``increasing``, ``decreasing``, ``stable``) are optional.

    Raises ``ValidationError`` naming the field.
    """

    name: str
    boundary: object
    risk_level: int
    risk_score: float
    crime_types: tuple[str, ...] | None = None
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None
    metadata: Mapping[str, object] | None = None
    crime_density: float | None = None
    recent_incidents: int = 0
    trend_direction: str | None = None

    def __post_init__(self) -> None:
        for name in ("name", "boundary", "risk_level", "risk_score"):
            _required(self, name, "is required")
        if self.valid_from is not None:
            _set(self, "valid_from", v.aware_datetime("valid_from", self.valid_from, allow_future=True))
        if self.valid_until is not None:
            _set(self, "valid_until", v.aware_datetime("valid_until", self.valid_until, allow_future=True))
            start = self.valid_from or dt.datetime.now(dt.timezone.utc)
            if self.valid_until <= start:
                raise ValidationError("valid_until", f"must be after valid_from ({start.isoformat()})")
        types = v.string_list("crime_types", self.crime_types, max_items=MAX_CRIME_TYPES, max_length=64)
        _set(self, "crime_types", tuple(dict.fromkeys(v.slug(f"crime_types[{i}]", t) for i, t in enumerate(types))))
        _set(self, "name", v.text("name", self.name, max_length=200))
        _set(self, "boundary", boundary_geojson(self.boundary))
        _set(self, "risk_level", v.severity("risk_level", self.risk_level))
        _set(self, "risk_score", v.unit_interval("risk_score", self.risk_score))
        _set(self, "metadata", v.mapping("metadata", self.metadata))
        if self.crime_density is not None:
            _set(self, "crime_density", v.number("crime_density", self.crime_density, minimum=0.0))
        _set(self, "recent_incidents", v.integer("recent_incidents", self.recent_incidents, minimum=0,
                                                 maximum=MAX_UID))
        if self.trend_direction is not None:
            _set(self, "trend_direction", v.choice("trend_direction", self.trend_direction, TREND_DIRECTIONS))

    @classmethod
    def coerce(cls, value: object, *, what: str = "zone") -> NewRiskZone:
        """``value`` itself when it is a ``NewRiskZone``, else one built from a mapping or dataclass. Unknown keys
        raise ``ValidationError`` naming ``zone``; bad values name their field.

        Example: ``NewRiskZone.coerce({"name": "Docks", "boundary": [...], "risk_level": 3, "risk_score": 0.6})``
        """
        if isinstance(value, cls):
            return value
        data = _known_fields(cls, value, what)
        for name in ("name", "boundary", "risk_level", "risk_score"):
            data.setdefault(name, None)
        return cls(**data)
