"""Learning from human feedback: the ratings store (feedback.py), preference records
(preferences.py), the reward, DPO, PPO and GRPO runners of the one loop (runs.py, ppo_run.py; the
objectives are in genforge/objectives), rollouts as batches (rollouts.py), where rewards come from
(rewards.py), and `genforge align` (pipeline.py, report.py, cli.py)."""
