"""Pillar 4: the attention schema — slot attention, a fused attention map with precision weights, an attention
prior, and the slots' diversity penalty."""

from aime_agent.attention_schema.schema import AttentionSchema
from aime_agent.attention_schema.slot_attention import SlotAttention, diversity_penalty

__all__ = ["AttentionSchema", "SlotAttention", "diversity_penalty"]
