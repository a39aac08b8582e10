"""AIME as a Stable-Baselines3 off-policy algorithm.

    model = AIME("CnnPolicy", "dmc/cartpole-swingup-v0", preset="small", tensorboard_log="runs")
    model.learn(50_000, progress_bar=True)          # agent steps: 100k env steps at action repeat 2
    model.save("aime"); model = AIME.load("aime", env=env)

Each training round samples (B, T) windows from the sequence replay, takes one world-model step
(``world_model/training.py``) and one actor-critic step in imagination from the detached posterior
states (``behavior/learner.py``); the three optimizers are separate. ``preset`` picks a named config;
any other keyword that names a config field (``deter=64``, ``actor_lr=1e-4``, ...) overrides it.
"""

from __future__ import annotations

import os
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.logger import Image
from stable_baselines3.common.noise import ActionNoise, NormalActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from aime_agent.attention_schema import attention_overlay
from aime_agent.checkpoint import CheckpointError, config_mismatch, load_checkpoint
from aime_agent.config import AIMEConfig
from aime_agent.config import preset as make_preset
from aime_agent.policy import AIMEPolicy
from aime_agent.pretrain import KIND as PRETRAIN_KIND
from aime_agent.pretrain import image_strip
from aime_agent.replay import NoWindowError, SequenceReplayBuffer
from aime_agent.tensorboard_video import record_video
from aime_agent.world_model import LatentState, evaluation, train_step
from envs.fileio import atomic_path


def check_archive(path: str | os.PathLike) -> None:
    """Raise ``CheckpointError`` unless ``path`` (``.zip`` added if missing, as SB3 does) is an intact SB3
    archive holding ``data`` and ``policy.pth`` (CRCs of every entry are verified)."""
    path = Path(path)
    if not path.exists() and path.with_suffix(".zip").exists():
        path = path.with_suffix(".zip")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            missing = {"data", "policy.pth"} - set(archive.namelist())
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise CheckpointError(f"{path} is a truncated or corrupt AIME checkpoint ({err})") from err
    if bad is not None or missing:
        why = f"entry {bad!r} fails its CRC" if bad else f"entries {sorted(missing)} are missing"
        raise CheckpointError(f"{path} is a truncated or corrupt AIME checkpoint: {why}")


class AIME(OffPolicyAlgorithm):
    """The AIME agent. Arguments after ``policy, env`` all have defaults (from the preset):

    preset: ``tiny`` | ``small`` | ``medium`` | ``large``.
    learning_rate: world-model learning rate or SB3 schedule; the actor and critic keep their own rates
        (``actor_lr``, ``critic_lr``) and follow a schedule's shape: lr · schedule(p) / schedule(1).
    buffer_size, learning_starts, batch_size, batch_length, train_freq, gradient_steps: replay and
        train ratio (replayed rows per agent step = gradient_steps · batch_size · batch_length / train_freq).
    action_noise: SB3 ``ActionNoise`` added to collected actions (default: ``NormalActionNoise`` of std
        ``expl_noise`` when that config field is > 0, else none).
    pretrained: an ``aime pretrain`` checkpoint whose world model starts this agent.
    prefill: an HDF5 dataset (``aime collect``) loaded into the replay before learning.
    **overrides: config fields (``aime_agent.config``), e.g. ``deter=64`` or ``horizon=10``.
    """

    policy_aliases: ClassVar[dict[str, type]] = {"CnnPolicy": AIMEPolicy, "AIMEPolicy": AIMEPolicy}
    policy: AIMEPolicy
    replay_buffer: SequenceReplayBuffer

    def __init__(self, policy: str | type[AIMEPolicy] = "CnnPolicy", env=None, preset: str = "small",
                 learning_rate: float | Any = None, buffer_size: int | None = None,
                 learning_starts: int | None = None, batch_size: int | None = None, batch_length: int | None = None,
                 train_freq: int | tuple[int, str] | None = None, gradient_steps: int | None = None,
                 action_noise: ActionNoise | None = None, replay_buffer_kwargs: dict | None = None,
                 policy_kwargs: dict | None = None,
                 pretrained: str | None = None, prefill: str | None = None, stats_window_size: int = 100,
                 tensorboard_log: str | None = None, verbose: int = 0, seed: int | None = None,
                 device: torch.device | str = "auto", _init_setup_model: bool = True, **overrides: Any):  # fmt: skip
        config = make_preset(preset, **overrides)
        if isinstance(learning_rate, (int, float)):
            config = config.override(**{"train.lr": float(learning_rate)})
        if batch_size is not None:
            config = config.override(**{"train.batch_size": batch_size})
        if batch_length is not None:
            config = config.override(**{"train.batch_length": batch_length})
        agent = config.agent
        super().__init__(
            policy, env, learning_rate=config.train.lr if learning_rate is None else learning_rate,
            buffer_size=agent.buffer_size if buffer_size is None else buffer_size,
            learning_starts=agent.learning_starts if learning_starts is None else learning_starts,
            batch_size=config.train.batch_size, tau=1.0, gamma=config.behavior.gamma,
            train_freq=(agent.train_every, "step") if train_freq is None else train_freq,
            gradient_steps=agent.gradient_steps if gradient_steps is None else gradient_steps,
            action_noise=action_noise, replay_buffer_class=SequenceReplayBuffer,
            replay_buffer_kwargs=replay_buffer_kwargs,
            policy_kwargs=policy_kwargs, stats_window_size=stats_window_size, tensorboard_log=tensorboard_log,
            verbose=verbose, device=device, support_multi_env=True, seed=seed, sde_support=False,
            supported_action_spaces=(spaces.Box,),
        )  # fmt: skip
        self.config_dict = config.to_dict()
        if action_noise is None and agent.expl_noise > 0 and self.action_space is not None:
            dim = int(np.prod(self.action_space.shape))
            self.action_noise = NormalActionNoise(np.zeros(dim), np.full(dim, agent.expl_noise))
        self.batch_length = config.train.batch_length
        self.pretrained, self.prefill = pretrained, prefill
        self._last_belief = None
        if _init_setup_model:
            self._setup_model()

    # -- set-up ------------------------------------------------------------------------------
    def _setup_model(self) -> None:
        """Rebuild everything from attributes (``load`` calls this after restoring them)."""
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self._replay_rng = np.random.default_rng(self.seed)
        self.replay_buffer = SequenceReplayBuffer(self.buffer_size, self.observation_space, self.action_space,
                                                  device=self.device, n_envs=self.n_envs,
                                                  **self.replay_buffer_kwargs)  # fmt: skip
        self.policy = self.policy_class(self.observation_space, self.action_space, self.lr_schedule,
                                        config=self.config_dict, **self.policy_kwargs).to(self.device)  # fmt: skip
        self._convert_train_freq()
        self._last_belief = None
        if self.pretrained:
            self._load_pretrained(self.pretrained)
            self.pretrained = None  # applied once; later loads restore the trained weights instead
        if self.prefill:
            self.replay_buffer.add_dataset(self.prefill)
            self.prefill = None

    def _load_pretrained(self, path: str) -> None:
        ckpt = load_checkpoint(path, PRETRAIN_KIND, self.device)
        saved = AIMEConfig.from_dict(ckpt["config"]).to_dict()  # a field added since gets its legacy value
        diffs = config_mismatch(saved["model"], self.config_dict["model"])
        if diffs:
            raise CheckpointError(f"{path}: the pretrained world model has another architecture ({'; '.join(diffs)})")
        try:
            self.policy.world_model.load_state_dict(ckpt["model"])
        except RuntimeError as err:
            raise CheckpointError(f"{path} does not fit this agent's world model: {err}") from err

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_last_belief", "_action_repeat"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        torch_params = ["policy", "policy.wm_optimizer", "policy.behavior.actor_opt", "policy.behavior.critic_opt"]
        if self.policy.adversary is not None:  # the discriminator's weights are in "policy"; its Adam here
            torch_params.append("policy.adversary.optimizer")
        return torch_params, []

    def _env_action_repeat(self) -> int:
        """The env's action repeat (1 if it has none), for ``time/env_frames``."""
        try:
            return int(self.env.get_attr("action_repeat")[0]) if self.env is not None else 1
        except AttributeError:
            return 1

    def save(self, path, exclude=None, include=None) -> None:
        """SB3's ``save``, atomically for file paths (``envs.fileio.atomic_path``: temp file, fsync, rename)."""
        if not isinstance(path, (str, os.PathLike)):
            return super().save(path, exclude, include)
        path = Path(path)
        with atomic_path(path if path.suffix else path.with_suffix(".zip")) as tmp:  # SB3 adds .zip when missing
            super().save(tmp, exclude, include)

    def save_replay_buffer(self, path) -> None:
        """SB3's ``save_replay_buffer``, atomically for file paths."""
        if not isinstance(path, (str, os.PathLike)):
            return super().save_replay_buffer(path)
        path = Path(path)
        with atomic_path(path if path.suffix else path.with_suffix(".pkl")) as tmp:  # SB3 adds .pkl when missing
            super().save_replay_buffer(tmp)

    @classmethod
    def load(cls, path, env=None, device="auto", custom_objects=None, print_system_info=False, force_reset=True,
             **kwargs):  # fmt: skip
        """SB3's ``load``, after checking the archive: a truncated or corrupt file raises ``CheckpointError``."""
        if isinstance(path, (str, os.PathLike)):
            check_archive(path)
        return super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)

    # -- acting and storing ------------------------------------------------------------------
    def _sample_action(self, learning_starts: int, action_noise=None, n_envs: int = 1):
        """Advance the collecting belief (also during the random warm-up) and choose actions; SB3's
        ``action_noise`` is added to the scaled action and clipped, during the warm-up too, as in SB3."""
        obs, _ = self.policy.obs_to_tensor(self._last_obs)
        forced = None
        if self.num_timesteps < learning_starts:
            random = np.array([self.action_space.sample() for _ in range(n_envs)])
            forced = torch.as_tensor(self.policy.scale_action(random), dtype=torch.float32)
        self.policy.set_training_mode(False)
        noise = None if action_noise is None else np.asarray(action_noise(), np.float32).reshape(n_envs, -1)
        action, self._last_belief = self.policy.step_belief(
            obs, self._last_belief, self._last_episode_starts, deterministic=False, action=forced, noise=noise
        )
        buffer_action = action.cpu().numpy()
        return self.policy.unscale_action(buffer_action), buffer_action

    def _store_transition(self, replay_buffer: SequenceReplayBuffer, buffer_action: np.ndarray, new_obs, reward,
                          dones, infos) -> None:  # fmt: skip
        """Rows of the schema: o_t with the action that produced it and the reward received with it."""
        for i in range(len(dones)):
            if not replay_buffer.open[i]:
                replay_buffer.add_row(i, self._last_obs[i], is_first=True)
            if dones[i]:
                terminated = not infos[i].get("TimeLimit.truncated", False)
                replay_buffer.add_row(i, infos[i]["terminal_observation"], buffer_action[i], float(reward[i]),
                                      is_last=True, is_terminal=terminated)  # fmt: skip
            else:
                replay_buffer.add_row(i, new_obs[i], buffer_action[i], float(reward[i]))
        self._last_obs = new_obs
        self._last_episode_starts = dones

    def _setup_learn(self, total_timesteps, callback=None, reset_num_timesteps=True, tb_log_name="run",
                     progress_bar=False):  # fmt: skip
        if reset_num_timesteps or self._last_obs is None:
            self._last_belief = None  # the env is reset: the collecting belief starts afresh
        result = super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        self._action_repeat = self._env_action_repeat()  # asked once: get_attr is an IPC round trip per env
        if self._last_belief is None and isinstance(self.env, VecEnv):
            self._last_episode_starts = np.ones(self.env.num_envs, dtype=bool)
            self.replay_buffer.close_open_episodes()  # the env was reset: unfinished episodes end here
        return result

    # -- training ----------------------------------------------------------------------------
    def _update_learning_rate(self, optimizers=None) -> None:
        """SB3 writes one schedule into every optimizer; here the world model follows ``learning_rate`` and
        the actor and critic follow the same schedule's shape from their own rates: lr_x · s(p) / s(1)."""
        rate, start = self.lr_schedule(self._current_progress_remaining), self.lr_schedule(1.0)
        factor = rate / start if start > 0 else 0.0  # rl-zoo3's enjoy loads with a schedule of 0
        cfg = self.policy.config.behavior
        behavior = self.policy.behavior
        for optimizer, value in ((self.policy.wm_optimizer, rate), (behavior.actor_opt, cfg.actor_lr * factor),
                                 (behavior.critic_opt, cfg.critic_lr * factor)):  # fmt: skip
            for group in optimizer.param_groups:
                group["lr"] = value
        self.logger.record("train/learning_rate", rate)

    def train(self, gradient_steps: int, batch_size: int) -> None:
        try:
            first = self.replay_buffer.sample_sequences(batch_size, self.batch_length, self._replay_rng)
        except NoWindowError:
            return  # e.g. after ``load`` without the replay: collect until a window of batch_length rows fits
        self.policy.set_training_mode(True)
        self._update_learning_rate()
        wm, behavior = self.policy.world_model, self.policy.behavior
        sums: dict[str, float] = defaultdict(float)
        warmup = self.policy.config.behavior.actor_warmup
        for step in range(gradient_steps):
            train_actor = self._n_updates >= warmup
            batch = first if step == 0 else self.replay_buffer.sample_sequences(batch_size, self.batch_length,
                                                                                self._replay_rng)  # fmt: skip
            wm_metrics, out = train_step(
                wm, self.policy.wm_optimizer, batch, self.policy.loss_aggregator, self.policy.adversary
            )
            start = LatentState(out["rnn"].flatten(0, 1), out["stoch"].flatten(0, 1)).detach()
            replay = {"feat": out["feat"], "reward": out["reward"], "cont": out["cont"]}
            for key, value in {**wm_metrics, **behavior.train_step(wm, start, replay, train_actor)}.items():
                sums[key] += value
            self._n_updates += 1
            if self._n_updates % self.policy.config.agent.image_every == 0:
                self._log_images(batch, start)
        for key, value in sums.items():
            # multi-task scalars average over every update since the last dump: mtl/conflict is then the rate
            record = self.logger.record_mean if key.startswith("mtl/") else self.logger.record
            record(f"train/{key}", value / gradient_steps)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/lr_actor", behavior.actor_opt.param_groups[0]["lr"])
        self.logger.record("train/lr_critic", behavior.critic_opt.param_groups[0]["lr"])

    def _on_step(self) -> None:
        self.logger.record("time/env_frames", self.num_timesteps * self._action_repeat)

    @torch.no_grad()
    def _log_images(self, batch: dict, start: LatentState) -> None:
        """TensorBoard: reconstructions beside the truth; a decoded imagined rollout from a replayed state."""
        wm, actor = self.policy.world_model, self.policy.behavior.actor
        with torch.random.fork_rng(), evaluation(wm):  # logging is no training step: the codebook must not move
            pred, true = wm.open_loop({k: v[:1] for k, v in batch.items()}, context=self.batch_length)
            strip = image_strip(true[0, :8], pred[0, :8])
            self.logger.record("images/reconstruction", Image(strip, "CHW"), exclude=("stdout", "log", "json", "csv"))
            first = LatentState(start.rnn[:1], start.stoch[:1])
            traj = wm.imagine(
                first, lambda f: actor.act(f, deterministic=False), min(15, self.policy.config.behavior.horizon)
            )
            frames = (wm.decode(traj["feat"][:, 0]) + 0.5).clamp(0, 1)
            self.logger.record("images/imagination", Image(torch.cat(list(frames), -1), "CHW"),
                               exclude=("stdout", "log", "json", "csv"))  # fmt: skip
            step = self.num_timesteps
            record_video(self.logger, "videos/imagination", frames, step)  # (H, 3, S, S)
            record_video(self.logger, "videos/open_loop", torch.cat([true[0], pred[0]], -1).clamp(0, 1), step)
            if wm.schema is not None:  # the fused attention maps over the window's frames
                maps = wm.observe(wm.preprocess({k: v[:1] for k, v in batch.items()}))["attention_attention"][0, :8]
                overlay = image_strip(true[0, :8], attention_overlay(true[0, :8], maps))
                self.logger.record("images/attention", Image(overlay, "CHW"), exclude=("stdout", "log", "json", "csv"))
            if wm.perceiver is not None:
                self._log_perceiver({k: v[:1] for k, v in batch.items()})

    @torch.no_grad()
    def _log_perceiver(self, batch: dict) -> None:
        """TensorBoard: the Perceiver's next-frame token predictions (decoded) under the tokenised truth, and a
        rollout it generates from the window's first half (an image strip and a video). In eval mode and without
        gradients, whoever calls it: logging is no training step, and the VQ codebook's EMA must not move."""
        with evaluation(self.policy.world_model):
            perceiver, hidden = self.policy.world_model.perceiver, ("stdout", "log", "json", "csv")
            video = self.policy.world_model.preprocess(batch)["image"]  # (1, T, 3, S, S)
            out = perceiver(video)
            shown = min(8, video.shape[1] - 1)
            predicted = perceiver.tokenizer.decode_codes(out["logits"][:, :shown].argmax(-1))[0] + 0.5
            truth = perceiver.tokenizer.decode_codes(out["codes"][:, 1 : shown + 1])[0] + 0.5
            self.logger.record("images/perceiver_next_tokens", Image(image_strip(truth, predicted.clamp(0, 1)), "CHW"),
                               exclude=hidden)  # fmt: skip
            half = video.shape[1] // 2
            generated = perceiver.generate_autoregressive(video[:, :half], video.shape[1] - half)["frames"][0] + 0.5
            future = video[0, half:] + 0.5
            strip = image_strip(future, generated)
            self.logger.record("images/perceiver_generation", Image(strip, "CHW"), exclude=hidden)
            side_by_side = torch.cat([future, generated], -1).clamp(0, 1)  # (T/2, 3, S, 2S)
            record_video(self.logger, "videos/perceiver_generation", side_by_side, self.num_timesteps)
