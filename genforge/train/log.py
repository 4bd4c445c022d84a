"""Run logs: metrics.csv (step, name, value; appended across resumes), TensorBoard events and a
loss-curve PNG drawn from the CSV."""
from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path


class RunLog:
    def __init__(self, out: Path, enabled: bool = True, tensorboard: bool = True):
        self.out, self.enabled = out, enabled
        self._tb = None
        self._plotter: subprocess.Popen | None = None
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        self.csv_path = out / "metrics.csv"
        new = not self.csv_path.exists()
        self._file = open(self.csv_path, "a", newline="")  # noqa: SIM115 (open for the run)
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(["step", "name", "value"])
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(out / "tensorboard"))
            except ImportError:  # tensorboard is optional at run time
                self._tb = None

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        for name, value in values.items():
            self._csv.writerow([step, name, repr(float(value))])
            if self._tb is not None:
                self._tb.add_scalar(name, value, step)
        self._file.flush()

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after `step` (a resumed run repeats those steps)."""
        if not self.enabled:
            return
        self._file.close()
        rows = read_metrics(self.csv_path)
        with open(self.csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "name", "value"])
            w.writerows([s, n, v] for s, n, v in rows if s <= step)
        self._file = open(self.csv_path, "a", newline="")  # noqa: SIM115 (open for the run)
        self._csv = csv.writer(self._file)

    def plot(self, path: Path | None = None, wait: bool = False) -> Path | None:
        """Redraw the loss PNG in a separate process, so matplotlib never loads into (grows or
        pauses) the training process. Skipped while the previous drawing is still running. With
        `wait` (the final plot of a run) a drawing in flight is superseded, and the final one runs
        at normal priority: nothing trains beside it any more, and on a busy machine a lowest-
        priority drawing could keep the finished run waiting for minutes."""
        if not self.enabled:
            return None
        path = path or self.out / "loss.png"
        if self._plotter is not None and self._plotter.poll() is None:
            if not wait:
                return path
            self._plotter.kill()
            self._plotter.wait()
        priority = "normal" if wait else "low"
        self._plotter = subprocess.Popen([sys.executable, "-m", "genforge.train.log", str(self.csv_path), str(path),
                                          priority])
        if wait:
            self._plotter.wait()
        return path

    def close(self) -> None:
        if self._plotter is not None:
            self._plotter.wait()
        if self.enabled:
            self._file.close()
            if self._tb is not None:
                self._tb.close()


def read_metrics(path: Path) -> list[tuple[int, str, float]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))[1:]
    return [(int(s), n, float(v)) for s, n, v in rows]


def plot_losses(csv_path: Path, png: Path) -> Path:
    """Draw every metric whose name ends in 'loss' against step; return the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, tuple[list, list]] = {}
    for step, name, value in read_metrics(csv_path):
        if name.endswith("loss") and math.isfinite(value):
            xs, ys = series.setdefault(name, ([], []))
            xs.append(step)
            ys.append(value)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for name, (xs, ys) in sorted(series.items()):
        ax.plot(xs, ys, label=name, marker="o" if len(xs) < 30 else None, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return png


if __name__ == "__main__":  # python -m genforge.train.log METRICS_CSV PNG [low|normal]
    # low: lowest CPU priority, for a drawing (about a CPU-second, most of it importing matplotlib)
    # that runs beside the training it reports on and must not take a core from it
    if sys.argv[3:4] != ["normal"]:
        os.nice(19)
    plot_losses(Path(sys.argv[1]), Path(sys.argv[2]))
