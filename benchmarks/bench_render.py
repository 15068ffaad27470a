"""Benchmark the procedural 3D Shapes renderer and save a contact sheet to look at.

Usage::

    python benchmarks/bench_render.py [--quick] [--png benchmarks/out/shapes3d_grid.png]

For each image size it reports the cold-cache cost (ray casting the 480 (scale, shape,
orientation) geometries; estimated from a subset with ``--quick``) and the warm-cache
rendering rate in images per second.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lassi.regulator.shapes3d import N_IMAGES, SHAPE_NAMES, Shapes3D, cast_geometry

N_GEOMETRIES = 480


def cold_seconds(size: int, quick: bool) -> tuple[float, bool]:
    """Seconds to ray-cast all 480 geometries at ``size`` (extrapolated if ``quick``)."""
    if quick:
        sample = np.arange(0, N_GEOMETRIES, 8)
        start = time.perf_counter()
        for geometry in sample:
            cast_geometry(int(geometry), size)
        return (time.perf_counter() - start) * N_GEOMETRIES / len(sample), True
    start = time.perf_counter()
    Shapes3D(size).precompute()
    return time.perf_counter() - start, False


def warm_rate(size: int, n_images: int, repeats: int) -> float:
    """Images per second of :meth:`Shapes3D.render` once all geometries are cached."""
    renderer = Shapes3D(size)
    renderer.precompute()
    index = np.random.default_rng(0).integers(0, N_IMAGES, n_images)
    factors = Shapes3D.index_to_factors(index)
    renderer.render(factors[:256])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        renderer.render(factors)
        best = min(best, time.perf_counter() - start)
    return n_images / best


def contact_sheet(size: int = 64, zoom: int = 3) -> np.ndarray:
    """One row per shape: orientations -30, -15, 0, 15, 30 degrees, then two other colourings
    and scales at 0 degrees."""
    rows = []
    for shape in range(len(SHAPE_NAMES)):
        factors = [[0, 6, 3, 4, shape, o] for o in (0, 4, 7, 10, 14)]
        factors += [[2, 8, 7, 0, shape, 7], [5, 1, 9, 7, shape, 7]]
        images = Shapes3D(size).render(np.array(factors))
        padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=255)
        rows.append(np.concatenate(list(padded), axis=1))
    sheet = np.concatenate(rows, axis=0)
    return np.repeat(np.repeat(sheet, zoom, axis=0), zoom, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller samples (a few seconds)")
    parser.add_argument(
        "--png", type=Path, default=Path("benchmarks/out/shapes3d_grid.png"), help="contact sheet"
    )
    args = parser.parse_args()

    n_images, repeats = (4_000, 2) if args.quick else (20_000, 3)
    print(f"{'size':>5} {'warm img/s':>11} {'cold 480 geometries':>20} {'per geometry':>13}")
    for size in (64, 32):
        cold, estimated = cold_seconds(size, args.quick)
        rate = warm_rate(size, n_images, repeats)
        label = f"{cold:.2f} s{' (est.)' if estimated else ''}"
        print(f"{size:>5} {rate:>11,.0f} {label:>20} {cold / N_GEOMETRIES * 1e3:>10.1f} ms")

    args.png.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(contact_sheet()).save(args.png)
    print(f"contact sheet: {args.png} (rows: {', '.join(SHAPE_NAMES)})")


if __name__ == "__main__":
    main()
