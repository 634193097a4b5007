#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/corpus/<target>/ (committed; rerun after changing
this script). Each seed is small, valid or nearly so, and covers one feature of its format, so the
fuzzer starts from every branch a real file can take. Byte 0 of idx and image seeds is the
target's mode byte (see targets.hpp)."""
import gzip
import json
import math
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def gz(data):
    return gzip.compress(data, mtime=0)


# ---- IDX: mode bit 0 = labels, bit 1 = gzip the rest in the target ----
def idx(magic, sizes, payload):
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", s) for s in sizes) + bytes(payload)


images_2x3x3 = idx(0x803, [2, 3, 3], [i * 29 % 256 for i in range(18)])
digit = [0] * 784
for r in range(6, 22):
    for c in range(12, 16):
        digit[r * 28 + c] = 255 - 8 * abs(c - 13)
images_1x28x28 = idx(0x803, [1, 28, 28], digit)
labels_5 = idx(0x801, [5], [3, 1, 4, 1, 5])
write("idx", "images-raw", b"\x00" + images_2x3x3)
write("idx", "images-gzip-by-target", b"\x02" + images_2x3x3)
write("idx", "images-28x28", b"\x00" + images_1x28x28)
write("idx", "images-gzip-file", b"\x00" + gz(images_2x3x3))
write("idx", "labels-raw", b"\x01" + labels_5)
write("idx", "labels-gzip-by-target", b"\x03" + labels_5)
write("idx", "labels-gzip-file", b"\x01" + gz(labels_5))
write("idx", "images-truncated", b"\x00" + images_2x3x3[:-3])
write("idx", "images-trailing", b"\x00" + images_2x3x3 + b"\x01\x02")
write("idx", "images-huge-count", b"\x00" + idx(0x803, [0xFFFFFFFF, 4096, 4096], [1] * 16))
write("idx", "labels-out-of-range", b"\x01" + idx(0x801, [3], [1, 11, 2]))
write("idx", "labels-gzip-cut", b"\x01" + gz(labels_5)[:-6])

# ---- safetensors: the file itself ----
def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, raw bytes) in data order."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(t[3] for t in tensors)


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def f64(values):
    return struct.pack("<%dd" % len(values), *values)


write("safetensors", "one-f32", safetensors([("w", "F32", [2, 2], f32([1, -2, 0.5, 3]))]))
write("safetensors", "one-f64", safetensors([("w", "F64", [3], f64([1e-3, math.pi, -7]))]))
write("safetensors", "lenet-like", safetensors(
    [("conv1.weight", "F32", [2, 1, 2, 2], f32([0.1 * i for i in range(8)])),
     ("conv1.bias", "F32", [2], f32([0, 1])),
     ("fc.weight", "F32", [1, 2], f32([2, 3]))],
    {"format": "pt", "mean": "0.1307", "std": "0.3081"}))
write("safetensors", "scalar-and-empty", safetensors(
    [("s", "F32", [], f32([4])), ("e", "F64", [0, 3], b""), ("v", "F64", [1], f64([2]))]))
write("safetensors", "metadata-only", safetensors([], {"epoch": "3"}))
write("safetensors", "empty-header", safetensors([]))
valid = safetensors([("a", "F32", [2], f32([1, 2])), ("b", "F32", [1], f32([3]))])
write("safetensors", "truncated", valid[:-2])
write("safetensors", "bad-dtype", safetensors([("w", "I8", [4], b"\x01\x02\x03\x04")]))
write("safetensors", "huge-header-length", struct.pack("<Q", 1 << 40) + b"{}")
overlap = json.dumps({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                      "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, separators=(",", ":")).encode()
overlap += b" " * ((8 - len(overlap) % 8) % 8)
write("safetensors", "overlap", struct.pack("<Q", len(overlap)) + overlap + f32([1]))

def header_only(entries):
    text = json.dumps(entries, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text


# Sizes whose byte count overflows 64 bits, and a size beyond int64 in a zero-element shape.
write("safetensors", "shape-overflows", header_only(
    {"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}}))
write("safetensors", "shape-beyond-int64", header_only(
    {"w": {"dtype": "F64", "shape": [0, 9223372036854775808], "data_offsets": [0, 0]}}))

# ---- images: mode bit 0 = fix PNG CRCs in the target ----
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def pack_row(samples, bit_depth):
    """Packs one row of integer samples at the given bit depth, big-endian, MSB first."""
    if bit_depth == 8:
        return bytes(samples)
    if bit_depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    out, acc, bits = bytearray(), 0, 0
    for s in samples:
        acc = (acc << bit_depth) | s
        bits += bit_depth
        if bits == 8:
            out.append(acc)
            acc, bits = 0, 0
    if bits:
        out.append(acc << (8 - bits))
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1)]


def png(width, height, color_type, bit_depth, pixel, extra=(), interlace=0, filter_type=0):
    """pixel(r, c) -> tuple of channel samples. Rows use one filter type throughout (0 or 1)."""
    def scanlines(rows, cols):
        raw = bytearray()
        for r in rows:
            samples = [s for c in cols for s in pixel(r, c)]
            row = pack_row(samples, bit_depth)
            if filter_type == 1:  # Sub: each byte minus the byte one pixel to the left
                bpp = max(1, len(pixel(0, 0)) * bit_depth // 8)
                row = bytes((row[i] - (row[i - bpp] if i >= bpp else 0)) & 255 for i in range(len(row)))
            raw += bytes([filter_type]) + row
        return raw

    if interlace:
        raw = bytearray()
        for y0, x0, dy, dx in ADAM7:
            rows, cols = range(y0, height, dy), range(x0, width, dx)
            if len(rows) and len(cols):
                raw += scanlines(rows, cols)
    else:
        raw = scanlines(range(height), range(width))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + b"".join(chunk(k, d) for k, d in extra) +
            chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + chunk(b"IEND", b""))


def stroke(r, c, w, h):
    """A vertical bar with soft edges: ink (high) on a dark background, like MNIST."""
    return 1.0 if abs(c - w // 2) <= max(1, w // 6) and h // 5 <= r < h - h // 5 else 0.0


def gray(r, c, w=9, h=9, depth=8, invert=False):
    v = stroke(r, c, w, h)
    v = 1 - v if invert else v
    return (round(v * ((1 << depth) - 1)),)


ON = b"\x01"
write("image", "gray8", ON + png(9, 9, 0, 8, lambda r, c: gray(r, c)))
write("image", "gray8-sub-filter", ON + png(9, 9, 0, 8, lambda r, c: gray(r, c, invert=True), filter_type=1))
for depth in (1, 2, 4, 16):
    write("image", "gray%d" % depth, ON + png(9, 9, 0, depth, lambda r, c, d=depth: gray(r, c, depth=d)))
write("image", "rgb8", ON + png(8, 8, 2, 8, lambda r, c: (200, 180 - 20 * int(stroke(r, c, 8, 8)) * 8, 255)))
write("image", "rgb16-gama", ON + png(6, 6, 2, 16, lambda r, c: (gray(r, c, 6, 6, 16)[0],) * 3,
                                      extra=[(b"gAMA", struct.pack(">I", 45455))]))
write("image", "gray-alpha8", ON + png(7, 7, 4, 8, lambda r, c: (0, 255 * int(stroke(r, c, 7, 7)))))
write("image", "rgba8-srgb", ON + png(7, 7, 6, 8, lambda r, c: (20, 20, 20, 255 * int(stroke(r, c, 7, 7))),
                                      extra=[(b"sRGB", b"\x00")]))
palette = bytes([255, 255, 255, 0, 0, 0, 128, 128, 128])
write("image", "palette-trns", ON + png(8, 8, 3, 2, lambda r, c: (int(stroke(r, c, 8, 8)) + (r == 0),),
                                        extra=[(b"PLTE", palette), (b"tRNS", b"\x00\xff")]))
write("image", "gray8-interlaced", ON + png(11, 10, 0, 8, lambda r, c: gray(r, c, 11, 10), interlace=1))
write("image", "digit-28x28", ON + png(28, 28, 0, 8, lambda r, c: (digit[r * 28 + c],)))
write("image", "gray8-crc-as-is", b"\x00" + png(5, 5, 0, 8, lambda r, c: gray(r, c, 5, 5)))
write("image", "truncated", ON + png(9, 9, 0, 8, lambda r, c: gray(r, c))[:-20])
write("image", "pgm-p2", b"\x00" + b"P2\n# a comment\n4 3\n15\n0 0 0 0\n0 15 15 0\n0 0 0 0\n")
write("image", "pgm-p5", b"\x00" + b"P5 5 4 255\n" + bytes(255 * int(stroke(r, c, 5, 4)) for r in range(4) for c in range(5)))
write("image", "pgm-p5-16bit", b"\x00" + b"P5\n5 5\n65535\n" + b"".join(
    struct.pack(">H", 65535 * int(stroke(r, c, 5, 5))) for r in range(5) for c in range(5)))
write("image", "jpeg-signature", b"\x00\xff\xd8\xff\xe0\x00\x10JFIF")
write("image", "pbm", b"\x00P1\n2 2\n0 1 1 0\n")

# ---- /api/predict bodies: byte 0 picks the Content-Type (0 JSON, 1 PNG, 2 JSON; charset, 3 text) ----
def body(width, height, pixels, **extra):
    document = {"width": width, "height": height, "pixels": pixels, **extra}
    return json.dumps(document, separators=(",", ":")).encode()


write("predict_body", "json-3x2", b"\x00" + body(3, 2, [0, 255, 0, 12.5, 255, 0]))
write("predict_body", "json-digit-28x28", b"\x00" + body(28, 28, digit))
write("predict_body", "json-charset", b"\x02" + body(2, 2, [0, 200, 200, 0], label="x"))
write("predict_body", "json-white-background", b"\x00" + body(
    5, 5, [255 - 255 * int(stroke(r, c, 5, 5)) for r in range(5) for c in range(5)]))
write("predict_body", "json-missing-height", b"\x00" + b'{"width":1,"pixels":[0]}')
write("predict_body", "json-pixel-out-of-range", b"\x00" + body(1, 2, [0, 256]))
write("predict_body", "json-wrong-count", b"\x00" + body(2, 2, [1, 2, 3]))
write("predict_body", "json-fraction-width", b"\x00" + body(1.5, 1, [0]))
write("predict_body", "json-nested", b"\x00" + b'{"width":1,"height":1,"pixels":[[[[0]]]]}')
write("predict_body", "json-not-object", b"\x00" + b"[1,2,3]")
write("predict_body", "png-gray8", b"\x01" + png(9, 9, 0, 8, lambda r, c: gray(r, c)))
write("predict_body", "png-too-large", b"\x01" + png(1, 1, 0, 8, lambda r, c: (0,))[:16] + struct.pack(">II", 4096, 4096))
write("predict_body", "text-plain", b"\x03hello")
