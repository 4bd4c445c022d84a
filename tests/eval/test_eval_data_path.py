"""`genforge eval CKPT` finds the data the checkpoint trained on from any working directory:
config.json records data.path absolute; an older checkpoint's relative path is looked up
where training ran; when the data is gone, the error names every path it tried."""
import json
import shutil

import pytest

from genforge.cli import main
from genforge.errors import DataError
from genforge.eval.perplexity import evaluate_checkpoint


@pytest.fixture
def relative_run(tmp_path, monkeypatch, char_data, tiny_overrides):
    """A run trained in tmp_path/work with data.path=data/char and train.out_dir=runs/tiny (both relative)."""
    from genforge.run_config import load_config
    from genforge.train.run import run

    work = tmp_path / "work"
    shutil.copytree(char_data, work / "data" / "char")
    monkeypatch.chdir(work)
    overrides = [o for o in tiny_overrides(work, 2) if not o.startswith(("data.path=", "train.out_dir="))]
    ckpt = run(load_config(None, [*overrides, "data.path=data/char", "train.out_dir=runs/tiny"]), progress=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return work, (work / ckpt).resolve()


def test_eval_from_another_directory(relative_run, capsys):
    work, ckpt = relative_run
    config = json.loads((ckpt / "config.json").read_text())
    assert config["data"]["path"] == str(work / "data" / "char")
    assert main(["eval", str(ckpt), "--device", "cpu"]) == 0
    assert str(work / "data" / "char") in capsys.readouterr().out


def test_an_older_relative_path_is_found_where_training_ran(relative_run):
    work, ckpt = relative_run
    config = json.loads((ckpt / "config.json").read_text())
    config["data"]["path"] = "data/char"  # what checkpoints recorded before
    (ckpt / "config.json").write_text(json.dumps(config))
    assert evaluate_checkpoint(ckpt, device="cpu")["source"] == f"{work / 'data' / 'char'} [val]"


def test_missing_data_names_the_paths_tried(relative_run):
    work, ckpt = relative_run
    shutil.rmtree(work / "data")
    with pytest.raises(DataError, match=f"data.path={work / 'data' / 'char'}\\) is not at {work / 'data' / 'char'};"
                                        " pass --data DIR"):
        evaluate_checkpoint(ckpt, device="cpu")


def test_a_finetuned_lm_records_its_data(tmp_path, monkeypatch, tiny_run, corpus_file):
    from genforge.finetune.run import FinetuneOptions, finetune

    monkeypatch.chdir(tmp_path)
    ckpt = finetune(tiny_run, corpus_file, "ft", FinetuneOptions(batch_size=4),
                    ["train.max_iters=2", "train.device=cpu", "train.eval_iters=1", "train.warmup_iters=1"], progress=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = evaluate_checkpoint(tmp_path / ckpt, device="cpu")
    assert result["source"] == f"{tmp_path / 'ft' / 'data'} [val]"
