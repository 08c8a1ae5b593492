"""Disk faults with real limits: a file-size limit (RLIMIT_FSIZE) or a full small file system while
training writes a checkpoint or a log line, a prediction or the decoded cache, and output folders
that cannot be written. Each ends with one line naming the file and the bytes it needed, exit 1,
the previous checkpoint byte-identical, and a resume that equals an uninterrupted run."""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from safetensors.numpy import load_file

from semsegpaddle.core.engine.checkpoint import _file_size, read_metadata

from tests.helpers.cli import SEMSEG, invoke, plugin_env, semseg

ITERS = 400
ARGS = ["model.backbone.name=tiny_cnn", "model.backbone.width=8", "model.decoder.name=simple_fcn",
        "model.decoder.channels=8", "dataset.name=rings", "dataset.size=32", "dataset.count=16",
        "train.crop_size=[32,32]", "train.batch_size=2", f"train.iters={ITERS}", "train.save_interval=100",
        "train.log_interval=1", "eval.batch_size=8", "runtime.keep_last=2", "runtime.progress=false",
        "runtime.threads=1"]
LAST = "model_last.safetensors"


@pytest.fixture(scope="module")
def reference(plugin_site, tmp_path_factory):
    """An uninterrupted run of ARGS."""
    out = tmp_path_factory.mktemp("disk") / "reference"
    result = semseg(plugin_site, "train", *ARGS, f"runtime.output_dir={out}", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr[-3000:]
    return lines[-1]


def _assert_resumes_like(reference: Path, out: Path, site: Path) -> None:
    """``--resume`` (no limit) finishes the run; its weights and logs equal the uninterrupted run's."""
    finish = semseg(site, "train", *ARGS, f"runtime.output_dir={out}", "--resume", timeout=600)
    assert finish.returncode == 0, finish.stderr[-3000:]
    names = sorted(p.name for p in reference.glob("model_*.safetensors"))
    assert names == sorted(p.name for p in out.glob("model_*.safetensors"))
    for name in names:
        expected, got = load_file(str(reference / name)), load_file(str(out / name))
        assert expected.keys() == got.keys()
        assert all(np.array_equal(expected[k], got[k]) for k in expected), name
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, ITERS + 1))


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] in ("T", "t")


def _pause_between_writes(process: subprocess.Popen, out: Path) -> None:
    """SIGSTOP the trainer at a moment it is not writing a checkpoint (no temporary file exists)."""
    for _ in range(500):
        os.kill(process.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while not _stopped(process.pid) and time.monotonic() < deadline:
            time.sleep(0.001)
        if not list(out.glob(".*.tmp")):
            return
        os.kill(process.pid, signal.SIGCONT)
        time.sleep(0.002)
    raise AssertionError("the trainer never paused outside a checkpoint write")


@pytest.mark.slow
@pytest.mark.parametrize("limit, failing", [(100_000, "checkpoint"), (1_000, "log")])
def test_file_size_limit_mid_run_keeps_the_previous_checkpoint_and_resumes_exactly(
        plugin_site, reference, tmp_path, limit, failing):
    """The limit is lowered (prlimit) once the first checkpoint exists: the checkpoint fitted, the
    next one (215 kB > 100 kB) or the next log line (the log is past 1 kB) does not."""
    out = tmp_path / "run"
    process = subprocess.Popen([*SEMSEG, "train", *ARGS, f"runtime.output_dir={out}"], env=plugin_env(plugin_site),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (out / LAST).exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        assert process.poll() is None, process.stderr.read()[-3000:]
        _pause_between_writes(process, out)
        resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (limit, limit))
        before, saved = _sha256(out / LAST), read_metadata(out / LAST)["step"]
        os.kill(process.pid, signal.SIGCONT)
        _, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 1, stderr[-3000:]
    line = _error_line(stderr)
    if failing == "checkpoint":
        target = out / f"model_{saved + 100}.safetensors"
        match = re.fullmatch(rf"Error: file too large: cannot write {re.escape(str(target))}: it needs (\d+) bytes, "
                             rf"over the file size limit of {limit} bytes \(ulimit -f\); \d+ bytes free on its file "
                             rf"system; raise the limit or write elsewhere", line)
        assert match, line
        assert abs(int(match.group(1)) - (reference / LAST).stat().st_size) < 1000  # its config names another folder
    else:
        match = re.fullmatch(rf"Error: file too large: cannot write {re.escape(str(out / 'train_log.jsonl'))}: "
                             rf"it needs (\d+) bytes, over the file size limit of {limit} bytes .*", line)
        assert match and 100 < int(match.group(1)) < 400, line
        records = [json.loads(r) for r in (out / "train_log.jsonl").read_text().splitlines()]  # no torn line
        assert [r["step"] for r in records] == list(range(1, len(records) + 1))
    assert _sha256(out / LAST) == before and read_metadata(out / LAST)["step"] == saved
    assert not list(out.glob(".*.tmp")), "the temporary file of the failed write must be removed"
    if failing == "checkpoint":  # (a resume after a failed log line is the same resume)
        _assert_resumes_like(reference, out, plugin_site)


def test_checkpoint_size_in_the_message_is_the_files_size(reference):
    path = reference / LAST
    with safe_open(str(path), framework="numpy") as handle:
        metadata = handle.metadata()
    assert _file_size(load_file(str(path)), metadata) == path.stat().st_size


def _can_mount_tmpfs(folder: Path) -> str | None:
    """None if this process can mount a small tmpfs in a private mount namespace, else why not."""
    if shutil.which("unshare") is None:
        return "no unshare command"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {folder}"],
                           capture_output=True, text=True)
    return None if probe.returncode == 0 else f"cannot mount a tmpfs here (needs root): {probe.stderr.strip()}"


@pytest.mark.slow
def test_a_full_small_file_system_fails_the_third_checkpoint_with_one_line(plugin_site, reference, tmp_path):
    """A 560 kB tmpfs holds the checkpoints of steps 100 and 200 (215 kB each), not the one of 300."""
    mount, kept = tmp_path / "small", tmp_path / "kept"
    mount.mkdir()
    reason = _can_mount_tmpfs(mount)
    if reason:
        pytest.skip(reason)
    command = " ".join(map(str, [*SEMSEG, "train", *ARGS, f"runtime.output_dir={mount / 'run'}"]))
    script = (f"mount -t tmpfs -o size=560k tmpfs {mount} && {{ {command}; rc=$?; cp -a {mount}/run {kept}; "
              f"exit $rc; }}")
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], env=plugin_env(plugin_site), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]
    target = mount / "run" / "model_300.safetensors"
    match = re.fullmatch(rf"Error: no space left on device: cannot write {re.escape(str(target))}: it needs (\d+) "
                         rf"bytes, (\d+) bytes free on its file system; free some space or write elsewhere",
                         _error_line(result.stderr))
    assert match, result.stderr[-3000:]
    assert int(match.group(2)) < int(match.group(1))
    assert read_metadata(kept / LAST)["step"] == 200
    assert (kept / LAST).read_bytes() == (kept / "model_200.safetensors").read_bytes()
    assert not list(kept.glob(".*.tmp"))
    _assert_resumes_like(reference, kept, plugin_site)


def _without_dac_override() -> None:
    """In the child, before exec: drop CAP_DAC_OVERRIDE so that root obeys permission bits."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(24, 1, 0, 0, 0) != 0:  # PR_CAPBSET_DROP, CAP_DAC_OVERRIDE
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_a_read_only_output_folder_is_refused_before_the_first_step(plugin_site, tmp_path):
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    # root ignores permission bits: the trainer then runs without the capability that lets it
    preexec = _without_dac_override if os.geteuid() == 0 else None
    try:
        result = semseg(plugin_site, "train", *ARGS, f"runtime.output_dir={folder / 'run'}", timeout=300,
                        preexec_fn=preexec)
    except subprocess.SubprocessError as exc:
        pytest.skip(f"cannot run the trainer without CAP_DAC_OVERRIDE as root: {exc}")
    finally:
        folder.chmod(0o755)
    assert result.returncode == 1, result.stderr[-3000:]
    assert _error_line(result.stderr) == (
        f"Error: runtime.output_dir {folder / 'run'} is not writable (it would be created in {folder}): "
        f"Permission denied; choose another folder or make it writable")
    assert list(folder.iterdir()) == []


def test_an_output_folder_below_a_file_is_refused_before_anything_runs(tmp_path, tiny_plugins):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    result = invoke("train", "model.backbone.name=tiny", f"runtime.output_dir={blocker / 'run'}")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: runtime.output_dir {blocker / 'run'} cannot be created: {blocker} is a file, not a folder; "
        f"choose another folder")


def test_predictions_on_a_file_size_limit_fail_with_one_line(plugin_site, reference, tmp_path):
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 48, 3)).astype(np.uint8)).save(image)
    out = tmp_path / "pred"
    result = semseg(plugin_site, "predict", image, "--weights", reference / "model_best.safetensors", "--output", out,
                    timeout=300, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100)))
    assert result.returncode == 1, result.stderr[-3000:]
    match = re.fullmatch(rf"Error: file too large: cannot write {re.escape(str(out / 'in.png'))}: it needs (\d+) "
                         rf"bytes, over the file size limit of 100 bytes .*", _error_line(result.stderr))
    assert match and int(match.group(1)) > 100, result.stderr[-3000:]
    assert list(out.iterdir()) == [], "no partial or temporary file is left"


LIGHT_WRITES = textwrap.dedent('''
    import json, resource, sys
    from pathlib import Path
    from semsegpaddle.core.common.atomic import write_text_atomic
    from semsegpaddle.core.common.errors import SemsegError
    from semsegpaddle.core.engine.run_folder import RunFolder

    folder = Path(sys.argv[1])
    write_text_atomic(folder / "metrics.json", "{}")
    RunFolder(folder).append_log("train_log.jsonl", {"step": 1, "note": "x" * 100})
    resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))
    for write in (lambda: write_text_atomic(folder / "metrics.json", json.dumps({"m": "y" * 300})),
                  lambda: RunFolder(folder).append_log("train_log.jsonl", {"step": 2, "note": "x" * 100})):
        try:
            write()
        except SemsegError as exc:
            print(exc)
''')


def test_metrics_and_log_writes_past_the_limit_keep_the_files_whole(tmp_path):
    result = subprocess.run([sys.executable, "-c", LIGHT_WRITES, str(tmp_path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    metrics, log = result.stdout.splitlines()
    assert metrics.startswith(f"file too large: cannot write {tmp_path / 'metrics.json'}: it needs 309 bytes, "
                              f"over the file size limit of 200 bytes (ulimit -f)")
    assert log.startswith(f"file too large: cannot write {tmp_path / 'train_log.jsonl'}: it needs 124 bytes")
    assert (tmp_path / "metrics.json").read_text() == "{}"
    assert [json.loads(r)["step"] for r in (tmp_path / "train_log.jsonl").read_text().splitlines()] == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "train_log.jsonl"]


DECODED_CACHE = textwrap.dedent('''
    import resource, sys, warnings
    from pathlib import Path
    import numpy as np
    from tests.data.test_decoded_cache import batches, config, write_pairs

    root, workers = Path(sys.argv[1]), int(sys.argv[2])
    warnings.simplefilter("always")  # every warning shows, in this process and the forked workers
    pairs = write_pairs(root / "data")
    plain = batches(pairs, config(None, workers))
    # label entries (2.4 kB, written first) fit, image entries (6.8 kB) do not
    resource.setrlimit(resource.RLIMIT_FSIZE, (5_000, 5_000))
    cached = batches(pairs, config(root / "cache", workers))
    same = len(cached) == len(plain) and all(np.array_equal(a, c) and np.array_equal(b, d)
                                             for (a, b), (c, d) in zip(plain, cached))
    print("same" if same else "different")
''')


def test_decoded_cache_on_a_full_disk_decodes_with_one_warning_across_workers(tmp_path):
    result = subprocess.run([sys.executable, "-c", DECODED_CACHE, str(tmp_path), "2"], capture_output=True,
                            text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["same"]
    warned = [line for line in result.stderr.splitlines() if "train.cache_dir: file too large" in line]
    assert len(warned) == 1, result.stderr[-3000:]
    assert "decoding the samples not cached yet from their files" in warned[0]
    left = [p.name for p in (tmp_path / "cache").iterdir()]
    assert left and all(name.endswith(".label.npy") for name in left), "no image entry, whole or partial"


def test_a_cache_entry_whose_size_disagrees_with_its_header_is_decoded_again(tmp_path):
    from semsegpaddle.core.data.datasets import checked_sample
    from semsegpaddle.core.data.decoded_cache import DecodedCache
    from semsegpaddle.core.data.file_dataset import FileDataset
    from tests.data.test_decoded_cache import write_pairs

    dataset = FileDataset(write_pairs(tmp_path / "data", count=1), num_classes=3, ignore_index=255)
    cache = DecodedCache(dataset, tmp_path / "cache", {"name": "folder"}, np.uint8)
    decoded = []

    def read(index):
        decoded.append(index)
        return checked_sample(dataset, index)

    want_image, want_label = cache.load(0, read)
    cache.load(0, read)
    assert decoded == [0]  # the second load read the entry
    entry = next((tmp_path / "cache").glob("*.image.npy"))
    whole = entry.read_bytes()
    for damaged in (whole[:-100], whole + b"\0" * 64):  # cut short, or longer than its header says
        entry.write_bytes(damaged)
        image, label = cache.load(0, read)
        assert np.array_equal(image, want_image) and np.array_equal(label, want_label)
    assert decoded == [0, 0, 0]
    assert entry.read_bytes() == whole  # rewritten whole
