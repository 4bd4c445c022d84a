"""A tiny audio judge for the Fréchet audio distance tests (the real one trains a few CPU minutes):
12 chorales and 8 folk tunes, a CNN of a few channels, 4 steps."""
from __future__ import annotations

from pathlib import Path

import pytest

from genforge.train.audio_judge import train_audio_judge  # bound here: a test may replace the module's


def tiny_judge(out: Path) -> Path:
    """Train it into out; its final checkpoint (with judge.json beside)."""
    from genforge.train.log import RunLog

    with pytest.MonkeyPatch.context() as mp:  # no loss PNG (a matplotlib subprocess) for a fixture
        mp.setattr(RunLog, "plot", lambda self, path=None, wait=False: None)
        return train_audio_judge(out, chorales=12, folk=8, max_iters=4, batch_size=16, width=4, feature_dim=8)
