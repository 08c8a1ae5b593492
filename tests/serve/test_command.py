"""``semseg serve`` refusing bad settings in one line before loading anything, and the batcher's
grouping rules (in this process, no server)."""
from __future__ import annotations

import asyncio
import importlib.util

import numpy as np
import pytest

from tests.helpers.cli import invoke


def test_bad_settings_are_one_line_errors_before_any_model_is_loaded(tmp_path):
    missing = invoke("serve", "synthetic_deeplabv3", "--weights", tmp_path / "w.safetensors", "--token-file",
                     tmp_path / "nope")
    assert missing.exit_code == 1 and "--token-file" in missing.output and "cannot read the token" in missing.output
    short = tmp_path / "short"
    short.write_text("abc\n")
    weak = invoke("serve", "synthetic_deeplabv3", "--weights", tmp_path / "w.safetensors", "--token-file", short)
    assert weak.exit_code == 1 and "at least 16 printable characters" in weak.output
    assert len(weak.output.strip().splitlines()) == 1
    backend = invoke("serve", "--backend", "paddle-inference")
    assert backend.exit_code == 2 and "needs --model-dir" in backend.output
    assert invoke("serve", "--max-batch", "0").exit_code == 2


def test_a_missing_serve_extra_names_the_install_command(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    from semsegpaddle import api

    with pytest.raises(api.SemsegError, match=r"needs uvicorn: pip install 'semsegpaddle\[serve\]'"):
        api.serve({}, tmp_path / "w.safetensors")


def test_options_name_the_option_and_the_expected_values():
    from semsegpaddle.core.serve.options import ServeOptions

    with pytest.raises(ValueError, match=r"--max-queue=0 is invalid: expected an integer >= 1"):
        ServeOptions(max_queue=0)
    with pytest.raises(ValueError, match=r"--port=70000 is invalid"):
        ServeOptions(port=70000)
    assert ServeOptions().loopback and not ServeOptions(host="0.0.0.0").loopback
    assert ServeOptions.from_dict(ServeOptions(max_batch=3).to_dict()).max_batch == 3


def test_the_batcher_groups_images_of_one_size_and_mode_and_bounds_its_queue():
    from semsegpaddle.core.serve.batching import MicroBatcher, QueueFull

    batches: list[tuple[int, tuple, str]] = []

    def run(images, mode):
        batches.append((len(images), images[0].shape, mode))
        return np.stack([np.full(image.shape[:2], int(image[0, 0, 0])) for image in images])

    async def scenario():
        batcher = MicroBatcher(run, max_batch=3, max_wait=0.2, max_queue=5)
        batcher.start()
        images = [np.full((4, 6, 3), i, np.uint8) for i in range(4)] + [np.full((5, 5, 3), 9, np.uint8)]
        modes = ["a", "a", "b", "a", "a"]
        tickets = [batcher.admit() for _ in images]
        with pytest.raises(QueueFull) as full:
            batcher.admit()
        assert full.value.retry_after >= 1
        results = await asyncio.gather(*(batcher.predict(t, im, m) for t, im, m in zip(tickets, images, modes)))
        assert batcher.depth == 0
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert [int(r.mask[0, 0]) for r in results] == [0, 1, 2, 3, 9]  # each image gets its own mask back
    assert sorted(batches, key=str) == sorted([(3, (4, 6, 3), "a"), (1, (4, 6, 3), "b"), (1, (5, 5, 3), "a")], key=str)
    assert [r.batch_size for r in results] == [3, 3, 1, 3, 1]
