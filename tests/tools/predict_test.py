#!/usr/bin/env python3
"""CLI test of `lenet predict`: exit statuses, one-line errors, plain and JSON output, and that
MNIST test digits drawn large on white paper (PNG and PGM) are recognised.

usage: predict_test.py path/to/lenet      (run from the source root; exit 77 = skipped)

Weights: models/lenet5.safetensors when it exists, else a quick model trained here (2 epochs on
10,000 images, about 96% test accuracy), which needs data/mnist; without either the test skips.
"""
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import zlib

LENET = os.path.abspath(sys.argv[1])
MNIST_IMAGES = "data/mnist/t10k-images-idx3-ubyte"
MNIST_LABELS = "data/mnist/t10k-labels-idx1-ubyte"
failures = []


def check(condition, what):
    if not condition:
        failures.append(what)
        print("FAIL:", what)


def run(*args):
    return subprocess.run([LENET, "predict", *args], capture_output=True, text=True, timeout=120)


def png_gray(width, height, rows):
    """An 8-bit grayscale PNG, written by hand so the test does not use the code it tests."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\0" + bytes(row) for row in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def pgm_gray(width, height, rows):
    return b"P5\n# drawn by predict_test.py\n%d %d\n255\n" % (width, height) + b"".join(bytes(r) for r in rows)


def drawn_big(pixels, factor, offset_y, offset_x, size):
    """An MNIST digit enlarged `factor` times as dark ink on white, at an offset on a square canvas."""
    rows = [[255] * size for _ in range(size)]
    for y in range(28 * factor):
        for x in range(28 * factor):
            rows[offset_y + y][offset_x + x] = 255 - pixels[(y // factor) * 28 + x // factor]
    return rows


def main(tmp):
    weights = "models/lenet5.safetensors"
    have_mnist = os.path.exists(MNIST_IMAGES) and os.path.exists(MNIST_LABELS)
    if not os.path.exists(weights):
        if not have_mnist:
            print("skipped: neither models/lenet5.safetensors nor data/mnist")
            return 77
        weights = os.path.join(tmp, "quick.safetensors")
        subprocess.run([LENET, "train", "--epochs", "2", "--limit", "10000", "--schedule", "constant",
                        "--augment", "0", "--log-every", "100000", "--out", weights,
                        "--metrics", os.path.join(tmp, "metrics.csv"), "--plot", ""],
                       check=True, capture_output=True, timeout=600)

    # Usage errors: exit 2, one line.
    r = run("--weights", weights)
    check(r.returncode == 2 and "no images" in r.stderr and r.stderr.count("\n") == 1,
          "no images -> exit 2 with one line, got %d %r" % (r.returncode, r.stderr))
    r = run("--no-such-option", "x.png")
    check(r.returncode == 2, "unknown option -> exit 2, got %d" % r.returncode)

    blank = os.path.join(tmp, "blank.png")
    with open(blank, "wb") as f:
        f.write(png_gray(40, 30, [[255] * 40 for _ in range(30)]))
    bad = os.path.join(tmp, "bad.png")
    with open(bad, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\nthis is not a PNG")
    bar = os.path.join(tmp, "bar.pgm")  # a plain-PGM vertical stroke: well-formed, has ink
    with open(bar, "wb") as f:
        f.write(b"P2 12 12 9\n" + b"\n".join(b" ".join(b"0" if 5 <= c <= 6 and 1 <= r <= 10 else b"9"
                                                       for c in range(12)) for r in range(12)) + b"\n")

    # Errors on a file: exit 1, one line naming it, nothing on stdout.
    for path, expected in [(bad, "PNG"), (blank, "no ink"),
                           (os.path.join(tmp, "missing.png"), "cannot open"), (tmp, "is a directory")]:
        r = run("--weights", weights, bar, path)
        check(r.returncode == 1, "%s -> exit 1, got %d" % (path, r.returncode))
        check(r.stderr.count("\n") == 1 and path in r.stderr and expected in r.stderr,
              "%s -> one line naming it with %r, got %r" % (path, expected, r.stderr))
        check(r.stdout == "", "%s -> no partial output, got %r" % (path, r.stdout))
    r = run("--weights", os.path.join(tmp, "missing.safetensors"), bar)
    check(r.returncode == 1 and "missing.safetensors" in r.stderr, "missing weights -> exit 1 naming them")

    # Plain and JSON output agree, in the documented shapes.
    r = run("--weights", weights, bar)
    check(r.returncode == 0 and re.fullmatch(re.escape(bar) + r": \d \(p=[01]\.\d{3}\)\n", r.stdout) is not None,
          "plain output 'path: d (p=x.xxx)', got %r" % r.stdout)
    r = run("--weights", weights, "--probabilities", bar)
    check(re.fullmatch(re.escape(bar) + r": \d \(p=[01]\.\d{3}\)  \[0:\S+( \d:\S+){9}\]\n", r.stdout) is not None,
          "--probabilities adds ten, got %r" % r.stdout)
    plain_digit = int(r.stdout.split(": ")[1][0])
    r = run("--weights", weights, "--json", bar, bar)
    document = json.loads(r.stdout)
    check(document["weights"] == weights and len(document["predictions"]) == 2, "JSON has both entries")
    entry = document["predictions"][0]
    check(entry["file"] == bar and entry["digit"] == plain_digit, "JSON agrees with plain output")
    check(len(entry["probabilities"]) == 10 and abs(sum(entry["probabilities"]) - 1) < 1e-6,
          "JSON has ten probabilities summing to 1")
    check(max(range(10), key=lambda k: entry["probabilities"][k]) == entry["digit"], "digit is the argmax")

    # Recognition through the whole path: MNIST test digits drawn 4-9x larger, off-centre.
    if have_mnist:
        with open(MNIST_IMAGES, "rb") as f:
            images = f.read()
        with open(MNIST_LABELS, "rb") as f:
            labels = f.read()
        paths, truth = [], []
        for n in range(20):
            pixels = images[16 + n * 784:16 + (n + 1) * 784]
            factor = 4 + n % 6
            size = 28 * factor + 40
            rows = drawn_big(pixels, factor, 5 + n % 30, 35 - n % 30, size)
            path = os.path.join(tmp, "digit%02d.%s" % (n, "png" if n % 2 else "pgm"))
            with open(path, "wb") as f:
                f.write((png_gray if n % 2 else pgm_gray)(size, size, rows))
            paths.append(path)
            truth.append(labels[8 + n])
        r = run("--weights", weights, "--json", *paths)
        predicted = [p["digit"] for p in json.loads(r.stdout)["predictions"]]
        correct = sum(p == t for p, t in zip(predicted, truth))
        print("recognised %d of 20 enlarged MNIST test digits" % correct)
        check(correct >= 18, "at least 18 of 20 enlarged digits recognised, got %d" % correct)

    print("predict_test: %s" % ("FAILED" if failures else "ok"))
    return 1 if failures else 0


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="predict_test.") as directory:
        status = main(directory)
    sys.exit(status)
