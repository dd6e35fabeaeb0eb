"""Hostile files, crafted small on disk (issue 17, Fuzzing: Files): a PNG whose header and pixel data
say 200 megapixels, a zip whose member claims 10 GB, AVIs whose headers claim 10⁹ frames or 0 fps,
a symlink loop; and the resident memory of the stack's processes, to show none of them spikes."""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from pathlib import Path

import av
import numpy as np
import psutil

BOMB_WIDTH, BOMB_HEIGHT = 20_000, 10_000  # 200 MP: 600 MB as BGR once decoded
TEN_GB = 10 * 2**30


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(path: Path, width: int = BOMB_WIDTH, height: int = BOMB_HEIGHT) -> Path:
    """A valid greyscale PNG of width × height black pixels: ~200 KB on disk, compressed row by row
    so the test never holds the image either."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    parts = [compressor.compress(row) for _ in range(height)]
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )
    return path


def zip_bomb(path: Path, member: str, claimed: int = TEN_GB) -> Path:
    """A zip whose one member's central-directory entry claims `claimed` bytes uncompressed (a
    ZIP64 size, as a 10 GB member has), over a few KB of real deflated data."""
    payload = b"\x00" * 4096
    limit = zipfile.ZIP64_LIMIT
    zipfile.ZIP64_LIMIT = 1  # type: ignore[misc]  # makes zipfile write ZIP64 extra fields
    try:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            archive.writestr(member, payload)
    finally:
        zipfile.ZIP64_LIMIT = limit  # type: ignore[misc]
    data = bytearray(path.read_bytes())
    central = data.rindex(b"PK\x01\x02")
    real = struct.pack("<Q", len(payload))
    at = data.index(real, central)  # the ZIP64 extra's uncompressed size, first of its fields
    data[at : at + 8] = struct.pack("<Q", claimed)
    path.write_bytes(bytes(data))
    return path


def small_avi(path: Path, frames: int = 20, fps: int = 10) -> Path:
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for n in range(frames):
            image = np.full((48, 64, 3), n * 10 % 255, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _patch_u32(data: bytearray, chunk: bytes, offset: int, value: int) -> None:
    at = data.index(chunk) + 8 + offset  # after the chunk's FourCC and size
    data[at : at + 4] = struct.pack("<I", value)


def avi_claiming(source: Path, path: Path, *, frames: int | None = None, zero_fps: bool = False) -> Path:
    """A copy of an AVI whose headers lie: the main header's and the stream header's frame counts
    set to `frames`, or both frame rates (µs per frame; rate/scale) set to 0."""
    data = bytearray(source.read_bytes())
    if frames is not None:
        _patch_u32(data, b"avih", 16, frames)  # dwTotalFrames
        _patch_u32(data, b"strh", 32, frames)  # dwLength
    if zero_fps:
        _patch_u32(data, b"avih", 0, 0)  # dwMicroSecPerFrame
        _patch_u32(data, b"strh", 24, 0)  # dwRate (dwScale stays: rate/scale = 0)
    path.write_bytes(bytes(data))
    return path


def symlink_loop(root: Path) -> Path:
    """root/loop/a -> ../loop (a directory cycle) and root/loop/self -> itself (ELOOP)."""
    folder = root / "loop"
    folder.mkdir(parents=True)
    os.symlink("../loop", folder / "a")
    os.symlink("self", folder / "self")
    return folder


def peak_rss_mib(pid: int) -> dict[str, float]:
    """VmHWM (peak resident memory since start) of a process and each of its descendants, by a
    short name (the program and its first argument that says what it runs)."""
    root = psutil.Process(pid)
    peaks: dict[str, float] = {}
    for process in [root, *root.children(recursive=True)]:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
            name = " ".join(process.cmdline()[:4])[-80:]
        except (OSError, psutil.Error):
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks[f"{process.pid} {name}"] = int(line.split()[1]) / 1024
    return peaks
