"""``python -m aime_agent.benchmark '<RunSpec JSON>'``: one run in this process (how the suite launches a run)."""

from aime_agent.benchmark.runs import main

main()
