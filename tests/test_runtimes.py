"""Two mask runtimes, one separator: LiteRT (no TensorFlow, cached conversion) agrees with Keras."""

import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from stemtf import apply, runtimes
from stemtf.cli import main
from stemtf.errors import ModelError
from stemtf.separator import Separator

from conftest import SAMPLE_RATE, music_like, tiny_config

CLIP = pathlib.Path(__file__).parent / "data" / "caesium_10s"


def snr(reference, estimate) -> float:
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / np.sum((reference.astype(np.float64) - estimate) ** 2)))


def test_numpy_chunk_matches_the_graph_chunk(tiny_model):
    model, config = tiny_model
    waveform = music_like(config.chunk_samples)
    graph = np.stack([s.numpy() for s in apply.separate_chunk(model, config, tf.constant(waveform), wiener_iterations=1)])
    keras_masks = runtimes.KerasMasks(model, config, segment_frames=config.segment_frames)
    numpy_chunk = apply.separate_chunk_numpy(keras_masks, config, waveform, wiener_iterations=1)
    np.testing.assert_allclose(numpy_chunk, graph, atol=1e-4)


def test_litert_runtime_matches_keras_and_converts_once(tiny_model_dir, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv(runtimes.CACHE_ENV, str(tmp_path / "cache"))  # an empty cache: conversions are counted
    _, config = tiny_model
    lines = []
    waveform = music_like(3 * SAMPLE_RATE)
    keras_stems = Separator.from_pretrained(tiny_model_dir, runtime="keras", overlap=0.02).separate(waveform, SAMPLE_RATE)
    for precision in ("float32", "float16"):
        separator = Separator.from_pretrained(tiny_model_dir, runtime="litert", precision=precision, overlap=0.02, on_status=lines.append)
        assert separator.runtime == "litert"
        stems = separator.separate(waveform, SAMPLE_RATE)
        for stem in config.stems:
            assert snr(keras_stems[stem], stems[stem]) > 60, (precision, stem)
    assert len(lines) == 2 and "converting 'tiny' to LiteRT (float32) once" in lines[0]
    again = Separator.from_pretrained(tiny_model_dir, runtime="litert", precision="float16", on_status=lines.append)
    assert len(lines) == 2 and again.masks.path.is_file()  # from the cache: no second conversion
    # Wiener filtering runs in numpy on both runtimes.
    filtered = {
        runtime: Separator.from_pretrained(tiny_model_dir, runtime=runtime, overlap=0.02, wiener_iterations=1).separate(waveform, SAMPLE_RATE)
        for runtime in ("keras", "litert")
    }
    for stem in config.stems:
        assert snr(filtered["keras"][stem], filtered["litert"][stem]) > 50


def test_deferred_litert_chunk_model_converts_only_when_used(tiny_model_dir, tmp_path, monkeypatch):
    """``stemtf stream --latency``: the sliding window's model is converted, the unused chunk model is not."""
    from stemtf.streaming import StreamingSeparator

    monkeypatch.setenv(runtimes.CACHE_ENV, str(tmp_path / "cache"))
    cached = lambda: sorted((tmp_path / "cache").rglob("*.tflite"))  # noqa: E731
    lines = []
    separator = Separator.from_pretrained(tiny_model_dir, runtime="litert", defer_loading=True, on_status=lines.append)
    assert separator.runtime == "litert" and cached() == [] and lines == []
    waveform = music_like(SAMPLE_RATE // 2)
    streamer = StreamingSeparator(separator, latency=0.04)
    streamer.process(waveform)
    streamer.flush()
    assert len(cached()) == 1 and len(lines) == 1
    offline = separator.separate(waveform, SAMPLE_RATE)  # now the chunk model is needed: converted on first use
    assert len(cached()) == 2 and len(lines) == 2 and separator.masks.path in cached()
    eager = Separator.from_pretrained(tiny_model_dir, runtime="litert").separate(waveform, SAMPLE_RATE)
    for stem in offline:
        np.testing.assert_array_equal(offline[stem], eager[stem])


def test_cache_key_follows_the_weights(tiny_model_dir, tiny_model, tmp_path):
    _, config = tiny_model
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    first = runtimes.litert_cache_path(copy, config, segment_frames=64, precision="float16")
    assert first == runtimes.litert_cache_path(tiny_model_dir, config, segment_frames=64, precision="float16")
    assert first != runtimes.litert_cache_path(copy, config, segment_frames=64, precision="int8")
    assert first != runtimes.litert_cache_path(copy, config, segment_frames=128, precision="float16")
    weights = copy / "model.weights.h5"
    weights.write_bytes(weights.read_bytes() + b"\0")  # new weights -> a new conversion, never the stale one
    assert runtimes.litert_cache_path(copy, config, segment_frames=64, precision="float16") != first
    assert first.parent == pathlib.Path(os.environ[runtimes.CACHE_ENV]) / "litert"


def test_cache_key_follows_the_exported_graph_form(tiny_model_dir, tiny_model, monkeypatch):
    """A new form of the exported graph (stemtf.export.inference) must not reuse models cached in the old one."""
    _, config = tiny_model
    before = runtimes.litert_cache_path(tiny_model_dir, config, segment_frames=64, precision="float32")
    monkeypatch.setattr(runtimes, "LITERT_GRAPH", runtimes.LITERT_GRAPH + "-next")
    assert runtimes.litert_cache_path(tiny_model_dir, config, segment_frames=64, precision="float32") != before


def test_litert_process_never_imports_tensorflow(tiny_model_dir, tmp_path):
    Separator.from_pretrained(tiny_model_dir, runtime="litert")  # fills the cache (this process has TensorFlow)
    song = tmp_path / "song.wav"
    sf.write(song, music_like(2 * SAMPLE_RATE), SAMPLE_RATE)
    code = textwrap.dedent(f"""
        import sys
        from stemtf.cli import main
        code = main(["separate", {str(song)!r}, "--model", {str(tiny_model_dir)!r}, "-o", {str(tmp_path / 'out')!r}, "-q"])
        print(code, sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "0 []", result.stderr
    assert sorted(p.name for p in (tmp_path / "out" / "song").iterdir()) == ["drums.wav", "other.wav", "vocals.wav"]


def test_two_processes_converting_at_once_share_one_file(tiny_model_dir, tmp_path):
    env = {**os.environ, runtimes.CACHE_ENV: str(tmp_path / "cache"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    code = (
        "from stemtf.separator import Separator; "
        f"s = Separator.from_pretrained({str(tiny_model_dir)!r}, runtime='litert', precision='float32', on_status=print); "
        "print('path', s.masks.path)"
    )
    children = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [child.communicate(timeout=600) for child in children]
    assert all(child.returncode == 0 for child in children), [err[-500:] for _, err in outputs]
    paths = {line.split(" ", 1)[1] for out, _ in outputs for line in out.splitlines() if line.startswith("path ")}
    assert len(paths) == 1
    conversions = sum(line.startswith("converting 'tiny'") for out, _ in outputs for line in out.splitlines())
    assert conversions == 1  # the second waited on the lock and found the file
    files = sorted(p.name for p in (tmp_path / "cache" / "litert").iterdir())
    assert [f for f in files if f.endswith(".tflite")] == [pathlib.Path(next(iter(paths))).name]
    assert not [f for f in files if f.startswith(".")]  # no temporary leftovers


def test_shipped_model_litert_parity_on_real_music():
    stems = [sf.read(path, dtype="float32")[0] for path in sorted(CLIP.glob("*.flac"))]
    mixture = sum(stems)
    keras_stems = Separator.from_pretrained("4stems", runtime="keras").separate(mixture, SAMPLE_RATE)
    litert = Separator.from_pretrained("4stems", runtime="litert")
    assert litert.masks.path.name.startswith(f"4stems-{runtimes.DEFAULT_PRECISION}-")
    litert_stems = litert.separate(mixture, SAMPLE_RATE)
    for stem, reference in keras_stems.items():
        assert snr(reference, litert_stems[stem]) >= 60, stem


def test_runtime_errors_are_one_line(capsys, stereo_wav, tmp_path):
    assert main(["separate", str(stereo_wav), "--runtime", "tpu", "-o", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err.strip() == "stemtf: error: --runtime must be one of auto, keras, litert. Received 'tpu'."
    assert main(["separate", str(stereo_wav), "--precision", "int4", "-o", str(tmp_path / "o")]) == 1
    assert "--precision must be one of float32, float16, int8" in capsys.readouterr().err
    code = "import sys; sys.modules['ai_edge_litert'] = None; from stemtf import runtimes; print(runtimes.resolve_runtime('auto'))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "keras"
    code = "import sys; sys.modules['ai_edge_litert'] = None; from stemtf import runtimes; runtimes.resolve_runtime('litert')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "The litert runtime needs ai-edge-litert" in result.stderr
    with pytest.raises(ModelError, match="no trained weights"):
        runtimes.cached_masks_model(tmp_path, tiny_config(), segment_frames=64)


def test_missing_input_fails_before_any_model_loads(capsys, tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from stemtf.cli import main
        code = main(["separate", {str(tmp_path / 'missing.mp3')!r}])
        print(code, sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "ai_edge_litert")))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "1 []"
    assert result.stderr.strip() == f"stemtf: error: Input {str(tmp_path / 'missing.mp3')!r} does not exist; check the path."


@pytest.mark.parametrize("exponent", [0.4, {"vocals": 0.35, "drums": 0.5, "other": 0.25}], ids=["one", "per-stem"])
def test_litert_matches_keras_with_a_mask_exponent(exponent, tiny_model, tmp_path, monkeypatch):
    from stemtf.model import build_model, save_model

    monkeypatch.setenv(runtimes.CACHE_ENV, str(tmp_path / "cache"))
    model, config = tiny_model
    soft = build_model(config.replace(mask_exponent=exponent))
    soft.set_weights(model.get_weights())
    directory = save_model(soft, config.replace(mask_exponent=exponent), tmp_path / "soft")
    waveform = music_like(2 * SAMPLE_RATE, seed=4)
    keras_stems = Separator.from_pretrained(directory, runtime="keras").separate(waveform, SAMPLE_RATE)
    litert_stems = Separator.from_pretrained(directory, runtime="litert").separate(waveform, SAMPLE_RATE)
    plain = Separator(model, config).separate(waveform, SAMPLE_RATE)
    for stem in config.stems:
        assert snr(keras_stems[stem], litert_stems[stem]) > 60, stem
        assert snr(keras_stems[stem], plain[stem]) < 40, stem  # the exponent changed the stems


def _cache_files(root: pathlib.Path) -> list[str]:
    return sorted(p.name for p in (root / "litert").iterdir() if not p.name.endswith(".lock"))


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "no-json"])
def test_a_damaged_cached_conversion_is_converted_again(damage, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(runtimes.CACHE_ENV, str(tmp_path / "cache"))
    waveform = music_like(SAMPLE_RATE // 2)
    first = Separator.from_pretrained(tiny_model_dir, runtime="litert")
    expected = first.separate(waveform, SAMPLE_RATE)
    path = first.masks.path
    good = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(good[: len(good) // 3])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(b"not a flatbuffer at all " * 100)
    else:
        path.with_name(path.name + ".json").unlink()
    lines = []
    again = Separator.from_pretrained(tiny_model_dir, runtime="litert", on_status=lines.append)
    assert len(lines) >= 1 and any("converting" in line for line in lines), lines
    for stem, values in again.separate(waveform, SAMPLE_RATE).items():
        np.testing.assert_array_equal(values, expected[stem])
    assert path.read_bytes() == good and _cache_files(tmp_path / "cache") == [path.name, path.name + ".json"]


def test_a_damaged_conversion_that_stays_damaged_is_named_in_one_line(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(runtimes.CACHE_ENV, str(tmp_path / "cache"))
    path = Separator.from_pretrained(tiny_model_dir, runtime="litert").masks.path
    path.write_bytes(b"garbage" * 50)
    monkeypatch.setattr(runtimes, "_convert", lambda *args, **kwargs: path.write_bytes(b"garbage" * 50))
    with pytest.raises(ModelError, match=r"^The cached LiteRT model .* does not load .*; delete it and run again") as error:
        Separator.from_pretrained(tiny_model_dir, runtime="litert")
    assert "\n" not in str(error.value) and str(path) in str(error.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_cache_folder_runs_without_the_cache(tiny_model_dir, tmp_path, monkeypatch):
    import tempfile

    cache = tmp_path / "cache"
    (cache / "litert").mkdir(parents=True)
    (cache / "litert").chmod(0o555)
    monkeypatch.setenv(runtimes.CACHE_ENV, str(cache))
    before = set(pathlib.Path(tempfile.gettempdir()).glob("stemtf-*"))
    lines = []
    try:
        separator = Separator.from_pretrained(tiny_model_dir, runtime="litert", on_status=lines.append)
        stems = separator.separate(music_like(SAMPLE_RATE // 4), SAMPLE_RATE)
    finally:
        (cache / "litert").chmod(0o755)
    assert len(stems) == 3 and len(lines) == 1
    assert lines[0].startswith(f"Cannot write to the cache folder {str(cache / 'litert')!r}") and "for this run only" in lines[0]
    assert list((cache / "litert").iterdir()) == []
    assert set(pathlib.Path(tempfile.gettempdir()).glob("stemtf-*")) == before  # its temporary folder is gone


def test_conversion_leaves_no_temporary_folders_even_after_a_killed_one(tiny_model_dir, tmp_path, monkeypatch):
    import tempfile

    cache = tmp_path / "cache"
    monkeypatch.setenv(runtimes.CACHE_ENV, str(cache))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (cache / "litert" / f".work-{dead.stdout.strip()}" / "stemtf-export-x").mkdir(parents=True)  # a killed conversion's
    from stemtf.export import writers

    used = []
    export_tflite = writers.export_tflite
    monkeypatch.setattr(writers, "export_tflite", lambda *a, **k: used.append(tempfile.gettempdir()) or export_tflite(*a, **k))
    path = Separator.from_pretrained(tiny_model_dir, runtime="litert").masks.path
    assert _cache_files(cache) == [path.name, path.name + ".json"]  # no .work-* folder, no staging folder
    assert used == [str(cache / "litert" / f".work-{os.getpid()}")]  # the converter's stemtf-export-* went there
    assert tempfile.gettempdir() != used[0]


def test_a_cache_folder_that_cannot_be_made_runs_without_the_cache(tiny_model_dir, tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv(runtimes.CACHE_ENV, str(tmp_path / "a-file"))  # the cache folder would be a-file/litert
    lines = []
    separator = Separator.from_pretrained(tiny_model_dir, runtime="litert", on_status=lines.append)
    assert len(separator.separate(music_like(SAMPLE_RATE // 4), SAMPLE_RATE)) == 3
    assert len(lines) == 1 and "Cannot write to the cache folder" in lines[0] and "for this run only" in lines[0]
    assert not separator.masks.path.exists()  # its temporary folder is gone


def _resident_kb(path) -> int:
    """Resident KiB of this process's mappings of ``path`` (``/proc/self/smaps``)."""
    import re

    target, inside, total = os.path.realpath(path), False, 0
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+$", fields[0]):  # a mapping's first line
                inside = len(fields) >= 6 and " ".join(fields[5:]) == target
            elif inside and fields[0] == "Rss:":
                total += int(fields[1])
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_litert_gives_back_the_model_files_pages_once_xnnpack_packed_them(tiny_model_dir, tmp_path, monkeypatch):
    from ai_edge_litert.interpreter import Interpreter

    from stemtf import interpreters

    monkeypatch.setenv(runtimes.CACHE_ENV, str(tmp_path / "cache"))
    separator = Separator.from_pretrained(tiny_model_dir, runtime="litert")
    path = separator.masks.path
    assert _resident_kb(path) == 0  # the separator's interpreter gave them back
    interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count())  # as the separator's
    run = interpreters.signature_function(interpreter, "serving_default", separator.masks.description.inputs[0]["name"])
    assert _resident_kb(path) > 0  # what a plain interpreter keeps
    magnitude = np.random.default_rng(0).uniform(0, 1, separator.masks.description.inputs[0]["shape"]).astype(np.float32)
    before = run(magnitude)
    assert interpreters.release_file_pages(path) > 0 and _resident_kb(path) == 0
    after = run(magnitude)
    for name, value in before.items():  # the weights live in XNNPACK's packed copy: the same masks
        np.testing.assert_array_equal(after[name], value)
    np.testing.assert_array_equal(separator.masks(magnitude), np.stack([before[stem][0] for stem in separator.stems]))
