"""aime_agent.replay_chunks: incremental replay checkpoints round-trip the ring, append only new rows, drop
overwritten chunks, survive a crash mid-save, and refuse a buffer of another shape."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from aime_agent.replay import SequenceReplayBuffer
from aime_agent.replay_chunks import INDEX, load_increments, save_increment

SPACE = gym.spaces.Box(0, 255, (3, 4, 4), np.uint8)
ACTIONS = gym.spaces.Box(-1, 1, (1,), np.float32)


def buffer(capacity=20, n_envs=2):
    return SequenceReplayBuffer(capacity * n_envs, SPACE, ACTIONS, device="cpu", n_envs=n_envs)


def write(buf, rows, start=0, episode=6):
    """``rows`` rows per env; frame value and reward encode the row's global index; episodes of ``episode``."""
    for t in range(start, start + rows):
        for env in range(buf.n_envs):
            buf.add_row(env, np.full((3, 4, 4), (t + 100 * env) % 256, np.uint8), np.full(1, t / 100), float(t),
                        is_first=t % episode == 0, is_last=t % episode == episode - 1)  # fmt: skip


def assert_same(a, b):
    for key in a.storage:
        np.testing.assert_array_equal(a.storage[key], b.storage[key], err_msg=key)
    for name in ("positions", "counts", "open", "written"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.sample_sequences(16, 3, np.random.default_rng(0))["obs"],
                                  b.sample_sequences(16, 3, np.random.default_rng(0))["obs"])  # fmt: skip


def test_increments_append_only_new_rows_and_round_trip_through_a_wrap(tmp_path):
    buf = buffer()
    write(buf, 8)
    assert save_increment(buf, tmp_path) == ["chunk-0-000000000000-000000000008.npz",
                                             "chunk-1-000000000000-000000000008.npz"]  # fmt: skip
    write(buf, 9, start=8)  # 17 rows: mid-episode, no wrap yet
    assert save_increment(buf, tmp_path) == ["chunk-0-000000000008-000000000017.npz",
                                             "chunk-1-000000000008-000000000017.npz"]  # fmt: skip
    assert save_increment(buf, tmp_path) == []  # nothing new
    restored = buffer()
    assert load_increments(restored, tmp_path) == 34
    assert_same(buf, restored)
    write(buf, 30, start=17)  # 47 rows into 20: wraps twice; the first chunks are overwritten entirely
    save_increment(buf, tmp_path)
    index = json.loads((tmp_path / INDEX).read_text())
    # rows 27-46 survive; rows 17-26 were overwritten before any save wrote them
    assert [c.split("-")[1:3] for c in index["chunks"]] == [["0", "000000000027"], ["1", "000000000027"]]
    assert sorted(p.name for p in tmp_path.glob("chunk-*")) == sorted(index["chunks"])  # dropped files are gone
    restored = buffer()
    load_increments(restored, tmp_path)
    assert_same(buf, restored)
    write(restored, 5, start=47)  # a restored buffer keeps appending and saving where it stopped
    assert save_increment(restored, tmp_path) == ["chunk-0-000000000047-000000000052.npz",
                                                  "chunk-1-000000000047-000000000052.npz"]  # fmt: skip


def test_a_crash_mid_save_leaves_the_last_checkpoint_readable(tmp_path, monkeypatch):
    buf = buffer()
    write(buf, 10)
    save_increment(buf, tmp_path)
    write(buf, 4, start=10)
    import aime_agent.replay_chunks as chunks

    def crash(path, text):
        raise OSError("disk full")

    monkeypatch.setattr(chunks, "atomic_write_text", crash)  # the new chunks are written, the index is not
    with pytest.raises(OSError, match="disk full"):
        save_increment(buf, tmp_path)
    monkeypatch.undo()
    restored = buffer()
    assert load_increments(restored, tmp_path) == 20  # the previous checkpoint: 10 rows per env
    assert restored.written.tolist() == [10, 10]
    save_increment(buf, tmp_path)  # the next save is complete and removes nothing it still needs
    restored = buffer()
    load_increments(restored, tmp_path)
    assert_same(buf, restored)


def test_a_buffer_of_another_shape_is_refused_by_name(tmp_path):
    buf = buffer()
    write(buf, 4)
    save_increment(buf, tmp_path)
    with pytest.raises(ValueError, match=r"2 envs × 20 rows; this buffer has 1 × 20"):
        load_increments(buffer(n_envs=1), tmp_path)
    with pytest.raises(FileNotFoundError, match="index.json"):
        load_increments(buffer(), tmp_path / "missing")
    (tmp_path / json.loads((tmp_path / INDEX).read_text())["chunks"][0]).write_bytes(b"truncated")
    with pytest.raises(ValueError, match="missing or corrupt"):
        load_increments(buffer(), tmp_path)
