"""Forged .lic streams for fuzzing the decoder: a structure-aware hypothesis strategy, and a runner.

``forged_streams()`` starts from a golden stream (tests/golden/*.lic) and varies every header field
(magic, version, flags, model id, fingerprint, quality, width, height, mode, tile, deblock, context,
the tile table and its count, the alpha entry), the tile payloads (empty, truncated, extended, random,
bit-flipped, swapped between tiles or taken from another stream) and the alpha plane, sometimes with a
region to decode. Whatever it changes, it recomputes the checksums (the header CRC, every tile's CRC,
the alpha plane's CRC) as a forger would, so the input gets past them to the parser's checks, the
entropy decoder and the transforms.

``outcome(codec, forged)`` decodes one input with the library (``Codec.decompress``) and classifies it:
refused with the library's own errors (``CodecError`` subclasses, or ``ValueError`` for a region
outside the image), or decoded to a well-formed image of the header's (or the region's) size and mode.
Anything else (another exception, an ill-formed image, a decode over the time limit) raises
``FuzzFailure``.

Run as a module it fuzzes in its own process, under a memory limit (``RLIMIT_AS``) and a per-input
time limit, and prints outcome counts as JSON lines; tests/test_fuzz_streams.py (a few thousand
examples, derandomized) and benchmarks/fuzz_bitstreams.py (a long run) run it so:

    .venv/bin/python -m tests.fuzz_streams --examples 2000 --derandomize
    .venv/bin/python -m tests.fuzz_streams --seconds 600 --seed 1 --chunk 500
"""
from __future__ import annotations

import argparse
import json
import math
import re
import resource
import signal
import struct
import sys
import time
import traceback
import zlib
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from service.codec import Codec, CodecError, bitstream  # noqa: E402
from service.codec.backend import OnnxBackend  # noqa: E402
from service.codec.limits import MAX_CONTEXT, TILE_MULTIPLE  # noqa: E402
from service.codec.zoo import available_models, load_model  # noqa: E402

GOLDEN = ROOT / "tests" / "golden"
MAX_PIXELS = 4_000_000  # the decoder's pixel limit while fuzzing
MEMORY_LIMIT = 3 << 30  # bytes of address space (RLIMIT_AS) for the fuzzing process
MAX_TABLE = 2048  # tiles a forged table lists at most (a larger grid keeps its template's table)
MAX_WORK = MAX_TABLE * (TILE_MULTIPLE + 2 * MAX_CONTEXT) ** 2  # window pixels of the most tiles a forged table lists


def input_seconds(work: int) -> float:
    """The time limit of one input: generous for the window pixels its header makes the transforms run
    (``claimed_work``, at most MAX_WORK): 0.1 MP/s, where the slowest decode seen, a 51015x20 image in
    798 tiles of 64 px with context, ran 0.6 MP/s of that bound on an idle 2-core machine. Pixels alone
    are not the bound: thin tiles pad to 64 px and carry their context, 16x the pixels at worst."""
    return 15.0 + min(work, MAX_WORK) / 100_000


class FuzzFailure(AssertionError):
    """An input the decoder neither refused with its own errors nor decoded to a well-formed image."""


class InputTimeout(BaseException):
    """Raised by the per-input alarm (a BaseException, so no ``except Exception`` in the library eats it)."""


# ---------------------------------------------------------------------------------------- templates
@dataclass(frozen=True)
class Template:
    name: str
    version: int
    header: bitstream.Header
    payloads: tuple[bytes, ...]
    alpha: bytes | None


@lru_cache(maxsize=None)
def templates() -> tuple[Template, ...]:
    out = []
    for path in sorted(GOLDEN.glob("*.lic")):
        data = path.read_bytes()
        header = bitstream.parse(data)
        payloads = tuple(bytes(bitstream.tile_payload(data, header, i)) for i in range(header.grid.count))
        out.append(Template(path.stem, data[4], header, payloads, bitstream.alpha_payload(data, header)))
    return tuple(out)


@lru_cache(maxsize=None)
def fingerprints() -> dict[str, bytes]:
    """Every installed model's id and fingerprint: a forger can read them off any stream it has seen."""
    return {model_id: load_model(model_id).fingerprint for model_id in available_models()}


# ------------------------------------------------------------------------------------ raw container
@dataclass
class Fields:
    """Every field of a .lic file, raw: no field is checked, whatever its value, the checksums are right."""

    magic: bytes
    version: int
    flags: int
    model_id: bytes
    fingerprint: bytes
    quality: int  # the stored u16, quality x 1000
    width: int
    height: int
    mode: int
    tile: int
    deblock: int
    context: int | None  # None: no context byte (as in version 1)
    payloads: list[bytes]
    alpha: bytes | None  # an alpha entry and plane follow iff not None
    trailing: bytes = b""
    cut: int = 0  # bytes cut off the end of the file
    changes: list[str] = field(default_factory=list)

    def pack(self) -> bytes:
        out = bytearray(self.magic)
        out += struct.pack("<BBB", self.version, self.flags, len(self.model_id)) + self.model_id + self.fingerprint
        out += struct.pack("<HIIBHB", self.quality, self.width, self.height, self.mode, self.tile, self.deblock)
        if self.context is not None:
            out += struct.pack("<B", self.context)
        for payload in self.payloads:
            out += struct.pack("<II", len(payload), zlib.crc32(payload))
        if self.alpha is not None:
            out += struct.pack("<II", len(self.alpha), zlib.crc32(self.alpha))
        out += struct.pack("<I", zlib.crc32(out))
        data = bytes(out) + b"".join(self.payloads) + (self.alpha or b"") + self.trailing
        return data[: len(data) - self.cut] if self.cut else data


def fields_of(t: Template) -> Fields:
    h = t.header
    return Fields(bitstream.MAGIC, t.version, bitstream.FLAG_ALPHA if t.alpha is not None else 0, h.model_id.encode(),
                  h.fingerprint, round(h.quality * 1000), h.width, h.height, bitstream.MODES.index(h.mode), h.tile,
                  h.deblock, h.context if t.version >= 2 else None, list(t.payloads), t.alpha)


# ---------------------------------------------------------------------------------------- strategy
@dataclass
class Forged:
    data: bytes
    region: tuple[int, int, int, int] | None
    changes: list[str]
    intact: bool = True  # False: a burst of at most 32 bits damaged after the checksums were made, which they must catch

    def __repr__(self) -> str:  # what hypothesis prints for a falsifying example
        return f"Forged(changes={self.changes}, region={self.region}, data=bytes.fromhex({self.data.hex()!r}))"


def _u(bits: int) -> st.SearchStrategy[int]:
    return st.integers(0, (1 << bits) - 1)


HEADER_FIELDS = ["magic", "version", "flags", "model", "fingerprint", "quality", "width", "height", "size", "mode",
                 "tile", "deblock", "context", "table", "alpha", "file"]

PAYLOAD_KINDS = ["empty", "truncated words", "truncated bytes", "leading words dropped", "words appended",
                 "words prepended", "random, same length", "random, any length", "bit flipped", "byte overwritten",
                 "last word zero", "swapped with another tile", "another tile's copy", "from another stream"]


def _dimension(current: int) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(1, 600), st.sampled_from([0, 1, 63, 64, 65, current + 1, max(current - 1, 0), 1 << 20, (1 << 20) + 1,
                                                            (1 << 32) - 1, 2000, 4097]), _u(32))


@st.composite
def _payload(draw, kind: str, payloads: list[bytes], index: int) -> bytes:
    p = payloads[index]
    words = len(p) // 4
    if kind == "empty":
        return b""
    if kind == "truncated words":
        return p[: 4 * draw(st.integers(0, max(words - 1, 0)))]
    if kind == "truncated bytes":
        return p[: draw(st.integers(0, max(len(p) - 1, 0)))]
    if kind == "leading words dropped":
        return p[4 * draw(st.integers(1, max(words, 1))) :]
    if kind == "words appended":
        return p + draw(st.binary(min_size=1, max_size=16))
    if kind == "words prepended":
        return draw(st.binary(min_size=1, max_size=16)) + p
    if kind == "random, same length":
        return draw(st.binary(min_size=len(p), max_size=len(p)))
    if kind == "random, any length":
        return draw(st.binary(max_size=256))
    if kind in ("bit flipped", "byte overwritten") and p:
        out = bytearray(p)
        at = draw(st.integers(0, len(p) - 1))
        out[at] = out[at] ^ (1 << draw(st.integers(0, 7))) if kind == "bit flipped" else draw(_u(8))
        return bytes(out)
    if kind == "last word zero":
        return p[:-4] + bytes(4) if words else bytes(4)
    if kind == "another tile's copy":
        return payloads[draw(st.integers(0, len(payloads) - 1))]
    if kind == "from another stream":
        other = draw(st.sampled_from(templates()))
        return draw(st.sampled_from(other.payloads))
    return p


@st.composite
def _alpha(draw, alpha: bytes | None, kind: str | None = None) -> bytes | None:
    kind = kind or draw(st.sampled_from(["none", "another stream's", "random", "truncated", "bit flipped"]))
    if kind == "none":
        return None
    if kind == "random":
        return draw(st.binary(max_size=200))
    if kind == "another stream's" or not alpha:
        return draw(st.sampled_from([t.alpha for t in templates() if t.alpha is not None]))
    if kind == "truncated":
        return alpha[: draw(st.integers(0, len(alpha) - 1))]
    return _flip(alpha, draw(st.integers(0, 8 * len(alpha) - 1)))


@st.composite
def forged_streams(draw) -> Forged:
    t = draw(st.sampled_from(templates()))
    f = fields_of(t)
    ids = fingerprints()
    for name in draw(st.lists(st.sampled_from(HEADER_FIELDS), max_size=3, unique=True)):
        f.changes.append(name)
        if name == "magic":
            f.magic = draw(st.sampled_from([b"\x89PNG", b"\x89LIC"[:3] + b"\0", b""]) | st.binary(min_size=4, max_size=4))
        elif name == "version":
            f.version = draw(st.sampled_from([1, 2, 0, 3]) | _u(8))
            if draw(st.booleans()):  # the context byte follows the version, as the format says; or not
                f.context = None if f.version < 2 else (t.header.context if f.context is None else f.context)
        elif name == "flags":
            f.flags = draw(st.sampled_from([0, 1, 2, 3, 0x80]) | _u(8))
        elif name == "model":
            model = draw(st.sampled_from(sorted(ids)) | st.sampled_from(["", "no-such-model", "../ms-64-96-r3", "x" * 255]))
            f.model_id = draw(st.just(model.encode()) | st.binary(max_size=40))  # raw bytes: maybe not UTF-8
            if model in ids and draw(st.booleans()):  # a forger copies the fingerprint that goes with the id
                f.fingerprint = ids[model]
        elif name == "fingerprint":
            f.fingerprint = draw(st.sampled_from(sorted(ids.values())) | st.binary(min_size=8, max_size=8))
        elif name == "quality":
            f.quality = draw(st.sampled_from([1000, 8000, 999, 8001, 0, 65535]) | st.integers(1000, 8000) | _u(16))
        elif name == "width":
            f.width = draw(_dimension(f.width))
        elif name == "height":
            f.height = draw(_dimension(f.height))
        elif name == "size":  # both: small ones reuse the payloads for the new grid; large ones with large tiles
            if draw(st.integers(0, 3)):
                f.width, f.height = draw(st.integers(1, 700)), draw(st.integers(1, 700))
            else:
                f.width, f.height = draw(st.sampled_from([(2000, 2000), (2001, 2000), (1 << 20, 1 << 20), (1 << 20, 1), (16384, 16384), (4096, 977)]))
                f.tile = draw(st.sampled_from([512, 1024, 2048, 4096]))
        elif name == "mode":
            f.mode = draw(st.sampled_from([0, 1, 2, 3, 4]) | _u(8))
            if f.mode < len(bitstream.MODES) and draw(st.booleans()):  # with an alpha plane exactly when the mode has one
                if not bitstream.MODES[f.mode].endswith("A"):
                    f.alpha, f.flags = None, f.flags & ~bitstream.FLAG_ALPHA
                elif f.alpha is None:
                    f.alpha, f.flags = draw(_alpha(None, "another stream's")), f.flags | bitstream.FLAG_ALPHA
        elif name == "tile":
            f.tile = draw(st.sampled_from([64, 128, 192, 512, 4096, 4160, 0, 63, 65472, 65535]) | st.integers(1, 64).map(lambda k: 64 * k) | _u(16))
        elif name == "deblock":
            f.deblock = draw(st.integers(0, 9) | _u(8))
        elif name == "context":
            f.context = draw(st.sampled_from([0, 16, 32, 48, 64, 80, 8]) | _u(8))
        elif name == "alpha":
            f.alpha = draw(_alpha(f.alpha))
            if draw(st.booleans()):  # the flag follows the entry; or not
                f.flags = (f.flags & ~bitstream.FLAG_ALPHA) | (bitstream.FLAG_ALPHA if f.alpha is not None else 0)
        elif name == "file":
            if draw(st.booleans()):
                f.trailing = draw(st.binary(min_size=1, max_size=8))
            else:
                f.cut = draw(st.integers(1, 64))
    # The tile table: one entry per tile of the (forged) grid, the payloads reused in turn, or a wrong count.
    count = math.ceil(f.width / f.tile) * math.ceil(f.height / f.tile) if f.tile else len(f.payloads)
    table = "grid" if 0 < count <= MAX_TABLE else "template"
    if "table" in f.changes:
        table = draw(st.sampled_from(["one more", "one fewer", "none", "template"]))
    if table == "grid" and count != len(f.payloads):
        f.payloads = [f.payloads[i % len(f.payloads)] for i in range(count)]
    elif table == "one more":
        f.payloads = f.payloads + [f.payloads[0]]
    elif table == "one fewer":
        f.payloads = f.payloads[:-1]
    elif table == "none":
        f.payloads = []
    if f.payloads:
        for kind in draw(st.lists(st.sampled_from(PAYLOAD_KINDS), max_size=2)):
            index = draw(st.integers(0, len(f.payloads) - 1))
            if kind == "swapped with another tile":
                other = draw(st.integers(0, len(f.payloads) - 1))
                f.payloads[index], f.payloads[other] = f.payloads[other], f.payloads[index]
            else:
                f.payloads[index] = draw(_payload(kind, f.payloads, index))
            f.changes.append(f"tile {index}: {kind}")
    region = None
    if draw(st.integers(0, 7)) == 0:  # a region: mostly inside the image, sometimes not
        w, h = max(min(f.width, 1 << 20), 1), max(min(f.height, 1 << 20), 1)
        x, y = draw(st.integers(0, w - 1)), draw(st.integers(0, h - 1))
        region = (x, y, draw(st.integers(1, w - x)), draw(st.integers(1, h - y)))
        if draw(st.integers(0, 3)) == 0:
            region = draw(st.tuples(st.integers(-1, w + 1), st.integers(-1, h + 1), st.integers(-1, w + 1), st.integers(-1, h + 1)))
        f.changes.append("region")
    data = f.pack()
    if region is None and data and draw(st.integers(0, 15)) == 0:  # damage the checksums do not know about
        at, burst = draw(st.integers(0, len(data) - 1)), draw(st.binary(min_size=1, max_size=4).filter(any))
        damaged = bytes(a ^ b for a, b in zip(data[at:], burst))
        f.changes.append("damaged after checksumming")
        return Forged(data[:at] + damaged + data[at + len(damaged) :], region, f.changes, intact=False)
    return Forged(data, region, f.changes)


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# ---------------------------------------------------------------------------------------- decoding
@contextmanager
def time_limit(seconds: float):
    def expire(signum, frame):
        raise InputTimeout(f"over the {seconds:.0f} s limit")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def claimed_work(data: bytes) -> int:
    """Pixels the transforms would run on for the header's grid, at most: every tile padded to 64 px
    with its context on every side (0 for a header that does not parse)."""
    try:
        header = bitstream.parse(data, check_payloads=False)
    except CodecError:
        return 0
    grid, pad = header.grid, 2 * header.context
    return sum((h + pad) * (w + pad) for h, w in (grid.coded_shape(i, TILE_MULTIPLE) for i in range(grid.count)))


def _kind(error: BaseException) -> str:
    """An error's class: its type and message, numbers and quoted names elided, details in brackets cut."""
    message = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", str(error).removeprefix("corrupted .lic data: "))
    message = re.sub(r"0x[0-9a-f]+|\d+", "N", message)
    if not message.startswith("corrupted .lic header ("):
        message = message.split(" (")[0]
    return f"{type(error).__name__}: {message[:80]}"


def outcome(codec: Codec, forged: Forged) -> str:
    """'refused: <error class>' or 'decoded'; raises FuzzFailure for anything else."""
    work = claimed_work(forged.data)
    try:
        with time_limit(input_seconds(work)):
            image = codec.decompress(forged.data, region=forged.region)
    except CodecError as error:
        return f"refused: {_kind(error)}"
    except ValueError as error:
        if forged.region is not None and str(error).startswith("region "):
            return "refused: ValueError: region outside the image"
        raise FuzzFailure(f"ValueError that is not about a region: {error}") from error
    except InputTimeout as error:
        raise FuzzFailure(f"hang: {error} ({work} window pixels claimed)") from None
    except MemoryError as error:
        raise FuzzFailure(f"memory: MemoryError under the {MEMORY_LIMIT >> 30} GiB limit") from error
    except Exception as error:
        raise FuzzFailure(f"crash: {type(error).__name__}: {str(error)[:300]}") from error
    if not forged.intact:
        raise FuzzFailure("undetected damage: a stream damaged after checksumming decoded")
    header = bitstream.parse(forged.data)
    size = (forged.region[2], forged.region[3]) if forged.region else (header.width, header.height)
    if image.size != size or image.mode != header.mode:
        raise FuzzFailure(f"ill-formed image: {image.mode} {image.size}, the header says {header.mode} {size}")
    return "decoded"


# ------------------------------------------------------------------------------------------ runner
def limit_memory(limit: int = MEMORY_LIMIT) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run(codec: Codec, examples: int, derandomize: bool, seed_value: int | None, raise_failures: bool,
        current: Path | None = None) -> dict:
    """Run ``examples`` forged inputs through ``codec``: counts of outcomes and of what the inputs changed,
    and the failures (unless ``raise_failures``: then the first one is raised and shrunk). ``current``:
    a file each input is written to before it is decoded (a watchdog's heartbeat, and the input it hung on)."""
    counts: Counter[str] = Counter()
    changes: Counter[str] = Counter()
    failures: list[dict] = []

    @settings(max_examples=examples, deadline=None, derandomize=derandomize, database=None, print_blob=True,
              phases=[Phase.generate, Phase.shrink] if raise_failures else [Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(forged_streams())
    def fuzz(forged: Forged) -> None:
        if current is not None:
            current.write_bytes(forged.data)
        changes.update({re.sub(r"^tile \d+: ", "payload: ", change) for change in forged.changes} or {"none"})
        try:
            counts[outcome(codec, forged)] += 1
        except FuzzFailure as failure:
            if raise_failures:
                raise
            counts[f"FAILURE: {str(failure).split(':')[0]}"] += 1
            failures.append({"failure": str(failure)[:400], "changes": forged.changes, "region": forged.region,
                             "input_hex": forged.data.hex()})

    if seed_value is not None and not derandomize:
        fuzz = seed(seed_value)(fuzz)
    fuzz()
    return {"counts": dict(counts), "changes": dict(changes), "failures": failures}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=2000, help="inputs (per chunk with --seconds)")
    p.add_argument("--seconds", type=float, default=0, help="keep running chunks of --chunk inputs this long")
    p.add_argument("--chunk", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--derandomize", action="store_true", help="hypothesis's fixed examples (CI)")
    p.add_argument("--raise-failures", action="store_true", help="stop at the first failure and shrink it")
    p.add_argument("--memory-gib", type=float, default=MEMORY_LIMIT / (1 << 30))
    p.add_argument("--current", type=Path, help="write each input here before decoding it (for a watchdog)")
    p.add_argument("--threads", type=int, help="onnxruntime threads (default: every core; 1 when several workers share them)")
    args = p.parse_args(argv)
    limit_memory(int(args.memory_gib * (1 << 30)))
    codec = Codec(backend_factory=partial(OnnxBackend, threads=args.threads), max_pixels=MAX_PIXELS)
    started = time.perf_counter()
    if not args.seconds:
        result = run(codec, args.examples, args.derandomize, args.seed, args.raise_failures, args.current)
        print(json.dumps({"chunk": 0, "seconds": time.perf_counter() - started, "cpu_seconds": time.process_time(), **result}), flush=True)
        return
    chunk = 0
    while time.perf_counter() - started < args.seconds:
        t0 = time.perf_counter()
        try:
            result = run(codec, args.chunk, False, args.seed * 1_000_003 + chunk, False, args.current)
        except Exception:  # the runner itself broke: say so, and go on with the next chunk
            result = {"counts": {}, "failures": [{"failure": "runner: " + traceback.format_exc()[-400:]}]}
        print(json.dumps({"chunk": chunk, "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time(), **result}), flush=True)
        chunk += 1


if __name__ == "__main__":
    main()
