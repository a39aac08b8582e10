"""Pillar 4: the attention schema — slot attention, a fused attention map with precision weights, an attention
prior, and the slots' diversity penalty."""

from aime_agent.attention_schema.schema import AttentionSchema, attention_overlay
from aime_agent.attention_schema.slot_attention import SlotAttention, diversity_penalty

__all__ = ["AttentionSchema", "attention_overlay", "SlotAttention", "diversity_penalty"]
