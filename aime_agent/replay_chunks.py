"""Incremental replay checkpoints: each save appends only the rows written since the last one.

Pickling the whole replay at every checkpoint (SB3's ``save_replay_buffer``) rewrites the ring each time:
a full `small` replay is 100k frames of 64×64×3, ~1.2 GB per checkpoint. Here a folder holds

    index.json                       n_envs, capacity, rows written per env, open episodes, the chunk list
    chunk-<env>-<start>-<stop>.npz   rows [start, stop) of one env's write history (every schema key)

``save_increment`` writes the new rows as one chunk per env, then the index (both through
``envs.fileio.atomic_path``): the index is the commit point, so a crash mid-save leaves the previous
checkpoint readable, and files the index does not name are removed at the next save. Chunks whose rows
the ring has overwritten since are dropped. ``load_increments`` rebuilds the ring from the chunks in order.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from envs.dataset import KEYS
from envs.fileio import atomic_path, atomic_write_text

INDEX = "index.json"


def _chunk_name(env: int, start: int, stop: int) -> str:
    return f"chunk-{env}-{start:012d}-{stop:012d}.npz"


def _span(name: str) -> tuple[int, int, int]:
    _, env, start, stop = Path(name).stem.split("-")
    return int(env), int(start), int(stop)


def read_index(folder: Path) -> dict | None:
    path = Path(folder) / INDEX
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, OSError) as err:
        raise ValueError(f"{path} is not a readable replay index ({err})") from err


def save_increment(buffer, folder: str | os.PathLike) -> list[str]:
    """Append the rows ``buffer`` (a ``SequenceReplayBuffer``) wrote since its last save to ``folder``;
    returns the names of the chunks written. A folder that holds another buffer's checkpoint is rewritten."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index = read_index(folder)
    same = (index is not None and index["n_envs"] == buffer.n_envs and index["capacity"] == buffer.capacity
            and getattr(buffer, "_saved_to", None) == str(folder.resolve()))  # fmt: skip
    same = same and bool((np.asarray(index["written"]) <= buffer.written).all())  # not a newer run's checkpoint
    saved = np.asarray(index["written"]) if same else np.zeros(buffer.n_envs, np.int64)
    chunks = list(index["chunks"]) if same else []
    new = []
    for env in range(buffer.n_envs):
        stop = int(buffer.written[env])
        start = max(int(saved[env]), stop - buffer.capacity)  # older rows are gone from the ring
        if stop <= start or buffer.storage is None:
            continue
        rows = np.arange(start, stop) % buffer.capacity
        name = _chunk_name(env, start, stop)
        with atomic_path(folder / name) as tmp, open(tmp, "wb") as f:
            np.savez(f, **{key: buffer.storage[key][env, rows] for key in KEYS})
        chunks.append(name)
        new.append(name)
    # keep only chunks with rows the ring still holds
    chunks = [c for c in chunks if _span(c)[2] > int(buffer.written[_span(c)[0]]) - buffer.capacity]
    atomic_write_text(folder / INDEX, json.dumps({
        "n_envs": buffer.n_envs, "capacity": buffer.capacity, "written": buffer.written.tolist(),
        "open": buffer.open.tolist(), "chunks": chunks}))  # fmt: skip
    for path in folder.glob("chunk-*.npz"):  # dropped chunks and leftovers of a crashed save
        if path.name not in chunks:
            path.unlink(missing_ok=True)
    buffer._saved_to = str(folder.resolve())
    return new


def _write_ring(ring: np.ndarray, start: int, rows: np.ndarray) -> None:
    """ring[(start + i) % len(ring)] = rows[i], as at most two slice copies (a chunk is never longer than the ring)."""
    first = start % len(ring)
    head = min(len(rows), len(ring) - first)
    ring[first : first + head] = rows[:head]
    ring[: len(rows) - head] = rows[head:]


def load_increments(buffer, folder: str | os.PathLike) -> int:
    """Fill ``buffer`` (empty, same n_envs and capacity) from ``folder``; returns the rows it now holds."""
    folder = Path(folder)
    index = read_index(folder)
    if index is None:
        raise FileNotFoundError(f"{folder} holds no replay checkpoint ({INDEX} is missing)")
    if (index["n_envs"], index["capacity"]) != (buffer.n_envs, buffer.capacity):
        raise ValueError(f"{folder} holds a replay of {index['n_envs']} envs × {index['capacity']} rows; this buffer "
                         f"has {buffer.n_envs} × {buffer.capacity}")  # fmt: skip
    if buffer.storage is None:
        buffer._allocate()
    for name in index["chunks"]:
        env, start, stop = _span(name)
        try:
            with np.load(folder / name) as data:
                for key in KEYS:
                    _write_ring(buffer.storage[key][env], start, data[key])
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"replay chunk {folder / name} is missing or corrupt ({err})") from err
    written = np.asarray(index["written"], dtype=np.int64)
    buffer.written = written.copy()
    buffer.counts = np.minimum(written, buffer.capacity)
    buffer.positions = written % buffer.capacity
    buffer.open = np.asarray(index["open"], dtype=bool)
    buffer.pos, buffer.full = int(buffer.positions[0]), bool(buffer.counts.min() == buffer.capacity)
    buffer._saved_to = str(folder.resolve())
    return buffer.size()
