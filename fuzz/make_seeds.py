#!/usr/bin/env python3
"""Writes kiln's fuzz seed corpora (checked in; rerun only to change them):
fuzz/corpus/image/        the fixtures of tests/data/images plus small JPEG/PNG/GIF/BMP/TGA/PNM
                          variants made with Pillow (baseline, progressive, grey, CMYK, palette...)
fuzz/corpus/safetensors/  tiny valid files (every dtype, scalars, empty tensors, metadata, checksum)
                          and edge cases (overlap, hole, offsets beyond the file, bad JSON...)
fuzz/corpus/dataset/      tree-building programs for fuzz_dataset.cpp
Also tests/data/images/cmyk.jpg and palette.png, fixtures of tests/unit/test_hostile_inputs.cpp.
"""
import io
import json
import os
import shutil
import struct
import zlib

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
IMAGES = os.path.join(REPO, "tests", "data", "images")


def out(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def pil(image, fmt, **kw):
    b = io.BytesIO()
    image.save(b, fmt, **kw)
    return b.getvalue()


def gradient(mode, w=6, h=4):
    im = Image.new("RGB", (w, h))
    im.putdata([((x * 40) % 256, (y * 60) % 256, (x * y * 30) % 256) for y in range(h) for x in range(w)])
    return im.convert(mode)


def images():
    os.makedirs(os.path.join(HERE, "corpus", "image"), exist_ok=True)
    for name in sorted(os.listdir(IMAGES)):
        if not name.endswith(".py"):
            shutil.copyfile(os.path.join(IMAGES, name), os.path.join(HERE, "corpus", "image", "fixture_" + name))
    out("image", "baseline.jpg", pil(gradient("RGB"), "JPEG", quality=80))
    out("image", "progressive.jpg", pil(gradient("RGB", 9, 7), "JPEG", quality=60, progressive=True))
    out("image", "grey.jpg", pil(gradient("L"), "JPEG"))
    out("image", "subsampled.jpg", pil(gradient("RGB", 17, 9), "JPEG", subsampling=2))
    out("image", "cmyk.jpg", pil(gradient("CMYK"), "JPEG"))
    out("image", "palette.png", pil(gradient("P"), "PNG"))
    out("image", "palette_trns.png", pil(gradient("P"), "PNG", transparency=3))
    out("image", "grey_alpha.png", pil(gradient("LA"), "PNG"))
    out("image", "one_bit.png", pil(gradient("1"), "PNG"))
    out("image", "rgb9.png", pil(gradient("RGB", 9, 9), "PNG"))
    out("image", "one_pixel.png", pil(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"))
    out("image", "anim.gif", pil(gradient("P"), "GIF"))
    out("image", "rgba.bmp", pil(gradient("RGBA"), "BMP"))
    out("image", "grey.bmp", pil(gradient("L"), "BMP"))
    out("image", "rle.tga", pil(gradient("RGB"), "TGA", compression="tga_rle"))
    out("image", "grey.pgm", pil(gradient("L"), "PPM"))
    out("image", "rgb.ppm", pil(gradient("RGB"), "PPM"))
    out("image", "text.png", b"this is text, not an image\n")


def safetensors(header, data=b"", pad=True, raw_header=None):
    text = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def checksum(data):
    return "crc32:%08x" % (zlib.crc32(data) & 0xFFFFFFFF)


def tensors():
    f32 = struct.pack("<6f", 1, 2, 3, 4, 5, 6)
    out("safetensors", "f32.safetensors", safetensors({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}, f32))
    out("safetensors", "checksum.safetensors", safetensors(
        {"__metadata__": {"kiln.checksum": checksum(f32), "step": "7"},
         "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}, f32))
    # every dtype, one after another
    sizes = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
             "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}
    header, data, at = {}, b"", 0
    for i, (name, size) in enumerate(sorted(sizes.items(), key=lambda kv: -kv[1])):
        n = size * 2
        header["t_" + name] = {"dtype": name, "shape": [2], "data_offsets": [at, at + n]}
        data += bytes((i * 7 + k) % 256 for k in range(n))
        at += n
    out("safetensors", "all_dtypes.safetensors", safetensors(header, data))
    out("safetensors", "scalar_and_empty.safetensors", safetensors(
        {"s": {"dtype": "F64", "shape": [], "data_offsets": [0, 8]},
         "e": {"dtype": "F32", "shape": [0, 5], "data_offsets": [8, 8]},
         "e2": {"dtype": "U8", "shape": [3, 0], "data_offsets": [8, 8]}}, struct.pack("<d", 3.5)))
    out("safetensors", "empty_header.safetensors", safetensors({}))
    out("safetensors", "metadata_only.safetensors", safetensors({"__metadata__": {"a": "b"}}))
    out("safetensors", "unicode.safetensors", safetensors({"\u00e9t\u00e9/\u0000x": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}, b"\x05"))
    # edge cases kiln must refuse
    w = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    out("safetensors", "overlap.safetensors", safetensors({"a": w, "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8))
    out("safetensors", "hole.safetensors", safetensors({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8))
    out("safetensors", "beyond.safetensors", safetensors({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8))
    out("safetensors", "shape_mismatch.safetensors", safetensors({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8))
    out("safetensors", "overflow_shape.safetensors", safetensors({"a": {"dtype": "F64", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}}, b"\0" * 8))
    out("safetensors", "negative_dim.safetensors", safetensors({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8))
    out("safetensors", "bad_dtype.safetensors", safetensors({"a": {"dtype": "F128", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8))
    out("safetensors", "duplicate.safetensors", safetensors(None, b"\0" * 8, raw_header=b'{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}'))
    out("safetensors", "bad_json.safetensors", safetensors(None, raw_header=b'{"a":{"dtype":"U8",'))
    out("safetensors", "bad_checksum.safetensors", safetensors(
        {"__metadata__": {"kiln.checksum": "crc32:00000000"}, "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}, f32))
    out("safetensors", "header_too_long.safetensors", struct.pack("<Q", 1 << 40) + b"{}")
    out("safetensors", "short.safetensors", b"\x02\0\0")


def trees():
    # fuzz_dataset.cpp: op = byte % 9, then parent, name (kNames index), then op-specific bytes.
    out("dataset", "one_png", bytes([1, 0, 0, 0]))
    out("dataset", "loop", bytes([0, 0, 10,  1, 1, 0, 0,  3, 1, 11, 0,  1, 0, 2, 0]))
    out("dataset", "dangling", bytes([1, 0, 0, 0,  5, 0, 1, 0,  5, 0, 12, 3,  5, 0, 13, 5]))
    out("dataset", "fifo_and_dir", bytes([6, 0, 0,  8, 0, 0,  1, 1, 2, 0,  1, 0, 3, 1]))
    out("dataset", "bad_files", bytes([1, 0, 0, 1,  1, 0, 1, 2,  1, 0, 2, 3,  2, 0, 3, 4, 5, 9,  2, 0, 4, 5, 10]) + b"GIF89a....")
    out("dataset", "links", bytes([1, 0, 0, 0,  4, 0, 1, 0, 1,  4, 0, 6, 0, 0,  7, 0, 0, 0, 0]))
    out("dataset", "no_images", bytes([1, 0, 6, 0,  0, 0, 10]))


if __name__ == "__main__":
    images()
    tensors()
    trees()
    # fixtures for tests/unit/test_hostile_inputs.cpp
    with open(os.path.join(IMAGES, "cmyk.jpg"), "wb") as f:
        f.write(pil(gradient("CMYK"), "JPEG"))
    with open(os.path.join(IMAGES, "palette.png"), "wb") as f:
        f.write(pil(gradient("P"), "PNG"))
