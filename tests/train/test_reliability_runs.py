"""Issue 21, items 3-5: SIGTERM/SIGINT finish the step and save it (exit 0 / 130, one line saying
where), a second signal exits at once, ranks under torchrun save the same step; `train` into an
existing run needs --resume or --overwrite; stale temporary checkpoints are removed on start."""
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from genforge.cli import main
from genforge.train.log import read_metrics
from genforge.train.signals import StopSignals


def config_file(tmp_path) -> str:
    path = tmp_path / "gpt.yaml"
    path.write_text("family: gpt\n")
    return str(path)


def start(cmd: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def steps_until(proc: subprocess.Popen, at_least: int) -> list[int]:
    """The steps proc logged ("step N: ...") until one reached at_least."""
    steps = []
    for line in proc.stdout:
        if m := re.match(r"step (\d+): loss", line):
            steps.append(int(m.group(1)))
            if steps[-1] >= at_least:
                return steps
    raise AssertionError(f"the run ended before step {at_least}: {proc.stderr.read()[-3000:]}")


def finish(proc: subprocess.Popen) -> tuple[int, list[int], str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, [int(s) for s in re.findall(r"^step (\d+): loss", out, re.M)], err


def latest_step(run: Path) -> int:
    return int((run / "latest").resolve().name.removeprefix("step-"))


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 0), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_saves_the_step_it_finished(tmp_path, tiny_overrides, sig, status):
    run = tmp_path / "run"
    overrides = [*tiny_overrides(run, 1_000_000), "train.eval_interval=1000", "train.threads=1"]
    proc = start([sys.executable, "-m", "genforge.cli", "train", config_file(tmp_path), *overrides, "--no-progress"])
    before = steps_until(proc, 7)
    proc.send_signal(sig)
    rc, after, err = finish(proc)
    reached = (after or before)[-1]
    assert rc == status, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"genforge train: stopped by {sig.name} after step {reached}; "
                                            f"saved {run / f'step-{reached:07d}'} (continue with --resume)")
    assert latest_step(run) == reached  # no step lost
    assert not list(run.glob(".*tmp*"))
    # ... and the run continues from there
    assert main(["train", config_file(tmp_path), *tiny_overrides(run, reached + 3), "train.eval_interval=1000",
                 "--resume", "--no-progress"]) == 0
    logged = [s for s, name, _ in read_metrics(run / "metrics.csv") if name == "loss"]
    assert logged == list(range(1, reached + 4))


def test_a_second_signal_exits_at_once(monkeypatch, capsys):
    exits = []
    monkeypatch.setattr(os, "_exit", lambda status: exits.append(status) or (_ for _ in ()).throw(SystemExit(status)))
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as signals:
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.received == signal.SIGTERM and not exits  # the first only asks the loop to stop
        with pytest.raises(SystemExit):
            os.kill(os.getpid(), signal.SIGINT)
            signal.pthread_kill(signal.pthread_self(), 0)  # the handler runs before this returns
    assert exits == [128 + signal.SIGINT]
    assert "second SIGINT: exiting now, without saving" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before


def rank_pids(launcher: subprocess.Popen) -> dict[int, int]:
    """{rank: pid} of torchrun's worker processes."""
    pids = {}
    for pid in Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split():
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        rank = next((int(e[5:]) for e in env if e.startswith(b"RANK=")), None)
        if rank is not None:
            pids[rank] = int(pid)
    return pids


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads torchrun's workers from /proc")
def test_ranks_agree_on_the_step_they_save(tmp_path, tiny_overrides):
    """SIGTERM reaches only rank 1: rank 0 stops after the same step and writes it."""
    run = tmp_path / "run"
    overrides = [*tiny_overrides(run, 1_000_000), "train.eval_interval=1000", "train.threads=1"]
    proc = start([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                  "genforge.cli", "train", config_file(tmp_path), *overrides, "--no-progress"])
    steps_until(proc, 5)
    os.kill(rank_pids(proc)[1], signal.SIGTERM)
    rc, after, err = finish(proc)
    assert rc == 0, err[-3000:]
    assert "stopped by SIGTERM after step" in err and "Traceback" not in err
    assert latest_step(run) == after[-1]


def tiny_train(tiny_overrides, run, steps, *flags) -> int:
    return main(["train", config_file(run.parent), *tiny_overrides(run, steps), "train.eval_interval=5",
                 "--no-progress", *flags])


def snapshot(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_training_into_an_existing_run_needs_resume_or_overwrite(tmp_path, tiny_overrides, capsys):
    run = tmp_path / "run"
    assert tiny_train(tiny_overrides, run, 10) == 0
    before = snapshot(run)
    capsys.readouterr()
    assert tiny_train(tiny_overrides, run, 10) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--resume" in err and "--overwrite" in err and "step-0000010" in err
    assert snapshot(run) == before  # nothing touched
    assert tiny_train(tiny_overrides, run, 10, "--resume", "--overwrite") == 2
    assert tiny_train(tiny_overrides, run, 5, "--overwrite") == 0  # a new, shorter run replaces it
    assert sorted(p.name for p in run.glob("step-*")) == ["step-0000005"]
    assert {s for s, _, _ in read_metrics(run / "metrics.csv")} == set(range(1, 6))
    assert tiny_train(tiny_overrides, tmp_path / "empty-dir", 5) == 0  # a directory without a run is fine


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporary_checkpoints_are_removed_but_not_a_live_writers(tmp_path, tiny_overrides):
    run = tmp_path / "run"
    assert tiny_train(tiny_overrides, run, 5) == 0
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {"dead": f".step-0000010.tmp-{dead_pid()}-abc", "live": f".step-0000010.tmp-{live.pid}-def",
                 "older genforge": ".step-0000010.tmp-k2j4h5gq", "this pid": f".step-0000010.tmp-{os.getpid()}-x"}
        for name in names.values():
            (run / name).mkdir()
            (run / name / "model.safetensors").write_bytes(b"partial")
        (run / f".latest.tmp-{dead_pid()}").symlink_to("step-0000005")
        assert tiny_train(tiny_overrides, run, 10, "--resume") == 0
        assert sorted(p.name for p in run.glob(".*")) == [names["live"]]
    finally:
        live.kill()
        live.wait()
