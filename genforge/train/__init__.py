"""Training: the one loop, optimizers, schedules, checkpoints, logging."""
