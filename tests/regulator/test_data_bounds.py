"""Memory stays bounded on every data input (issue: a memory bound that holds for every input).

Each hostile input is refused with one line and exit 2 while the peak memory of the call stays
under 1 GiB: an image declaring 13 000 x 13 000 pixels (refused from its header, before
decoding), a 1.5 GB sparse CSV or attribute list (streamed with a bound on the line length), a
listing with more rows or label values than the bounds, a CSV field over the ``csv`` module's
limit, and a label of 10**9 (labels are class indices, their count the distinct values present).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import lassi.regulator.datasets.listings as listings
from factories import GIB_KIB, _rss_kib, invoke_bounded, one_line
from lassi.regulator.cli import main as regulator
from lassi.regulator.datasets import CelebASource, DataError, FolderSource, decode_image, max_pixels

USAGE = 2
SPARSE_BYTES = 1_500_000_000


def bounded(call: Callable[[], Any], limit_kib: int = GIB_KIB) -> Any:
    """``call()`` with the peak resident memory it adds kept under ``limit_kib`` (Linux's
    VmHWM, reset through /proc/self/clear_refs, as ``factories.invoke_bounded``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return call()
    start = _rss_kib("VmRSS")
    try:
        return call()
    finally:
        grown = _rss_kib("VmHWM") - start
        assert grown < limit_kib, f"peak memory grew by {grown} KiB"


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A valid 8-bit greyscale PNG of ``width`` x ``height`` black pixels (a few hundred kB:
    the zeros compress), built row by row so that the test itself never holds the canvas."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    packer = zlib.compressobj(9)
    row = bytes(1 + width)  # filter byte 0, then the row's pixels
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def folder(root: Path, csv_text: str | None = None, images: int = 4) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(images):
        Image.fromarray(np.full((12, 12, 3), 30 * i, np.uint8)).save(root / f"img{i}.png")
    if csv_text is None:
        rows = "".join(f"img{i}.png,{'train' if i < 3 else 'val'},{i % 2}\n" for i in range(images))
        csv_text = "file,split,a\n" + rows
    (root / "attributes.csv").write_text(csv_text)
    return root


def train_glow(root: Path, out: Path) -> Any:
    return invoke_bounded(regulator, [
        "train-glow", "--dataset", "folder", "--data-root", str(root), "--image-size", "8",
        "--levels", "1", "--depth", "1", "--hidden", "4", "--steps", "1", "--batch-size", "2",
        "--warmup", "0", "--quiet", "--out", str(out)])  # fmt: skip


# ------------------------------------------------------------------------------ image bombs


def test_pixel_bound_follows_the_image_size() -> None:
    assert max_pixels(8) == max_pixels(64) == max_pixels(512) == 4096**2
    assert max_pixels(1024) == 8192**2 and max_pixels(10**6) == 8192**2


@pytest.mark.slow
def test_image_declaring_13000_squared_pixels_is_refused_before_decoding(tmp_path: Path) -> None:
    bomb = png_declaring(tmp_path / "bomb.png", 13_000, 13_000)
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(DataError) as error:
        bounded(lambda: decode_image(bomb, 64, None, "bicubic", where=bomb), 200 * 1024)
    message = str(error.value)
    assert "bomb.png" in message and "13000x13000" in message and "before decoding" in message
    with pytest.raises(DataError, match="13000x13000"):  # the audit decodes bytes already read
        bounded(lambda: decode_image(io.BytesIO(bomb.read_bytes()), 64, None, "bicubic", bomb))
    # past the image library's own bound (179 Mpx): the same wording, from the header alone
    header_only = png_declaring(tmp_path / "huge.png", 1, 1)
    data = bytearray(header_only.read_bytes())
    data[16:24] = struct.pack(">II", 20_000, 20_000)  # IHDR width and height, then its CRC
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    header_only.write_bytes(bytes(data))
    with pytest.raises(DataError, match="more than 4096x4096 pixels.*before decoding"):
        bounded(lambda: decode_image(header_only, 64, None, "bicubic", where=header_only))
    # just under the bound, an image decodes (and is scaled down)
    fine = png_declaring(tmp_path / "fine.png", 4096, 4096)
    assert decode_image(fine, 8, None, "bicubic", where=fine).shape == (8, 8, 3)


@pytest.mark.slow
def test_train_glow_refuses_an_image_bomb_in_the_data(tmp_path: Path) -> None:
    root = folder(tmp_path / "data")
    png_declaring(root / "img1.png", 13_000, 13_000)
    out = tmp_path / "glow.safetensors"
    one_line(train_glow(root, out), USAGE, "img1.png", "13000x13000")
    assert not out.exists()


# ------------------------------------------------------------------------- listings streamed


def _sparse(path: Path, prefix: bytes = b"") -> Path:
    with open(path, "wb") as handle:
        handle.write(prefix)
        handle.truncate(SPARSE_BYTES)
    return path


@pytest.mark.parametrize("prefix", [b"", b"file,split,a\nimg0.png,train,1\n"])
def test_sparse_1_5_gb_csv_is_refused_without_being_read(tmp_path: Path, prefix: bytes) -> None:
    root = folder(tmp_path / "data")
    _sparse(root / "attributes.csv", prefix)
    out = tmp_path / "glow.safetensors"
    line = one_line(train_glow(root, out), USAGE, "attributes.csv")
    number = 1 + prefix.count(b"\n")
    assert f"line {number} is longer than" in line
    assert not out.exists()


def test_sparse_celeba_attribute_list_is_refused_without_being_read(tmp_path: Path) -> None:
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    _sparse(root / "list_attr_celeba.txt", b"2\nSmiling Young\n")
    with pytest.raises(DataError, match=r"list_attr_celeba.txt: line 3 is longer than"):
        bounded(lambda: CelebASource(root))


def test_nul_bytes_and_other_encodings_are_not_text(tmp_path: Path) -> None:
    root = folder(tmp_path / "data", "file,split,a\nimg0.png,train,\x001\n")
    with pytest.raises(DataError, match="line 2 holds a NUL byte"):
        FolderSource(root)
    (root / "attributes.csv").write_bytes(b"file,split,a\nimg0\xff.png,train,1\n")
    with pytest.raises(DataError, match="line 2: the attribute CSV is not UTF-8"):
        FolderSource(root)


def test_rows_and_label_values_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listings, "MAX_ROWS", 5)
    rows = "".join(f"img{i % 4}.png,train,{i % 2}\n" for i in range(10))
    root = folder(tmp_path / "data", "file,split,a\n" + rows)
    with pytest.raises(DataError, match="attributes.csv: has more than 7 lines"):
        FolderSource(root)
    monkeypatch.setattr(listings, "MAX_ROWS", 100)
    monkeypatch.setattr(listings, "MAX_CELLS", 6)
    with pytest.raises(DataError, match="line 8: more than 6 label values"):
        FolderSource(root)
    monkeypatch.setattr(listings, "MAX_CELLS", 100)
    assert len(FolderSource(root)) == 10  # within the bounds the same file reads
    celeba = tmp_path / "celeba"
    (celeba / "img_align_celeba").mkdir(parents=True)
    (celeba / "list_attr_celeba.txt").write_text("1000000000\nSmiling\n")
    with pytest.raises(DataError, match="declares 1000000000 images; at most 100"):
        CelebASource(celeba)


def test_a_field_over_the_csv_limit_names_its_line(tmp_path: Path) -> None:
    field = '"' + ("x" * 1000 + "\n") * 200 + '"'  # one quoted field of 200 kB over many lines
    root = folder(tmp_path / "data", f"file,split,a\nimg0.png,train,1\n{field},train,1\n")
    with pytest.raises(DataError, match=r"attributes.csv: line \d+: field larger than field limit"):
        FolderSource(root)
    root = folder(tmp_path / "long", "file,split,a\n" + "y" * 5000 + ".png,train,1\n")
    with pytest.raises(DataError, match="line 2: 'yyyy.*longer than 4096 characters"):
        FolderSource(root)


# ------------------------------------------------------------------------- bounded labels


def test_a_label_of_10_to_the_9_is_refused(tmp_path: Path) -> None:
    root = folder(tmp_path / "data", "file,split,a\nimg0.png,train,0\nimg1.png,train,1000000000\n")
    out = tmp_path / "glow.safetensors"
    one_line(train_glow(root, out), USAGE, "attributes.csv", "line 3", "column a",
             "1000000000 is not a class index")  # fmt: skip
    assert not out.exists()
    (root / "attributes.csv").write_text("file,split,a\nimg0.png,train,99999999999999999999999\n")
    with pytest.raises(DataError, match="line 2: '99999999999999999999999' is out of range"):
        FolderSource(root)


@pytest.mark.parametrize(
    ("values", "classes"),
    [([0, 1, 1, 0], 2), ([1, 1, 1, 1], 2), ([0, 0, 0, 0], 2), ([0, 3, 2, 1], 4), ([2, 0, 1, 1], 3)],
)
def test_class_count_is_the_number_of_values_present(tmp_path, values, classes) -> None:
    rows = "".join(f"img{i}.png,train,{v}\n" for i, v in enumerate(values))
    source = FolderSource(folder(tmp_path / "data", "file,split,a\n" + rows))
    assert source.num_classes("a") == classes


@pytest.mark.parametrize("values", [[0, 1, 5, 1], [1, 2, 3, 3], [0, 9999, 0, 0]])
def test_labels_with_gaps_are_refused_not_widened(tmp_path, values) -> None:
    rows = "".join(f"img{i}.png,train,{v}\n" for i, v in enumerate(values))
    with pytest.raises(DataError) as error:
        FolderSource(folder(tmp_path / "data", "file,split,a\n" + rows))
    message = str(error.value)
    assert "column a" in message and "class indices 0..n-1" in message and "renumber" in message
    assert f"{max(values)} is present" in message
