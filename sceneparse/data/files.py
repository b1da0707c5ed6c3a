"""Reading images and label maps, and writing files atomically.

Every reader raises `DataError` naming the file, so a missing, corrupt or truncated file stops a run
with one line that says which file and what to do, instead of a PIL traceback from a worker.
"""
from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from sceneparse.errors import DataError

# Errors PIL raises for damaged files: unknown format, truncated stream, broken chunks.
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)

# Label modes that hold class indices (a palette PNG stores indices; its colours are only for display).
_INDEX_MODES = {"L", "P", "1", "I", "I;16", "I;16B", "I;16L"}


def _read_bytes(path: Path, kind: str, hint: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: {kind} file is missing; {hint}") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a{'n' if kind[0] in 'aeiou' else ''} {kind} file") from None


def read_image(path: str | Path) -> np.ndarray:
    """The image as an HxWx3 uint8 RGB array, decoded as the source toolboxes decode it (OpenCV,
    `cv2.imdecode(..., IMREAD_COLOR)`, as mmcv's `imfrombytes(backend="cv2")`):

    - a JPEG's EXIF orientation is applied: the array is the image as it is displayed;
    - a 16-bit image is scaled to 8 bits (its high byte, value // 256: OpenCV's conversion), not clipped;
    - grey, palette and RGBA images become RGB (alpha dropped).
    A truncated or unreadable file raises DataError naming it.
    """
    path = Path(path)
    data = _read_bytes(path, "image", "check the dataset root and split")
    plain = _decode_plain_png(data)
    if plain is not None:
        return plain if plain.ndim == 3 else cv2.cvtColor(plain, cv2.COLOR_GRAY2RGB)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), _IMREAD_RGB or cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise DataError(f"{path}: unreadable or truncated image (OpenCV cannot decode it); re-extract or "
                        "re-download it")
    return image if _IMREAD_RGB else cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)


# OpenCV >= 4.10 decodes straight to RGB (the same values as IMREAD_COLOR's BGR, without a swap pass)
_IMREAD_RGB: int | None = getattr(cv2, "IMREAD_COLOR_RGB", None)


# EXIF orientations that swap width and height (transposed or rotated by 90 degrees)
_EXIF_ORIENTATION = 0x0112
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of the image as `read_image` returns it (EXIF orientation applied), from the
    file header only: cheap, does not decode the pixels."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            width, height = img.size
            if img.format == "JPEG" and img.getexif().get(_EXIF_ORIENTATION) in _SWAPPING_ORIENTATIONS:
                width, height = height, width
            return height, width
    except FileNotFoundError:
        raise DataError(f"{path}: image file is missing; check the dataset root and split") from None
    except _DECODE_ERRORS as exc:
        raise DataError(f"{path}: unreadable image ({exc}); re-extract or re-download it") from None


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_GREY = 0  # IHDR colour types: single channel (no palette, no alpha) ...
_PNG_RGB = 2  # ... and RGB without alpha

try:  # libspng's PNG decoder (a dependency where it has wheels: see pyproject.toml)
    import pyspng as _pyspng
except ImportError:  # pragma: no cover - OpenCV decodes every PNG then
    _pyspng = None


def _decode_plain_png(data: bytes) -> np.ndarray | None:
    """An 8-bit RGB or grey PNG without EXIF (what datasets store), decoded by libspng: the same
    pixels as OpenCV's decoder (PNG is lossless; neither applies gamma), 1.4-1.7x faster. None for
    anything else (16 bits, palette, alpha, EXIF orientation, damaged headers, no pyspng), which
    OpenCV decodes."""
    if _pyspng is None or len(data) < 33 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    if data[24] != 8 or data[25] not in (_PNG_GREY, _PNG_RGB):
        return None
    offset = 8
    while offset + 8 <= len(data):  # the chunks before the pixels: refuse an EXIF orientation
        kind = data[offset + 4 : offset + 8]
        if kind == b"IDAT":
            break
        if kind == b"eXIf":
            return None
        offset += 12 + int.from_bytes(data[offset : offset + 4], "big")
    try:
        return _pyspng.load(data)
    except Exception:  # libspng's errors for damaged data: OpenCV decides (and names the file)
        return None


def _is_grey_png(data: bytes) -> bool:
    """A plain single-channel PNG (the usual label file): OpenCV decodes its values unchanged."""
    return (len(data) > 26 and data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and data[25] == _PNG_GREY
            and data[24] in (8, 16))  # 1/2/4-bit grey: OpenCV would scale the values up; Pillow keeps them


def read_label(path: str | Path) -> np.ndarray:
    """The label map as stored: an HxW array of class indices (uint8, or int32 for 16-bit PNGs).

    Colour label images are refused: their RGB values are not class indices. Plain grey PNGs are
    decoded with OpenCV (fast); palette and other files with Pillow, which keeps palette indices.
    """
    path = Path(path)
    data = _read_bytes(path, "label", "run `sceneparse data check` on this dataset")
    if _is_grey_png(data):
        array = _decode_plain_png(data)
        if array is None:
            array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if array is not None and array.ndim == 2:
            return array if array.dtype == np.uint8 else array.astype(np.int32)
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            mode = img.mode
            if mode not in _INDEX_MODES:
                raise DataError(
                    f"{path}: label is a {mode} colour image; labels must be single-channel PNGs of class "
                    "indices (a palette PNG is fine). Convert colours to indices, or point at the "
                    "*labelTrainIds / index files instead of the *_color ones"
                )
            array = np.asarray(img)
    except DataError:
        raise
    except _DECODE_ERRORS as exc:
        raise DataError(f"{path}: unreadable or truncated label ({exc}); re-extract or re-convert it") from None
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype != np.uint8:
        return array.astype(np.int32)
    return array


def check_same_size(image_path: Path, image_hw: tuple[int, int], label_path: Path, label_hw: tuple[int, int]) -> None:
    """Raise DataError when an image and its label differ in size (they must align pixel for pixel)."""
    if tuple(image_hw) != tuple(label_hw):
        raise DataError(
            f"{label_path}: label is {label_hw[1]}x{label_hw[0]} but its image {image_path.name} is "
            f"{image_hw[1]}x{image_hw[0]} (width x height); the pair does not belong together"
        )


def encode_label(
    raw: np.ndarray, reduce_zero_label: bool, stored_ignore: int, ignore_index: int
) -> np.ndarray:
    """Stored values -> training ids.

    With reduce_zero_label (ADE20K's 0 = "other"), 0 becomes ignore and every class shifts down by
    one, as mmsegmentation does. The stored ignore value is rewritten to `ignore_index`.
    An 8-bit map with an 8-bit ignore index goes through one 256-entry lookup table (one pass).
    """
    if raw.dtype == np.uint8 and 0 <= ignore_index <= 255:
        table = np.arange(256, dtype=np.int64)
        if reduce_zero_label:
            table -= 1
            table[0] = ignore_index
        if 0 <= stored_ignore <= 255:
            table[stored_ignore] = ignore_index
        return cv2.LUT(raw, table.astype(np.uint8))
    ignore_mask = raw == stored_ignore
    if reduce_zero_label:
        ignore_mask |= raw == 0
        label = raw - raw.dtype.type(1)  # uint8 0 wraps to 255; it is ignore anyway
    else:
        label = raw.copy()
    if label.dtype == np.uint8 and not 0 <= ignore_index <= 255:
        label = label.astype(np.int32)
    label[ignore_mask] = ignore_index
    return label


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_png(path: str | Path, array: np.ndarray, palette: list[int] | None = None) -> None:
    """Write a PNG atomically: to a temporary file beside it, then renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.ascontiguousarray(array)
    if palette is not None:
        if array.dtype != np.uint8 or array.ndim != 2:
            raise ValueError("a palette PNG holds 8-bit indices")
        img = Image.frombytes("P", (array.shape[1], array.shape[0]), array.tobytes())
        img.putpalette(palette)
    elif array.ndim == 2 and array.dtype != np.uint8:
        img = Image.fromarray(array.astype(np.uint16))
    else:
        img = Image.fromarray(array)
    temp = _temp_name(path)
    try:
        img.save(temp, format="PNG")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_jpeg(path: str | Path, array: np.ndarray, quality: int = 95) -> None:
    """Write an RGB JPEG atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_name(path)
    try:
        Image.fromarray(np.ascontiguousarray(array)).save(temp, format="JPEG", quality=quality)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_name(path)
    try:
        temp.write_text(text)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_lines(path: str | Path, lines: list[str]) -> None:
    """A list file: one entry a line."""
    write_text(path, "".join(f"{line}\n" for line in lines))


def read_lines(path: str | Path) -> list[str]:
    """The non-empty, stripped lines of a list file; an entry that would name a file outside the
    dataset (absolute, or climbing out with '..') is refused naming the file and line."""
    from sceneparse.paths import read_list_entries

    return read_list_entries(path)


def link_or_copy(src: Path, dst: Path) -> None:
    """Put `src` at `dst` without duplicating data where possible (hard link; copy across devices)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_name(dst)
    try:
        try:
            os.link(src, temp)
        except OSError:
            shutil.copyfile(src, temp)
        os.replace(temp, dst)
    finally:
        temp.unlink(missing_ok=True)


def read_mat_field(path: str | Path, dotted: str) -> np.ndarray:
    """An array inside a MATLAB file, e.g. read_mat_field(p, "GTcls.Segmentation") for SBD."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        value = loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except FileNotFoundError:
        raise DataError(f"{path}: .mat file is missing") from None
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError, ... for damaged files
        raise DataError(f"{path}: unreadable .mat file ({exc}); re-extract it") from None
    for part in dotted.split("."):
        try:
            value = value[part] if isinstance(value, dict) else getattr(value, part)
        except (KeyError, AttributeError):
            raise DataError(f"{path}: no field {dotted!r} in this .mat file") from None
    return np.asarray(value)


def write_mat(path: str | Path, variables: dict) -> None:
    """Write a MATLAB file atomically (nested dicts become MATLAB structs)."""
    from scipy.io import savemat

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_name(path)
    buffer = io.BytesIO()
    savemat(buffer, variables, do_compression=True)
    data = bytearray(buffer.getvalue())
    # the 116-byte text header carries the time of writing: a fixed one makes the file reproducible
    data[:116] = b"MATLAB 5.0 MAT-file, written by sceneparse".ljust(116)
    try:
        temp.write_bytes(bytes(data))
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
