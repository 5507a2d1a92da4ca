"""Dataclasses of the data layer, by role: ``inputs`` (validated once, at construction, in the protocol's shapes)
and ``records`` (the rows queries return, with attribute and mapping access).

Every name importable from ``luminar_store.models`` before the split still is.

Example::

    from luminar_store.models import CrimeEvent, CrimeEventRecord
"""

from luminar_store.models import inputs, records
from luminar_store.models.inputs import *  # noqa: F403  (the names of inputs.__all__)
from luminar_store.models.records import *  # noqa: F403  (the names of records.__all__)

__all__ = [*inputs.__all__, *records.__all__]
