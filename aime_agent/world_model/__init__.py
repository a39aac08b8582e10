"""WorldModel: observe() (posterior rollout), imagine() (prior rollout), loss() (named terms)."""

from aime_agent.world_model.batch import preprocess, to_image
from aime_agent.world_model.losses import balanced_kl
from aime_agent.world_model.training import evaluation, make_adversary, make_aggregator, make_optimizer, train_step
from aime_agent.world_model.world_model import LatentState, WorldModel

__all__ = [
    "LatentState",
    "WorldModel",
    "balanced_kl",
    "evaluation",
    "make_adversary",
    "make_aggregator",
    "make_optimizer",
    "preprocess",
    "to_image",
    "train_step",
]
