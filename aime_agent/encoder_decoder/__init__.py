"""Input standardiser, conv encoder, decoder p(x | h, z) without encoder skips, reward and continue heads."""

from aime_agent.encoder_decoder.decoder import ConvDecoder
from aime_agent.encoder_decoder.encoder import ConvEncoder, ResidualCell
from aime_agent.encoder_decoder.heads import ContinueHead, RewardHead
from aime_agent.encoder_decoder.normalizer import PixelStandardizer

__all__ = ["ConvEncoder", "ConvDecoder", "ResidualCell", "RewardHead", "ContinueHead", "PixelStandardizer"]
