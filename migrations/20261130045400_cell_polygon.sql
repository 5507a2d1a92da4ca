-- Migration: cell_polygon
-- Created:   2026-11-30 04:54:00 (UTC)
--
-- The shape of a Gi* cell, defined once, beside its centre (luminar_cell_centre, migration 20261130032000).
--
-- luminar_cell_polygon(row, col, cell_m): the square of cell_m metres at (row, col) of the equal-area grid
-- (EPSG:6933, luminar_grid_srid()) as a WGS 84 polygon (EPSG:4326), for the GeoJSON export and the map
-- (luminar_store.analysis.export). Four corners describe it exactly: the grid's projection is cylindrical (x gives the
-- longitude alone, y the latitude alone), so the square's edges are two meridians and two parallels, straight lines
-- in longitude/latitude. The corners are rounded to 6 decimals (~0.1 m) as the centre is, and neighbouring cells
-- compute their shared corners from the same integers, so the cells tile the plane without gaps or overlaps. The
-- exterior ring runs counter-clockwise (RFC 7946's winding; ST_MakeEnvelope draws it clockwise), so an export needs
-- no correction.
--
-- Rights: it reads no table (IMMUTABLE, like luminar_cell_centre): every role may call it.

-- migrate:up
CREATE FUNCTION luminar_cell_polygon(p_cell_row integer, p_cell_col integer, p_cell_m double precision)
RETURNS geometry(Polygon, 4326)
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT ST_ForcePolygonCCW(ST_MakeEnvelope(
               round(ST_X(sw)::numeric, 6)::double precision, round(ST_Y(sw)::numeric, 6)::double precision,
               round(ST_X(ne)::numeric, 6)::double precision, round(ST_Y(ne)::numeric, 6)::double precision, 4326))
      FROM (SELECT ST_Transform(ST_SetSRID(ST_MakePoint(p_cell_col * p_cell_m, p_cell_row * p_cell_m),
                                           luminar_grid_srid()), 4326) AS sw,
                   ST_Transform(ST_SetSRID(ST_MakePoint((p_cell_col + 1) * p_cell_m, (p_cell_row + 1) * p_cell_m),
                                           luminar_grid_srid()), 4326) AS ne) AS corners
$$;

-- migrate:down
DROP FUNCTION IF EXISTS luminar_cell_polygon(integer, integer, double precision);
