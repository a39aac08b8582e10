"""Conv encoder, decoder p(x | h, z) without encoder skips, reward and continue heads."""

from aime_agent.encoder_decoder.decoder import ConvDecoder
from aime_agent.encoder_decoder.encoder import ConvEncoder, ResidualCell
from aime_agent.encoder_decoder.heads import ContinueHead, RewardHead

__all__ = ["ConvEncoder", "ConvDecoder", "ResidualCell", "RewardHead", "ContinueHead"]
