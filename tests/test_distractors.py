"""envs: distractors behind the DMC scene — deterministic under a seed, never over the robot, off at strength 0."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from envs.distractors import Distractors


def frames(seed, steps=6, **options):
    env = envs.make("cartpole-swingup", render_quality="fast", seed=seed, **options)
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for k in range(steps):
        obs, *_ = env.step(np.array([np.sin(k)], np.float32))
        out.append(obs)
    segments = env._camera.render(segmentation=True)[..., 0]
    env.close()
    return np.stack(out), segments


@pytest.mark.parametrize("noise", [False, True])
def test_the_same_seed_gives_the_same_distractors_and_another_seed_others(noise):
    a, _ = frames(3, distractors=0.7, distractor_noise=noise)
    b, _ = frames(3, distractors=0.7, distractor_noise=noise)
    c, _ = frames(4, distractors=0.7, distractor_noise=noise)
    assert np.array_equal(a, b)
    plain_c, _ = frames(4)
    assert not np.array_equal(c - plain_c, a - frames(3)[0])  # different shapes, not just another episode


def test_distractors_move_cover_only_the_background_and_vanish_at_strength_zero():
    plain, segments = frames(3)
    distracted, _ = frames(3, distractors=1.0, distractor_shapes=6)
    changed = (plain != distracted).any(-1)  # (T, S, S)
    assert changed.any() and not changed[-1][segments != -1].any()  # the robot and the floor are untouched
    assert not np.array_equal(changed[0], changed[-1])  # the shapes move between frames
    assert np.array_equal(frames(3, distractors=0.0)[0], plain)


def test_blend_strength_and_bad_options():
    layer = Distractors(8, 0.25, shapes=0, noise=False)  # black layer: a 25 % blend darkens by a quarter
    frame = np.full((8, 8, 3), 200, np.uint8)
    background = np.zeros((8, 8), bool)
    background[:4] = True
    out = layer.apply(frame, background)
    assert (out[:4] == 150).all() and (out[4:] == 200).all()
    with pytest.raises(ValueError, match=r"strength must lie in \[0, 1\]"):
        Distractors(8, 1.5)
    with pytest.raises(ValueError, match="shapes must be >= 0"):
        Distractors(8, 0.5, shapes=-1)
