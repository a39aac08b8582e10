"""`aime pretrain`: TensorBoard logs, atomic checkpoints, exact resume, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aime_agent.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from aime_agent.cli import main
from envs.dataset import EpisodeWriter


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, cartpole_episode):
    path = tmp_path_factory.mktemp("data") / "d.h5"
    with EpisodeWriter(path, env_id="dmc/cartpole-swingup-v0") as w:
        for _ in range(3):
            w.add(cartpole_episode)
    return path


def run(dataset, logdir, steps, *extra):
    return main(["pretrain", "--data", str(dataset), "--preset", "tiny", "--steps", str(steps),
                 "--logdir", str(logdir), "--quiet", *extra])  # fmt: skip


def test_pretrain_logs_checkpoints_and_resumes_exactly(dataset, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert run(dataset, tmp_path / "a", 6) == 0
    assert run(dataset, tmp_path / "a", 9) == 0
    assert "resuming" in capsys.readouterr().out
    assert run(dataset, tmp_path / "b", 9) == 0  # uninterrupted
    a = load_checkpoint(tmp_path / "a" / "checkpoint.pt", "aime-pretrain")
    b = load_checkpoint(tmp_path / "b" / "checkpoint.pt", "aime-pretrain")
    assert a["step"] == b["step"] == 9
    for key in b["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], atol=0, rtol=0, msg=key)
    events = EventAccumulator(str(tmp_path / "b")).Reload()
    scalars = events.Tags()["scalars"]
    for tag in ("train/wm_loss", "train/recon_mse", "train/kl", "eval/recon", "time/update_s"):
        assert tag in scalars, tag
    assert {"open_loop/truth_top_prediction_bottom", "reconstruction/truth_top_recon_bottom"} <= set(
        events.Tags()["images"]
    )
    assert not list((tmp_path / "a").glob("*.tmp-*"))


def test_mismatched_and_corrupt_checkpoints_are_clear_errors(dataset, tmp_path, capsys):
    assert run(dataset, tmp_path, 2) == 0
    assert run(dataset, tmp_path, 4, "--set", "deter=48") == 2
    assert "model.deter: 32 → 48" in capsys.readouterr().err
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    assert run(dataset, tmp_path, 4) == 2
    assert "truncated or corrupt" in capsys.readouterr().err
    assert run(tmp_path / "missing.h5", tmp_path / "x", 2) == 2
    assert "does not exist" in capsys.readouterr().err


def test_checkpoint_helpers(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", "thing", {"w": torch.ones(2), "step": 3})
    assert load_checkpoint(path, "thing")["step"] == 3
    with pytest.raises(CheckpointError, match="not an 'other' checkpoint"):
        load_checkpoint(path, "other")
    np.save(tmp_path / "n.npy", np.zeros(3))
    (tmp_path / "n.pt").write_bytes((tmp_path / "n.npy").read_bytes())
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "n.pt", "thing")


def test_a_measurement_leaves_the_model_as_it_was(dataset, tmp_path):
    """Held-out evaluation and logging run in eval mode: in train mode the same forward passes move the
    Perceiver's VQ codebook (EMA, even without gradients) and, with gradients, the pixel normaliser and the
    DPGMM's q(α) — so the model being measured would learn from the held-out data."""
    from torch.utils.tensorboard import SummaryWriter

    from aime_agent.config import PILLARS, preset
    from aime_agent.pretrain import Pretrainer, PretrainSettings

    config = preset("tiny", **PILLARS["perceiver"], **PILLARS["dpgmm"])
    trainer = Pretrainer(dataset, config, tmp_path, PretrainSettings(steps=3, log_every=100, eval_every=100))
    trainer.run(progress=False)  # the codebook is initialised, the normaliser has statistics
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    def moved() -> list[str]:
        return [k for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])]

    trainer.evaluate()
    with SummaryWriter(tmp_path / "tb") as writer:
        trainer.log_images(writer)
    assert moved() == [] and trainer.model.training  # unchanged, and back in train mode
    batch = trainer.data.sample(2, 8, np.random.default_rng(0), trainer.eval_ids)
    trainer.model.loss(batch)  # the same pass in train mode, as evaluation used to run
    changed = moved()
    assert {"perceiver.tokenizer.vq._codebook.embed", "input_norm.mean", "prior.w"} <= set(changed), changed


def test_a_checkpoint_older_than_a_config_field_resumes_with_its_legacy_value(dataset, tmp_path, capsys):
    """A field added after a checkpoint was saved takes its LEGACY value (config.py), so the run resumes when
    that is today's setting, and names the difference when it is not."""
    legacy = ["--set", "loss.attention_entropy_target=0.0"]  # the value it had before the field existed
    assert run(dataset, tmp_path, 2, *legacy) == 0
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt", "aime-pretrain")
    del ckpt["config"]["loss"]["attention_entropy_target"]
    save_checkpoint(tmp_path / "checkpoint.pt", "aime-pretrain", ckpt)
    assert run(dataset, tmp_path, 3) == 2
    assert "loss.attention_entropy_target: 0.0 → 0.5" in capsys.readouterr().err
    assert run(dataset, tmp_path, 3, *legacy) == 0
    assert "resuming" in capsys.readouterr().out
