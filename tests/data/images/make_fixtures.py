#!/usr/bin/env python3
"""Generates the image fixtures in this folder (checked in; rerun only to change them).

Written with Python's standard library alone (zlib, struct), so the files come from an encoder
independent of stb, the decoder under test. Pixel values follow formulas that
tests/unit/test_image.cpp recomputes:
    8-bit:  (x*40 + y*70 + c*90 + 13) % 256
    16-bit: (x*9000 + y*15000 + c*21000 + 1234) % 65536
"""
import os
import struct
import zlib

W, H = 5, 3
HERE = os.path.dirname(os.path.abspath(__file__))


def v8(x, y, c):
    return (x * 40 + y * 70 + c * 90 + 13) % 256


def v16(x, y, c):
    return (x * 9000 + y * 15000 + c * 21000 + 1234) % 65536


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width, height, depth, color_type, rows):
    """rows: list of bytes, one per scanline, without the filter byte."""
    raw = b"".join(b"\x00" + r for r in rows)  # filter type 0 (None) on every row
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def rows8(channels):
    return [bytes(v8(x, y, c) for x in range(W) for c in range(channels)) for y in range(H)]


def rows16(channels):
    return [b"".join(struct.pack(">H", v16(x, y, c)) for x in range(W) for c in range(channels)) for y in range(H)]


def write(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


# PNG colour types: 0 grey, 2 RGB, 4 grey+alpha, 6 RGBA.
write("grey8.png", png(W, H, 8, 0, rows8(1)))
write("rgb8.png", png(W, H, 8, 2, rows8(3)))
write("grey_alpha8.png", png(W, H, 8, 4, rows8(2)))
write("rgba8.png", png(W, H, 8, 6, rows8(4)))
write("grey16.png", png(W, H, 16, 0, rows16(1)))
write("rgb16.png", png(W, H, 16, 2, rows16(3)))
write("rgba16.png", png(W, H, 16, 6, rows16(4)))

# A PNG whose header claims 100000 x 100000 RGB pixels (30 GB decoded); its data is one tiny row.
write("huge_claim.png", png(100000, 100000, 8, 2, [b"\x00\x00\x00"]))

# rgb8.png cut in the middle of its compressed data.
full = png(W, H, 8, 2, rows8(3))
write("truncated.png", full[: len(full) - 20])

# Text with a .png name.
write("not_an_image.png", b"this is a text file, not a PNG\n")

# 24-bit BMP: BGR, rows bottom-up, each row padded to 4 bytes.
row_size = (W * 3 + 3) & ~3
pixels = b""
for y in reversed(range(H)):
    row = b"".join(bytes((v8(x, y, 2), v8(x, y, 1), v8(x, y, 0))) for x in range(W))
    pixels += row + b"\x00" * (row_size - len(row))
header = struct.pack("<2sIHHI", b"BM", 14 + 40 + len(pixels), 0, 0, 14 + 40)
info = struct.pack("<IiiHHIIiiII", 40, W, H, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
write("rgb.bmp", header + info + pixels)

# Uncompressed true-colour TGA (type 2), 24-bit BGR, origin top-left (descriptor bit 5).
tga_header = struct.pack("<BBBHHBHHHHBB", 0, 0, 2, 0, 0, 0, 0, 0, W, H, 24, 0x20)
tga_pixels = b"".join(bytes((v8(x, y, 2), v8(x, y, 1), v8(x, y, 0))) for y in range(H) for x in range(W))
write("rgb.tga", tga_header + tga_pixels)

write("empty.png", b"")
