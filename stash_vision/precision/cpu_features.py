"""What this machine's CPU can run fast. int8 pays off only with the dot-product instructions
(AVX-512 VNNI, AVX-VNNI or AMX): without them ONNX Runtime's int8 kernels are no faster than fp32
and may saturate (the u8 x s8 pairwise sums of plain AVX2), so `auto` keeps fp32 there."""

from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")

# Any one of these makes ONNX Runtime's int8 convolutions/GEMMs use dot-product kernels.
INT8_DOT_PRODUCT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
# bf16 dot products (AVX-512 BF16 or AMX): without them bf16 is emulated and slower than fp32.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The instruction-set flags of the first CPU listed (x86 `flags`, arm `Features`); empty when
    the file is unreadable, which selects fp32 everywhere."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in {"flags", "Features"}:
            return frozenset(value.split())
    return frozenset()


def missing_for(variant_needs: list[str], flags: frozenset[str]) -> str | None:
    """None when `flags` satisfy a variant's needs (each need is `a|b|c`: one of them), else the
    first need not met, as it should be reported."""
    for need in variant_needs:
        if not flags & set(need.split("|")):
            return need
    return None
