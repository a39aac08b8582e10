"""Train AIME on a DMC pixel task with resumable checkpoints (``aime train``, ``make train``).

``<logdir>/checkpoint.zip`` (the SB3 archive) and the replay are written atomically every ``checkpoint_every``
agent steps and at the end (AIME's replay as ``<logdir>/replay/``, which appends only the new rows each time,
``aime_agent.replay_chunks``; another algorithm's as SB3's ``replay.pkl``); rerunning the same command
resumes from them, so a killed run loses at most the steps since its last checkpoint. TensorBoard logs go to
``<logdir>``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from aime_agent.replay import SequenceReplayBuffer
from aime_agent.replay_chunks import INDEX, load_increments, save_increment
from envs.fileio import atomic_path, remove_stale_temps


@dataclass
class TrainSettings:
    env: str = "cartpole-swingup"
    env_steps: int = 100_000  # dm_control control steps
    preset: str = "small"
    logdir: str = "runs/aime"
    seed: int = 0
    n_envs: int = 1
    action_repeat: int = 2
    render_quality: str = "fast"
    distractors: float = 0.0  # strength of moving coloured shapes behind the scene (envs/distractors.py); 0: off
    checkpoint_every: int = 5_000  # agent steps
    eval_episodes: int = 5
    pretrained: str | None = None
    prefill: str | None = None
    progress: bool = True
    overrides: dict = field(default_factory=dict)


class AtomicCheckpoint(BaseCallback):
    """Every ``every`` agent steps: save the model and the replay buffer, each to a temp file then rename.

    Saves at the end of a rollout (after its transitions are stored, before training on them), so the
    replay in a checkpoint holds every step its counter claims: rows = steps + episode starts.
    """

    def __init__(self, logdir: Path, every: int):
        super().__init__()
        self.logdir, self.every = logdir, every
        self.last = 0

    def _on_training_start(self) -> None:
        self.last = self.num_timesteps

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.num_timesteps - self.last >= self.every:
            save_run(self.model, self.logdir)
            self.last = self.num_timesteps


def save_run(model, logdir: Path) -> None:
    """Replay first, then the model, each atomically (for any SB3 algorithm, not only ``AIME``): the newest
    model checkpoint never counts steps its replay lacks. A ``SequenceReplayBuffer`` appends only its new rows
    to ``<logdir>/replay/``; any other buffer is pickled whole to ``replay.pkl``, as SB3 does; an algorithm
    without one (PPO) saves the model only."""
    buffer = getattr(model, "replay_buffer", None)  # on-policy algorithms (PPO) have none
    if isinstance(buffer, SequenceReplayBuffer):
        save_increment(buffer, logdir / "replay")
    elif buffer is not None:
        with atomic_path(logdir / "replay.pkl") as tmp:
            model.save_replay_buffer(tmp)
    with atomic_path(logdir / "checkpoint.zip") as tmp:
        model.save(tmp)


def load_run_replay(model, logdir: Path) -> bool:
    """Restore the replay ``save_run`` wrote to ``logdir`` into ``model``; False if there is none."""
    if (logdir / "replay" / INDEX).exists() and isinstance(getattr(model, "replay_buffer", None), SequenceReplayBuffer):
        load_increments(model.replay_buffer, logdir / "replay")
        return True
    if (logdir / "replay.pkl").exists():
        model.load_replay_buffer(logdir / "replay.pkl")
        return True
    return False


class RandomPolicy:
    """Uniform random actions behind SB3's ``predict`` (for ``evaluate_policy``): the baseline beside the agent."""

    def __init__(self, action_space, seed: int):
        self.action_space = action_space
        self.action_space.seed(seed)

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        return np.stack([self.action_space.sample() for _ in range(len(observation))]), None


def make_env(settings: TrainSettings, n_envs: int, seed: int):
    import envs

    domain, task = envs.parse_task(settings.env)
    kwargs = {"action_repeat": settings.action_repeat, "render_quality": settings.render_quality}
    if settings.distractors:
        kwargs["distractors"] = settings.distractors
    vec_cls = SubprocVecEnv if n_envs > 1 else DummyVecEnv
    return make_vec_env(f"envs:{envs.env_id(domain, task)}", n_envs=n_envs, seed=seed, env_kwargs=kwargs,
                        vec_env_cls=vec_cls)  # fmt: skip


def run(settings: TrainSettings) -> dict:
    """Train (or resume) to ``env_steps``; evaluate; return a summary dict."""
    from aime_agent.agent import AIME

    logdir = Path(settings.logdir)
    if logdir.is_dir():
        remove_stale_temps(logdir)  # left by a writer killed mid-save; the renamed files are intact
    agent_steps = settings.env_steps // settings.action_repeat
    env = make_env(settings, settings.n_envs, settings.seed)
    ckpt = logdir / "checkpoint.zip"
    if ckpt.exists():
        model = AIME.load(ckpt, env=env, tensorboard_log=str(logdir), verbose=1)
        load_run_replay(model, logdir)
        print(f"resuming {ckpt} at {model.num_timesteps} agent steps ({model.replay_buffer.size()} replay rows)")
    else:
        model = AIME("CnnPolicy", env, preset=settings.preset, tensorboard_log=str(logdir), seed=settings.seed,
                     verbose=1, pretrained=settings.pretrained, prefill=settings.prefill,
                     **settings.overrides)  # fmt: skip
    start, first = time.perf_counter(), model.num_timesteps
    remaining = agent_steps - model.num_timesteps
    if remaining > 0:
        model.learn(remaining, callback=AtomicCheckpoint(logdir, settings.checkpoint_every), log_interval=1,
                    tb_log_name="aime", reset_num_timesteps=False, progress_bar=settings.progress)  # fmt: skip
        save_run(model, logdir)
    wall = time.perf_counter() - start
    eval_env = make_env(settings, 1, settings.seed + 10_000)
    returns, _ = evaluate_policy(model, eval_env, n_eval_episodes=settings.eval_episodes, deterministic=True,
                                 return_episode_rewards=True)  # fmt: skip
    baseline = RandomPolicy(eval_env.action_space, settings.seed)
    random_returns, _ = evaluate_policy(baseline, eval_env, n_eval_episodes=settings.eval_episodes,
                                        return_episode_rewards=True)  # fmt: skip
    summary = {"agent_steps": model.num_timesteps, "env_steps": model.num_timesteps * settings.action_repeat,
               "updates": model._n_updates, "replay_rows": model.replay_buffer.size(),
               "eval_return_mean": float(np.mean(returns)), "eval_return_std": float(np.std(returns)),
               "random_return_mean": float(np.mean(random_returns)),
               "random_return_std": float(np.std(random_returns)),
               "env_steps_per_s": (model.num_timesteps - first) * settings.action_repeat / max(wall, 1e-9),
               "wall_s": wall}  # fmt: skip
    print(f"final evaluation: return {summary['eval_return_mean']:.1f} ± {summary['eval_return_std']:.1f} "
          f"(random policy {summary['random_return_mean']:.1f} ± {summary['random_return_std']:.1f}) over "
          f"{settings.eval_episodes} episodes after {summary['env_steps']} env steps ({summary['updates']} updates, "
          f"{summary['env_steps_per_s']:.1f} env steps/s, {wall / 60:.1f} min)")  # fmt: skip
    env.close()
    eval_env.close()
    return summary
