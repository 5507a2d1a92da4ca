"""A map of the crime intelligence layers: one HTML file (Leaflet through ``folium``) over a configurable base map.

The layers are the GeoJSON export's (``luminar_store.analysis.export``), read in one snapshot: risk zones coloured
by risk level (1..5), Gi* hotspot cells coloured by ``gi_bin`` (cold at 99/95/90 %, hot at 90/95/99 %), clusters as
circles of their radius, incidents as dots; each a layer the reader can switch off, with a tooltip. Two legends
(branca step colour maps) explain the colours. The base map is ``Settings.map_tiles_url`` with its attribution
(``LUMINAR_MAP_TILES_URL``, ``LUMINAR_MAP_TILES_ATTRIBUTION``; OpenStreetMap's by default). The view fits every
feature drawn.

folium is the optional extra ``maps`` (``pip install 'luminar_store[maps]'``); without it ``render_map`` raises
``OperationError`` saying so. The file references Leaflet's scripts and the tiles by URL: it is made offline and
shown by any browser that reaches them.

Example::

    >>> with connect(settings) as conn:
    ...     layers = collect(conn, ExportRequest(days=7, layers=MAP_LAYERS))
    >>> html = render_map(layers, tiles_url=settings.map_tiles_url, attribution=settings.map_tiles_attribution)
"""

from __future__ import annotations

import html
from typing import Any

from luminar_store.analysis.export import Layers
from luminar_store.errors import OperationError

__all__ = ["MAP_LAYERS", "HOTSPOT_COLOURS", "RISK_COLOURS", "LAYER_NAMES", "HOTSPOT_LEGEND", "RISK_LEGEND",
           "INSTALL_HINT", "require_folium", "render_map"]

#: The layers a map shows unless asked otherwise.
MAP_LAYERS = ("zones", "hotspots", "clusters")
#: Colour of a Gi* cell by its gi_bin (ColorBrewer RdYlBu, as ArcGIS's hot spot maps): -3..-1 cold, 1..3 hot; 0 (not
#: significant) is never exported.
HOTSPOT_COLOURS = {-3: "#4575b4", -2: "#91bfdb", -1: "#e0f3f8", 0: "#f7f7f7", 1: "#fee090", 2: "#fc8d59",
                   3: "#d73027"}
#: Colour of a risk zone by its risk level (ColorBrewer YlOrRd).
RISK_COLOURS = {1: "#ffffb2", 2: "#fecc5c", 3: "#fd8d3c", 4: "#f03b20", 5: "#bd0026"}
CLUSTER_COLOUR = "#6a3d9a"
EVENT_COLOUR = "#333333"
#: The name each layer has in the map's layer control.
LAYER_NAMES = {"zones": "Risk zones", "hotspots": "Hotspots (Gi*)", "clusters": "Clusters", "events": "Incidents"}
HOTSPOT_LEGEND = "Gi* hotspot bin: 1, 2, 3 = 90, 95, 99 % confidence; cold below 0, hot above"
RISK_LEGEND = "Risk zone level: 1 (low) to 5 (high)"
INSTALL_HINT = "the map needs folium, the optional extra 'maps': pip install 'luminar_store[maps]'"

_TOOLTIPS = {
    "zones": (["name", "risk_level", "risk_score", "trend_direction", "crime_density"],
              ["zone", "risk level", "risk score", "trend", "crimes per km²"]),
    "hotspots": (["class", "confidence", "gi_bin", "incidents", "z", "q"],
                 ["class", "confidence %", "Gi* bin", "incidents", "z", "q (FDR)"]),
    "clusters": (["dominant_crime_type", "event_count", "radius_m", "confidence_score"],
                 ["type", "events", "radius (m)", "confidence"]),
    "events": (["event_type", "severity_level", "timestamp"], ["type", "severity", "time (UTC)"]),
}


def _style(layer: str, properties: dict[str, Any]) -> dict[str, Any]:
    if layer == "zones":
        return {"color": RISK_COLOURS.get(properties.get("risk_level"), "#999999"), "weight": 2,
                "fillColor": RISK_COLOURS.get(properties.get("risk_level"), "#999999"), "fillOpacity": 0.25}
    if layer == "hotspots":
        colour = HOTSPOT_COLOURS[properties.get("gi_bin") or 0]
        return {"color": colour, "weight": 1, "fillColor": colour, "fillOpacity": 0.6}
    if layer == "clusters":
        return {"color": CLUSTER_COLOUR, "weight": 2, "fill": True, "fillColor": CLUSTER_COLOUR, "fillOpacity": 0.1,
                "radius": properties.get("radius_m")}  # metres: the layer draws folium.Circle
    return {"color": EVENT_COLOUR, "weight": 1, "fill": True, "fillColor": EVENT_COLOUR, "fillOpacity": 0.8,
            "radius": 3}  # pixels: folium.CircleMarker


def _bounds(layers: Layers) -> list[list[float]] | None:
    """[[south, west], [north, east]] of every position drawn, or None when nothing is."""
    lats: list[float] = []
    lngs: list[float] = []

    def walk(coordinates: Any) -> None:
        if coordinates and isinstance(coordinates[0], (int, float)):
            lngs.append(coordinates[0])
            lats.append(coordinates[1])
        else:
            for part in coordinates:
                walk(part)

    for features in layers.features.values():
        for feature in features:
            walk(feature["geometry"]["coordinates"])
    return [[min(lats), min(lngs)], [max(lats), max(lngs)]] if lats else None


def require_folium() -> None:
    """Raise ``OperationError`` saying how to install the extra when folium cannot be imported."""
    try:
        import branca.colormap  # noqa: F401
        import folium  # noqa: F401
    except ImportError:
        raise OperationError(INSTALL_HINT) from None


def render_map(layers: Layers, *, tiles_url: str, attribution: str, title: str | None = None) -> str:
    """The map of ``layers`` as one HTML page. Raises ``OperationError`` (how to install it) without folium."""
    require_folium()
    import branca.colormap
    import folium

    page = folium.Map(tiles=None, control_scale=True, location=[0, 0], zoom_start=2)
    folium.TileLayer(tiles=tiles_url, attr=attribution, name="Base map", overlay=False, control=False).add_to(page)
    for layer in layers.request.layers:
        features = layers.features[layer]
        fields, aliases = _TOOLTIPS[layer]
        marker = (folium.Circle() if layer == "clusters" else folium.CircleMarker() if layer == "events" else None)
        folium.GeoJson(
            {"type": "FeatureCollection", "features": features}, name=f"{LAYER_NAMES[layer]} ({len(features)})",
            style_function=lambda feature, layer=layer: _style(layer, feature["properties"]),
            tooltip=folium.GeoJsonTooltip(fields=fields, aliases=aliases) if features else None,
            marker=marker,
        ).add_to(page)
    if "hotspots" in layers.request.layers:
        bins = sorted(HOTSPOT_COLOURS)
        branca.colormap.StepColormap([HOTSPOT_COLOURS[b] for b in bins], index=[b - 0.5 for b in bins] + [3.5],
                                     vmin=-3.5, vmax=3.5, caption=HOTSPOT_LEGEND, tick_labels=bins).add_to(page)
    if "zones" in layers.request.layers:
        levels = sorted(RISK_COLOURS)
        branca.colormap.StepColormap([RISK_COLOURS[lv] for lv in levels], index=[lv - 0.5 for lv in levels] + [5.5],
                                     vmin=0.5, vmax=5.5, caption=RISK_LEGEND, tick_labels=levels).add_to(page)
    folium.LayerControl(collapsed=False).add_to(page)
    if title:
        page.get_root().header.add_child(folium.Element(f"<title>{html.escape(title)}</title>"))
    bounds = _bounds(layers)
    if bounds is not None:
        page.fit_bounds(bounds)
    return page.get_root().render()
