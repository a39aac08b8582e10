"""Pillar 5: multi-task gradient balancing — combiners built on TorchJD and the loss aggregator.

``combine(G, method)`` turns a (tasks × parameters) matrix of task gradients into one direction;
``LossAggregator`` groups a model's named loss terms into weighted tasks and fills the gradients.
"""

from aime_agent.multi_task_learning.adversarial import Adversary, PatchDiscriminator
from aime_agent.multi_task_learning.aggregator import JACOBIANS, LossAggregator, gradient_metrics, parse_tasks
from aime_agent.multi_task_learning.combiners import (
    COMBINERS,
    RGB,
    RGBProjected,
    combine,
    make_combiner,
    project_to_dual_cone,
)

__all__ = ["COMBINERS", "JACOBIANS", "RGB", "Adversary", "LossAggregator", "PatchDiscriminator", "RGBProjected",
           "combine", "gradient_metrics", "make_combiner", "parse_tasks", "project_to_dual_cone"]  # fmt: skip
