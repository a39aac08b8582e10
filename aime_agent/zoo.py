"""rl-zoo3 integration: register AIME as the zoo's ``aime`` algorithm, then run its train / enjoy.

    python -m aime_agent.zoo train --algo aime --env dmc/cartpole-swingup-v0 --gym-packages envs -f logs/
    python -m aime_agent.zoo enjoy --algo aime --env dmc/cartpole-swingup-v0 --gym-packages envs -f logs/ --no-render

Hyperparameters default to ``aime_agent/hyperparams/aime.yml`` (pass ``--conf-file`` for your own).
``enjoy`` loads the model without allocating the replay (the buffer is allocated on first write).
"""

from __future__ import annotations

import sys
from pathlib import Path

HYPERPARAMS = Path(__file__).parent / "hyperparams" / "aime.yml"


def register() -> None:
    """Add ``aime`` to rl-zoo3's algorithm table (every module that keeps a reference to it)."""
    import rl_zoo3
    import rl_zoo3.enjoy
    import rl_zoo3.exp_manager
    import rl_zoo3.train

    from aime_agent.agent import AIME

    rl_zoo3.ALGOS["aime"] = AIME
    for module in (rl_zoo3.train, rl_zoo3.exp_manager, rl_zoo3.enjoy):
        module.ALGOS = rl_zoo3.ALGOS


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("train", "enjoy"):
        raise SystemExit("usage: python -m aime_agent.zoo {train,enjoy} [rl-zoo3 arguments]")
    command, rest = argv[0], argv[1:]
    if command == "train" and "--conf-file" not in rest and "-conf" not in rest:
        rest += ["--conf-file", str(HYPERPARAMS)]
    register()
    sys.argv = [f"rl_zoo3.{command}", *rest]
    if command == "train":
        from rl_zoo3.train import train

        train()
    else:
        from rl_zoo3.enjoy import enjoy

        enjoy()


if __name__ == "__main__":
    main()
