"""Crime intelligence read out of the database: the GeoJSON export and the map (``export``, ``maps``)."""
