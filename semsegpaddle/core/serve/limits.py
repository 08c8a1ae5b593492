"""What a request may send, checked before anything expensive: the body's size (from
Content-Length, then while it streams, against a deadline), its content type, and the image's
format, pixel count and band count from the file's header, before any pixel is decoded."""
from __future__ import annotations

import asyncio
import io
import warnings
from dataclasses import dataclass
from typing import Any, AsyncIterator

from PIL import Image

__all__ = ["MAX_HEADER_BYTES", "Rejected", "read_body", "image_from_body", "inspect_image", "ImageHeader", "RAW_TYPES"]

#: content types accepted for an image sent as the raw body (the format itself is read from the bytes)
RAW_TYPES = ("image/png", "image/jpeg", "image/jpg", "image/tiff", "image/bmp", "image/webp",
             "application/octet-stream")
#: Pillow formats the server reads (``semseg predict`` reads the same files)
FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP")
#: TIFF band counts a 3-band (RGB) model reads: gray, RGB, RGBA
RGB_TIFF_BANDS = (1, 3, 4)
#: largest request head (request line and headers) accepted, in bytes; larger is answered 431
MAX_HEADER_BYTES = 16 * 1024


class Rejected(Exception):
    """A request refused with ``status`` and a one-line ``reason`` (plus response ``headers``)."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or {}


async def read_body(receive_stream: AsyncIterator[bytes], content_length: str | None, max_bytes: int,
                    timeout: float) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed ``max_bytes`` (the
    Content-Length header, else the bytes received so far) and with 408 if it takes longer than
    ``timeout`` seconds to arrive."""
    if content_length is not None:
        if not content_length.strip().isdigit():
            raise Rejected(400, f"Content-Length {content_length[:40]!r} is not a number of bytes")
        if int(content_length) > max_bytes:
            raise Rejected(413, f"the body is {int(content_length)} bytes; the server takes at most {max_bytes}")
    chunks: list[bytes] = []
    size = 0

    async def collect() -> None:
        nonlocal size
        async for chunk in receive_stream:
            size += len(chunk)
            if size > max_bytes:
                raise Rejected(413, f"the body exceeds {max_bytes} bytes, the most the server takes")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(collect(), timeout)
    except asyncio.TimeoutError:
        raise Rejected(408, f"the body did not arrive within {timeout:g} s") from None
    return b"".join(chunks)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


async def image_from_body(headers: Any, body: bytes) -> bytes:
    """The image bytes of a request: the raw body (an image/* or application/octet-stream content
    type) or the multipart field ``image``; anything else is a 400 naming what to send."""
    media = _media_type(headers.get("content-type"))
    if media in RAW_TYPES:
        if not body:
            raise Rejected(400, "the body is empty; send an image")
        return body
    if media == "multipart/form-data":
        return await _multipart_image(headers, body)
    shown = media or "none"
    raise Rejected(400, f"content type {shown[:60]!r} is not accepted; send the image as the raw body "
                        f"(Content-Type image/png, image/jpeg, image/tiff, ...) or as multipart field 'image'")


async def _multipart_image(headers: Any, body: bytes) -> bytes:
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def stream() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await MultiPartParser(headers, stream(), max_files=1, max_fields=16, max_part_size=64 * 1024).parse()
    except MultiPartException as exc:
        raise Rejected(400, f"malformed multipart body ({exc.message})") from None
    except Exception as exc:  # the parser's own errors on garbage (e.g. a missing boundary)
        raise Rejected(400, f"malformed multipart body ({type(exc).__name__})") from None
    try:
        field = form.get("image")
        if not isinstance(field, UploadFile):
            raise Rejected(400, "the multipart body has no file field 'image'")
        data = await field.read()
    finally:
        await form.close()
    if not data:
        raise Rejected(400, "the multipart field 'image' is empty")
    return data


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says: Pillow's format name, size and band count."""

    format: str
    width: int
    height: int
    bands: int


def inspect_image(data: bytes, model_bands: int, max_pixels: int) -> ImageHeader:
    """The image's header, checked without decoding pixels: a known format (else 400), at most
    ``max_pixels`` pixels (else 413; Pillow's decompression-bomb guard answers the same), and a band
    count the model reads (else 400)."""
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        header = _tiff_header(data)
    else:
        header = _pillow_header(data, max_pixels)
    if header.width < 1 or header.height < 1:
        raise Rejected(400, f"image: {header.width}x{header.height} pixels; expected at least 1x1")
    if header.width * header.height > max_pixels:
        raise Rejected(413, f"image: {header.width}x{header.height} = {header.width * header.height} pixels; "
                            f"the server takes at most {max_pixels} (--max-image-pixels)")
    wrong_rgb = model_bands == 3 and header.format == "TIFF" and header.bands not in RGB_TIFF_BANDS
    if wrong_rgb or (model_bands != 3 and header.bands != model_bands):
        raise Rejected(400, f"image: has {header.bands} band{'s' if header.bands != 1 else ''}, the model takes "
                            f"{model_bands}" + (" (RGB or gray)" if model_bands == 3 else ""))
    return header


def _pillow_header(data: bytes, max_pixels: int) -> ImageHeader:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=[f for f in FORMATS if f != "TIFF"]) as image:
                width, height = image.size
                return ImageHeader(str(image.format), int(width), int(height), 3)
        except Image.DecompressionBombError as exc:
            raise Rejected(413, f"image: {str(exc).splitlines()[0][:200]} (--max-image-pixels {max_pixels})") from None
        except Exception as exc:
            reason = str(exc).splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise Rejected(400, f"image: not a readable PNG, JPEG, TIFF, BMP or WebP file ({reason})") from None


def _tiff_header(data: bytes) -> ImageHeader:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            series = tif.series[0]
            axes, shape = series.axes, tuple(int(s) for s in series.shape)
    except Exception as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise Rejected(400, f"image: not a readable TIFF file ({reason})") from None
    if len(shape) == 2:
        return ImageHeader("TIFF", shape[1], shape[0], 1)
    if len(shape) == 3 and axes[1:] == "YX":
        return ImageHeader("TIFF", shape[2], shape[1], shape[0])
    if len(shape) == 3 and axes[:2] == "YX":
        return ImageHeader("TIFF", shape[1], shape[0], shape[2])
    raise Rejected(400, f"image: expected one H×W×bands picture, the TIFF holds axes {axes} of shape {shape}")
