"""Pillar 1: causal Perceiver IO — a VQ video tokenizer, block-causal latents, a context for the posterior,
next-frame token prediction and autoregressive generation of any length."""

from aime_agent.perceiver_io.attention import Attention, Block, fourier_features, rotary
from aime_agent.perceiver_io.model import CausalPerceiverIO
from aime_agent.perceiver_io.tokenizer import VideoTokenizer

__all__ = ["Attention", "Block", "CausalPerceiverIO", "VideoTokenizer", "fourier_features", "rotary"]
