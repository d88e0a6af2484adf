"""Decoding source images, and repairing the damage a download leaves that a decoder can get past.

A cut-off file (Pillow: 'image file is truncated') is restored: what decodes is saved as a complete image, the
missing part grey (as OpenCV shows it). Left as it is, YOLOv5's loader would drop it as corrupt.

A JPEG that decodes but does not end with the JPEG end marker (bytes after the image, as some cameras append)
would be re-saved in place by YOLOv5's loader, through our hard link: in the user's source. It is copied with
the marker appended instead; decoders stop at the first marker, so the pixels are the same.
"""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

JPEG_END = b'\xff\xd9'
RESTORE = 'restore'  # Sample.repair: write what decodes as a complete image
END_MARKER = 'end marker'  # Sample.repair: copy, then append JPEG_END


@dataclass
class Decoded:
    size: tuple[int, int] | None = None  # (width, height)
    error: str | None = None  # why it does not decode (in full, or at all)
    repair: str = ''  # RESTORE, END_MARKER or ''
    note: str = ''  # what the repair does, for the warning


def _ends_with_marker(path) -> bool:
    with open(path, 'rb') as f:
        f.seek(0, 2)
        if f.tell() < len(JPEG_END):
            return False
        f.seek(-len(JPEG_END), 2)
        return f.read() == JPEG_END


def decode(path) -> Decoded:
    """Verify and decode the image (JPEGs at 1/8 scale: the whole file is read, for less work). Thread-safe."""
    try:
        with Image.open(path) as im:
            im.verify()  # structure (PNG checksums, ...)
        with Image.open(path) as im:
            size, fmt = im.size, im.format
            if fmt == 'JPEG':
                im.draft('RGB', (max(1, size[0] // 8), max(1, size[1] // 8)))
            im.load()  # a truncated file fails here
        marker_ok = fmt != 'JPEG' or _ends_with_marker(path)
    except Exception as e:  # PIL raises many types: UnidentifiedImageError, OSError, SyntaxError, ...
        return Decoded(error=f'{type(e).__name__}: {e}')
    if not marker_ok:
        return Decoded(size, repair=END_MARKER, note='it does not end with the JPEG end marker')
    return Decoded(size)


@contextmanager
def _tolerant():
    """Pillow's switch for truncated files is global: set it only while nothing else decodes (decode_images
    restores after its threads are done; output.write is serial)."""
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


def _grey_share(im: Image.Image) -> float:
    """The share of plain mid-grey pixels: how libjpeg fills what a cut-off JPEG misses (rarely exact in a photo)."""
    return float((np.asarray(im.convert('RGB')) == 128).all(axis=-1).mean())


def restorable(path, error: str) -> Decoded:
    """For an image decode() refused: Decoded(size, repair=RESTORE) if part of it decodes, else the error.
    Not thread-safe (see _tolerant)."""
    try:
        with _tolerant(), Image.open(path) as im:
            im.load()
            size = im.size
            lost = f' ({_grey_share(im):.0%} of it plain grey: the missing part)' if im.format == 'JPEG' else ''
    except Exception:
        return Decoded(error=error)  # the first error says more than the tolerant decoder's
    return Decoded(size, repair=RESTORE, note=f'damaged or cut off ({error}); restored: what decodes is written as '
                                              f'a complete image{lost}')


def _save_options(im: Image.Image) -> dict:
    """Same format, as close to the source as the format allows; EXIF kept (YOLOv5 reads its orientation)."""
    info = {k: im.info[k] for k in ('exif', 'icc_profile') if im.info.get(k)}
    if im.format in ('JPEG', 'MPO'):
        keep = im.format == 'JPEG' and getattr(im, 'quantization', None)
        return {'format': 'JPEG', 'quality': 'keep' if keep else 95, **info}  # 'keep': the source's tables
    if im.format == 'WEBP':
        return {'format': 'WEBP', 'lossless': True, **info}
    return {'format': im.format, **info}


def write_restored(src: Path, dst: Path) -> None:
    """What decodes of src, written to dst as a complete image in src's format."""
    with _tolerant(), Image.open(src) as im:
        im.load()
        im.save(dst, **_save_options(im))


def copy_with_end_marker(src: Path, dst: Path) -> None:
    shutil.copyfile(src, dst)
    with open(dst, 'ab') as f:
        f.write(JPEG_END)
