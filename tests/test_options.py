"""One check per option, shared by the library and the CLI: the library names keywords, the CLI flags."""

import math
import subprocess
import sys

import pytest

from stemtf import options
from stemtf.cli import main
from stemtf.config import load_config
from stemtf.errors import AudioError, ModelError, OptionError, OutputError, StemtfError

from conftest import tiny_config


def test_options_load_without_tensorflow():
    code = (
        "import sys, stemtf.options, stemtf.export.artifacts, stemtf.config; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'numpy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "check,keyword,flag",
    [
        (lambda: options.check_offset(-1), "offset", "--offset"),
        (lambda: options.check_offset(math.nan), "offset", "--offset"),
        (lambda: options.check_duration(math.inf), "duration", "--duration"),
        (lambda: options.check_wiener_iterations(-1), "wiener_iterations", "--wiener-iterations"),
        (lambda: options.check_output("aiff", 16, None), "fmt", "--format"),
        (lambda: options.check_output("flac", 32, None), "bit_depth", "--bit-depth"),
        (lambda: options.check_output("mp3", 16, 8), "bitrate", "--bitrate"),
        (lambda: options.check_filename("{track}.{ext}"), "filename", "--filename"),
        (lambda: options.check_overlap(100.0, tiny_config()), "overlap", "--overlap"),
        (lambda: options.check_chunk_seconds(0), "chunk_seconds", "--chunk-seconds"),
        (lambda: options.check_training(steps=0, batch_size=1, learning_rate=1e-3, checkpoint_every=1), "steps", "--steps"),
        (lambda: options.check_training(steps=1, batch_size=1, learning_rate=math.nan, checkpoint_every=1), "learning_rate", "--learning-rate"),
        (lambda: options.check_speed_range((1.2, 1.1)), "speed_range", "--speed-range"),
        (lambda: options.check_eq_reverb_probability(1.5), "eq_reverb_probability", "--eq-reverb-probability"),
        (lambda: options.check_stem_weights({"vocals": math.inf}, ("vocals", "drums")), "stem_weights", "--stem-weight"),
        (lambda: options.parse_stem_weights(["vocals=loud"]), "stem_weights", "--stem-weight"),
        (lambda: options.check_baseline("ideal"), "baseline", "--baseline"),
        (lambda: options.check_serving(port=70000, max_upload_mb=1, max_duration=1, max_concurrency=1, read_timeout=1, max_connections=1), "port", "--port"),
        (lambda: options.check_serving(port=0, max_upload_mb=1, max_duration=1, max_concurrency=1, read_timeout=math.inf, max_connections=1), "read_timeout", "--read-timeout"),
        (lambda: options.check_serving(port=0, max_upload_mb=1, max_duration=1, max_concurrency=1, read_timeout=1, max_connections=0), "max_connections", "--max-connections"),
    ],
)
def test_each_check_names_the_keyword_and_the_flag(check, keyword, flag):
    with pytest.raises(OptionError) as raised:
        check()
    error = raised.value
    assert error.keyword == keyword and f"`{keyword}`" in str(error) and flag not in str(error)
    assert flag in error.for_cli() and f"`{keyword}`" not in error.for_cli()
    assert isinstance(error, ValueError)


def test_error_kinds_stay_what_callers_catch():
    with pytest.raises(AudioError):
        options.check_duration(-1.0)
    with pytest.raises(OutputError):
        options.check_filename("{nope}")


def test_overlap_default_and_range_come_from_the_config():
    config = load_config("4stems")
    assert options.check_overlap(None, config) == config.default_overlap_samples == 44100
    assert options.check_overlap(0.5, config) == 22050
    small = tiny_config()
    assert options.check_overlap(None, small) == small.chunk_samples // 4


def test_cli_rejects_nan_before_loading_anything(capsys, stereo_wav, tmp_path):
    code = main(["separate", str(stereo_wav), "--offset", "nan", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err == ["stemtf: error: --offset must be a finite number. Received nan."]
    assert not (tmp_path / "out").exists()


def test_old_flag_spellings_are_hidden_aliases(capsys):
    assert main(["separate", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "--wiener-iterations" in help_text and "--wiener " not in help_text
    assert main(["export", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "--output-dir" in help_text and "--output " not in help_text


@pytest.mark.parametrize(
    "check,library,cli",
    [
        (lambda: options.parse_groups(["a=vocals"], two_stems="vocals"),
         "`two_stems` and `groups` cannot be combined", "--two-stems and --group cannot be combined"),
        (lambda: options.check_output("wav", 16, 128), "its sample format is `bit_depth`", "its sample format is --bit-depth"),
        (lambda: options.check_output("flac", 32, None), "use `bit_depth` 16 or 24, or `fmt` wav", "use --bit-depth 16 or 24, or --format wav"),
        (lambda: options.check_training(steps=1, batch_size=1, learning_rate=1e-3, checkpoint_every=1, freeze_encoder=True),
         "`freeze_encoder` needs `from_model` MODEL", "--freeze-encoder needs --from MODEL"),
        (lambda: __import__("stemtf.streamio").streamio.select_outputs(["a", "b"], ["a"], ["b"]),
         "Give either `keep` or `remove`", "Give either --keep or --remove"),
        (lambda: __import__("stemtf.streamio").streamio.check_raw(0, 2, "s16le"), "`sample_rate` must be >= 1000 Hz", "--rate must be >= 1000 Hz"),
        (lambda: __import__("stemtf.streamio").streamio.check_raw(44100, 3, "s16le"), "`num_channels` must be 1 or 2", "--channels must be 1 or 2"),
    ],
)
def test_messages_naming_a_second_option_speak_keywords_in_the_library_and_flags_on_the_cli(check, library, cli):
    with pytest.raises(OptionError) as raised:
        check()
    assert library in str(raised.value) and " --" not in str(raised.value)
    assert cli in raised.value.for_cli() and "`" not in raised.value.for_cli()


def test_a_missing_litert_names_the_runtime_keyword_in_the_library():
    code = ("import sys; sys.modules['ai_edge_litert'] = None; from stemtf import runtimes\n"
            "try:\n    runtimes.resolve_runtime('litert')\nexcept Exception as error:\n    print(type(error).__name__, error, '|', error.for_cli())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.startswith("ModelOptionError The litert runtime needs ai-edge-litert") and "or set `runtime` to keras. |" in out
    assert out.strip().endswith("or set --runtime to keras.")


@pytest.mark.parametrize("kind", [OutputError, AudioError, ModelError, StemtfError])
def test_every_stemtf_error_names_options_as_keywords_and_the_cli_as_flags(kind):
    error = kind("Output 'a.wav' exists; pass {option:overwrite} or choose another {option:output_dir} ({option:fmt}).")
    assert type(error) is kind
    assert str(error) == "Output 'a.wav' exists; pass `overwrite` or choose another `output_dir` (`fmt`)."
    assert error.for_cli() == "Output 'a.wav' exists; pass --overwrite or choose another --output-dir (--format)."
    assert error.render(str.upper) == "Output 'a.wav' exists; pass OVERWRITE or choose another OUTPUT_DIR (FMT)."


def test_a_message_without_option_fields_stays_as_it_is():
    text = "Cannot parse {'a': 1} or {option} without a keyword."
    error = OutputError(text)
    assert str(error) == error.for_cli() == text and error.args == (text,)
    assert StemtfError("a", 2).args == ("a", 2)


def test_the_cli_prints_any_stemtf_error_with_flags(capsys, monkeypatch):
    import stemtf.cli as cli

    def fail(**_):
        raise OutputError("Choose another {option:output_dir}, or pass {option:overwrite}.")

    monkeypatch.setattr(cli, "app", fail)
    assert main(["separate"]) == 1
    err = capsys.readouterr().err
    assert "Choose another --output-dir, or pass --overwrite." in err and "`" not in err


def _default(function, keyword):
    import inspect

    return inspect.signature(function).parameters[keyword].default


def test_library_keywords_default_to_the_options_defaults(capsys):
    import stemtf.export.web as web  # not `from stemtf.export import web`: that loads TensorFlow
    from stemtf import audio
    from stemtf.cli.exporting import export_command

    assert _default(audio.AudioWriter, "fmt") is options.DEFAULT_FORMAT
    assert _default(audio.AudioWriter, "bit_depth") is _default(audio.write_audio, "bit_depth") is options.DEFAULT_BIT_DEPTH
    assert _default(audio.open_audio, "offset") is _default(audio.read_audio, "offset") is options.DEFAULT_OFFSET
    for function in (web.export_web, web.write_folder, web.device_folder):
        assert _default(function, "quantize") is options.DEFAULT_WEB_QUANTIZE
        assert _default(function, "max_duration") is options.DEFAULT_WEB_MAX_DURATION
    assert _default(export_command, "fmt").default is options.DEFAULT_EXPORT_FORMAT
    assert main(["export", "--help"]) == 0
    assert f"(default {options.DEFAULT_WEB_MAX_DURATION:g}:" in " ".join(capsys.readouterr().out.split())


def test_a_templated_error_survives_pickling():  # e.g. from a worker process to the server
    import pickle

    error = pickle.loads(pickle.dumps(OutputError("pass {option:overwrite} to replace it.")))
    assert type(error) is OutputError and str(error) == "pass `overwrite` to replace it."
    assert error.for_cli() == "pass --overwrite to replace it."
