"""Config loading: YAML files of overrides, dotted overrides, and errors that name the key."""
import pytest

from genforge.errors import ConfigError
from genforge.models.gpt import GPTConfig
from genforge.run_config import load_config


def test_defaults_without_file_or_overrides():
    cfg = load_config(None)
    assert cfg.family == "gpt"
    assert cfg.model == GPTConfig()
    assert cfg.train.lr == 1e-3 and cfg.data.batch_size == 12


def test_dotted_overrides_parse_types():
    cfg = load_config(None, ["model.n_layer=3", "model.flavour=llama", "train.lr=3e-4", "train.min_lr=0",
                             "train.compile=true", "train.max_minutes=1.5", "train.lr_decay_iters=null",
                             "data.path=some/dir", "model.n_kv_head=2"])
    assert cfg.model.n_layer == 3 and type(cfg.model.n_layer) is int
    assert cfg.model.flavour == "llama"
    assert cfg.train.lr == 3e-4 and type(cfg.train.lr) is float  # YAML 1.1 reads 3e-4 as a string
    assert cfg.train.min_lr == 0.0 and type(cfg.train.min_lr) is float  # int promoted to float
    assert cfg.train.compile is True
    assert cfg.train.max_minutes == 1.5
    assert cfg.train.lr_decay_iters is None
    assert cfg.data.path == "some/dir"
    assert cfg.model.n_kv_head == 2


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  n_layer: 3\n  n_embd: 96\ntrain:\n  lr: 3e-4\n  max_iters: 50\n")
    cfg = load_config(path, ["train.max_iters=7"])
    assert (cfg.model.n_layer, cfg.model.n_embd) == (3, 96)
    assert cfg.train.lr == 3e-4
    assert cfg.train.max_iters == 7  # the command line wins over the file
    assert cfg.model.n_head == GPTConfig().n_head  # what the file leaves out keeps its default


def test_unknown_key_names_it_and_suggests_close_match():
    with pytest.raises(ConfigError, match=r"model\.n_layr") as e:
        load_config(None, ["model.n_layr=3"])
    assert "n_layer" in str(e.value)


def test_unknown_section_in_yaml_suggests_close_match(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("trian:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match="trian") as e:
        load_config(path)
    assert "train" in str(e.value).replace("trian", "")


def test_unknown_key_without_close_match_lists_keys():
    with pytest.raises(ConfigError, match=r"data\.zzz: unknown config key.*batch_size"):
        load_config(None, ["data.zzz=1"])


@pytest.mark.parametrize("item, key", [
    ("model.n_layer=two", "model.n_layer"),
    ("model.n_layer=2.5", "model.n_layer"),
    ("train.lr=fast", "train.lr"),
    ("train.compile=3", "train.compile"),
    ("train.dtype=float64", "train.dtype"),
    ("model.flavour=bert", "model.flavour"),
    ("train.max_minutes=soon", "train.max_minutes"),
])
def test_wrong_type_names_key(item, key):
    with pytest.raises(ConfigError) as e:
        load_config(None, [item])
    assert str(e.value).startswith(key + "=")


def test_section_must_be_a_mapping(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: 3\n")
    with pytest.raises(ConfigError, match="model"):
        load_config(path)


def test_n_embd_not_divisible_by_n_head_names_both():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["model.n_embd=30", "model.n_head=4"])
    msg = str(e.value)
    assert "n_head=4" in msg and "n_embd=30" in msg


@pytest.mark.parametrize("item, key", [
    ("model.n_layer=0", "model.n_layer"),
    ("model.dropout=1.0", "model.dropout"),
    ("data.batch_size=0", "data.batch_size"),
    ("train.max_iters=0", "train.max_iters"),
    ("train.min_lr=1.0", "train.min_lr"),
    ("train.ema_decay=1.0", "train.ema_decay"),
])
def test_invalid_values_name_key(item, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [item])


def test_malformed_override():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["model.n_layer"])


def test_an_override_that_is_not_yaml_is_one_line_naming_it():
    with pytest.raises(ConfigError, match=r"override 'data.text=\[a, b': the value is not valid YAML"):
        load_config(None, ["data.text=[a, b"])


def test_missing_and_invalid_yaml_files_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml") as e:
        load_config(bad)
    assert "\n" not in str(e.value)


def test_to_dict_round_trips_through_overrides(tmp_path):
    import yaml

    cfg = load_config(None, ["model.n_layer=3", "train.lr=3e-4", "data.path=x"])
    path = tmp_path / "dump.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    assert load_config(path) == cfg
