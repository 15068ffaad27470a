"""Decoding one image file: the header is read first and an image bomb refused undecoded
(:func:`max_pixels`), then a centre crop and a resize to the source's ``image_size``."""

from __future__ import annotations

import functools
import hashlib
import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from lassi.regulator.datasets.source import DataError

RESAMPLING = {"bicubic": Image.Resampling.BICUBIC, "area": Image.Resampling.BOX}


def max_pixels(image_size: int) -> int:
    """The most pixels (width x height) an image may declare to be decoded for ``image_size``.

    ``side**2`` with ``side = min(8192, max(4096, 8 * image_size))``: 4096 x 4096 (16.8 Mpx,
    50 MB decoded) up to 512-pixel images, 8 x the side above, never over 8192 x 8192. Real
    photographs (CelebA 178 x 218, FFHQ 1024 x 1024) are far below; a small file declaring a
    huge canvas (an image bomb) is refused from its header, before any pixel is decoded.
    """
    side = min(8192, max(4096, 8 * int(image_size)))
    return side * side




def load_image(
    path: Path, size: int, crop: int | None = None, resample: str = "bicubic"
) -> np.ndarray:
    """uint8 [size, size, 3]: centre crop (``crop`` pixels, clipped to the image; None = the
    largest square), then resize. Raises :class:`DataError` for a missing or corrupt file."""
    if not path.is_file():
        raise DataError(path, "image file not found")
    return decode_image(path, size, crop, resample, where=path)


def decode_image(
    file: Path | BinaryIO, size: int, crop: int | None, resample: str, where: Path
) -> np.ndarray:
    """:func:`load_image` of an open file or of bytes already read (``io.BytesIO``), so that
    an auditor decodes the very bytes it hashed; ``where`` names the file in errors. The header
    is read first: an image of more than :func:`max_pixels` pixels is refused undecoded."""
    limit = max_pixels(size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                width, height = image.size
                if width * height > limit:
                    side = int(limit**0.5)
                    raise DataError(
                        where,
                        f"image declares {width}x{height} pixels, more than the {side}x{side} "
                        f"read for {size}-pixel images (refused before decoding)",
                    )
                image = image.convert("RGB")
    except DataError:
        raise
    except Image.DecompressionBombError:  # the library's own bound, far above ours
        side = int(limit**0.5)
        raise DataError(
            where,
            f"image declares more than {side}x{side} pixels, the most read for {size}-pixel "
            "images (refused before decoding)",
        ) from None
    except (OSError, ValueError, EOFError, SyntaxError) as error:
        raise DataError(where, f"cannot read image ({type(error).__name__}: {error})") from None
    width, height = image.size
    side = min(width, height) if crop is None else min(crop, width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != size:
        image = image.resize((size, size), RESAMPLING[resample])
    return np.asarray(image, dtype=np.uint8)


def _probe_files() -> list[bytes]:
    """A fixed 96 x 80 picture (gradients and seeded noise) as PNG, JPEG and a greyscale PNG,
    encoded now."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:80, 0:96]
    pixels = np.stack([x * 255 // 95, y * 255 // 79, (x + y) * 255 // 174], axis=-1)
    pixels = (pixels + rng.integers(-24, 25, pixels.shape)).clip(0, 255).astype(np.uint8)
    files = []
    for image, kind, options in (
        (Image.fromarray(pixels), "PNG", {}),
        (Image.fromarray(pixels), "JPEG", {"quality": 90}),
        (Image.fromarray(pixels[..., 0]), "PNG", {}),
    ):
        buffer = io.BytesIO()
        image.save(buffer, format=kind, **options)
        files.append(buffer.getvalue())
    return files


@functools.cache
def decode_sha256(size: int, crop: int | None, resample: str) -> str:
    """The identity of :func:`decode_image` at these settings: SHA-256 of probe files decoded,
    cropped and resized now (once per process). A changed decoder or resize (an image library
    update) changes it; so may a changed encoder of the probes, which only costs a cache."""
    digest = hashlib.sha256(f"lassi decode probe v1\0{size}\0{crop}\0{resample}\0".encode())
    for data in _probe_files():
        image = decode_image(io.BytesIO(data), size, crop, resample, where=Path("<probe image>"))
        digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()
