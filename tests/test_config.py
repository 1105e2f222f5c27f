import json

import pytest

from stemtf import config
from stemtf.errors import ConfigError, ModelError

CONFIGS = config.SHIPPED_MODELS.parent / "configs"


@pytest.mark.parametrize(
    ("preset", "stems"),
    [
        ("2stems", ("vocals", "accompaniment")),
        ("4stems", ("vocals", "drums", "bass", "other")),
        ("5stems", ("vocals", "drums", "bass", "piano", "other")),
        ("custom.example", ("vocals", "guitar", "rest")),
    ],
)
def test_presets_load_and_state_only_differences(preset, stems):
    loaded = config.load_config(CONFIGS / f"{preset}.json")
    assert loaded.stems == stems
    raw = json.loads((CONFIGS / f"{preset}.json").read_text())
    defaults = config.ModelConfig().to_dict()
    # A preset never restates a default value (its stems it always names, for readability).
    assert all(raw[key] != defaults[key] for key in raw if key not in ("unet", "stems"))


def test_round_trip_through_dict():
    original = config.ModelConfig(stems=("a", "b", "c"), unet=config.UNetConfig(filters=(8, 16), head_filters=4, num_dropout_layers=1), max_bins=64, extension_bins=16)
    assert config.from_dict(json.loads(json.dumps(original.to_dict()))) == original


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"stems": ["a", "b"], "n_ftt": 2048}')
    with pytest.raises(ConfigError, match=r"Unknown config key 'n_ftt'.*valid keys"):
        config.load_config(path)


def test_unknown_nested_key_is_named():
    with pytest.raises(ConfigError, match=r"Unknown config key unet\.'filter'"):
        config.from_dict({"unet": {"filter": [8]}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"stems": ["vocals"]}, "at least two stems"),
        ({"stems": ["a", "a"]}, "unique"),
        ({"stems": ["a", "b/c"]}, "not allowed"),
        ({"n_fft": 3000}, "power of two"),
        ({"hop_length": 3000}, "hop_length"),
        ({"max_bins": 1000}, "multiple of 64"),
        ({"max_bins": 4096}, "at most"),
        ({"mask_extension": "mirror"}, "mask_extension"),
        ({"segment_frames": 100}, "segment_frames"),
        ({"sample_rate": "44100"}, "must be int"),
        ({"stems": "vocals"}, "list of str"),
        ({"unet": {"dropout_rate": 1.5}}, "dropout_rate"),
        ({"unet": {"filters": []}}, "non-empty"),
    ],
)
def test_invalid_values_are_rejected(data, message):
    with pytest.raises(ConfigError, match=message):
        config.from_dict(data)


def test_invalid_json_and_missing_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        config.load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        config.load_config(tmp_path / "nope.json")


def test_model_lookup_by_name_and_path(tmp_path, monkeypatch):
    model_dir = tmp_path / "zoo" / "mine"
    model_dir.mkdir(parents=True)
    (model_dir / config.CONFIG_FILE).write_text(json.dumps({"name": "mine", "stems": ["x", "y"]}))
    monkeypatch.setenv(config.MODELS_ENV, str(tmp_path / "zoo"))
    assert config.resolve_model_dir("mine") == model_dir
    assert config.resolve_model_dir(model_dir) == model_dir
    assert config.load_model_config("mine")[0].stems == ("x", "y")
    with pytest.raises(ModelError, match=r"Unknown model 'nope'.*mine"):
        config.resolve_model_dir("nope")
    with pytest.raises(ModelError, match="has no config.json"):
        config.resolve_model_dir(tmp_path)


def test_user_model_store_follows_the_cache_and_is_searched_after_the_shipped_models(tmp_path, monkeypatch):
    monkeypatch.setenv("STEMTF_CACHE", str(tmp_path / "cache"))
    assert config.cache_root() == tmp_path / "cache"
    assert config.user_model_store() == tmp_path / "cache" / "models"
    monkeypatch.delenv("STEMTF_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert config.cache_root() == tmp_path / "xdg" / "stemtf"
    store = config.user_model_store()
    assert store == tmp_path / "xdg" / "stemtf" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config.cache_root() == tmp_path / "home" / ".cache" / "stemtf"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert config.model_search_path()[-2:] == [config.SHIPPED_MODELS, store]
    (store / "imported").mkdir(parents=True)
    (store / "imported" / "config.json").write_text('{"name": "imported", "stems": ["a", "b"]}')
    assert config.resolve_model_dir("imported") == store / "imported"
    (store / "4stems").mkdir()
    (store / "4stems" / "config.json").write_text('{"name": "4stems", "stems": ["a", "b"]}')
    assert config.resolve_model_dir("4stems").parent == config.SHIPPED_MODELS  # a shipped name wins
    (store / ".imported.tmp-x1").mkdir()  # an import being staged (or killed half-way) is not a model
    (store / ".imported.tmp-x1" / "config.json").write_text('{"name": "imported", "stems": ["a", "b"]}')
    assert ".imported.tmp-x1" not in config.available_models()


def test_model_store_names_stay_importable_from_config():
    from stemtf import model_store

    for name in ("CONFIG_FILE", "WEIGHTS_FILE", "MODELS_ENV", "CACHE_ENV", "SHIPPED_MODELS", "PRESETS", "cache_root",
                 "user_model_store", "model_search_path", "available_models", "resolve_model_dir"):
        assert getattr(config, name) is getattr(model_store, name), name
    assert (config.PRESETS / "4stems.json").is_file() and (config.SHIPPED_MODELS / "4stems" / config.CONFIG_FILE).is_file()
