"""Spleeter checkpoints into stemtf: the layout as configuration, the variable mapping, and the import command.

The checkpoints are written here, in TensorFlow's TF1 checkpoint format (``SaveV2`` + a ``checkpoint``
state file, what ``tf.compat.v1.train.Saver`` writes) with Spleeter's real variable names, spelt out
literally from Spleeter's naming scheme (not from stemtf's mapping), so a wrong mapping fails.
Spleeter itself is not needed; ``benchmarks/spleeter_parity.py`` compares with it.
"""

from __future__ import annotations

import json
import pathlib
import tarfile

import numpy as np
import pytest

from stemtf import spleeter
from stemtf.cli import main
from stemtf.config import ModelConfig, UNetConfig, from_dict, user_model_store
from stemtf.errors import ConfigError, ModelError
from stemtf.spleeter_import import import_spleeter

# A Spleeter config as Spleeter's JSON states it, at tiny geometry (6 levels of few filters, 64 bins).
TINY_PARAMS = {
    "instrument_list": ["vocals", "drums", "bass"],
    "sample_rate": 44100,
    "frame_length": 256,
    "frame_step": 64,
    "T": 128,
    "F": 64,
    "n_channels": 2,
    "separation_exponent": 2,
    "mask_extension": "zeros",
    "model": {"type": "unet.unet", "params": {"conv_n_filters": [2, 3, 4, 4, 5, 6], "conv_activation": "ELU", "deconv_activation": "ELU"}},
}


def _name(base: str, index: int) -> str:
    return base if index == 0 else f"{base}_{index}"


def spleeter_variables(filters=(2, 3, 4, 4, 5, 6), num_unets: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """Random values for every variable Spleeter's graph creates, named as its TF1 layer counters name them.

    Per U-Net (in instrument order): 6 strided 5x5 convolutions (conv2d_0..5), 6 transposed ones, the
    4x4 output convolution (conv2d_6, one filter in, 2 out), 12 batch norms (6 encoder, 6 decoder).
    """
    rng = np.random.default_rng(seed)
    variables = {"global_step": np.array(1234, np.int64)}
    decoder = [filters[4], filters[3], filters[2], filters[1], filters[0], 1]
    for s in range(num_unets):
        for i in range(6):
            inputs = 2 if i == 0 else filters[i - 1]
            variables[f"{_name('conv2d', 7 * s + i)}/kernel"] = rng.normal(0, 0.3, (5, 5, inputs, filters[i]))
            variables[f"{_name('conv2d', 7 * s + i)}/bias"] = rng.normal(0, 0.1, (filters[i],))
        variables[f"{_name('conv2d', 7 * s + 6)}/kernel"] = rng.normal(0, 0.3, (4, 4, 1, 2))
        variables[f"{_name('conv2d', 7 * s + 6)}/bias"] = rng.normal(0, 0.1, (2,))
        for j in range(6):
            inputs = filters[5] if j == 0 else 2 * decoder[j - 1]
            variables[f"{_name('conv2d_transpose', 6 * s + j)}/kernel"] = rng.normal(0, 0.3, (5, 5, decoder[j], inputs))
            variables[f"{_name('conv2d_transpose', 6 * s + j)}/bias"] = rng.normal(0, 0.1, (decoder[j],))
        for b, size in enumerate(list(filters) + decoder):
            name = _name("batch_normalization", 12 * s + b)
            variables[f"{name}/gamma"] = rng.uniform(0.5, 1.5, (size,))
            variables[f"{name}/beta"] = rng.normal(0, 0.1, (size,))
            variables[f"{name}/moving_mean"] = rng.normal(0, 0.1, (size,))
            variables[f"{name}/moving_variance"] = rng.uniform(0.5, 2.0, (size,))
    return {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in variables.items()}


def write_checkpoint(folder: pathlib.Path, variables: dict[str, np.ndarray]) -> pathlib.Path:
    """A TF1 checkpoint (``model.index``, ``model.data-*``, ``checkpoint``) as Spleeter's Saver leaves it."""
    import tensorflow as tf

    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(variables)
    tf.raw_ops.SaveV2(prefix=str(folder / "model"), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(variables[name]) for name in names])
    (folder / "checkpoint").write_text('model_checkpoint_path: "model"\nall_model_checkpoint_paths: "model"\n')
    return folder


@pytest.fixture(autouse=True)
def _own_store(tmp_path, monkeypatch):
    """Each test its own model store (and LiteRT cache), so "nothing was written" can be checked."""
    monkeypatch.setenv("STEMTF_CACHE", str(tmp_path / "cache"))


def tiny_spleeter_config(**changes) -> ModelConfig:
    return spleeter.config_from_params({**TINY_PARAMS, **changes}, name="spleeter-tiny")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spleeter") / "tiny"
    variables = spleeter_variables()
    write_checkpoint(folder, variables)
    params = tmp_path_factory.mktemp("params") / "tiny.json"
    params.write_text(json.dumps(TINY_PARAMS))
    return folder, variables, params


# ------------------------------------------------------------------------------------------------
# The layout as configuration


def test_spleeter_layout_is_configuration_of_the_one_build_model():
    from stemtf.model import build_model

    config = tiny_spleeter_config()
    assert (config.trunk, config.masks, config.unet.variant, config.mask_extension) == ("per_stem", "spleeter", "spleeter", "zeros")
    assert (config.unet.encoder_activation, config.unet.decoder_activation, config.unet.head_filters) == ("elu", "elu", 1)
    model = build_model(config)
    trunk = model.get_layer("unet_drums")
    names = [layer.name for layer in trunk.layers]
    # Spleeter's order: no batch norm / activation on the deepest level, skips from the convolutions
    assert "encoder_bn_5" not in names and "encoder_act_5" not in names and "encoder_bn_4" in names
    skip = trunk.get_layer("decoder_skip_0")
    assert [t.name for t in skip.input][0] == trunk.get_layer("encoder_conv_4").output.name  # [skip, upsampled]
    assert trunk.get_layer("decoder_conv_0").input.name == trunk.get_layer("encoder_conv_5").output.name
    assert type(trunk.get_layer("encoder_act_0")).__name__ == "ELU"
    assert trunk.get_layer("decoder_conv_5").filters == 1
    # one trunk per stem, and they do not start equal (no seeded same-shape initializer)
    kernels = [model.get_layer(f"unet_{stem}").get_layer("encoder_conv_0").get_weights()[0] for stem in config.stems]
    assert not np.allclose(kernels[0], kernels[1])
    # round trip through config.json
    assert from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_default_config_builds_the_shared_trunk_as_before():
    from stemtf.model import build_model

    config = ModelConfig(stems=("a", "b"), max_bins=64, n_fft=256, hop_length=64, extension_bins=16, segment_frames=64,
                         unet=UNetConfig(filters=(4, 8, 16), head_filters=2))
    assert (config.trunk, config.masks, config.unet.variant) == ("shared", "ratio", "stemtf")
    model = build_model(config)
    trunk = model.get_layer("unet")
    assert type(trunk.get_layer("encoder_act_2")).__name__ == "LeakyReLU"
    assert type(trunk.get_layer("decoder_act_0")).__name__ == "ReLU"
    assert [t.name for t in trunk.get_layer("decoder_skip_0").input][1] == trunk.get_layer("encoder_act_1").output.name


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"trunk": "twin"}, "`trunk` must be one of"),
        ({"masks": "softmax"}, "`masks` must be one of"),
        ({"mask_extension": "mirror"}, "`mask_extension` must be one of"),
        ({"separation_exponent": 0.0}, "`separation_exponent` must be between"),
        ({"unet": {"variant": "demucs"}}, "`unet.variant` must be one of"),
        ({"unet": {"encoder_activation": "gelu"}}, "`unet.encoder_activation` must be one of"),
    ],
)
def test_bad_layout_values_are_config_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        from_dict({"stems": ["a", "b"], **changes})


def test_spleeter_masks_follow_spleeters_formula():
    from stemtf.model import SpleeterMasks

    rng = np.random.default_rng(1)
    magnitude = rng.uniform(0, 1e-4, (1, 4, 8, 2)).astype(np.float32)  # quiet bins: epsilon matters
    magnitude[0, 0, 0] = 0.0
    sigmoids = [rng.uniform(0, 1, (1, 4, 8, 2)).astype(np.float32) for _ in range(3)]
    masks = SpleeterMasks(separation_exponent=2.0, epsilon=1e-10)([magnitude, *sigmoids])
    estimates = [s.astype(np.float64) * magnitude for s in sigmoids]
    total = sum(e ** 2 for e in estimates) + 1e-10
    for mask, estimate in zip(masks, estimates):
        np.testing.assert_allclose(np.asarray(mask), (estimate ** 2 + 1e-10 / 3) / total, rtol=2e-5)
    np.testing.assert_allclose(np.asarray(masks[0])[0, 0, 0], 1 / 3, rtol=1e-6)  # silence splits evenly
    # softmax_unet (5stems): softmax over stems of the logits replaces the sigmoids
    soft = SpleeterMasks(softmax=True)([magnitude, *sigmoids])
    weights = np.exp(np.stack(sigmoids)) / np.exp(np.stack(sigmoids)).sum(axis=0)
    estimates = [w * magnitude for w in weights]
    total = sum(e.astype(np.float64) ** 2 for e in estimates) + 1e-10
    np.testing.assert_allclose(np.asarray(soft[1]), (estimates[1] ** 2 + 1e-10 / 3) / total, rtol=2e-4)


def test_released_configs_match_spleeters_json():
    two, four, five = (spleeter.release_config(r, name=r) for r in ("2stems", "4stems", "5stems-16kHz"))
    assert (two.unet.encoder_activation, two.unet.decoder_activation, two.masks) == ("leaky_relu", "relu", "spleeter")
    assert (four.unet.encoder_activation, four.stems) == ("elu", ("vocals", "drums", "bass", "other"))
    assert (five.masks, five.max_bins, five.stems[1]) == ("spleeter_softmax", 1536, "piano")
    assert spleeter.RELEASES["4stems-16kHz"].archive == "4stems"
    with pytest.raises(ModelError, match="Unknown Spleeter model '3stems'"):
        spleeter.release_config("3stems", name="x")


# ------------------------------------------------------------------------------------------------
# The checkpoint reader


def test_every_checkpoint_variable_lands_in_its_layer(tiny_checkpoint):
    folder, variables, _ = tiny_checkpoint
    config = tiny_spleeter_config()
    model = spleeter.convert_checkpoint(folder, config)
    drums = model.get_layer("unet_drums")  # U-Net 1: conv2d_7.., conv2d_transpose_6.., batch_normalization_12..
    np.testing.assert_array_equal(drums.get_layer("encoder_conv_2").get_weights()[0], variables["conv2d_9/kernel"])
    np.testing.assert_array_equal(drums.get_layer("decoder_conv_5").get_weights()[1], variables["conv2d_transpose_11/bias"])
    np.testing.assert_array_equal(drums.get_layer("encoder_bn_4").get_weights()[3], variables["batch_normalization_16/moving_variance"])
    np.testing.assert_array_equal(drums.get_layer("decoder_bn_0").get_weights()[0], variables["batch_normalization_18/gamma"])
    np.testing.assert_array_equal(model.get_layer("head_bass").get_weights()[0], variables["conv2d_20/kernel"])
    np.testing.assert_array_equal(model.get_layer("unet_vocals").get_layer("encoder_conv_0").get_weights()[0], variables["conv2d/kernel"])
    # every variable is accounted for: all mapped weights set, + the unused deepest batch norms, - global_step
    consumed = spleeter.load_checkpoint_weights(model, config, variables)
    assert consumed == len(variables) - 1
    assert len(model.weights) == consumed - 4 * 3


def test_shape_mismatch_is_one_line(tiny_checkpoint, tmp_path):
    _, variables, _ = tiny_checkpoint
    broken = dict(variables)
    broken["conv2d_transpose_8/kernel"] = np.zeros((5, 5, 4, 7), np.float32)
    folder = write_checkpoint(tmp_path / "broken", broken)
    with pytest.raises(spleeter.SpleeterCheckpointError, match=r"^Variable 'conv2d_transpose_8/kernel' .* has shape \[5, 5, 4, 7\], .* needs \[5, 5, 4, 8\]") as error:
        spleeter.convert_checkpoint(folder, tiny_spleeter_config())
    assert "\n" not in str(error.value)


def test_another_family_or_no_spleeter_checkpoint_is_one_line(tiny_checkpoint, tmp_path):
    folder, _, _ = tiny_checkpoint
    with pytest.raises(spleeter.SpleeterCheckpointError, match=r"holds 3 Spleeter U-Nets, but 'spleeter-tiny' has 2 stems"):
        spleeter.convert_checkpoint(folder, tiny_spleeter_config(instrument_list=["vocals", "accompaniment"]))
    # a 3-U-Net checkpoint imported as Spleeter's 4stems
    from stemtf.spleeter_import import import_spleeter

    with pytest.raises(ModelError, match=r"holds 3 Spleeter U-Nets, but 'spleeter-4stems' has 4 stems"):
        import_spleeter(str(folder), release="4stems", output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    other = write_checkpoint(tmp_path / "other", {"dense/kernel": np.zeros((3, 3), np.float32), "global_step": np.array(1, np.int64)})
    with pytest.raises(spleeter.SpleeterCheckpointError, match=r"is not a Spleeter checkpoint"):
        spleeter.convert_checkpoint(other, tiny_spleeter_config())
    extra = write_checkpoint(tmp_path / "extra", {**spleeter_variables(), "lstm/kernel": np.zeros(3, np.float32)})
    with pytest.raises(spleeter.SpleeterCheckpointError, match=r"does not use, e.g. 'lstm/kernel'"):
        spleeter.convert_checkpoint(extra, tiny_spleeter_config())
    with pytest.raises(spleeter.SpleeterCheckpointError, match=r"^Cannot read a TensorFlow checkpoint from"):
        spleeter.read_checkpoint(tmp_path / "nothing-here")


def test_optimizer_state_is_skipped(tmp_path):
    variables = spleeter_variables()
    variables.update({"conv2d/kernel/Adam": variables["conv2d/kernel"], "beta1_power": np.float32(0.9)})
    folder = write_checkpoint(tmp_path / "trained", variables)
    spleeter.convert_checkpoint(folder, tiny_spleeter_config())


# ------------------------------------------------------------------------------------------------
# stemtf import spleeter: folders and archives


def _archive(folder: pathlib.Path, path: pathlib.Path) -> pathlib.Path:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for file in sorted(folder.iterdir()):
            tar.add(file, arcname=file.name)  # the release archives hold the files at the top level
    return path


def test_import_folder_and_archive_give_the_same_model(tiny_checkpoint, tmp_path, capsys):
    from stemtf.model import load_model

    folder, _, params = tiny_checkpoint
    assert main(["import", "spleeter", str(folder), "--spleeter-config", str(params), "--name", "tiny-a", "-q"]) == 0
    stored = user_model_store() / "tiny-a"
    assert sorted(p.name for p in stored.iterdir()) == ["README.md", "config.json", "model.weights.h5"]
    card = (stored / "README.md").read_text()
    assert "MIT" in card and "Spleeter-exact" in card and str(folder.resolve()) in card
    archive = _archive(folder, tmp_path / "tiny.tar.gz")
    out = tmp_path / "models" / "tiny-b"
    assert main(["import", "spleeter", str(archive), "--spleeter-config", str(params), "-o", str(out),
                 "--mask-extension", "average", "-q"]) == 0
    (a, config_a), (b, config_b) = load_model("tiny-a"), load_model(out)  # found by name in the store
    assert config_a.mask_extension == "zeros" and config_b.mask_extension == "average"
    assert (config_a.chunking, config_b.chunking) == ("spleeter", "crossfade")  # Spleeter-exact: Spleeter's grid too
    assert config_b.extension_bins == 64  # Spleeter's "average": the mean over every predicted bin
    magnitude = np.random.default_rng(0).uniform(0, 1, (1, 128, 64, 2)).astype(np.float32)
    for stem in config_a.stems:
        np.testing.assert_array_equal(np.asarray(a(magnitude)[stem]), np.asarray(b(magnitude)[stem]))
    # again: refused without --overwrite, the first model untouched
    capsys.readouterr()
    assert main(["import", "spleeter", str(folder), "--spleeter-config", str(params), "--name", "tiny-a"]) == 1
    assert "already exists; use --overwrite to replace it, or --name to import" in capsys.readouterr().err
    with pytest.raises(ModelError, match="already exists; use `overwrite` to replace it, or `name`"):  # the library's words
        import_spleeter(str(folder), spleeter_config=params, name="tiny-a")
    assert main(["import", "spleeter", str(folder), "--spleeter-config", str(params), "--name", "tiny-a", "--overwrite", "-q"]) == 0


def test_corrupt_archive_and_bad_sources_are_one_line(tmp_path, capsys):
    bad = tmp_path / "4stems.tar.gz"
    bad.write_bytes(b"\x1f\x8b" + b"not really gzip" * 100)
    (tmp_path / "none").mkdir()
    empty = _archive(tmp_path / "none", tmp_path / "empty.tar.gz")
    for args, message in [
        ([str(bad)], "is not a readable .tar.gz archive"),
        ([str(empty)], "holds no TensorFlow checkpoint"),
        ([str(tmp_path / "missing")], "does not exist: give a Spleeter model folder"),
        (["spleeter:3stems"], "Unknown Spleeter model 'spleeter:3stems'"),
        ([str(bad), "--mask-extension", "mirror"], "--mask-extension must be one of"),
    ]:
        assert main(["import", "spleeter", *args]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not user_model_store().exists() or not any(user_model_store().iterdir())


# ------------------------------------------------------------------------------------------------
# spleeter:NAME: the download path, against a real HTTP server on 127.0.0.1


class ReleaseServer:
    """Serves ``{path: bytes}`` like GitHub's release downloads; ``short`` paths send half their body then close."""

    def __init__(self, files: dict[str, bytes], short: tuple[str, ...] = ()) -> None:
        import http.server
        import threading

        self.files, self.short, self.requests = files, short, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if self.path in server.short else body)
                if self.path in server.short:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/deezer/spleeter/releases/download/v1.4.0"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _release_files(archive: bytes, *, name: str = "2stems", checksum: str | None = None) -> dict[str, bytes]:
    import hashlib

    prefix = "/deezer/spleeter/releases/download/v1.4.0"
    digest = checksum or hashlib.sha256(archive).hexdigest()
    return {f"{prefix}/checksum.json": json.dumps({name: digest, "4stems": "0" * 64}).encode(), f"{prefix}/{name}.tar.gz": archive}


def _store_is_clean() -> None:
    store = user_model_store()
    left = [p.name for p in store.parent.rglob("*")] if store.parent.exists() else []
    assert not [name for name in left if name not in ("models", "spleeter")], left


@pytest.fixture
def serve(monkeypatch):
    servers = []

    def start(files, short=()):
        server = ReleaseServer(files, short)
        servers.append(server)
        monkeypatch.setenv("STEMTF_SPLEETER_URL", server.url)
        return server

    yield start
    for server in servers:
        server.close()


def test_download_import_verifies_converts_and_downloads_once(serve, tmp_path, capsys):
    """Spleeter's real 2stems geometry (19.6 M parameters, random values): the one test at real shapes."""
    from stemtf.model import load_model

    folder = write_checkpoint(tmp_path / "2stems", spleeter_variables(filters=spleeter.SPLEETER_FILTERS, num_unets=2))
    archive = _archive(folder, tmp_path / "2stems.tar.gz").read_bytes()
    server = serve(_release_files(archive))
    assert main(["import", "spleeter", "spleeter:2stems"]) == 0
    captured = capsys.readouterr()
    assert f"downloading {server.url}/2stems.tar.gz" in captured.err
    model, config = load_model("spleeter-2stems")  # by name, from the user store
    assert (config.stems, config.max_bins, config.unet.encoder_activation) == (("vocals", "accompaniment"), 1024, "leaky_relu")
    card = (user_model_store() / "spleeter-2stems" / "README.md").read_text()
    assert "SHA-256 verified" in card and "MIT" in card
    # the -16kHz variant uses the same archive: no second download
    assert main(["import", "spleeter", "spleeter:2stems-16kHz", "-q"]) == 0
    assert server.requests.count("/deezer/spleeter/releases/download/v1.4.0/2stems.tar.gz") == 1
    _, wide = load_model("spleeter-2stems-16kHz")
    assert wide.max_bins == 1536


@pytest.mark.parametrize("problem", ["checksum", "interrupted", "refused", "missing", "not-an-archive"])
def test_download_failures_are_one_line_and_leave_nothing(problem, serve, capsys, monkeypatch):
    garbage = b"\x1f\x8b\x08" + bytes(range(256)) * 64
    if problem == "checksum":
        serve(_release_files(garbage, checksum="ab" * 32))
        message = "is corrupted (SHA-256"
    elif problem == "interrupted":
        files = _release_files(garbage)
        serve(files, short=(next(path for path in files if path.endswith(".tar.gz")),))
        message = "was interrupted"
    elif problem == "refused":
        import socket

        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        monkeypatch.setenv("STEMTF_SPLEETER_URL", f"http://127.0.0.1:{port}/releases")
        message = "Cannot reach http://127.0.0.1"
    elif problem == "missing":
        serve({})
        message = "HTTP 404"
    else:
        serve(_release_files(garbage))
        message = "is not a readable .tar.gz archive"
    assert main(["import", "spleeter", "spleeter:2stems", "-q"]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    _store_is_clean()
    archives = user_model_store().parent / "spleeter"
    assert not archives.exists() or not any(archives.iterdir())
