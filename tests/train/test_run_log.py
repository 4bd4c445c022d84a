"""The run log's loss PNG: drawn in a separate process; the final drawing supersedes one in flight."""
from __future__ import annotations

import os

from genforge.train.log import RunLog, read_metrics


def test_final_plot_supersedes_a_drawing_in_flight_and_writes_the_png(tmp_path):
    log = RunLog(tmp_path, tensorboard=False)
    for step in range(1, 6):
        log.scalars(step, {"train/loss": 3.0 / step, "lr": 1e-3})
    first = log.plot()  # at lowest priority, beside training
    in_flight = log._plotter
    final = log.plot(wait=True)  # the run's last: kills the one in flight unless it finished
    assert first == final == tmp_path / "loss.png"
    assert in_flight.poll() is not None and log._plotter.returncode == 0
    assert final.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and os.path.getsize(final) > 1000
    log.close()
    assert [r[1] for r in read_metrics(tmp_path / "metrics.csv")].count("train/loss") == 5
