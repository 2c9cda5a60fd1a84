"""Tiled inference on rasters of any size (GeoTIFFs and other GDAL formats, or any image with ``tile_all``).

Layers, each importing only those above it in this list: :mod:`.source` (reading windows, bands, nodata,
georeference), :mod:`.grid` (tile size, the tile grid and its core regions), :mod:`.merge` (the merge across
seams, numpy / scipy only) and :mod:`.run` (the driver: read ahead, predict in batches, merge, write).
"""
