"""The benchmark suite: AIME beside SB3's SAC and PPO on DMC pixel tasks, over seeds, resumable.

* ``runs``: one run (:class:`RunSpec`, :func:`run`): learn, evaluate, checkpoint, CSV rows.
* ``suite``: agents × tasks × seeds, the tiers, the launchers (local subprocesses, SLURM through submitit);
  ``aime benchmark``.
* ``report``: IQM / mean with stratified-bootstrap CIs (rliable), per-task tables, curves, performance profiles.
* ``machine``: what ran a run (CPU, GPU, torch, commit); ``device_replay``: SAC's replay on the GPU.

The report and the SLURM launcher need the ``bench`` extra (rliable, matplotlib, submitit).
"""

from aime_agent.benchmark.runs import AGENTS, RunSpec, run
from aime_agent.benchmark.suite import TIERS, plan

__all__ = ["AGENTS", "RunSpec", "TIERS", "plan", "run"]
