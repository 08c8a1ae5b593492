"""Reading weights files without running pickle code: round-trips against the real writers
(paddle.save, torch.save, safetensors), refusal of files that would run code, and clear errors."""
from __future__ import annotations

import os
import pickle
import pickletools
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import paddle
import pytest
from safetensors.numpy import save_file

from semsegpaddle.core.common.errors import SemsegError
from semsegpaddle.core.model.weight_files import read_weights

torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- writers

def paddle_state() -> dict:
    """A small Paddle model's state dict with random weights and random BN statistics, plus an
    int64 tensor."""
    paddle.seed(0)
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4), paddle.nn.Linear(4, 2))
    rng = np.random.default_rng(0)
    bn = model[1]
    bn._mean.set_value(rng.uniform(-1, 1, 4).astype("float32"))
    bn._variance.set_value(rng.uniform(0.5, 2, 4).astype("float32"))
    state = model.state_dict()
    state["positions"] = paddle.to_tensor(np.arange(-3, 5, dtype=np.int64))
    return state


def torch_state() -> dict:
    """A small torch module's state dict with random BN statistics and tensors of many dtypes and
    layouts: transposed (non-contiguous), a view at an offset into a shared storage, half, bfloat16."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    state = model.state_dict()
    base = torch.randn(5, 6)
    state["transposed"] = base.t()  # stride (1, 6)
    state["window"] = base[1:4, 2:5]  # offset 8 into the same storage, stride (6, 1)
    state["every_other"] = torch.randn(10)[1::2]
    state["half"] = torch.randn(3, 2).half()
    state["bfloat"] = torch.randn(4).bfloat16()
    state["double"] = torch.randn(2, 2, dtype=torch.float64)
    state["int32"] = torch.tensor([-7, 0, 2**31 - 1], dtype=torch.int32)
    state["uint8"] = torch.tensor([0, 7, 255], dtype=torch.uint8)
    state["mask"] = torch.tensor([True, False, True])
    state["scalar"] = torch.tensor(2.5)
    state["empty"] = torch.zeros(0, 3)
    assert not state["transposed"].is_contiguous() and state["window"].storage_offset() == 8
    return state


def torch_reference(value) -> np.ndarray:
    """What read_weights promises for a torch tensor: its values, bfloat16 widened to float32."""
    return (value.float() if value.dtype == torch.bfloat16 else value).numpy()


def assert_bitwise_equal(ours: dict, reference: dict) -> None:
    assert sorted(ours) == sorted(reference)
    for key, expected in reference.items():
        expected = np.asarray(expected)
        assert ours[key].dtype == expected.dtype, (key, ours[key].dtype, expected.dtype)
        assert ours[key].shape == expected.shape, (key, ours[key].shape, expected.shape)
        assert ours[key].tobytes() == np.ascontiguousarray(expected).tobytes(), key


def paddle_loaded(path) -> dict:
    return {k: np.asarray(v) for k, v in paddle.load(str(path), return_numpy=True).items()}


def as_numpy1_pickle(data: bytes) -> bytes:
    """The same pickle as numpy 1.x writes it (``numpy.core`` instead of ``numpy._core``), as in
    files Paddle 2.x saved. Frames are dropped first (they are optional) so lengths stay right."""
    frames = [pos for op, _, pos in pickletools.genops(data) if op.name == "FRAME"]
    for pos in reversed(frames):
        data = data[:pos] + data[pos + 9:]
    old, new = "numpy._core.multiarray", "numpy.core.multiarray"
    data = data.replace(b"\x8c" + bytes([len(old)]) + old.encode(), b"\x8c" + bytes([len(new)]) + new.encode())
    return data.replace(f"c{old}\n".encode(), f"c{new}\n".encode())  # protocol 2's GLOBAL opcode


# ---------------------------------------------------------------- paddle

@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_paddle_state_dict_matches_paddle_load(tmp_path, protocol):
    path = tmp_path / "model.pdparams"
    paddle.save(paddle_state(), str(path), protocol=protocol)
    ours = read_weights(path)
    assert_bitwise_equal(ours, paddle_loaded(path))
    assert ours["positions"].dtype == np.int64 and ours["positions"].tolist() == list(range(-3, 5))
    assert {"1._mean", "1._variance"} <= set(ours)
    assert not np.allclose(ours["1._mean"], 0)  # the random statistics, not the defaults


@pytest.mark.parametrize("protocol", [2, 4])
def test_paddle_2x_zoo_format_with_numpy1_names(tmp_path, protocol):
    """PaddleSeg's released files: Paddle 2.x's state-dict pickle written under numpy 1.x."""
    path = tmp_path / "model.pdparams"
    paddle.save(paddle_state(), str(path), protocol=protocol)
    legacy = as_numpy1_pickle(path.read_bytes())
    assert b"numpy.core.multiarray" in legacy and b"numpy._core" not in legacy
    assert b"StructuredToParameterName@@" in legacy
    path.write_bytes(legacy)
    reference = paddle_loaded(path)  # paddle itself reads the emulated file
    assert_bitwise_equal(read_weights(path), reference)


def test_paddle_nested_checkpoint_is_unwrapped(tmp_path):
    """A nested dict goes through Paddle's tensor reducer: tensors become (name, array) tuples."""
    path = tmp_path / "checkpoint.pdparams"
    state = paddle_state()
    paddle.save({"model": state, "epoch": 3}, str(path))
    raw = pickle.loads(path.read_bytes())  # trusted file we just wrote: shows the stored form
    assert isinstance(raw["model"]["positions"], tuple)
    ours = read_weights(path)
    assert_bitwise_equal(ours, {k: v for k, v in paddle.load(str(path), return_numpy=True)["model"].items()})


def test_paddle_bfloat16_is_kept_as_stored_bits(tmp_path):
    path = tmp_path / "bf16.pdparams"
    paddle.save({"w": paddle.to_tensor(np.array([1.5, -2.0], np.float32)).astype("bfloat16")}, str(path))
    ours = read_weights(path)
    assert_bitwise_equal(ours, paddle_loaded(path))
    assert ours["w"].dtype == np.uint16
    assert (ours["w"].astype(np.uint32) << 16).view(np.float32).tolist() == [1.5, -2.0]


# ---------------------------------------------------------------- torch

def test_torch_zip_checkpoint_matches_torch_load(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(torch_state(), path)
    reference = torch.load(path, map_location="cpu", weights_only=True)
    ours = read_weights(path)
    assert_bitwise_equal(ours, {k: torch_reference(v) for k, v in reference.items()})
    assert ours["bfloat"].dtype == np.float32 and ours["half"].dtype == np.float16
    assert ours["transposed"].shape == (6, 5) and ours["transposed"].flags.c_contiguous
    assert ours["mask"].dtype == np.bool_ and ours["1.num_batches_tracked"].dtype == np.int64


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_torch_wrapped_checkpoint_is_unwrapped(tmp_path, wrapper):
    path = tmp_path / "checkpoint.pt"
    state = torch_state()
    torch.save({wrapper: state, "epoch": 7, "optimizer": {"lr": 0.1}}, path)
    assert_bitwise_equal(read_weights(path), {k: torch_reference(v) for k, v in state.items()})


def test_torch_parameters_and_other_suffixes(tmp_path):
    """Parameters pickle through ``_rebuild_parameter``; ``.bin`` is read like ``.pth``."""
    path = tmp_path / "pytorch_model.bin"
    weight = torch.nn.Parameter(torch.randn(3, 4))
    torch.save({"weight": weight, "bias": torch.nn.Parameter(torch.randn(3)), "step": 5}, path)
    ours = read_weights(path)
    assert sorted(ours) == ["bias", "weight"]
    assert ours["weight"].tobytes() == weight.detach().numpy().tobytes()


def test_safetensors_round_trip(tmp_path):
    path = tmp_path / "model.safetensors"
    rng = np.random.default_rng(1)
    state = {"w": rng.standard_normal((3, 4)).astype(np.float32), "i": np.arange(5, dtype=np.int64),
             "h": rng.standard_normal(3).astype(np.float16)}
    save_file(state, str(path))
    assert_bitwise_equal(read_weights(path), state)


def test_safetensors_bfloat16_becomes_float32(tmp_path):
    from safetensors.torch import save_file as save_torch

    path = tmp_path / "bf16.safetensors"
    values = torch.randn(2, 3).bfloat16()
    save_torch({"w": values, "f": torch.ones(2)}, str(path))
    ours = read_weights(path)
    assert ours["w"].dtype == np.float32 and ours["w"].tobytes() == values.float().numpy().tobytes()
    assert ours["f"].tolist() == [1.0, 1.0]


# ---------------------------------------------------------------- files that would run code

class RunsCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class WritesFile:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


class EvaluatesCode:
    """Looks like Paddle's DenseTensor form (``eval``), but with code instead of ``'data'``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return eval, (f"open({self.path!r}, 'w')", {})


def evil_payloads(sentinel: Path) -> dict:
    return {"system": RunsCommand(f"touch {sentinel}"), "open": WritesFile(str(sentinel)),
            "eval": EvaluatesCode(str(sentinel))}


def write_torch_zip(path: Path, pickle_bytes: bytes) -> None:
    """A file laid out as torch's zip format, with ``pickle_bytes`` as ``archive/data.pkl``."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickle_bytes)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")


@pytest.mark.parametrize("kind", ["system", "open", "eval"])
@pytest.mark.parametrize("suffix", [".pdparams", ".pth"])
def test_file_that_would_run_code_is_refused(tmp_path, kind, suffix):
    sentinel, live_sentinel = tmp_path / "SENTINEL", tmp_path / "LIVE"
    state = {"conv.weight": np.ones(3, np.float32), "hidden": evil_payloads(sentinel)[kind]}
    data = pickle.dumps(state, protocol=2 if suffix == ".pth" else 4)
    # the payload is live: plain pickle runs it (on another sentinel)
    opened = pickle.loads(pickle.dumps(evil_payloads(live_sentinel)[kind]))
    if hasattr(opened, "close"):
        opened.close()
    assert live_sentinel.exists()

    path = tmp_path / f"model{suffix}"
    if suffix == ".pth":
        write_torch_zip(path, data)
    else:
        path.write_bytes(data)
    with pytest.raises(SemsegError) as error:
        read_weights(path)
    message = str(error.value)
    assert message.startswith(f"{path}: refused to load: it asks to run ") and "(only tensors are read)" in message
    assert {"system": "system", "open": "io.open", "eval": "builtins.eval"}[kind] in message
    assert "\n" not in message
    assert not sentinel.exists()


def dict_with(value_opcodes: bytes) -> bytes:
    """A protocol-2 pickle of ``{'w': <value built by value_opcodes>}``."""
    return b"\x80\x02}X\x01\x00\x00\x00w" + value_opcodes + b"s."


@pytest.mark.parametrize("value, refused", [
    # BUILD on an allowed function: would change the reader's shared stand-in
    (b"c_codecs\nencode\n}X\x0c\x00\x00\x00__defaults__)sb", "it asks to change the reader's own StandIn object"),
    # numpy.ndarray called directly (shape, dtype, buffer, offset, strides) instead of via _reconstruct
    (b"cnumpy\nndarray\n(K\x04\x85X\x02\x00\x00\x00f4tR", "it asks to construct numpy.ndarray directly"),
    # a storage persistent id in a Paddle pickle
    (b"(X\x07\x00\x00\x00storageK\x00tQ", "it asks for external data (a persistent id)"),
])
def test_crafted_pickles_cannot_reach_beyond_tensors(tmp_path, value, refused):
    path = tmp_path / "crafted.pdparams"
    path.write_bytes(dict_with(value))
    with pytest.raises(SemsegError) as error:
        read_weights(path)
    assert str(error.value) == f"{path}: refused to load: {refused} (only tensors are read)"


def test_numpy_dtype_objects_are_private_copies(tmp_path):
    """A pickle's BUILD sets the state of the dtype it made: numpy's shared float32 stays intact."""
    float32 = np.dtype("float32")
    path = tmp_path / "model.pdparams"
    weights = np.arange(4, dtype=np.float32)
    path.write_bytes(pickle.dumps({"w": weights}, protocol=2))
    assert read_weights(path)["w"].tobytes() == weights.tobytes()
    assert np.dtype("float32") is float32 and float32.byteorder == "=" and float32.itemsize == 4


def test_whole_torch_module_is_refused(tmp_path):
    """``torch.save(model)`` pickles the module classes: reading it would import and run them."""
    path = tmp_path / "model.pth"
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2)), path)
    with pytest.raises(SemsegError, match=r"refused to load: it asks to run torch\.nn\.modules"):
        read_weights(path)


# ---------------------------------------------------------------- bad files

def test_legacy_torch_file_says_how_to_resave(tmp_path):
    path = tmp_path / "old.pth"
    torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(SemsegError) as error:
        read_weights(path)
    message = str(error.value)
    assert "legacy" in message and "torch.save(torch.load(" in message and "\n" not in message


def test_missing_file(tmp_path):
    with pytest.raises(SemsegError, match=r"weights file not found: .*missing\.pdparams \(expected a Paddle"):
        read_weights(tmp_path / "missing.pdparams")


def test_unknown_suffix(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"x")
    with pytest.raises(SemsegError, match=r"model\.npz: unknown weights format '\.npz' \(expected \.safetensors"):
        read_weights(path)


@pytest.mark.parametrize("suffix", [".pdparams", ".pth", ".safetensors"])
def test_truncated_file(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    if suffix == ".pdparams":
        paddle.save(paddle_state(), str(path))
    elif suffix == ".pth":
        torch.save(torch_state(), path)
    else:
        save_file({"w": np.ones((64, 64), np.float32)}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SemsegError) as error:
        read_weights(path)
    message = str(error.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert any(word in message for word in ("truncated", "corrupt", "not a readable"))


def test_empty_and_foreign_files(tmp_path):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(SemsegError, match=r"empty\.pth: an empty file \(expected a torch checkpoint in the zip"):
        read_weights(empty)
    text = tmp_path / "notes.pdparams"
    text.write_text("hello")
    with pytest.raises(SemsegError, match=r"notes\.pdparams: not a known weights format \(expected a Paddle"):
        read_weights(text)


def test_non_dict_top_level(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.ones(3), path)
    with pytest.raises(SemsegError, match=r"tensor\.pt: expected a dict of tensors at the top level, found ndarray"):
        read_weights(path)
    listed = tmp_path / "list.pdparams"
    listed.write_bytes(pickle.dumps([np.ones(2)], protocol=4))
    with pytest.raises(SemsegError, match=r"expected a dict of tensors at the top level, found list"):
        read_weights(listed)


def test_dict_without_tensors(tmp_path):
    path = tmp_path / "meta.pdparams"
    path.write_bytes(pickle.dumps({"epoch": 3, "nested": {"a": np.ones(2)}}, protocol=4))
    with pytest.raises(SemsegError, match=r"no tensors found at the top level \(keys: epoch, nested\)"):
        read_weights(path)


def test_tensor_view_beyond_its_storage_is_an_error(tmp_path):
    """A crafted file whose tensor claims more elements than its storage holds."""
    path = tmp_path / "model.pth"
    torch.save({"w": torch.ones(4)}, path)
    with zipfile.ZipFile(path) as archive:
        records = {name: archive.read(name) for name in archive.namelist()}
    prefix = next(name for name in records if name.endswith("/data.pkl"))[: -len("data.pkl")]
    records[prefix + "data.pkl"] = records[prefix + "data.pkl"].replace(b"K\x04\x85", b"K\x09\x85")  # size (9,)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in records.items():
            archive.writestr(name, data)
    with pytest.raises(SemsegError, match=r"reaches past its storage"):
        read_weights(path)


# ---------------------------------------------------------------- no heavy imports

def test_reading_imports_neither_torch_nor_paddle(tmp_path):
    torch.save(torch_state(), tmp_path / "a.pth")
    paddle.save(paddle_state(), str(tmp_path / "b.pdparams"))
    code = (
        "import sys\n"
        "from semsegpaddle.core.model.weight_files import read_weights\n"
        f"a = read_weights({str(tmp_path / 'a.pth')!r})\n"
        f"b = read_weights({str(tmp_path / 'b.pdparams')!r})\n"
        "assert len(a) > 10 and len(b) > 5\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'paddle')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
