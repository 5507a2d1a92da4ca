"""Geometry shared by the spatial queries: the bounding boxes that pre-filter a radius search on an indexed geometry,
and the centroid that places an event from its source reports.

A radius search in metres (events near a point, clusters near a point) first keeps the rows whose point lies in a
longitude/latitude box through the GiST index, then refines with the exact geodesic ``ST_DWithin(geography, ...)``.
The box is computed here, once, for every such query.

Example::

    >>> box = search_boxes(40.7128, -74.0060, 1000)
    >>> box["xmin"] < -74.006 < box["xmax"], box["xmin2"] is None
    (True, True)
"""

from __future__ import annotations

import math

__all__ = ["POLAR_RADIUS_M", "search_boxes", "centroid"]

#: The Earth's polar radius, its smallest: an angle computed with it is never too small.
POLAR_RADIUS_M = 6_356_752.0


def search_boxes(latitude: float, longitude: float, radius_m: float) -> dict[str, float | None]:
    """Bounding envelopes (degrees) that hold every point within ``radius_m`` metres of ``(latitude, longitude)``.

    Spherical bounds (latitude ± d, longitude ± asin(sin d / cos latitude), J. Matuschek) on the polar radius with
    a 1 % margin, so the spheroid's points are never cut off; widened to all longitudes near a pole; split in two
    when crossing the antimeridian: ``xmin``/``xmax`` and ``xmin2``/``xmax2`` (``None`` when there is one box).
    ``ymin``/``ymax`` hold for both. In SQL, ``geom && ST_MakeEnvelope(NULL, ...)`` is NULL, so a query may always
    test both envelopes with ``OR``.

    Takes validated numbers (latitude in [-90, 90], longitude in [-180, 180], radius >= 0); never raises for them.
    """
    d = radius_m / POLAR_RADIUS_M * 1.01
    dlat = math.degrees(d)
    ymin, ymax = max(latitude - dlat, -90.0), min(latitude + dlat, 90.0)
    ratio = math.sin(min(d, math.pi / 2)) / max(math.cos(math.radians(latitude)), 1e-12)
    if ymin <= -90.0 or ymax >= 90.0 or ratio >= 1.0:
        return {"xmin": -180.0, "xmax": 180.0, "xmin2": None, "xmax2": None, "ymin": ymin, "ymax": ymax}
    dlng = math.degrees(math.asin(ratio))
    xmin, xmax, xmin2, xmax2 = longitude - dlng, longitude + dlng, None, None
    if xmin < -180.0:
        xmin, xmin2, xmax2 = -180.0, xmin + 360.0, 180.0
    elif xmax > 180.0:
        xmax, xmin2, xmax2 = 180.0, -180.0, xmax - 360.0
    return {"xmin": xmin, "xmax": xmax, "xmin2": xmin2, "xmax2": xmax2, "ymin": ymin, "ymax": ymax}


def centroid(points: list[tuple[float, float]]) -> tuple[float, float]:
    """The centre of ``(latitude, longitude)`` points on the sphere: the direction of the mean of their unit
    vectors, so points on both sides of the antimeridian average to a point near it, not to the far side of the
    Earth. One point is returned as it is. Points whose vectors cancel (antipodes) have no centre: the first point
    is returned. Takes validated numbers; raises ``ValueError`` for no point.

    Example: ``centroid([(0.0, 179.0), (0.0, -179.0)])`` is ``(0.0, 180.0)`` (or -180.0).
    """
    if not points:
        raise ValueError("centroid of no point")
    if len(points) == 1 or all(p == points[0] for p in points):
        return points[0]
    x = y = z = 0.0
    for lat, lng in points:
        phi, lam = math.radians(lat), math.radians(lng)
        x += math.cos(phi) * math.cos(lam)
        y += math.cos(phi) * math.sin(lam)
        z += math.sin(phi)
    norm = math.sqrt(x * x + y * y + z * z)
    if norm < 1e-12:
        return points[0]
    return math.degrees(math.asin(max(-1.0, min(1.0, z / norm)))), math.degrees(math.atan2(y, x))
