"""Which code path Intel MKL, Paddle's CPU BLAS, runs on CPUs not made by Intel (``runtime.mkl_code_path``).

Paddle's CPU convolutions and matrix products go through the MKL it bundles (2019.0.5 with Paddle
3.3), whose dispatcher sends every CPU that is not an Intel one down its generic code path, however
wide its vector units. MKL up to 2020.0 reads ``MKL_DEBUG_CPU_TYPE`` at its first call: 5 selects
its AVX2 path, 7 its AVX-512 one. On an AMD EPYC with AVX-512 this makes a DeepLabv3 ResNet-50
training step ~3× faster at 256² and ~2.5× at 512², with the same results up to float rounding
(``benchmarks/train_step_options.py``). Later MKL versions ignore the variable, as Intel CPUs do
not need it.

``auto`` (the default) sets it on non-Intel x86 CPUs to the widest path their flags support and
leaves Intel CPUs, other architectures and a value the user exported alone; ``default`` never
touches it; ``avx2`` / ``avx512`` force a path and are refused on a CPU lacking its instructions
(MKL would crash with an illegal instruction). It must be chosen before the first MKL call of the
process, so the engine does it first when it sets the process up.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import MutableMapping

from semsegpaddle.core.common.errors import ConfigError

VARIABLE = "MKL_DEBUG_CPU_TYPE"
#: the instructions MKL's paths use, as /proc/cpuinfo names them
REQUIRED_FLAGS = {
    "avx512": frozenset({"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}),
    "avx2": frozenset({"avx2", "fma"}),
}
#: the value of MKL_DEBUG_CPU_TYPE that selects each path
CPU_TYPE = {"avx2": "5", "avx512": "7"}
SETTINGS = ("auto", "default", "avx2", "avx512")


def read_cpu(cpuinfo: str | None = None) -> tuple[str, frozenset[str]]:
    """The CPU vendor and instruction flags from ``/proc/cpuinfo`` (or the text given);
    ("", no flags) where there is no such file."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return "", frozenset()
    vendor, flags = "", frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and not vendor:
            vendor = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return vendor, flags


def mkl_cpu_type(setting: str, vendor: str, flags: frozenset[str], environ: MutableMapping[str, str]) -> str | None:
    """The MKL_DEBUG_CPU_TYPE value ``setting`` asks for on this CPU, or None to leave MKL alone."""
    if setting not in SETTINGS:
        raise ConfigError(f"runtime.mkl_code_path: expected one of {', '.join(SETTINGS)}, got {setting!r}")
    if setting == "default":
        return None
    if setting == "auto":
        if VARIABLE in environ or vendor == "GenuineIntel":
            return None
        return next((CPU_TYPE[path] for path in ("avx512", "avx2") if REQUIRED_FLAGS[path] <= flags), None)
    missing = sorted(REQUIRED_FLAGS[setting] - flags)
    if missing:
        raise ConfigError(f"runtime.mkl_code_path: {setting} needs CPU instructions this CPU lacks "
                          f"({', '.join(missing)}); use auto")
    return CPU_TYPE[setting]


def choose_mkl_code_path(setting: str = "auto", environ: MutableMapping[str, str] = os.environ) -> str | None:
    """Set MKL_DEBUG_CPU_TYPE for ``setting`` (see the module docstring) before MKL's first call;
    return the value MKL will read (the user's own, ours, or None when unset)."""
    value = mkl_cpu_type(setting, *read_cpu(), environ)
    if value is not None:
        environ[VARIABLE] = value
    return environ.get(VARIABLE)
