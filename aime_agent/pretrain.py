"""Offline world-model pretraining from an HDF5 episode dataset (``aime pretrain``).

Logs TensorBoard scalars (train/*, eval/*, time/*) and images (reconstructions; open-loop predictions
from 5 context frames for 45 steps beside the ground truth), saves ``<logdir>/checkpoint.pt``
atomically every ``checkpoint_every`` updates and at the end, and resumes from it when present (the
config must match; a corrupt or mismatched checkpoint is a clear error, never silently replaced).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aime_agent.attention_schema import attention_overlay
from aime_agent.checkpoint import CheckpointError, config_mismatch, load_checkpoint, save_checkpoint
from aime_agent.config import AIMEConfig
from aime_agent.world_model import WorldModel, evaluation, make_adversary, make_aggregator, make_optimizer, train_step
from envs.dataset import EpisodeDataset

KIND = "aime-pretrain"


@dataclass
class PretrainSettings:
    steps: int = 1000
    seed: int = 0
    log_every: int = 50
    image_every: int = 500
    eval_every: int = 250
    checkpoint_every: int = 250
    eval_fraction: float = 0.1
    context: int = 5
    horizon: int = 45
    device: str = "cpu"


def image_strip(true: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """(T, 3, S, S) truth and prediction → one (3, 2S, T·S) image: truth on top, prediction below."""
    rows = [torch.cat(list(x), dim=-1) for x in (true, pred)]
    return torch.cat(rows, dim=-2).clamp(0, 1)


class Pretrainer:
    """Train a ``WorldModel`` on windows of an episode dataset; see the module docstring."""

    def __init__(self, data: str | Path, config: AIMEConfig, logdir: str | Path, settings: PretrainSettings):
        self.data, self.config, self.settings = EpisodeDataset(data), config, settings
        self.logdir = Path(logdir)
        self.ckpt_path = self.logdir / "checkpoint.pt"
        action_dim = int(self.data.episode(0)["action"].shape[-1])
        torch.manual_seed(settings.seed)
        self.model = WorldModel(config, action_dim).to(settings.device)
        self.optimizer = make_optimizer(self.model, config)
        self.aggregator = make_aggregator(self.model)
        self.adversary = make_adversary(config)
        if self.adversary is not None:
            self.adversary.to(settings.device)
        self.rng = np.random.default_rng(settings.seed)  # training batches (checkpointed)
        self.eval_rng = np.random.default_rng(settings.seed + 1)  # evaluation and images, kept apart
        if len(self.data) >= 2:
            self.train_ids, self.eval_ids = self.data.split(settings.eval_fraction, settings.seed)
        else:
            self.train_ids = self.eval_ids = [0]
        self.step = 0
        if self.ckpt_path.exists():
            self._resume()

    def _resume(self) -> None:
        ckpt = load_checkpoint(self.ckpt_path, KIND, self.settings.device)
        saved = AIMEConfig.from_dict(ckpt["config"]).to_dict()  # a field added since gets its legacy value
        diffs = config_mismatch(saved, self.config.to_dict())
        if diffs:
            raise CheckpointError(f"{self.ckpt_path} was trained with another config ({'; '.join(diffs)}); "
                                  "use another --logdir or the same settings")  # fmt: skip
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if self.adversary is not None:
                self.adversary.load_state_dict(ckpt["adversary"])
                self.adversary.optimizer.load_state_dict(ckpt["adversary_optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(f"{self.ckpt_path} does not fit this model: {err}") from err
        self.step = int(ckpt["step"])
        self.rng.bit_generator.state = ckpt["numpy_rng"]
        torch.set_rng_state(ckpt["torch_rng"])

    def save(self) -> Path:
        return save_checkpoint(self.ckpt_path, KIND, {
            "config": self.config.to_dict(), "step": self.step, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "numpy_rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(), "dataset": str(self.data.path),
            **({"adversary": self.adversary.state_dict(), "adversary_optimizer": self.adversary.optimizer.state_dict()}
               if self.adversary is not None else {}),
        })  # fmt: skip

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss terms on a held-out batch. Uses its own RNGs, so training's random stream (and with it a
        resumed run) does not depend on how often evaluation ran."""
        t = self.config.train
        with torch.random.fork_rng(), evaluation(self.model):
            _, metrics, _ = self.model.loss(
                self.data.sample(t.batch_size, t.batch_length, self.eval_rng, self.eval_ids), self.adversary
            )
        return metrics

    @torch.no_grad()
    def log_images(self, writer) -> None:
        with torch.random.fork_rng(), evaluation(self.model):
            self._log_images(writer)

    def _log_images(self, writer) -> None:
        s = self.settings
        length = int(min(s.context + s.horizon, self.data.lengths[self.eval_ids].max()))
        batch = self.data.sample(2, length, self.eval_rng, self.eval_ids)
        pred, true = self.model.open_loop(batch, context=min(s.context, length - 1))
        writer.add_image("open_loop/truth_top_prediction_bottom", image_strip(true[0], pred[0]), self.step)
        out = self.model.observe(self.model.preprocess(batch))
        recon = (self.model.decode(out["feat"][0, :8]) + 0.5).clamp(0, 1)
        writer.add_image("reconstruction/truth_top_recon_bottom", image_strip(true[0, :8], recon), self.step)
        if self.model.schema is not None:  # the fused attention maps over the frames
            maps = attention_overlay(true[0, :8], out["attention_attention"][0, :8])
            writer.add_image("attention/frames_top_maps_bottom", image_strip(true[0, :8], maps), self.step)

    def run(self, progress: bool = True) -> dict[str, float]:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm.auto import tqdm

        s = self.settings
        writer = SummaryWriter(str(self.logdir), purge_step=self.step or None)
        metrics: dict[str, float] = {}
        sums: dict[str, float] = {}  # since the last log: each logged scalar is the mean over its interval
        bar = tqdm(total=s.steps, initial=self.step, desc="pretrain", unit="upd", disable=not progress)
        while self.step < s.steps:
            start = time.perf_counter()
            t = self.config.train
            batch = self.data.sample(t.batch_size, t.batch_length, self.rng, self.train_ids)
            metrics, _ = train_step(self.model, self.optimizer, batch, self.aggregator, self.adversary)
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + value
            sums["_n"] = sums.get("_n", 0.0) + 1
            self.step += 1
            bar.update(1)
            if self.step % s.log_every == 0 or self.step == s.steps:
                n = sums.pop("_n")
                for key, value in sums.items():  # e.g. train/mtl/conflict: the share of updates that conflicted
                    writer.add_scalar(f"train/{key}", value / n, self.step)
                sums = {}
                writer.add_scalar("time/update_s", time.perf_counter() - start, self.step)
                bar.set_postfix(loss=f"{metrics['wm_loss']:.1f}", mse=f"{metrics['recon_mse']:.4f}")
            if self.step % s.eval_every == 0 or self.step == s.steps:
                for key, value in self.evaluate().items():
                    writer.add_scalar(f"eval/{key}", value, self.step)
            if self.step % s.image_every == 0 or self.step == s.steps:
                self.log_images(writer)
            if self.step % s.checkpoint_every == 0 or self.step == s.steps:
                self.save()
        bar.close()
        writer.close()
        return metrics
