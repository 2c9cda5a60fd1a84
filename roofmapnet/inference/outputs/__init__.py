"""What inference writes: per-image JSON / GeoJSON / overlay PNG (:mod:`.writers`) and the outputs of tiled rasters
in map coordinates, GeoJSON and GeoPackage (:mod:`.geo`).  Every file is written atomically."""
