"""An imported Spleeter model, found by name in the user model store, through `stemtf serve` and `stemtf evaluate`.

Each test imports a tiny Spleeter-layout checkpoint (written by the test, Spleeter-exact: Spleeter's
grid and 11 kHz cut) into its own ``$STEMTF_CACHE`` store as ``spleeter-tiny`` and uses only that name.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf

from stemtf.cli import main
from stemtf.config import user_model_store
from stemtf.separator import Separator

from conftest import SAMPLE_RATE, music_like
from test_spleeter import TINY_PARAMS, spleeter_variables, write_checkpoint

NAME = "spleeter-tiny"


@pytest.fixture
def imported(tmp_path, monkeypatch):
    """``spleeter-tiny`` in this test's own model store (``$STEMTF_CACHE/models``), imported with the CLI."""
    monkeypatch.setenv("STEMTF_CACHE", str(tmp_path / "cache"))
    folder = write_checkpoint(tmp_path / "checkpoint", spleeter_variables(seed=5))
    params = tmp_path / "tiny.json"
    params.write_text(json.dumps(TINY_PARAMS))
    assert main(["import", "spleeter", str(folder), "--spleeter-config", str(params), "--name", NAME, "-q"]) == 0
    assert (user_model_store() / NAME / "config.json").is_file()
    return NAME


def test_serve_page_jobs_and_rest_api_run_an_imported_model_by_name(imported, tmp_path):
    from stemtf import serve
    from stemtf.serve.jobs import JobManager

    from test_web import audio_bytes, request, submit, wait_until
    from web_server import serving

    waveform = music_like(int(0.8 * SAMPLE_RATE), seed=8)
    data = audio_bytes(waveform)  # 16-bit WAV
    separator = Separator.from_pretrained(NAME)  # what `stemtf separate -m spleeter-tiny` runs
    assert separator.config.chunking == "spleeter"
    # As `stemtf serve spleeter-tiny` builds it: the page's jobs and TF Serving's REST API on one engine.
    with JobManager({NAME: NAME}, tmp_path / "jobs") as manager:
        engine = serve.EngineModel(manager.offered(NAME), name=NAME)
        with serving(serve.create_app(engine, jobs=manager)) as url:
            models = json.loads(request(f"{url}/v1/separators")[2])["models"]
            assert [(m["name"], m["stems"]) for m in models] == [(NAME, TINY_PARAMS["instrument_list"])]

            # The page: a job gives exactly the files `stemtf separate` writes.
            status, _, created = submit(url, data, model=NAME)
            assert status == 202, created
            done = wait_until(url, created["id"])
            assert done["status"] == "done", done
            source = tmp_path / "song.wav"
            source.write_bytes(data)
            expected = separator.separate_file(source, output_dir=tmp_path / "cli", filename="{stem}.{ext}")
            assert [stem["name"] for stem in done["stems"]] == TINY_PARAMS["instrument_list"]
            for stem in done["stems"]:
                status, _, wav = request(url + stem["wav"])
                assert status == 200 and wav == expected[stem["name"]].read_bytes(), stem["name"]

            # TF Serving's REST API: status, metadata and :predict give the separator's numbers.
            status, _, body = request(f"{url}/v1/models/{NAME}")
            assert status == 200 and json.loads(body)["model_version_status"][0]["state"] == "AVAILABLE"
            status, _, body = request(f"{url}/v1/models/{NAME}/metadata")
            signature = json.loads(body)["metadata"]["signature_def"]["signature_def"]["serving_default"]
            assert status == 200 and sorted(signature["outputs"]) == sorted(TINY_PARAMS["instrument_list"])
            status, _, body = request(f"{url}/v1/models/{NAME}:predict", method="POST",
                                      body=json.dumps({"inputs": {"waveform": waveform.tolist()}}).encode(),
                                      headers={"Content-Type": "application/json"})
            assert status == 200, body[:300]
            outputs = json.loads(body)["outputs"]
            offline = separator.separate(waveform, SAMPLE_RATE)
            for stem in TINY_PARAMS["instrument_list"]:
                np.testing.assert_allclose(np.array(outputs[stem], np.float32), offline[stem], atol=1e-6)
                assert np.std(offline[stem]) > 1e-3  # the masks split the music: not a silent or copied stem


def test_evaluate_scores_an_imported_model_by_name(imported, stem_folder, tmp_path, capsys):
    capsys.readouterr()
    code = main(["evaluate", NAME, "--data", str(stem_folder), "--track", "three", "--stem-group", "bass=other,piano",
                 "-o", str(tmp_path / "eval"), "-q"])
    out, err = capsys.readouterr()
    assert code == 0, err
    scores = json.loads((tmp_path / "eval" / "three.json").read_text())
    assert [target["name"] for target in scores["targets"]] == TINY_PARAMS["instrument_list"]
    # The printed whole-track SDR is that of the imported model's own separation of the track.
    files = {stem: sf.read(stem_folder / "three" / f"{stem}.wav", dtype="float32", always_2d=True)[0]
             for stem in ("vocals", "drums", "other", "piano")}
    references = {"vocals": files["vocals"], "drums": files["drums"], "bass": files["other"] + files["piano"]}
    mixture = sum(files.values())
    estimates = Separator.from_pretrained(NAME, runtime="keras").separate(mixture, SAMPLE_RATE)
    for stem, reference in references.items():
        expected = 10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / np.sum((reference - estimates[stem]) ** 2.0))
        printed = re.search(rf"^{stem}\s+(-?[0-9.]+)\s", out, re.MULTILINE)
        assert printed is not None, out
        assert float(printed.group(1)) == pytest.approx(expected, abs=0.011), (stem, out)
    # Spleeter's grid has no cross-fade to filter: Wiener filtering is refused in one line.
    assert main(["evaluate", NAME, "--data", str(stem_folder), "--track", "three", "--stem-group", "bass=other,piano",
                 "--wiener-iterations", "1", "-q"]) == 1
    err = capsys.readouterr().err
    assert "--wiener-iterations needs a model with chunking 'crossfade'" in err and err.count("\n") == 1
