"""aime_agent: AIME, a world model for visual reinforcement learning, as a Stable-Baselines3-style agent."""

__version__ = "0.1.0"
