"""Reading a multipart/form-data upload once, for every endpoint that takes files.

Malformed bodies (no boundary, an empty or truncated body, garbage, invalid UTF-8 in a field or a
file name) are a clear 400; a body over the limit is a 413. Nothing here ever answers 5xx.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from appliance.errors import BadRequest, PayloadTooLarge, RequestTimeout
from appliance.http.middleware import body_deadline


@dataclass
class UploadedFile:
    name: str
    """The field name (e.g. ``file``)."""
    filename: str
    data: bytes


@dataclass
class Form:
    files: list[UploadedFile] = field(default_factory=list)
    fields: dict[str, list[str]] = field(default_factory=dict)

    def value(self, name: str, default: str = "") -> str:
        return self.fields.get(name, [default])[0].strip()


async def read_form(request: web.Request, limit: int, file_fields: tuple[str, ...]) -> Form:
    """Every part of the upload: files from ``file_fields`` (within ``limit`` bytes in all),
    the other fields as text."""
    if not request.content_type.startswith("multipart/form-data"):
        raise BadRequest("send multipart/form-data")
    try:
        async with body_deadline(request):
            return await _read(request, limit, file_fields)
    except (BadRequest, PayloadTooLarge, RequestTimeout):
        raise
    except (
        ValueError,
        AssertionError,
        UnicodeError,
        LookupError,
        EOFError,
        HttpProcessingError,
    ) as exc:
        raise BadRequest(f"the multipart body is malformed: {exc or type(exc).__name__}") from None


async def _read(request: web.Request, limit: int, file_fields: tuple[str, ...]) -> Form:
    header = request.headers.get("Content-Type", "").rstrip()
    if "boundary=" not in header or header.endswith(("boundary=", 'boundary=""')):
        raise BadRequest("the multipart body has no boundary")
    form = Form()
    total = 0
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name in file_fields:
            data = bytearray()
            while chunk := await part.read_chunk(1 << 16):
                data.extend(chunk)
                total += len(chunk)
                if total > limit:
                    raise PayloadTooLarge(f"the upload exceeds the limit of {limit} bytes")
            form.files.append(UploadedFile(part.name or "", part.filename or "", bytes(data)))
        elif part.name:
            raw = await part.read(decode=False)
            total += len(raw)
            if total > limit:
                raise PayloadTooLarge(f"the upload exceeds the limit of {limit} bytes")
            form.fields.setdefault(part.name, []).append(bytes(raw).decode("utf-8"))
    return form
