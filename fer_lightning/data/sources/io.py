"""File reading shared by every dataset source: text and csv files in whatever encoding
they were saved in, image files decoded with checks, and paths from label files kept
under the dataset root.

Every failure names the file (and line, where there is one) and what was expected, so a
bad copy of a dataset is found before a training run, not inside one.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TextIO

import numpy as np
from PIL import Image

from fer_lightning.data.sources.base import DatasetError, ListedImage

#: File name extensions read as images.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
#: How many bad files an error message lists before "... and N more".
MAX_LISTED = 5
#: Skip reasons counted by every source: a label-file row whose path leaves the dataset
#: root; a hidden file or folder; a macOS ``._*`` AppleDouble file.
OUTSIDE_ROOT = "path_outside_root"
HIDDEN = "hidden_file"
APPLE_DOUBLE = "macos_resource_file"

# ---------------------------------------------------------------------------------------
# Text and csv files
# ---------------------------------------------------------------------------------------

#: Byte-order marks, longest first (the UTF-32 LE mark starts with the UTF-16 LE one).
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))
_SNIFF_BYTES = 4096


def detect_encoding(path: Path) -> str:
    """The encoding to read a text file with: from its byte-order mark (UTF-8, UTF-16,
    UTF-32, as Excel and Windows tools write them); UTF-16 without a mark when the start
    of the file holds NUL bytes (no text csv does otherwise); else UTF-8."""
    with open(path, "rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    if b"\x00" in head:
        even_zeros = head[0::2].count(0)
        return "utf-16-be" if even_zeros > head[1::2].count(0) else "utf-16-le"
    return "utf-8"


def _undecodable(path: Path, encoding: str) -> DatasetError:
    """The error for a file that is not valid ``encoding``, naming the first bad line."""
    if encoding.startswith("utf-8"):
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    byte = raw[error.start]
                    return DatasetError(
                        f"{path}, line {number}: byte 0x{byte:02x} is not UTF-8 text; "
                        f"expected UTF-8 (or UTF-16 with a byte-order mark). Re-save the "
                        f"file as UTF-8, e.g. iconv -f latin1 -t utf-8")
    return DatasetError(f"{path}: not valid {encoding} text; expected UTF-8 (or UTF-16 "
                        f"with a byte-order mark)")


@contextmanager
def open_text(path: Path) -> Iterator[TextIO]:
    """``path`` opened for reading as text in its detected encoding, newlines untouched
    (as the csv module wants); a decoding error names the file and line."""
    encoding = detect_encoding(path)
    try:
        with open(path, encoding=encoding, newline="") as handle:
            yield handle
    except UnicodeDecodeError:
        raise _undecodable(path, encoding) from None


def read_text(path: Path) -> str:
    """The whole text of a small file (a label list), decoded as ``open_text`` does."""
    with open_text(path) as handle:
        return handle.read()


def csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of every row of a csv file, header included (line 1).

    A UTF-8 line without a quote or a carriage return inside it is split at its commas,
    which is what the csv module makes of it, about five times faster (FER2013's 290 MB
    of pixel strings); from the first line that has either, the csv module reads the rest
    of the file (quoted fields may hold commas and line breaks). Other encodings go
    through the csv module throughout."""
    encoding = detect_encoding(path)
    if not encoding.startswith("utf-8"):
        yield from _csv_module_rows(path)
        return
    with open(path, "rb") as handle:
        offset = 0
        for number, raw in enumerate(handle, start=1):
            body = raw.rstrip(b"\n")
            body = body[:-1] if body.endswith(b"\r") else body
            if b'"' in body or b"\r" in body:
                handle.seek(offset)
                yield from _csv_module_rows_from(path, handle, encoding if number == 1
                                                 else "utf-8", number)
                return
            offset += len(raw)
            try:
                text = body.decode(encoding if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise _undecodable(path, encoding) from None
            yield number, text.split(",") if text else []


def _csv_module_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    with open_text(path) as handle:
        reader = csv.reader(handle)
        for row in reader:
            yield reader.line_num, row


def _csv_module_rows_from(path: Path, handle: BinaryIO, encoding: str, first_line: int
                          ) -> Iterator[tuple[int, list[str]]]:
    """The csv module's rows from ``handle``'s position, which is line ``first_line``."""
    reader = csv.reader(io.TextIOWrapper(handle, encoding=encoding, newline=""))
    try:
        for row in reader:
            yield first_line - 1 + reader.line_num, row
    except UnicodeDecodeError:
        raise _undecodable(path, encoding) from None


def indexed_lines(path: Path) -> Iterator[tuple[int, int, str]]:
    """``(line number, byte offset, text)`` of every line, so one line can be read again
    later with ``line_at`` without holding the file in memory."""
    encoding = detect_encoding(path)
    if encoding.startswith("utf-8"):
        with open(path, "rb") as handle:
            offset = 0
            for number, raw in enumerate(handle, start=1):
                start, offset = offset, offset + len(raw)
                try:
                    text = raw.decode(encoding if number == 1 else "utf-8")
                except UnicodeDecodeError:
                    raise _undecodable(path, encoding) from None
                yield number, start, text.rstrip("\r\n")
        return
    unit = line_codec(path)
    with open_text(path) as handle:
        offset = 2 if encoding == "utf-16" else (4 if encoding == "utf-32" else 0)
        for number, line in enumerate(handle, start=1):
            yield number, offset, line.rstrip("\r\n")
            offset += len(line.encode(unit))


def line_codec(path: Path) -> str:
    """The codec that decodes one line of ``path`` read from the middle of the file (no
    byte-order mark there): ``utf-8``, ``utf-16-le`` / ``-be`` or ``utf-32-le`` / ``-be``."""
    encoding = detect_encoding(path)
    if encoding.startswith("utf-8"):
        return "utf-8"
    if encoding in ("utf-16", "utf-32"):
        with open(path, "rb") as handle:
            head = handle.read(4)
        mark = codecs.BOM_UTF32_LE if encoding == "utf-32" else codecs.BOM_UTF16_LE
        return f"{encoding}-{'le' if head.startswith(mark) else 'be'}"
    return encoding


def line_at(path: Path, offset: int, codec: str = "utf-8") -> str:
    """The line of ``path`` that starts at byte ``offset`` (from ``indexed_lines``),
    decoded with ``codec`` (from ``line_codec``)."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        if codec == "utf-8":
            return handle.readline().decode("utf-8").rstrip("\r\n")
        decoder = codecs.getincrementaldecoder(codec)()
        text = ""
        while "\n" not in text:
            chunk = handle.read(1 << 16)
            text += decoder.decode(chunk, final=not chunk)
            if not chunk:
                break
    return text.split("\n", 1)[0].rstrip("\r")


# ---------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------


def layout_error(path: Path, what: str, layout: str) -> FileNotFoundError:
    """A FileNotFoundError naming the missing ``path`` and drawing the expected layout."""
    return FileNotFoundError(f"{what} not found: {path}\nExpected layout:\n{layout}")


def require(path: Path, what: str, layout: str, directory: bool = False) -> Path:
    """``path`` if it exists (as a directory when ``directory``), else a layout_error."""
    if not (path.is_dir() if directory else path.is_file()):
        raise layout_error(path, what, layout)
    return path


def under_root(folder: Path, name: str) -> Path | None:
    """``folder / name`` for a relative path ``name`` read from a label file, or None when
    ``name`` is absolute or climbs out of ``folder`` (``train_/../../secret.jpg``).

    The check is on the path as written, not on where symlinks point: a dataset folder
    that is itself a symlink to another disk is the user's own layout and is read.
    """
    if not name or os.path.isabs(name) or name.startswith(("/", "\\")):
        return None
    normal = os.path.normpath(name.replace("\\", "/"))
    if normal == ".." or normal.startswith("../") or os.path.isabs(normal) or normal == ".":
        return None
    return folder / normal


def is_hidden(name: str) -> bool:
    """Hidden files and folders (``.DS_Store``, ``.ipynb_checkpoints``) and the macOS
    ``._*`` AppleDouble files that copies from a Mac leave beside every image."""
    return name.startswith(".")


def hidden_reason(name: str) -> str:
    """The skip reason counted for a hidden entry."""
    return APPLE_DOUBLE if name.startswith("._") else HIDDEN


def check_files_exist(paths: Sequence[Path], listed_at: Sequence[str], what: str) -> None:
    """Raise FileNotFoundError listing the first missing ``paths`` with where each was
    listed; each directory is listed once instead of one stat per file."""
    contents: dict[Path, set[str]] = {}
    missing = []
    for i, path in enumerate(paths):
        parent = path.parent
        if parent not in contents:
            contents[parent] = set(os.listdir(parent)) if parent.is_dir() else set()
        if path.name not in contents[parent]:
            missing.append(i)
    if missing:
        shown = "\n".join(f"  {paths[i]} ({listed_at[i]})" for i in missing[:MAX_LISTED])
        more = f"\n  ... and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
        raise FileNotFoundError(
            f"{len(missing)} of {len(paths)} {what} are missing:\n{shown}{more}")


# ---------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------

#: Modes Pillow gives 16-bit greyscale files (PNG, TIFF); their values span 0..65535.
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_GREY_MODES = ("L", "1", "LA", "La", *_SIXTEEN_BIT)


def to_uint8(image: Image.Image, colour: str) -> np.ndarray:
    """A decoded Pillow image -> uint8 (H, W, 3) (``colour="rgb"``) or, with
    ``colour="keep"``, (H, W) for greyscale files and (H, W, 3) otherwise.

    16-bit greyscale is scaled to 8 bits (value / 257, rounded); Pillow's own conversion
    would clip every value above 255 to white.
    """
    if image.mode in _SIXTEEN_BIT:
        wide = np.asarray(image).astype(np.float64)
        grey = np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)
        return grey if colour == "keep" else np.repeat(grey[..., None], 3, axis=2)
    if colour == "keep" and image.mode in _GREY_MODES:
        return np.array(image.convert("L"), dtype=np.uint8)
    return np.array(image.convert("RGB"), dtype=np.uint8)


def _decode_error(path: Path, where: str, error: Exception) -> Exception:
    if isinstance(error, FileNotFoundError):
        return FileNotFoundError(f"image file {path}{where} does not exist")
    return DatasetError(f"cannot decode image file {path}{where}: {error}")


def read_image(path: Path, where: str = "", colour: str = "rgb") -> np.ndarray:
    """Decode one image file to uint8: (H, W, 3), or with ``colour="keep"`` (H, W) for a
    greyscale file.

    A missing, unreadable, truncated or otherwise undecodable file raises an error naming
    ``path`` and ``where`` it was listed (e.g. ``" (listed at labels.txt:12)"``).
    """
    try:
        with Image.open(path) as image:
            return to_uint8(image, colour)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise _decode_error(path, where, error) from None


def clip_box(box: Sequence[int], width: int, height: int) -> tuple[int, int, int, int] | None:
    """The part of box ``(x, y, w, h)`` inside a ``width`` x ``height`` image, or None
    when the box does not overlap the image at all."""
    x, y, w, h = box
    left, top = max(x, 0), max(y, 0)
    right, bottom = min(x + w, width), min(y + h, height)
    if right <= left or bottom <= top:
        return None
    return left, top, right - left, bottom - top


def box_outside(box: Sequence[int], width: int, height: int) -> str:
    """The message for a face box that misses its image."""
    return (f"face box x={box[0]} y={box[1]} w={box[2]} h={box[3]} lies outside the "
            f"{width}x{height} image; expected a box overlapping the image")


def read_crop(path: Path, box: Sequence[int], where: str = "") -> tuple[np.ndarray, tuple]:
    """The face crop ``box`` = (x, y, w, h) of an image as uint8 (h', w', 3), and the box
    actually cropped: a box reaching past the image border is clipped to the image (no
    black margin); a box entirely outside it is an error naming the file."""
    try:
        with Image.open(path) as image:
            clipped = clip_box(box, *image.size)
            if clipped is None:
                raise DatasetError(f"{path}{where}: {box_outside(box, *image.size)}")
            x, y, w, h = clipped
            return to_uint8(image.crop((x, y, x + w, y + h)), "rgb"), clipped
    except DatasetError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise _decode_error(path, where, error) from None


#: First bytes of each image format read here (WEBP: "RIFF" + size + "WEBP").
_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"BM": "BMP",
          b"GIF87a": "GIF", b"GIF89a": "GIF"}
#: End-of-file markers: a file cut short (interrupted copy or download) lacks its own.
_TRAILERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}
_TAIL_BYTES = 1024


def header_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a complete image, from a few bytes at its start and end,
    or None. Cheap: two small reads, no decoding.

    Checks that the file exists and is not empty, starts with the signature of a JPEG,
    PNG, BMP or GIF file, and (JPEG, PNG) holds its end-of-image marker in its last KiB.
    A file without the marker is decoded in full before it is called bad (some writers
    append data after the image).
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(16)
            handle.seek(max(0, size - _TAIL_BYTES))
            tail = handle.read(_TAIL_BYTES)
    except FileNotFoundError:
        return "does not exist"
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if size == 0:
        return "is empty (0 bytes)"
    kind = next((name for magic, name in _MAGIC.items() if head.startswith(magic)), None)
    if kind is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind = "WEBP"
    if kind is None:
        return f"is not a JPEG, PNG, BMP, GIF or WEBP image (starts with {head[:8]!r})"
    if kind in _TRAILERS and _TRAILERS[kind] not in tail:
        return decode_problem(path)
    return None


def decode_problem(path: Path) -> str | None:
    """Why ``path`` cannot be decoded, from a full decode, or None."""
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return f"cannot be decoded ({error})"
    return None


def box_not_within(box: Sequence[int], width: int, height: int) -> str | None:
    """The message for a face box that does not lie inside its image, or None."""
    x, y, w, h = box
    if x >= 0 and y >= 0 and x + w <= width and y + h <= height:
        return None
    return (f"face box (left, top, right, bottom) = ({x}, {y}, {x + w}, {y + h}) does not "
            f"lie inside the {width}x{height} image; expected a box within the image (were "
            f"the images resized after the labels were written?)")


def box_problem(path: Path, box: Sequence[int], within: bool = False) -> str | None:
    """Why face ``box`` cannot be cropped from ``path`` (read from its header), or None;
    ``within``: the box must lie inside the image, not merely overlap it."""
    try:
        with Image.open(path) as image:
            size = image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return f"cannot be decoded ({error})"
    if within:
        return box_not_within(box, *size)
    return None if clip_box(box, *size) is not None else box_outside(box, *size)


def image_problems(images: Sequence[ListedImage], full: bool = False) -> list[str]:
    """``"<path> (<where>): <why>"`` for every listed image that training could not read:
    a header check (``header_problem``) by default, a full decode with ``full``; face
    boxes are checked against the image size."""
    problems = []
    for image in images:
        why = decode_problem(image.path) if full and image.path.is_file() \
            else header_problem(image.path)
        if why is None and image.box is not None:
            why = box_problem(image.path, image.box, image.box_within)
        if why is not None:
            where = f" ({image.where})" if image.where else ""
            problems.append(f"{image.path}{where}: {why}")
    return problems
