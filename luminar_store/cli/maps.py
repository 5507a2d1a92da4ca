"""``luminar-db export geojson`` and ``luminar-db map``: the crime intelligence layers as a file.

Both read the layers of ``luminar_store.analysis.export`` (the queries live there) as the owner, in one snapshot.
A file is written beside its target and renamed over it when complete; an existing file is refused, naming it,
unless ``--force``. The summary goes to stderr when the GeoJSON goes to stdout.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from luminar_store.analysis.export import LAYERS, ExportRequest, collect, write_atomically, write_geojson
from luminar_store.analysis.maps import MAP_LAYERS, render_map, require_folium
from luminar_store.cli.common import env_option, settings_for
from luminar_store.config import Settings
from luminar_store.errors import OperationError
from luminar_store.limits import DEFAULT_CELL_M, MAX_CELL_M, MAX_DAYS, MIN_CELL_M
from luminar_store.ops.connect import connect

__all__ = ["export_group", "geojson_command", "map_command"]

# Marks the schema the export needs (the newest function it calls).
NEEDS = "SELECT to_regprocedure('luminar_cell_polygon(integer, integer, double precision)') IS NOT NULL"


def _layers(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in LAYERS]
    if unknown or not names:
        raise click.BadParameter(f"{', '.join(unknown) or 'no layer'}: give one or more of {','.join(LAYERS)}, "
                                 "separated by commas")
    return names


days_option = click.option("--days", type=click.IntRange(1, MAX_DAYS), default=7, show_default=True,
                           help="The window: the last N days (hotspots, clusters, incidents; zones valid now).")
cell_option = click.option("--cell-m", "cell_m", type=click.FloatRange(MIN_CELL_M, MAX_CELL_M),
                           default=DEFAULT_CELL_M, show_default=True,
                           help="Side of the Gi* hotspot cells in metres (equal-area squares).")
force_option = click.option("--force", is_flag=True, help="Replace the output file when it exists.")


def _connect_checked(settings: Settings):
    conn = connect(settings)
    try:
        if not conn.execute(NEEDS).fetchone()[0]:  # type: ignore[index]
            raise OperationError(f"database {settings.name} lacks the analysis functions (or the whole schema); "
                                 "run: luminar-db migrate")
    except BaseException:
        conn.close()
        raise
    return conn


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {layer}" for layer, n in counts.items())


@click.group("export")
def export_group() -> None:
    """Export the crime intelligence layers to files other tools open.

    Example: luminar-db export geojson --days 7 --out week.geojson
    """


@export_group.command("geojson")
@env_option
@days_option
@cell_option
@click.option("--layers", default=",".join(LAYERS), show_default=True, callback=_layers,
              help="The layers to export, separated by commas.")
@click.option("--out", "out", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), default=Path("-"),
              show_default=True, help="File to write; - writes to stdout.")
@force_option
def geojson_command(env: str | None, days: int, cell_m: float, layers: tuple[str, ...], out: Path,
                    force: bool) -> None:
    """Write the hotspots (significant Gi* cells as squares), clusters (points with radius_m), risk zones valid now
    (polygons) and incidents (points) of a window as one GeoJSON FeatureCollection (RFC 7946: WGS 84 longitude,
    latitude; counter-clockwise exteriors; times in UTC). Every feature names its layer. QGIS and web maps open it.

    \b
    Example: luminar-db export geojson --days 7 --out week.geojson
    Example: luminar-db export geojson --layers hotspots,zones | jq '.features | length'
    """
    request = ExportRequest(days=days, cell_m=cell_m, layers=layers)
    settings = settings_for(env)
    started = time.monotonic()
    if str(out) == "-":
        with _connect_checked(settings) as conn:
            counts = write_geojson(conn, request, sys.stdout)
        click.echo(f"Exported {_summary(counts)} ({time.monotonic() - started:.1f} s).", err=True)
        return

    def write(file) -> dict[str, int]:
        with _connect_checked(settings) as conn:
            return write_geojson(conn, request, file)

    counts = write_atomically(out, write, force=force)
    click.echo(f"Wrote {_summary(counts)} of the last {days} days from {settings.target()} to {out} "
               f"({out.stat().st_size:,} bytes, {time.monotonic() - started:.1f} s).")


@click.command("map")
@env_option
@days_option
@cell_option
@click.option("--layers", default=",".join(MAP_LAYERS), show_default=True, callback=_layers,
              help=f"The layers to draw, separated by commas (of {','.join(LAYERS)}).")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The HTML file to write.")
@force_option
def map_command(env: str | None, days: int, cell_m: float, layers: tuple[str, ...], out: Path, force: bool) -> None:
    """Draw the hotspots (coloured by Gi* bin) and risk zones (by risk level), and the clusters, of a window on a
    base map, with legends and a layer switch, as one HTML page any browser opens. The base map is
    LUMINAR_MAP_TILES_URL (OpenStreetMap's tiles by default) credited with LUMINAR_MAP_TILES_ATTRIBUTION. Needs
    the optional extra 'maps' (pip install 'luminar_store[maps]').

    \b
    Example: luminar-db map --days 7 --out hotspots.html
    Example: luminar-db map --layers hotspots,events --cell-m 250 --out city.html --force
    """
    require_folium()
    request = ExportRequest(days=days, cell_m=cell_m, layers=layers)
    settings = settings_for(env)
    started = time.monotonic()

    def write(file) -> dict[str, int]:
        with _connect_checked(settings) as conn:
            drawn = collect(conn, request)
        file.write(render_map(drawn, tiles_url=settings.map_tiles_url, attribution=settings.map_tiles_attribution,
                              title=f"Luminar: the last {days} days"))
        return drawn.count()

    counts = write_atomically(out, write, force=force)
    click.echo(f"Drew {_summary(counts)} of the last {days} days from {settings.target()} on {out} "
               f"({out.stat().st_size:,} bytes, {time.monotonic() - started:.1f} s).")
