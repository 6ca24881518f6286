"""cmt: Chain-of-Meta-Thought SFT and Confidence-Calibrated RL for math reasoning, as composable experiments."""

__version__ = "0.1.0"
