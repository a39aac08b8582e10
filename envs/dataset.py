"""HDF5 episode datasets in the batch schema of DESIGN.md §2.1.

Row t of an episode holds ``obs`` o_t (H, W, 3) uint8; ``action`` (A,) float32, the action that PRODUCED
o_t (zeros where ``is_first``); ``reward`` float32, received on arriving at o_t (0 where ``is_first``);
``discount`` float32 (1 unless a true terminal); ``is_first``, ``is_last``, ``is_terminal`` bool.

File layout (schema version 1)::

    /                 attrs: schema_version, env_id, action_repeat, image_size, seed, package_version, ...
    /episodes/000000  group, attrs: length; datasets obs (T,H,W,3) gzip, action (T,A), reward (T,), ...

Writes are atomic (``envs.fileio.atomic_path``): :class:`EpisodeWriter` writes a temp file, syncs it and
renames it over ``<out>`` only when closed without error, so a crash never leaves a half-written dataset.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import h5py
import numpy as np

from envs.fileio import atomic_path

SCHEMA_VERSION = 1
KEYS = ("obs", "action", "reward", "discount", "is_first", "is_last", "is_terminal")
DTYPES = {
    "obs": np.uint8,
    "action": np.float32,
    "reward": np.float32,
    "discount": np.float32,
    "is_first": bool,
    "is_last": bool,
    "is_terminal": bool,
}


def _package_version() -> str:
    """The installed distribution's version (read from its metadata: ``envs`` imports nothing of ``aime_agent``)."""
    try:
        return version("aime-agent")
    except PackageNotFoundError:
        return "unknown"


class DatasetError(ValueError):
    """A dataset file is missing, truncated, corrupt, of an unknown schema version, or malformed."""


def validate_episode(episode: Mapping[str, np.ndarray]) -> int:
    """Check one episode's keys, dtypes, shapes and flags; return its length T."""
    missing = [k for k in KEYS if k not in episode]
    if missing:
        raise DatasetError(f"episode is missing keys {missing}; expected {list(KEYS)}")
    length = len(episode["obs"])
    for key in KEYS:
        arr = np.asarray(episode[key])
        if arr.dtype != np.dtype(DTYPES[key]):
            raise DatasetError(f"episode[{key!r}] has dtype {arr.dtype}; expected {np.dtype(DTYPES[key])}")
        if len(arr) != length:
            raise DatasetError(f"episode[{key!r}] has {len(arr)} rows; 'obs' has {length}")
    if episode["obs"].ndim != 4 or episode["obs"].shape[-1] != 3:
        raise DatasetError(f"episode['obs'] must be (T, H, W, 3); got {episode['obs'].shape}")
    if length < 1 or not episode["is_first"][0] or episode["is_first"][1:].any():
        raise DatasetError("episode['is_first'] must be True on row 0 only")
    if not episode["is_last"][-1] or episode["is_last"][:-1].any():
        raise DatasetError("episode['is_last'] must be True on the last row only")
    return length


class EpisodeWriter:
    """Write episodes to an HDF5 file atomically. Use as a context manager.

    >>> with EpisodeWriter("data.h5", env_id="dmc/cartpole-swingup-v0", action_repeat=2) as w:
    ...     w.add(episode)  # dict of arrays in the batch schema
    """

    def __init__(self, path: str | os.PathLike, compression: str = "gzip", **metadata):
        self.path = Path(path)
        self.compression = compression
        self.metadata = {"schema_version": SCHEMA_VERSION, "package_version": _package_version(), **metadata}
        self._stack = ExitStack()  # holds the atomic temp path while the file is open
        self._file: h5py.File | None = None
        self.num_episodes = 0

    def __enter__(self) -> EpisodeWriter:
        self._file = h5py.File(self._stack.enter_context(atomic_path(self.path)), "w")
        for key, value in self.metadata.items():
            self._file.attrs[key] = "" if value is None else value
        self._file.create_group("episodes")
        return self

    def add(self, episode: Mapping[str, np.ndarray]) -> None:
        assert self._file is not None, "use EpisodeWriter as a context manager"
        length = validate_episode(episode)
        group = self._file["episodes"].create_group(f"{self.num_episodes:06d}")
        group.attrs["length"] = length
        for key in KEYS:
            arr = np.asarray(episode[key])
            if key == "obs":
                group.create_dataset(
                    key, data=arr, compression=self.compression, chunks=(min(len(arr), 64), *arr.shape[1:])
                )
            else:
                group.create_dataset(key, data=arr)
        self.num_episodes += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._file is not None
        self._file.attrs["num_episodes"] = self.num_episodes
        self._file.close()
        self._stack.__exit__(exc_type, exc, tb)  # renames into place on success, removes the temp file if not


class EpisodeDataset:
    """Read an HDF5 episode dataset; list episodes; sample (B, T) windows inside single episodes.

    Episodes are loaded into memory on first use (a 100-episode 64×64 dataset is ~60 MB).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError(f"dataset {self.path} does not exist")
        try:
            with h5py.File(self.path, "r") as f:
                self.metadata = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
                version = self.metadata.get("schema_version")
                if version != SCHEMA_VERSION:
                    raise DatasetError(
                        f"{self.path} has schema version {version!r}; this package reads version "
                        f"{SCHEMA_VERSION} (re-collect it with `aime collect`)"
                    )
                if "episodes" not in f:
                    raise DatasetError(f"{self.path} has no 'episodes' group")
                self.names = sorted(f["episodes"].keys())
                self.lengths = np.array([int(f["episodes"][n].attrs["length"]) for n in self.names], dtype=np.int64)
        except OSError as err:
            raise DatasetError(f"{self.path} is not a readable HDF5 dataset (truncated or corrupt?): {err}") from err
        self._cache: dict[int, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.names)

    @property
    def num_steps(self) -> int:
        return int(self.lengths.sum())

    def episode(self, index: int) -> dict[str, np.ndarray]:
        """Episode ``index`` as a dict of arrays (T, ...), validated."""
        if index not in self._cache:
            try:
                with h5py.File(self.path, "r") as f:
                    group = f["episodes"][self.names[index]]
                    missing = [k for k in KEYS if k not in group]
                    if missing:
                        raise DatasetError(f"{self.path} episode {self.names[index]} lacks datasets {missing}")
                    episode = {k: group[k][()] for k in KEYS}
            except (OSError, KeyError) as err:
                raise DatasetError(
                    f"{self.path}: cannot read episode {self.names[index]} (truncated or corrupt?): {err}"
                ) from err
            validate_episode(episode)
            self._cache[index] = episode
        return self._cache[index]

    def episodes(self, indices: Iterable[int] | None = None):
        for i in range(len(self)) if indices is None else indices:
            yield self.episode(i)

    def split(self, eval_fraction: float = 0.1, seed: int = 0) -> tuple[list[int], list[int]]:
        """Seeded, disjoint train/eval split by episode: (train indices, eval indices), each sorted."""
        if not 0.0 < eval_fraction < 1.0 or len(self) < 2:
            raise ValueError(f"need 0 < eval_fraction < 1 and >= 2 episodes (have {len(self)})")
        order = np.random.default_rng(seed).permutation(len(self))
        n_eval = min(len(self) - 1, max(1, round(eval_fraction * len(self))))
        return sorted(order[n_eval:].tolist()), sorted(order[:n_eval].tolist())

    def sample(
        self, batch_size: int, length: int, rng: np.random.Generator | None = None, indices: Iterable[int] | None = None
    ) -> dict[str, np.ndarray]:
        """Sample ``batch_size`` windows of ``length`` consecutive rows, each inside one episode.

        Windows are uniform over all valid (episode, start) pairs. Returns a dict of (B, T, ...) arrays.
        """
        rng = rng if rng is not None else np.random.default_rng()
        pool = np.array(list(range(len(self)) if indices is None else indices), dtype=np.int64)
        starts = self.lengths[pool] - length + 1
        if (starts <= 0).all():
            raise ValueError(f"no episode has {length} rows (longest: {self.lengths[pool].max()})")
        weights = np.clip(starts, 0, None) / np.clip(starts, 0, None).sum()
        chosen = rng.choice(pool, size=batch_size, p=weights)
        batch = {k: [] for k in KEYS}
        for ep_index in chosen:
            episode = self.episode(int(ep_index))
            start = rng.integers(0, self.lengths[ep_index] - length + 1)
            for k in KEYS:
                batch[k].append(episode[k][start : start + length])
        return {k: np.stack(v) for k, v in batch.items()}
