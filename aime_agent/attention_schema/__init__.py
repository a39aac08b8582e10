"""Pillar 4: the attention schema — slot attention (so far) and its diversity penalty."""

from aime_agent.attention_schema.slot_attention import SlotAttention, diversity_penalty

__all__ = ["SlotAttention", "diversity_penalty"]
