"""An image's size from the first bytes of its JPEG or PNG file, without PIL and without decoding.

The ``--decode gpu`` workers need only the size of each image (to draw its crop): opening the file with PIL for it
costs more than the rest of the sample's work. JPEG keeps the size in its frame header (SOFn), PNG in its IHDR chunk;
anything else, or a header these readers do not understand, gives None and the caller asks PIL, so an odd but valid
file still gets PIL's answer and a broken one PIL's error.
"""

from __future__ import annotations

import struct

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers (baseline, progressive, lossless, hierarchical, arithmetic): all hold the frame's size.
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RST0-7 and SOI: markers without a length field
_SOS = 0xDA  # start of scan: the entropy-coded data follows, the frame header was not before it


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(height, width)`` of a JPEG or PNG file's image from its header (as PIL's ``Image.open`` reports it, before any
    EXIF rotation), or None when ``data`` is neither or its header cannot be read this way."""
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    if data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return (height, width) if height and width else None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The size in the first start-of-frame segment, walking the marker segments from the start of the file."""
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # a fill byte before the marker
            pos += 1
            continue
        if marker in _NO_LENGTH:
            pos += 2
            continue
        if marker == _SOS:
            return None
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker in _SOF:
            if pos + 9 > end or length < 7:
                return None
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return (height, width) if height and width else None
        pos += 2 + length
    return None
