"""HDF5 episode datasets: row alignment (DESIGN.md §2.1), round trips, windows, splits, corrupt files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from gymnasium import Env, spaces

import envs
from envs.collect import collect, random_policy, rollout_episode
from envs.dataset import KEYS, DatasetError, EpisodeDataset, EpisodeWriter


class CounterEnv(Env):
    """A scripted env whose frames show the step index t and whose reward is 10·t + a[0].

    Episodes last ``length`` steps, ending ``terminated`` (discount 0) if ``terminal`` else truncated.
    """

    observation_space = spaces.Box(0, 255, (4, 4, 3), np.uint8)
    action_space = spaces.Box(-1, 1, (2,), np.float32)

    def __init__(self, length=6, terminal=False):
        self.length, self.terminal, self.t = length, terminal, 0

    def _frame(self):
        return np.full((4, 4, 3), self.t, np.uint8)

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return self._frame(), {}

    def step(self, action):
        self.t += 1
        done = self.t == self.length
        discount = 0.0 if (done and self.terminal) else 1.0
        return (
            self._frame(),
            10.0 * self.t + float(action[0]),
            done and self.terminal,
            done and not self.terminal,
            {"discount": discount},
        )


def scripted_policy(obs):
    t = int(obs[0, 0, 0])
    return np.array([t / 10, -t / 10], np.float32)


@pytest.mark.parametrize("terminal", [False, True])
def test_rows_align_observation_action_reward(terminal):
    ep = rollout_episode(CounterEnv(length=6, terminal=terminal), scripted_policy)
    assert len(ep["obs"]) == 7
    for t in range(7):
        assert (ep["obs"][t] == t).all()
        if t == 0:
            np.testing.assert_array_equal(ep["action"][0], [0, 0])
            assert ep["reward"][0] == 0 and ep["is_first"][0]
        else:  # row t: the action taken at o_{t-1} and the reward received on arriving at o_t
            np.testing.assert_allclose(ep["action"][t], [(t - 1) / 10, -(t - 1) / 10], rtol=1e-6)
            assert ep["reward"][t] == pytest.approx(10 * t + (t - 1) / 10)
            assert not ep["is_first"][t]
    np.testing.assert_array_equal(ep["is_last"], [False] * 6 + [True])
    np.testing.assert_array_equal(ep["is_terminal"], [False] * 6 + [terminal])
    np.testing.assert_array_equal(ep["discount"], [1] * 6 + [0.0 if terminal else 1.0])
    assert {k: v.dtype for k, v in ep.items()} == {
        "obs": np.uint8,
        "action": np.float32,
        "reward": np.float32,
        "discount": np.float32,
        "is_first": bool,
        "is_last": bool,
        "is_terminal": bool,
    }


def test_collect_real_cartpole_against_raw_dm_control(tmp_path):
    """Collected rows equal a manual dm_control loop: frame o_t, action a_{t-1}, summed reward r_t."""
    from dm_control import suite
    from dm_control.mujoco.engine import Camera

    env = envs.make("cartpole-swingup", seed=5, max_env_steps=40)
    returns = collect(
        env,
        lambda obs: np.array([np.sin(obs.mean())], np.float32),
        2,
        tmp_path / "d.h5",
        seed=5,
        progress=False,
        env_id="dmc/cartpole-swingup-v0",
        action_repeat=2,
    )
    data = EpisodeDataset(tmp_path / "d.h5")
    assert len(data) == 2 and data.lengths.tolist() == [21, 21]
    assert data.metadata["env_id"] == "dmc/cartpole-swingup-v0" and data.metadata["seed"] == 5
    raw = suite.load("cartpole", "swingup", task_kwargs={"random": 5})
    camera = Camera(raw.physics, height=64, width=64, camera_id=0)
    for i, ep in enumerate(data.episodes()):
        raw.reset()
        np.testing.assert_array_equal(ep["obs"][0], camera.render())
        for t in range(1, 21):
            expected = sum(raw.step(ep["action"][t].astype(np.float64)).reward for _ in range(2))
            assert ep["reward"][t] == pytest.approx(expected, abs=1e-6)
            np.testing.assert_array_equal(ep["obs"][t], camera.render())
            np.testing.assert_allclose(ep["action"][t], [np.sin(ep["obs"][t - 1].mean())], rtol=1e-6)
        assert returns[i] == pytest.approx(float(ep["reward"].sum()))


def random_episode(rng, length, action_dim=3):
    ep = {
        "obs": rng.integers(0, 256, (length, 8, 8, 3), dtype=np.uint8),
        "action": rng.standard_normal((length, action_dim)).astype(np.float32),
        "reward": rng.standard_normal(length).astype(np.float32),
        "discount": np.ones(length, np.float32),
        "is_first": np.zeros(length, bool),
        "is_last": np.zeros(length, bool),
        "is_terminal": np.zeros(length, bool),
    }
    ep["is_first"][0] = ep["is_last"][-1] = True
    return ep


def write(path, episodes, **meta):
    with EpisodeWriter(path, env_id="test", **meta) as w:
        for ep in episodes:
            w.add(ep)


def test_hdf5_round_trip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    episodes = [random_episode(rng, n) for n in (5, 9, 70)]
    write(tmp_path / "d.h5", episodes, action_repeat=2, image_size=8, seed=3)
    data = EpisodeDataset(tmp_path / "d.h5")
    assert data.lengths.tolist() == [5, 9, 70] and data.num_steps == 84
    for i, ep in enumerate(episodes):
        got = data.episode(i)
        for k in KEYS:
            assert got[k].dtype == ep[k].dtype
            np.testing.assert_array_equal(got[k], ep[k])
    assert data.metadata["schema_version"] == 1 and data.metadata["seed"] == 3
    assert data.metadata["package_version"]


def test_write_is_atomic_and_a_failed_write_keeps_the_old_file(tmp_path):
    rng = np.random.default_rng(1)
    write(tmp_path / "d.h5", [random_episode(rng, 5)])
    with pytest.raises(RuntimeError, match="boom"):
        with EpisodeWriter(tmp_path / "d.h5", env_id="test") as w:
            w.add(random_episode(rng, 6))
            assert not (tmp_path / "d.h5.tmp").exists() and (tmp_path / "d.h5").exists()
            raise RuntimeError("boom")
    assert EpisodeDataset(tmp_path / "d.h5").lengths.tolist() == [5]
    assert [p.name for p in tmp_path.iterdir()] == ["d.h5"]


def test_corrupt_truncated_and_unknown_files_give_clear_errors(tmp_path):
    rng = np.random.default_rng(2)
    write(tmp_path / "good.h5", [random_episode(rng, 50), random_episode(rng, 50)])
    blob = (tmp_path / "good.h5").read_bytes()
    (tmp_path / "trunc.h5").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "junk.h5").write_bytes(b"not an hdf5 file" * 100)
    for name in ("trunc.h5", "junk.h5"):
        with pytest.raises(DatasetError, match="truncated or corrupt"):
            EpisodeDataset(tmp_path / name).episode(1)
    with pytest.raises(DatasetError, match="does not exist"):
        EpisodeDataset(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "good.h5", "a") as f:
        del f["episodes/000001/reward"]
    with pytest.raises(DatasetError, match=r"lacks datasets \['reward'\]"):
        EpisodeDataset(tmp_path / "good.h5").episode(1)
    with h5py.File(tmp_path / "good.h5", "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(DatasetError, match="schema version 99"):
        EpisodeDataset(tmp_path / "good.h5")


def test_writer_rejects_malformed_episodes(tmp_path):
    rng = np.random.default_rng(3)
    bad = random_episode(rng, 5)
    bad["reward"] = bad["reward"].astype(np.float64)
    with pytest.raises(DatasetError, match="reward.*float64"), EpisodeWriter(tmp_path / "d.h5") as w:
        w.add(bad)
    bad = random_episode(rng, 5)
    bad["is_first"][2] = True
    with pytest.raises(DatasetError, match="is_first"), EpisodeWriter(tmp_path / "d.h5") as w:
        w.add(bad)
    assert not (tmp_path / "d.h5").exists()


def test_sampled_windows_lie_inside_one_episode(tmp_path):
    episodes = []
    for ep_id, length in enumerate([3, 12, 25, 40]):
        ep = random_episode(np.random.default_rng(ep_id), length)
        ep["obs"][:, 0, 0, 0] = ep_id  # which episode
        ep["obs"][:, 0, 0, 1] = np.arange(length)  # which row
        episodes.append(ep)
    write(tmp_path / "d.h5", episodes)
    data = EpisodeDataset(tmp_path / "d.h5")
    batch = data.sample(256, 10, np.random.default_rng(0))
    assert {k: v.shape[:2] for k, v in batch.items()} == {k: (256, 10) for k in KEYS}
    ep_ids, rows = batch["obs"][:, :, 0, 0, 0], batch["obs"][:, :, 0, 0, 1].astype(int)
    assert (ep_ids == ep_ids[:, :1]).all()  # one episode per window
    assert (np.diff(rows, axis=1) == 1).all()  # consecutive rows
    assert set(np.unique(ep_ids)) == {1, 2, 3}  # the 3-row episode is too short
    assert (batch["is_first"][:, 1:] == False).all()  # noqa: E712
    counts = np.bincount(ep_ids[:, 0], minlength=4)[1:]  # uniform over valid windows: 3 : 16 : 31
    assert counts[2] > counts[1] > counts[0]
    np.testing.assert_array_equal(
        data.sample(4, 10, np.random.default_rng(5))["obs"], data.sample(4, 10, np.random.default_rng(5))["obs"]
    )
    only = data.sample(32, 5, np.random.default_rng(1), indices=[1])
    assert (only["obs"][:, :, 0, 0, 0] == 1).all()
    with pytest.raises(ValueError, match="no episode has 41 rows"):
        data.sample(1, 41)


def test_train_eval_split_is_seeded_and_disjoint(tmp_path):
    rng = np.random.default_rng(4)
    write(tmp_path / "d.h5", [random_episode(rng, 4) for _ in range(20)])
    data = EpisodeDataset(tmp_path / "d.h5")
    train, evaluation = data.split(0.25, seed=0)
    assert len(evaluation) == 5 and not set(train) & set(evaluation)
    assert sorted(train + evaluation) == list(range(20))
    assert data.split(0.25, seed=0) == (train, evaluation)
    assert data.split(0.25, seed=1) != (train, evaluation)


def test_random_policy_is_seeded_and_in_bounds():
    space = spaces.Box(-1, 1, (4,), np.float32)
    a, b = random_policy(space, 0), random_policy(space, 0)
    xs = np.stack([a(None) for _ in range(100)])
    np.testing.assert_array_equal(xs, np.stack([b(None) for _ in range(100)]))
    assert xs.dtype == np.float32 and (np.abs(xs) <= 1).all()


def test_collect_rejects_stacked_frames():
    env = envs.make("cartpole-swingup", frame_stack=2, render_quality="fast")
    with pytest.raises(ValueError, match="single-frame"):
        rollout_episode(env, scripted_policy)
