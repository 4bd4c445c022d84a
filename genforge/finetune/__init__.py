"""Fine-tuning: a training run whose initial weights come from a checkpoint, with a choice of
which parameters train (full, LoRA adapters through PEFT, or the unfrozen layers)."""
