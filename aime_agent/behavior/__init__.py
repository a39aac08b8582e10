"""Learning in imagination: actor, critic, λ-returns and return normalisation (DreamerV3 recipe)."""

from aime_agent.behavior.actor import Actor
from aime_agent.behavior.critic import Critic
from aime_agent.behavior.learner import Behavior
from aime_agent.behavior.returns import ReturnNormalizer, lambda_returns

__all__ = ["Actor", "Behavior", "Critic", "ReturnNormalizer", "lambda_returns"]
