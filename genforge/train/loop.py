"""The one training loop, for every model family.

An objective (genforge/objectives) supplies phases, parameters and losses; the loop owns the
rest: one AdamW + warmup/cosine schedule per phase, gradient accumulation, clipping, autocast,
optional torch.compile, an EMA copy, periodic evaluation, checkpoints with exact resume, a
non-finite-gradient guard, and logs (stdout, CSV, TensorBoard, loss PNG). SIGTERM or SIGINT ends
the run at a step boundary with a checkpoint (genforge/train/signals.py). With train.keep_best the
checkpoint of the lowest val_loss is kept as OUT/best, and train.early_stop ends the run after that
many evaluations without a new lowest (small data sets overfit long before max_iters).
"""
from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import torch
from tqdm import tqdm

from genforge import checkpoint as ckpt_io
from genforge.config import TrainConfig
from genforge.cpu.training import for_training as cpu_training
from genforge.device import autocast, resolve_device, resolve_dtype
from genforge.errors import CheckpointError, GenforgeError, Interrupted
from genforge.train import dist as dist_mod
from genforge.train.ema import EMA
from genforge.train.log import RunLog
from genforge.train.optim import AdamW, build_optimizer, hidden_matrices
from genforge.train.schedule import lr_at
from genforge.train.signals import StopSignals, exit_status
from genforge.version import __version__

MAX_BAD_STEPS = 5  # consecutive non-finite gradients before the run stops


def train(objective, data, cfg: TrainConfig, out: str | Path, resume: bool = False, config: dict | None = None,
          tokenizer: Path | None = None, progress: bool = True) -> Path:
    """Train objective on data (an iterator of batches with state_dict/eval_batches); return the
    final checkpoint directory under `out`. `config` goes into each checkpoint's config.json.
    On SIGTERM/SIGINT: finish the step, save it, raise Interrupted (naming the checkpoint)."""
    run = _Run(objective, data, cfg, Path(out), config)
    try:
        with StopSignals() as signals:
            return _train(run, resume, tokenizer, progress, signals)
    finally:
        if run.shards is not None:  # also when training fails: the caller gets its threads back
            run.shards.close()


def _train(run: _Run, resume: bool, tokenizer: Path | None, progress: bool, signals: StopSignals) -> Path:
    objective, data, cfg = run.objective, run.data, run.cfg
    if run.dist.main:  # what saves killed mid-way left behind
        ckpt_io.clean_stale(run.out)
    step, ckpt = _restore(run.out, objective, data, run.ema) if resume else (0, None)
    dist_mod.wrap(objective, run.dist, run.device, fsdp=cfg.fsdp)
    # optimizers after wrapping: FSDP replaces the parameters by their shards
    hidden = hidden_matrices(objective.modules().values())  # Muon's, with train.optimizer=muon
    run.optimizers = {ph: build_optimizer(objective.parameters(ph), cfg, run.device, hidden) for ph in objective.phases}
    if run.dtype == torch.float16:  # fp16 gradients underflow without loss scaling; bf16 has fp32's range
        run.scalers = {ph: torch.amp.GradScaler(run.device.type) for ph in objective.phases}
    best = _Best(cfg)
    if ckpt is not None:
        _restore_optimizers(ckpt, run.optimizers, run.scalers)
        best.load(ckpt_io.load_state(ckpt, "trainer").get("best"))
    if run.dist.enabled:  # the same init on every rank (DDP broadcast rank 0's); dropout differs per rank
        torch.manual_seed(cfg.seed + 1_000_003 * run.dist.rank)
    main = run.dist.main
    log = RunLog(run.out, enabled=main)
    if resume:
        log.truncate_after(step)
    if cfg.compile:  # after loading weights: compiled modules keep their state_dict keys
        for m in objective.modules().values():
            m.compile()
    # a wall-clock budget ends the run before max_iters: count steps, the time is in the bar
    total = None if cfg.max_minutes else cfg.max_iters
    bar = tqdm(total=total, initial=step, disable=not (progress and main), dynamic_ncols=True, unit="step")
    deadline = run.started + 60 * cfg.max_minutes if cfg.max_minutes else float("inf")  # the schedule's clock too
    final, stop, improved = None, 0, False
    while step < cfg.max_iters:
        lr = run.step(step)
        step += 1
        bar.update(1)
        stop = signals.agreed(run.dist)  # every rank stops after the same step
        last = step == cfg.max_iters or run.clock() > deadline or bool(stop)
        if step % cfg.log_interval == 0 or last:
            run.check_bad_steps(step)
            values = run.window.flush(lr)
            rates = {k: values.pop(k) for k in RATES.values() if k in values}  # per rank; the run's is the sum
            values = dist_mod.mean(values, run.dist, run.device)
            values.update({k: rate * run.dist.world for k, rate in rates.items()})
            log.scalars(step, values)
            bar.set_postfix_str(_fmt(values, ("loss", *RATES.values())), refresh=False)
            if main and not progress:
                print(f"step {step}: {_fmt(values)}", flush=True)
        if (step % cfg.eval_interval == 0 or last) and not stop:  # stopping: save first, no time to evaluate
            with run.shards.all_threads() if run.shards else contextlib.nullcontext():  # evaluation is one batch at a time
                values = _evaluate(objective, data, cfg, run.device, run.dtype, run.ema)
            values = dist_mod.mean(values, run.dist, run.device)
            log.scalars(step, values)
            improved = best.update(step, values)
            if main:
                bar.write(f"step {step}: {_fmt(values)}" + (" (best)" if improved else ""))
            if best.exhausted():
                if main:
                    bar.write(f"step {step}: no lower val_loss for {cfg.early_stop} evaluations; stopping "
                              f"(best {best.value:.4g} at step {best.step})")
                last = True
            log.plot(wait=last)
        if step % (cfg.ckpt_interval or cfg.eval_interval) == 0 or last or improved:
            final = run.out / f"step-{step:07d}"
            modules, state = _gather(step, objective, run.optimizers, data, run.ema, run.scalers)  # every rank: FSDP gathers
            if best.enabled:
                state["trainer"]["best"] = best.state_dict()
            if main:
                _save(final, run.meta, modules, state, tokenizer, cfg, best=improved)
            dist_mod.barrier(run.dist)
            improved = False
        if last:
            break
    bar.close()
    log.close()
    dist_mod.shutdown(run.dist)
    if stop:
        raise Interrupted(f"stopped by {signal.Signals(stop).name} after step {step}; saved {final} "
                          "(continue with --resume)", exit_status(stop), final)
    if best.enabled and (run.out / "best").exists():
        return (run.out / "best").resolve()
    return final or ckpt_io.resolve(run.out)


class _Best:
    """The lowest val_loss so far (train.keep_best, train.early_stop): its step, and how many
    evaluations since it. Saved in each checkpoint's trainer state, so a resumed run goes on."""

    def __init__(self, cfg: TrainConfig):
        self.enabled, self.patience = cfg.keep_best or cfg.early_stop > 0, cfg.early_stop
        self.value, self.step, self.stale = float("inf"), 0, 0

    def update(self, step: int, values: dict[str, float]) -> bool:
        """Note one evaluation; True when it is a new lowest val_loss."""
        if not self.enabled:
            return False
        if "val_loss" not in values:
            raise GenforgeError(f"train.keep_best / train.early_stop: the evaluation gives no val_loss "
                                f"(only {', '.join(values) or 'nothing'})")
        if values["val_loss"] < self.value:
            self.value, self.step, self.stale = float(values["val_loss"]), step, 0
            return True
        self.stale += 1
        return False

    def exhausted(self) -> bool:
        return self.patience > 0 and self.stale >= self.patience

    def state_dict(self) -> dict:
        return {"val_loss": self.value, "step": self.step, "stale": self.stale}

    def load(self, state: dict | None) -> None:
        if self.enabled and state:
            self.value, self.step, self.stale = float(state["val_loss"]), int(state["step"]), int(state["stale"])


class _Run:
    """What one training run holds: device, precision, optimizers, EMA, the metrics window."""

    def __init__(self, objective, data, cfg: TrainConfig, out: Path, config: dict | None):
        self.objective, self.data, self.cfg, self.out = objective, data, cfg, out
        self.dist, self.device = dist_mod.init(resolve_device(cfg.device))
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        # on CPU: malloc settings, and train.cpu_parallel=batch's shard pool, drawing the next step's batches ahead
        self.shards, self.data = cpu_training(objective, data, cfg, self.device, self.dist.enabled, self.dtype)
        torch.set_float32_matmul_precision("high")  # TF32 matmuls on GPUs that have them
        torch.manual_seed(cfg.seed)
        for m in objective.modules().values():
            m.to(self.device).train(_train_mode(objective))
        self.optimizers: dict = {}  # built by train() once the modules are wrapped
        self.scalers: dict = {}  # a GradScaler per phase when training in float16
        self.ema = _make_ema(objective, cfg)
        self.meta = {"genforge_version": __version__, **(config or {})}
        self.window = _Window()
        self.streak = self.worst = torch.zeros((), device=self.device)
        # train.budget_clock=cpu: the budget counts this process's CPU time (all its threads), which
        # other jobs on a shared machine do not eat into, so budgeted runs compare fairly under load
        self.clock = time.process_time if cfg.budget_clock == "cpu" else time.monotonic
        self.started = self.clock()

    def _schedule_step(self, step: int) -> int:
        """The step the schedule reads. With a time budget (train.max_minutes) the schedule also
        follows the budget's clock, so the learning rate has decayed when time runs out however
        fast the machine is (such runs do not resume exactly)."""
        cfg = self.cfg
        if not cfg.max_minutes or step < cfg.warmup_iters:
            return step
        spent = (self.clock() - self.started) / (60 * cfg.max_minutes)
        decay = cfg.lr_decay_iters or cfg.max_iters
        return max(step, int(cfg.warmup_iters + spent * (decay - cfg.warmup_iters)))

    def step(self, step: int) -> float:
        """One optimizer step per phase on grad_accum micro-batches; returns the learning rate."""
        cfg, t0 = self.cfg, time.perf_counter()
        lr = lr_at(self._schedule_step(step), cfg.lr, cfg.min_lr, cfg.warmup_iters, cfg.lr_decay_iters or cfg.max_iters)
        if self.shards is not None:  # self.data is a Prefetch
            batches = self.data.take()
        else:
            batches = [next(self.data) for _ in range(cfg.grad_accum)]
        bad = torch.zeros((), device=self.device)
        for phase, opt in self.optimizers.items():
            bad = torch.maximum(bad, _phase_step(self.objective, phase, opt, batches, lr, cfg, self.device, self.dtype,
                                                 self.window, self.scalers.get(phase), self.shards))
        # consecutive skipped steps, counted on the device (reading a GPU value each step would
        # stall the pipeline); check_bad_steps reads the longest streak once per log line
        self.streak = (self.streak + 1) * bad
        self.worst = torch.maximum(self.worst, self.streak)
        if self.ema is not None:  # a skipped step left the weights as they were
            self.ema.update_parameters(dist_mod.unwrap(self.objective.modules()[self.objective.ema_module]))
        self.window.add_time(time.perf_counter() - t0)
        return lr

    def check_bad_steps(self, step: int) -> None:
        worst, self.worst = int(self.worst), torch.zeros((), device=self.device)
        if worst >= MAX_BAD_STEPS:
            raise GenforgeError(f"step {step}: gradients were NaN/inf for {worst} steps in a row; "
                                f"lower train.lr (now {self.cfg.lr}) or check the data")


def _phase_step(objective, phase, opt, batches, lr, cfg, device, dtype, window, scaler=None, shards=None) -> torch.Tensor:
    """Accumulate gradients over the micro-batches, clip, step. Returns 1.0 (a 0-d tensor) if the
    gradients were not finite and the step was skipped (with a GradScaler: only once its scale
    fell below 1, i.e. not a mere fp16 overflow), else 0.0."""
    scale = getattr(objective, "lr_scales", {}).get(phase, 1.0)  # e.g. a GAN's discriminator learning faster
    for group in opt.param_groups:
        group["lr"] = lr * scale * group.get("lr_scale", 1.0)
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, batch in enumerate(batches):
        if shards is not None:  # train.cpu_parallel=batch: the shards run on the pool's threads
            grads, metrics = shards.grads(objective, phase, batch, params, 1 / len(batches), device, dtype)
            for p, g in zip(params, grads):
                if g is not None:
                    p.grad = g if p.grad is None else p.grad.add_(g)
            window.add(phase, metrics)
            continue
        with contextlib.ExitStack() as stack:
            if i < len(batches) - 1:  # gradients are all-reduced once, after the last micro-batch
                for m in objective.modules().values():
                    stack.enter_context(dist_mod.no_sync(m))
            with autocast(device, dtype):
                loss, metrics = objective.loss(batch, phase)
            loss = loss / len(batches)
            (scaler.scale(loss) if scaler else loss).backward()
        window.add(phase, metrics)
    if scaler:
        scaler.unscale_(opt)  # clip the true gradients
    norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
    bad = (~torch.isfinite(dist_mod.full(norm))).float()
    if scaler:
        scaler.step(opt)  # skips the step when the gradients overflowed, and lowers the scale
        scaler.update()
        if scaler.get_scale() >= 1.0:  # a mere fp16 overflow, not a broken run
            bad = torch.zeros_like(bad)
    elif isinstance(opt, AdamW):
        opt.step(found_inf=bad)  # the kernel skips a non-finite step on the device
    elif not bad:
        opt.step()
    opt.zero_grad(set_to_none=True)
    return bad


def _evaluate(objective, data, cfg, device, dtype, ema=None) -> dict[str, float]:
    modules = objective.modules().values()
    for m in modules:
        m.eval()
    with torch.no_grad(), autocast(device, dtype), _ema_weights(objective, ema):
        values = objective.evaluate(data.eval_batches(cfg.eval_iters))
    for m in modules:
        m.train(_train_mode(objective))
    return values


def _train_mode(objective) -> bool:
    """False where the objective keeps its modules in eval mode while training (PPO, GRPO: with
    dropout the log-probs of an update would not be those its rollouts were sampled with)."""
    return getattr(objective, "train_mode", True)


@contextlib.contextmanager
def _ema_weights(objective, ema):
    """Evaluation scores the EMA weights, the ones checkpoints keep for inference: they are copied
    into the objective's module (which every objective's evaluate already uses) and the raw
    weights are copied back afterwards, in place, so optimizers keep their parameters."""
    if ema is None:
        yield
        return
    target = dist_mod.unwrap(objective.modules()[objective.ema_module])
    raw = {name: t.detach().clone() for name, t in target.state_dict().items()}
    target.load_state_dict(ema.module.state_dict())
    try:
        yield
    finally:
        target.load_state_dict(raw)


# what an objective's metrics count ("tokens" for text, "images" for image families) -> the speed logged
RATES = {"tokens": "tok_s", "images": "img_s"}


class _Window:
    """Metrics summed since the last log line."""

    def __init__(self):
        self.sums, self.counts, self.items, self.seconds, self.rate = {}, {}, 0, 0.0, "tok_s"

    def add(self, phase: str, metrics: dict) -> None:
        for name, value in metrics.items():
            if name in RATES:
                self.items += int(value)
                self.rate = RATES[name]
                continue
            key = name if phase == "main" else f"{phase}_{name}"
            self.sums[key] = self.sums.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1

    def add_time(self, seconds: float) -> None:
        self.seconds += seconds

    def flush(self, lr: float) -> dict[str, float]:
        t0 = time.perf_counter()
        values = {k: float(v) / self.counts[k] for k, v in self.sums.items()}  # float() syncs once here
        # on a GPU the steps only queued their kernels: the wait for them here is training time too
        self.seconds += time.perf_counter() - t0
        values["lr"] = lr
        if self.items:
            values[self.rate] = self.items / max(self.seconds, 1e-9)
        self.__init__()
        return values


def _fmt(values: dict, keys=None) -> str:
    keys = keys or values.keys()
    return " ".join(f"{k} {values[k]:.4g}" for k in keys if k in values)


def _make_ema(objective, cfg: TrainConfig) -> EMA | None:
    if not cfg.ema_decay:
        return None
    return EMA(objective.modules()[objective.ema_module], cfg.ema_decay, cfg.ema_warmup)


def _gather(step, objective, optimizers, data, ema, scalers) -> tuple[dict, dict]:
    """What a checkpoint holds: modules (or, for FSDP, their gathered whole state dicts) and the
    state/ entries. Every rank calls it; only rank 0 writes."""
    modules = {name: dist_mod.unwrap(m) for name, m in objective.modules().items()}
    modules = {name: ({k: dist_mod.full(v) for k, v in m.state_dict().items()} if dist_mod.is_sharded(m) else m)
               for name, m in modules.items()}
    state: dict[str, dict] = {"trainer": {"step": step, "data": data.state_dict()}, "rng": _rng_state()}
    if ema is not None:  # inference uses the EMA weights; the raw ones are kept for resume
        name = objective.ema_module
        state[f"raw-{name}"] = dict(modules[name].state_dict())
        state["trainer"]["ema_n_averaged"] = ema.n_averaged
        modules[name] = ema.module
    for phase, opt in optimizers.items():
        tensors, groups = _flatten_optimizer(opt.state_dict())
        state[f"optimizer-{phase}"] = {k: dist_mod.full(v) for k, v in tensors.items()}
        state[f"optimizer-{phase}-groups"] = {"param_groups": groups}
        if phase in scalers:
            state[f"optimizer-{phase}-groups"]["grad_scaler"] = scalers[phase].state_dict()
    return modules, state


def _save(path: Path, meta, modules, state, tokenizer, cfg, best: bool = False) -> Path:
    step = state["trainer"]["step"]
    path = ckpt_io.save_checkpoint(path, {**meta, "step": step}, modules, tokenizer, state)
    ckpt_io.mark_latest(path.parent, path)
    if best:
        ckpt_io.mark_latest(path.parent, path, "best")
    ckpt_io.prune(path.parent, cfg.keep_checkpoints)
    return path


def _restore(out, objective, data, ema) -> tuple[int, Path]:
    """Load weights, EMA, data cursor and RNG of the run's latest checkpoint; (step, its path)."""
    path = ckpt_io.resolve(out)
    if not (path / "state").is_dir():
        raise CheckpointError(f"{path}: has no state/ directory, so it cannot resume training")
    ckpt_io.check_sums(path)  # weights and state: a corrupted file is named before anything loads
    modules = objective.modules()
    for name, module in modules.items():
        if ema is not None and name == objective.ema_module:
            ckpt_io.load_module(ema.module, path / f"{name}.safetensors")
            raw = ckpt_io.load_state(path, f"raw-{name}")
            module.load_state_dict(raw)
        else:
            ckpt_io.load_module(module, path / f"{name}.safetensors")
    trainer = ckpt_io.load_state(path, "trainer")
    try:
        if ema is not None:
            ema.n_averaged = int(trainer["ema_n_averaged"])
        data.load_state_dict(trainer["data"])
        step = int(trainer["step"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path / 'state' / 'trainer.json'}: malformed ({e.__class__.__name__}: {e}); "
                              "this checkpoint cannot resume training") from None
    _set_rng_state(ckpt_io.load_state(path, "rng"))
    return step, path


def _restore_optimizers(path: Path, optimizers: dict, scalers: dict) -> None:
    for phase, opt in optimizers.items():
        tensors = ckpt_io.load_state(path, f"optimizer-{phase}")
        meta = ckpt_io.load_state(path, f"optimizer-{phase}-groups")
        opt.load_state_dict(_unflatten_optimizer(tensors, meta["param_groups"]))
        if phase in scalers and "grad_scaler" in meta:
            scalers[phase].load_state_dict(meta["grad_scaler"])


def _flatten_optimizer(sd: dict) -> tuple[dict[str, torch.Tensor], list[dict]]:
    tensors = {f"{idx}.{k}": (v if isinstance(v, torch.Tensor) else torch.tensor(v))
               for idx, st in sd["state"].items() for k, v in st.items()}
    return tensors, sd["param_groups"]


def _unflatten_optimizer(tensors: dict, groups: list[dict]) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


def _rng_state() -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return state


def _set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    cuda = [state[k] for k in sorted(state) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
