"""Objectives: the math of training. An objective owns its model(s) and exposes

    phases: tuple[str, ...]                       ("main",) or ("d", "g") for a GAN
    parameters(phase) -> Iterable[Parameter]      what that phase's optimizer updates
    loss(batch, phase) -> (loss, metrics)         metrics: tensors or numbers; "tokens" or "images" counts items
    evaluate(batches) -> dict[str, float]         validation metrics (run under no_grad)
    modules() -> dict[str, nn.Module]             what a checkpoint saves ("model", "d", ...)
    ema_module: str | None                        which module an EMA copy follows
    lr_scales: dict[str, float] (optional)        a phase's learning rate = the schedule's times this
    train_mode: bool (optional, True)             False: the loop keeps the modules in eval mode (PPO)

so every family trains in the same loop (genforge/train/loop.py).
"""
