"""Videos in TensorBoard without moviepy: an animated GIF in an image summary, what ``add_video`` writes.

torch's ``SummaryWriter.add_video`` (and so SB3's ``Video``) encodes through ``moviepy.editor``, which moviepy 2
removed: with moviepy 2 installed it prints a line and writes nothing. TensorBoard shows a video as an image
summary whose bytes are a GIF, so this module encodes the GIF with imageio (a dependency) and writes the summary
to each TensorBoard output of an SB3 logger.
"""

from __future__ import annotations

import io

import numpy as np
import torch


def gif_bytes(frames: torch.Tensor, fps: float = 4.0) -> bytes:
    """frames (T, 3, H, W) in [0, 1] → an animated GIF that loops."""
    import imageio.v3 as iio

    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be (T, 3, H, W), got {tuple(frames.shape)}")
    array = (frames.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    out = io.BytesIO()
    iio.imwrite(out, array, extension=".gif", duration=1000 / fps, loop=0)
    return out.getvalue()


def record_video(logger, tag: str, frames: torch.Tensor, step: int, fps: float = 4.0) -> int:
    """Write ``frames`` (T, 3, H, W) in [0, 1] as video ``tag`` at ``step`` to every TensorBoard output of the
    SB3 ``logger``; how many outputs got it (0 when the logger has no TensorBoard output)."""
    from stable_baselines3.common.logger import TensorBoardOutputFormat
    from tensorboard.compat.proto.summary_pb2 import Summary

    writers = [f.writer for f in getattr(logger, "output_formats", []) if isinstance(f, TensorBoardOutputFormat)]
    if not writers:
        return 0
    _, _, height, width = frames.shape
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif_bytes(frames, fps))
    summary = Summary(value=[Summary.Value(tag=tag, image=image)])
    for writer in writers:
        writer.file_writer.add_summary(summary, step)
    return len(writers)
