"""The cached scene judge is trained beside its place and moved in whole: a second process that
finishes later keeps the first one's judge, and an unfinished one is replaced."""
import genforge.train.judge as judge_mod
from genforge import checkpoint as ckpt_io


def tiny(monkeypatch):
    real = judge_mod.train_judge
    monkeypatch.setattr(judge_mod, "train_judge", lambda out, **k: real(out, scenes_per_size=30, max_iters=3))


def test_a_judge_in_place_is_kept_and_an_unfinished_one_replaced(tmp_path, monkeypatch):
    tiny(monkeypatch)
    target = tmp_path / "judges" / "v"
    target.mkdir(parents=True)
    (target / "metrics.csv").write_text("step\n")  # a training that died: no checkpoint
    judge_mod._train_cached(target)
    first = ckpt_io.resolve(target)
    stamp = (first / "model.safetensors").stat().st_ino
    judge_mod._train_cached(target)  # as a second process finishing later would
    assert ckpt_io.resolve(target) == first and (first / "model.safetensors").stat().st_ino == stamp
    assert [p.name for p in target.parent.iterdir()] == ["v"]  # no temporary left behind
    monkeypatch.setenv("GENFORGE_CACHE", str(tmp_path / "cache"))
    assert judge_mod.scene_judge().class_names
