"""Issue 21, item 1: every path a manifest, a checkpoint's file list or a dataset's metadata names
resolves inside its own directory (after symlinks), else a one-line error that says nothing about
the target: not whether it exists, nor its size or content."""
import json
import shutil

import numpy as np
import pytest

from genforge import checkpoint as ckpt_io
from genforge.data.captions import read_captioned
from genforge.data.paths import inside
from genforge.data.readers import check_hf_paths
from genforge.data.shards import TokenData
from genforge.errors import CheckpointError, DataError

SECRET = b"top secret, 37 bytes long, of course\n"


@pytest.fixture
def secret(tmp_path):
    """A file outside every data directory; errors must not give away anything about it."""
    path = tmp_path / "outside" / "secret.bin"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


def assert_discloses_nothing(message: str, secret) -> None:
    assert "\n" not in message
    # pytest's numbered temp root (pytest-371/...) may hold the digits of the size by chance
    unnumbered = message.replace(str(secret.parents[2]), "TMP").replace(str(secret.resolve().parents[2]), "TMP")
    assert str(len(SECRET)) not in unnumbered and "bytes" not in unnumbered, message
    assert str(secret.resolve()) not in message or "is not a file inside" in message
    assert "secret, 37" not in message and "missing" not in message


def data_copy(char_data, tmp_path):
    return shutil.copytree(char_data, tmp_path / "data")


def edit_manifest(data, change):
    m = json.loads((data / "manifest.json").read_text())
    change(m)
    (data / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize("name", ["ABS", "../outside/secret.bin", "../../../../../../etc/passwd", "/etc/passwd",
                                  "../outside/no-such-file"])
def test_shard_paths_outside_the_data_directory_are_refused(char_data, tmp_path, secret, name):
    data = data_copy(char_data, tmp_path)
    name = str(secret) if name == "ABS" else name
    edit_manifest(data, lambda m: m["splits"]["train"][0].update(file=name, tokens=len(SECRET) // 2))
    with pytest.raises(DataError, match="splits.train.0..file: .* is not a file inside") as e:
        TokenData(data)
    assert_discloses_nothing(str(e.value), secret)


def test_a_shard_symlinked_outside_is_refused(char_data, tmp_path, secret):
    data = data_copy(char_data, tmp_path)
    shard = data / json.loads((data / "manifest.json").read_text())["splits"]["train"][0]["file"]
    shard.unlink()
    shard.symlink_to(secret)
    with pytest.raises(DataError, match="is not a file inside") as e:
        TokenData(data)
    assert_discloses_nothing(str(e.value), secret)
    # a symlink that stays inside the directory is fine
    shard.unlink()
    (data / "store").mkdir()
    shutil.copyfile(char_data / shard.name, data / "store" / shard.name)
    shard.symlink_to(data / "store" / shard.name)
    assert TokenData(data).tokens("train") > 0


def test_a_tokenizer_outside_the_data_directory_is_refused(char_data, tmp_path, secret):
    data = data_copy(char_data, tmp_path)
    shutil.copyfile(data / "tokenizer.json", secret)  # a valid tokenizer, even: still not read
    edit_manifest(data, lambda m: m.update(tokenizer=str(secret)))
    with pytest.raises(DataError, match="manifest.json: tokenizer: .* is not a file inside"):
        TokenData(data)
    edit_manifest(data, lambda m: m.update(tokenizer="../outside/secret.bin"))
    with pytest.raises(DataError, match="is not a file inside"):
        TokenData(data)


def test_train_refuses_a_traversing_manifest_and_copies_nothing(char_data, tmp_path, secret, tiny_config):
    from genforge.train.run import run

    data = data_copy(char_data, tmp_path)
    edit_manifest(data, lambda m: m.update(tokenizer="../outside/secret.bin"))
    with pytest.raises(DataError, match="is not a file inside"):
        run(tiny_config(tmp_path / "run", f"data.path={data}"), progress=False)
    assert not list((tmp_path / "run").glob("step-*"))


@pytest.mark.parametrize("entry", [None, 7, "", ["a"]])
def test_malformed_shard_names_are_one_line_errors(char_data, tmp_path, entry):
    data = data_copy(char_data, tmp_path)
    edit_manifest(data, lambda m: m["splits"]["train"][0].update(file=entry))
    with pytest.raises(DataError, match="splits.train.0..file: expected a file name"):
        TokenData(data)


def test_checkpoint_file_list_outside_the_directory_is_refused(tiny_ckpt, tmp_path, secret):
    ckpt = shutil.copytree(tiny_ckpt, tmp_path / "ckpt")
    sums = json.loads((ckpt / "sha256.json").read_text())
    sums["../outside/secret.bin"] = "0" * 64
    (ckpt / "sha256.json").write_text(json.dumps(sums))
    with pytest.raises(CheckpointError, match="is not a file inside") as e:
        ckpt_io.verify(ckpt)
    assert_discloses_nothing(str(e.value), secret)


def test_checkpoint_weights_symlinked_outside_are_refused(tiny_ckpt, tmp_path):
    elsewhere = shutil.copytree(tiny_ckpt, tmp_path / "elsewhere")
    ckpt = shutil.copytree(tiny_ckpt, tmp_path / "ckpt")
    (ckpt / "model.safetensors").unlink()
    (ckpt / "model.safetensors").symlink_to(elsewhere / "model.safetensors")  # the same bytes, even
    for verify in (True, False):
        with pytest.raises(CheckpointError, match="model.safetensors: 'model.safetensors' is not a file inside"):
            ckpt_io.load(ckpt, verify_files=verify)
    (ckpt / "config.json").unlink()
    (ckpt / "config.json").symlink_to(elsewhere / "config.json")
    with pytest.raises(CheckpointError, match="config.json: 'config.json' is not a file inside"):
        ckpt_io.read_config(ckpt)


def test_a_run_directory_whose_latest_points_inside_it_loads(tiny_run):
    assert ckpt_io.load(tiny_run).path == (tiny_run / "latest").resolve()


def test_a_latest_link_out_of_the_run_directory_is_refused(tiny_ckpt, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "latest").symlink_to(tiny_ckpt)
    with pytest.raises(CheckpointError, match="latest: 'latest' is not a file inside"):
        ckpt_io.load(run)


def write_png(path, value=0):
    from PIL import Image

    Image.fromarray(np.full((4, 4), value, dtype=np.uint8)).save(path)


@pytest.mark.parametrize("name", ["../outside/secret.png", "ABS"])
def test_caption_metadata_outside_the_folder_is_refused(tmp_path, name, capsys):
    folder = tmp_path / "captioned"
    folder.mkdir()
    (tmp_path / "outside").mkdir()
    write_png(tmp_path / "outside" / "secret.png", 255)
    write_png(folder / "a.png")
    name = str(tmp_path / "outside" / "secret.png") if name == "ABS" else name
    rows = [{"file_name": "a.png", "text": "a black square"}, {"file_name": name, "text": "stolen"}]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"metadata.jsonl:2: file_name: .* is not a file inside"):
        read_captioned(folder)
    images, captions = read_captioned(folder, on_bad="skip")  # skipped, never read
    assert captions == ["a black square"] and images.max() == 0
    assert "is not a file inside" in capsys.readouterr().err


def test_saved_dataset_metadata_outside_the_folder_is_refused(tmp_path, secret):
    ds = tmp_path / "ds"
    (ds / "train").mkdir(parents=True)
    (ds / "dataset_dict.json").write_text(json.dumps({"splits": ["train"]}))
    (ds / "train" / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000.arrow"}]}))
    check_hf_paths(ds)
    (ds / "train" / "state.json").write_text(json.dumps({"_data_files": [{"filename": "../../outside/secret.bin"}]}))
    with pytest.raises(DataError, match=r"state.json: _data_files\[0\].filename: .* is not a file inside") as e:
        check_hf_paths(ds)
    assert_discloses_nothing(str(e.value), secret)
    (ds / "dataset_dict.json").write_text(json.dumps({"splits": ["../outside"]}))
    with pytest.raises(DataError, match=r"dataset_dict.json: splits\[0\]: .* is not a file inside"):
        check_hf_paths(ds)


def test_inside_accepts_what_lies_inside(tmp_path):
    (tmp_path / "sub").mkdir()
    assert inside(tmp_path, "sub/x.bin", "m") == (tmp_path / "sub" / "x.bin").resolve()
    assert inside(tmp_path, str(tmp_path / "x.bin"), "m") == (tmp_path / "x.bin").resolve()
    for bad in ("..", ".", "sub/../..", "a\x00b"):
        with pytest.raises(DataError):
            inside(tmp_path, bad, "m")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(DataError):
        inside(tmp_path, "loop", "m")
