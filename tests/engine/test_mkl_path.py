"""runtime.mkl_code_path: MKL's fast code path on non-Intel CPUs, chosen before MKL's first call,
never forced onto a CPU without its instructions, and a user's own MKL_DEBUG_CPU_TYPE kept."""
from __future__ import annotations

import ctypes
import json
import subprocess
import sys
from pathlib import Path

import pytest

from semsegpaddle.core.common.mkl_path import REQUIRED_FLAGS, VARIABLE, choose_mkl_code_path, mkl_cpu_type, read_cpu
from semsegpaddle.core.common.errors import ConfigError

AVX512 = REQUIRED_FLAGS["avx512"] | REQUIRED_FLAGS["avx2"] | {"sse4_2"}
AVX2 = REQUIRED_FLAGS["avx2"] | {"sse4_2"}
CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse4_2 avx2 fma avx512f avx512cd avx512bw avx512dq avx512vl

processor\t: 1
vendor_id\t: AuthenticAMD
flags\t\t: fpu sse4_2 avx2 fma avx512f avx512cd avx512bw avx512dq avx512vl
"""


def test_reads_vendor_and_flags_from_cpuinfo():
    vendor, flags = read_cpu(CPUINFO)
    assert vendor == "AuthenticAMD" and REQUIRED_FLAGS["avx512"] <= flags and "fpu" in flags


@pytest.mark.parametrize("vendor, flags, want", [
    ("AuthenticAMD", AVX512, "7"),   # widest path the CPU has
    ("AuthenticAMD", AVX2, "5"),     # e.g. Zen 2/3: no AVX-512
    ("HygonGenuine", AVX2, "5"),
    ("AuthenticAMD", frozenset({"sse4_2"}), None),
    ("GenuineIntel", AVX512, None),  # MKL picks Intel's paths itself
    ("", frozenset(), None),         # no /proc/cpuinfo (macOS, Windows) or another architecture
])
def test_auto_picks_the_widest_path_on_non_intel_cpus(vendor, flags, want):
    assert mkl_cpu_type("auto", vendor, flags, {}) == want


def test_a_users_own_value_is_kept_by_auto_and_default_sets_nothing():
    environ = {VARIABLE: "5"}
    assert mkl_cpu_type("auto", "AuthenticAMD", AVX512, environ) is None
    assert mkl_cpu_type("default", "AuthenticAMD", AVX512, {}) is None


def test_a_forced_path_needs_its_instructions():
    assert mkl_cpu_type("avx512", "GenuineIntel", AVX512, {}) == "7"
    assert mkl_cpu_type("avx2", "AuthenticAMD", AVX512, {VARIABLE: "7"}) == "5"  # explicit beats the environment
    with pytest.raises(ConfigError, match=r"^runtime\.mkl_code_path: avx512 needs CPU instructions this CPU lacks "
                                          r"\(avx512bw, avx512cd, avx512dq, avx512f, avx512vl\); use auto$"):
        mkl_cpu_type("avx512", "AuthenticAMD", AVX2, {})


def test_choose_sets_the_variable_only_when_asked():
    environ: dict[str, str] = {}
    value = choose_mkl_code_path("auto", environ)
    assert value == mkl_cpu_type("auto", *read_cpu(), {}) and environ.get(VARIABLE) == value
    untouched: dict[str, str] = {}
    assert choose_mkl_code_path("default", untouched) is None and untouched == {}


def test_a_bad_value_on_the_command_line_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "semsegpaddle.cli", "config", "runtime.mkl_code_path=sse"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "runtime.mkl_code_path" in result.stderr and "avx512" in result.stderr
    assert "Traceback" not in result.stderr


MKL_PROBE = """
import ctypes, json, os, sys
from pathlib import Path
import paddle
import semsegpaddle as ss
from semsegpaddle.core.engine.trainer import setup_runtime
config = ss.load_config(None, sys.argv[1:])
setup_runtime(config)
(paddle.rand([64, 64]) @ paddle.rand([64, 64])).numpy()  # MKL's first call fixes its path
mkl = ctypes.CDLL(str(Path(paddle.__file__).parent / "libs" / "libmklml_intel.so"))
print(json.dumps({"variable": os.environ.get("MKL_DEBUG_CPU_TYPE"), "dispatch": mkl.mkl_serv_cpu_detect()}))
"""


def _paddle_mkl() -> Path | None:
    import paddle

    lib = Path(paddle.__file__).parent / "libs" / "libmklml_intel.so"
    if not lib.exists() or not hasattr(ctypes.CDLL(str(lib)), "mkl_serv_cpu_detect"):
        return None
    return lib


def test_the_engine_sets_the_path_before_mkl_runs_and_mkl_takes_it():
    """In a fresh process: the engine's set-up, then a matrix product; MKL's dispatcher reports the
    path chosen (on a CPU where auto chooses one; elsewhere that it left MKL alone)."""
    if _paddle_mkl() is None:
        pytest.skip("this Paddle build has no MKL 2019 (libmklml_intel.so with mkl_serv_cpu_detect)")
    env = {k: v for k, v in __import__("os").environ.items() if k != VARIABLE}
    runs = {}
    for setting in ("auto", "default"):
        result = subprocess.run([sys.executable, "-c", MKL_PROBE, f"runtime.mkl_code_path={setting}"],
                                capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        runs[setting] = json.loads(result.stdout.strip().splitlines()[-1])
    expected = mkl_cpu_type("auto", *read_cpu(), {})
    assert runs["auto"]["variable"] == expected and runs["default"]["variable"] is None
    if expected is not None:
        assert runs["auto"]["dispatch"] == int(expected)
        assert runs["default"]["dispatch"] != int(expected)  # MKL's own choice on this CPU: the slow path
