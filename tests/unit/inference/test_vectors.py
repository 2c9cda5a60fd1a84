"""Vector outputs through GDAL (pyogrio): every writable format, frames, attributes, atomicity, bad formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pyogrio = pytest.importorskip("pyogrio")
shapely = pytest.importorskip("shapely")
rasterio = pytest.importorskip("rasterio")

from roofmapnet.errors import DataError  # noqa: E402
from roofmapnet.inference import vectors  # noqa: E402
from roofmapnet.inference.facets import polygonize_wireframe  # noqa: E402
from roofmapnet.inference.raster.source import Georeference  # noqa: E402
from roofmapnet.utils.io import TMP_PREFIX  # noqa: E402

# A 10 × 6 px hip roof (4 facets) on a 0.5 m Swiss LV95 grid.
HIP = np.array(
    [[0, 0, 10, 0], [10, 0, 10, 6], [10, 6, 0, 6], [0, 6, 0, 0], [3, 3, 7, 3], [0, 0, 3, 3], [0, 6, 3, 3],
     [10, 0, 7, 3], [10, 6, 7, 3]],
    dtype=np.float64,
)  # fmt: skip
JUNCTIONS = np.array([[0, 0], [10, 0], [10, 6], [0, 6], [3, 3], [7, 3]], dtype=np.float64)
ORIGIN = (2_600_000.0, 1_200_000.0)
EPSG = 2056


def _georef() -> Georeference:
    crs = rasterio.crs.CRS.from_epsg(EPSG)
    return Georeference(
        transform=(0.5, 0.0, ORIGIN[0], 0.0, -0.5, ORIGIN[1]),
        crs_wkt=crs.to_wkt(),
        epsg=EPSG,
        crs_name=f"EPSG:{EPSG}",
        metres_per_unit=1.0,
    )


def _frame(georef: Georeference) -> vectors.VectorFrame:
    return vectors.VectorFrame(georef.crs_wkt, georef.crs_name, georef.transform, 12, 8, "roof.tif")


def _layers(georef: Georeference) -> list[vectors.VectorLayer]:
    return vectors.wireframe_layers(
        HIP,
        np.linspace(0.9, 0.5, len(HIP)),
        JUNCTIONS,
        np.full(len(JUNCTIONS), 0.8),
        georef,
        tiles=np.arange(len(HIP)),
        sources=np.array(["roof.tif"] * len(HIP)),
        facets=polygonize_wireframe(HIP),
    )


def test_line_and_junction_attributes() -> None:
    georef = _georef()
    lines, junctions, facets = _layers(georef)
    # Eave 0 runs 10 px = 5 m due east (azimuth 90°), eave 1 runs 6 px = 3 m south (azimuth 0°: undirected).
    np.testing.assert_allclose(lines.fields["length_m"][:2], [5.0, 3.0])
    np.testing.assert_allclose(lines.fields["length_px"][:2], [10.0, 6.0])
    np.testing.assert_allclose(lines.fields["azimuth"][:2], [90.0, 0.0])
    np.testing.assert_allclose(lines.fields["azimuth"][5], 135.0)  # (0, 0) → (3, 3): south-east, i.e. 135°
    # Corners have degree 3 (two eaves and a hip), ridge ends 3 (ridge and two hips).
    assert junctions.fields["degree"].tolist() == [3, 3, 3, 3, 3, 3]
    np.testing.assert_allclose(sorted(facets.fields["area_m2"]), [2.25, 2.25, 5.25, 5.25])  # px² × 0.25 m²
    assert sorted(facets.fields["edges"].tolist()) == [3, 3, 4, 4]
    # Pixel frame (no georeference): lengths in pixels only, azimuth from image up.
    plain = vectors.line_measures(HIP[:2], Georeference())
    assert np.isnan(plain["length_m"]).all()
    np.testing.assert_allclose(plain["azimuth"], [90.0, 0.0])


def test_geographic_lengths_use_the_latitude() -> None:
    wgs = Georeference(
        transform=(1e-5, 0.0, 8.0, 0.0, -1e-5, 60.0),
        crs_wkt=rasterio.crs.CRS.from_epsg(4326).to_wkt(),
        epsg=4326,
        geographic=True,
    )
    out = vectors.line_measures(np.array([[0, 0, 100, 0]]), wgs)  # 1e-3° of longitude at 60° N
    assert out["length_m"][0] == pytest.approx(111.319 * 0.5, rel=1e-3)
    assert out["azimuth"][0] == pytest.approx(90.0)


@pytest.mark.parametrize("fmt", [f for f in ("gpkg", "fgb", "shp") if f in vectors.writable_formats()])
def test_formats_read_back_in_gdal_with_crs_and_frame(fmt: str, tmp_path: Path) -> None:
    georef = _georef()
    written = vectors.write_vectors(tmp_path / f"roof.{fmt}", _layers(georef), _frame(georef))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]
    if fmt == "gpkg":
        assert written == [tmp_path / "roof.gpkg"]
        paths = {name: (tmp_path / "roof.gpkg", name) for name in ("lines", "junctions", "facets")}
        assert [tuple(r) for r in pyogrio.list_layers(tmp_path / "roof.gpkg")] == [
            ("lines", "LineString"),
            ("junctions", "Point"),
            ("facets", "Polygon"),
        ]
        meta = pyogrio.read_info(tmp_path / "roof.gpkg", layer="lines")["layer_metadata"]
        assert json.loads(meta["roofmap_pixel_to_map"]) == list(georef.transform)
        assert meta["roofmap_map_crs"] == f"EPSG:{EPSG}"
    else:
        names = {p.name for p in written}
        assert names == {f"roof_lines.{fmt}", f"roof_junctions.{fmt}", f"roof_facets.{fmt}", "roof_frame.json"}
        paths = {name: (tmp_path / f"roof_{name}.{fmt}", None) for name in ("lines", "junctions", "facets")}
        sidecar = json.loads((tmp_path / "roof_frame.json").read_text())
        assert sidecar["pixel_to_map"] == list(georef.transform)
        assert sidecar["raster_width"] == 12
        if fmt == "shp":
            assert {p.suffix for p in tmp_path.glob("roof_lines.*")} >= {".shp", ".shx", ".dbf", ".prj"}
    counts = {"lines": len(HIP), "junctions": len(JUNCTIONS), "facets": 4}
    for name, (path, layer) in paths.items():
        info = pyogrio.read_info(path, layer=layer)
        assert info["crs"] == f"EPSG:{EPSG}"
        assert info["features"] == counts[name]
    _, _, geom, fields = pyogrio.raw.read(paths["lines"][0], layer=paths["lines"][1])
    info = pyogrio.read_info(paths["lines"][0], layer=paths["lines"][1])
    assert {"index", "score", "length_m", "azimuth", "pieces", "tile", "source"} <= set(info["fields"])
    columns = dict(zip(info["fields"], fields, strict=True))
    order = np.argsort(columns["index"])  # FlatGeobuf stores features in its spatial index's order
    assert columns["index"][order].tolist() == list(range(len(HIP)))
    columns = {k: v[order] for k, v in columns.items()}
    first = shapely.get_coordinates(shapely.from_wkb(geom[order][0]))
    np.testing.assert_allclose(first, [[ORIGIN[0], ORIGIN[1]], [ORIGIN[0] + 5.0, ORIGIN[1]]])
    np.testing.assert_allclose(columns["length_m"][:2], [5.0, 3.0])
    assert list(columns["source"][:1]) == ["roof.tif"]
    _, _, fgeom, _ = pyogrio.raw.read(paths["facets"][0], layer=paths["facets"][1])
    assert shapely.area(shapely.from_wkb(fgeom)).sum() == pytest.approx(60 * 0.25)


def test_geojson_rfc7946_and_native(tmp_path: Path) -> None:
    from rasterio.warp import transform

    georef = _georef()
    props = {"image": "roof.tif", "georeferenced": True}
    vectors.write_vectors(tmp_path / "w.geojson", _layers(georef), _frame(georef), collection_properties=props)
    doc = json.loads((tmp_path / "w.geojson").read_text())
    assert "crs" not in doc
    assert doc["properties"] == props
    assert doc["roofmap_frame"]["pixel_to_map"] == list(georef.transform)
    kinds = [f["properties"]["kind"] for f in doc["features"]]
    assert kinds == ["line"] * len(HIP) + ["junction"] * len(JUNCTIONS) + ["facet"] * 4
    lon, lat = np.array(doc["features"][0]["geometry"]["coordinates"]).T
    xs, ys = transform("EPSG:4326", f"EPSG:{EPSG}", lon, lat)
    np.testing.assert_allclose(np.c_[xs, ys], [[ORIGIN[0], ORIGIN[1]], [ORIGIN[0] + 5.0, ORIGIN[1]]], atol=1e-3)
    assert doc["features"][len(HIP)]["properties"]["pieces"] is None  # a junction has no pieces
    vectors.write_vectors(tmp_path / "n.geojson", _layers(georef), _frame(georef), rfc7946=False)
    native = json.loads((tmp_path / "n.geojson").read_text())
    assert native["crs"]["properties"]["name"] == f"urn:ogc:def:crs:EPSG::{EPSG}"
    np.testing.assert_allclose(native["features"][0]["geometry"]["coordinates"][1], [ORIGIN[0] + 5.0, ORIGIN[1]])


def test_a_failure_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    georef = _georef()
    real = vectors._write_layer
    calls = []

    def flaky(*args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(vectors, "_write_layer", flaky)
    for fmt in ("gpkg", "shp"):
        calls.clear()
        with pytest.raises(RuntimeError, match="disk full"):
            vectors.write_vectors(tmp_path / f"roof.{fmt}", _layers(georef), _frame(georef))
    assert list(tmp_path.iterdir()) == []


def test_format_from_suffix_or_name_and_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert vectors.resolve_format("a.GPKG").driver == "GPKG"
    assert vectors.resolve_format("a.out", "fgb").suffix == ".fgb"
    with pytest.raises(DataError, match=r"a\.kml: unknown vector suffix"):
        vectors.resolve_format("a.kml")
    with pytest.raises(DataError, match="unknown vector format 'kml'"):
        vectors.resolve_format("a.gpkg", "kml")
    monkeypatch.setattr(vectors, "writable_formats", lambda: ["gpkg"])
    with pytest.raises(DataError, match=r"a\.parquet: the GDAL .* has no writable 'Parquet' driver"):
        vectors.resolve_format("a.parquet")


def test_empty_layers_are_written(tmp_path: Path) -> None:
    georef = _georef()
    layers = vectors.wireframe_layers(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 2)), np.zeros(0), georef,
                                      facets=polygonize_wireframe(np.zeros((0, 4))))  # fmt: skip
    vectors.write_vectors(tmp_path / "e.gpkg", layers, _frame(georef))
    assert [pyogrio.read_info(tmp_path / "e.gpkg", layer=n)["features"] for n in ("lines", "junctions", "facets")] == [
        0,
        0,
        0,
    ]
