"""Learning from human feedback: the ratings store (feedback.py); reward models, DPO and PPO later."""
