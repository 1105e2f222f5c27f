"""training/real/lmms_render.py on a tiny hand-written LMMS project and a fake renderer (no lmms needed)."""

from __future__ import annotations

import json
import pathlib
import struct
import sys
import xml.etree.ElementTree as ET
import zlib

import numpy as np
import pytest
import soundfile as sf

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training" / "real"))

import lmms_render  # noqa: E402

RATE = lmms_render.SAMPLE_RATE
NUM_SAMPLES = RATE // 2
PROJECT = "shorties/Surrender-Main.mmpz"  # an Artistic-2.0 entry of PROJECTS; the file is the fake below

# name -> (plugin, sample, muted, tone in Hz the fake renderer plays for it)
TRACKS = {
    "Kick": ("audiofileprocessor", "drumsynth/tr909/Kick_2.ds", False, 60.0),
    "Hat": ("audiofileprocessor", "drums/hihat_closed01.ogg", False, 8000.0),  # a stock recording
    "Mute Bass": ("audiofileprocessor", "drumsynth/instrument/mute_bass.ds", False, 80.0),
    "Default preset": ("zynaddsubfx", "", False, 55.0),  # no rule: low tone -> bass by audio
    "Lead": ("tripleoscillator", "", False, 880.0),  # no rule: high tone -> other by audio
    "E-Piano": ("zynaddsubfx", "", False, 440.0),
    "Unused": ("tripleoscillator", "", True, 660.0),  # muted in the project
    "Never played": ("tripleoscillator", "", False, 0.0),  # renders silence
}


def _track(name: str) -> str:
    plugin, sample, muted, _ = TRACKS[name]
    inner = f'<audiofileprocessor src="{sample}"/>' if sample else f"<{plugin}/>"
    return (f'<track type="0" name="{name}" muted="{int(muted)}"><instrumenttrack fxch="0">'
            f'<instrument name="{plugin}">{inner}</instrument></instrumenttrack>'
            f'<pattern pos="0" len="192"><note key="57" pos="0" len="48"/></pattern></track>')


def project_xml() -> str:
    """Song-editor tracks, a beat+bassline track holding two more, and a master limiter + reverb."""
    song = [n for n in TRACKS if n not in ("Kick", "Hat")]
    beat = (f'<track type="1" name="Beat/Bassline 0" muted="0"><bbtrack><trackcontainer type="bbtrackcontainer">'
            f'{_track("Kick")}{_track("Hat")}</trackcontainer></bbtrack></track>')
    master = ('<fxmixer><fxchannel num="0" name="Master"><fxchain numofeffects="2" enabled="1">'
              '<effect on="1" name="ladspaeffect"><key><attribute name="plugin" value="fastLookaheadLimiter"/></key></effect>'
              '<effect on="1" name="ladspaeffect"><key><attribute name="plugin" value="Reverb"/></key></effect>'
              '</fxchain></fxchannel></fxmixer>')
    return (f'<?xml version="1.0"?><lmms-project version="1.0"><head bpm="120"/><song>'
            f'<trackcontainer type="song">{"".join(_track(n) for n in song)}{beat}'
            f'<track type="5" name="Automation track"/></trackcontainer>{master}</song></lmms-project>')


def write_mmpz(path: pathlib.Path, text: str) -> None:
    """Qt's qCompress layout, as LMMS writes .mmpz: big-endian length, then zlib."""
    data = text.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack(">I", len(data)) + zlib.compress(data))


def fake_renderer(*, additive: bool = True):
    """Plays a sine per instrument track that is not muted and has audible notes; a master limiter left on
    (or ``additive=False``) squashes the sum, which is then no longer the sum of the tracks alone."""
    calls = []

    def render(project: pathlib.Path, out: pathlib.Path) -> None:
        root = ET.fromstring(project.read_bytes())
        t = np.arange(NUM_SAMPLES) / RATE
        mix = np.zeros(NUM_SAMPLES)
        playing = []
        for track in root.iter("track"):
            notes = [n for n in track.iter("note") if n.get("vol", "100") != "0"]
            if track.get("type") == "0" and track.get("muted") != "1" and notes:
                tone = TRACKS[track.get("name")][3]
                playing.append(track.get("name"))
                if tone:
                    mix += 0.3 * np.sin(2 * np.pi * tone * t)
        limiter_on = any(e.get("on") != "0" for e in root.iter("effect")
                         if any(a.get("value") == "fastLookaheadLimiter" for a in e.iter("attribute")))
        if limiter_on or not additive:
            mix = np.tanh(2 * mix) / 2
        calls.append(sorted(playing))
        sf.write(out, np.stack([mix, 0.5 * mix], axis=1).astype(np.float32), RATE, subtype="FLOAT", format="WAV")

    render.calls = calls
    return render


@pytest.fixture
def projects_root(tmp_path) -> pathlib.Path:
    root = tmp_path / "projects"
    write_mmpz(root / PROJECT, project_xml())
    return root


def test_only_licences_that_allow_training_are_selected():
    plain = lmms_render.selected(share_alike=False)
    both = lmms_render.selected(share_alike=True)
    uses = {rel: lmms_render.PROJECTS[rel].use for rel in both}
    assert {lmms_render.PROJECTS[rel].use for rel in plain} == {lmms_render.USE}
    assert set(uses.values()) == {lmms_render.USE, lmms_render.SHARE_ALIKE}
    assert set(plain) < set(both)
    assert "demos/Thomasso-AxeFromThe80s.mmpz" not in both  # a cover, although Artistic-2.0
    with pytest.raises(SystemExit, match="share-alike"):
        lmms_render.selected(share_alike=False, names=["Alf42red-Mauiwowi"])
    with pytest.raises(SystemExit, match="not rendered under its licence"):
        lmms_render.selected(share_alike=True, names=["DirtyLove"])
    with pytest.raises(SystemExit, match="Unknown project"):
        lmms_render.selected(share_alike=True, names=["NoSuchSong"])
    assert lmms_render.selected(share_alike=False, names=["Surrender-Main"]) == [PROJECT]


def test_every_shipped_project_has_a_licence_entry():
    # The 26 files of lmms-common 1.2.2 (projects/{demos,shorties,tutorials}); templates are not songs.
    assert len(lmms_render.PROJECTS) == 26
    assert all(rel.endswith((".mmp", ".mmpz")) for rel in lmms_render.PROJECTS)


def test_parts_are_read_from_song_and_beat_editor_in_file_order(projects_root):
    root = lmms_render.read_project(projects_root / PROJECT)
    found = lmms_render.parts(root)
    assert [p.name for p in found] == [n for n in TRACKS if n not in ("Kick", "Hat")] + ["Kick", "Hat"]
    assert [p.index for p in found] == list(range(len(TRACKS)))
    by_name = {p.name: p for p in found}
    assert by_name["Hat"].stock_recording and not by_name["Kick"].stock_recording
    assert not by_name["Mute Bass"].stock_recording  # a DrumSynth preset is synthesis, not a recording
    assert by_name["Unused"].muted


@pytest.mark.parametrize("name, plugin, sample, stem", [
    ("Kick_2.ds", "audiofileprocessor", "drumsynth/tr909/Kick_2.ds", "drums"),
    ("alien.ds", "audiofileprocessor", "drumsynth/misc_fx/alien_curiousity.ds", "other"),
    ("E-Piano", "audiofileprocessor", "drumsynth/instrument/E_Piano.ds", "piano"),
    ("Mute Bass", "audiofileprocessor", "drumsynth/instrument/mute_bass.ds", "bass"),
    ("rave_bass01.ogg", "audiofileprocessor", "basses/rave_bass01.ogg", "bass"),
    ("Loop", "audiofileprocessor", "beats/house_loop01.ogg", "drums"),
    ("Closed HihHat 03", "audiofileprocessor", "drums/hihat_closed03.ogg", "drums"),
    ("Strings (high)", "audiofileprocessor", "stringsnpads/strings01.ogg", "other"),
    ("snare", "tripleoscillator", "", "drums"),
    ("hats1", "kicker", "", "drums"),
    ("bassline 1", "tripleoscillator", "", "bass"),
    ("gated sub", "tripleoscillator", "", "bass"),
    ("FM Rhodes", "zynaddsubfx", "", "piano"),
    ("Lead", "kicker", "", None),
    ("Default preset", "zynaddsubfx", "", None),
    ("Choir", "zynaddsubfx", "", None),  # a synthesized choir is not a voice: decided by audio
])
def test_classify_by_sample_folder_and_name(name, plugin, sample, stem):
    got, rule = lmms_render.classify(lmms_render.Part(0, name, plugin, sample, False))
    assert got == stem, rule


def test_tracks_no_rule_names_go_by_their_low_frequency_energy():
    t = np.arange(RATE) / RATE
    low = np.stack([np.sin(2 * np.pi * 55 * t)] * 2, axis=1)
    high = np.stack([np.sin(2 * np.pi * 880 * t)] * 2, axis=1)
    assert lmms_render.stem_by_audio(low)[0] == "bass"
    assert lmms_render.stem_by_audio(high)[0] == "other"
    assert lmms_render.low_share(np.zeros((100, 2))) == 0.0


def test_render_variant_solos_a_track_and_switches_off_only_master_dynamics(projects_root):
    root = lmms_render.read_project(projects_root / PROJECT)
    variant = ET.fromstring(lmms_render.render_variant(root, [6]))  # "Kick", inside the beat editor
    tracks = {t.get("name"): t for t in variant.iter("track") if t.get("type") == "0"}
    assert [n for n, t in tracks.items() if t.find("pattern/note").get("vol") != "0"] == ["Kick"]
    # the others keep their notes (the song's length) and their mute state, and lose their synthesizers
    assert [n for n, t in tracks.items() if t.get("muted") == "1"] == ["Unused"]
    instruments = {n: t.find("instrumenttrack/instrument").get("name") for n, t in tracks.items()}
    assert instruments["Lead"] == "audiofileprocessor" and instruments["Hat"] == "audiofileprocessor"
    assert tracks["Mute Bass"].find("instrumenttrack/instrument/audiofileprocessor").get("src").endswith("mute_bass.ds")
    assert {t.get("name"): t.get("muted") for t in variant.iter("track") if t.get("type") == "1"} == {"Beat/Bassline 0": "0"}
    effects = {e.find("key/attribute").get("value"): e.get("on") for e in variant.iter("effect")}
    assert effects == {"fastLookaheadLimiter": "0", "Reverb": "1"}
    assert lmms_render.master_effects_off(root) == ["fastLookaheadLimiter"]
    assert root.find(".//effect").get("on") == "1"  # the parsed project is not changed


def test_an_automatable_master_switch_is_switched_off_too():
    root = ET.fromstring('<lmms-project><song><fxmixer><fxchannel num="0"><fxchain enabled="1">'
                         '<effect name="ladspaeffect"><on id="7" value="1"/><key><attribute name="plugin" value="Limiter"/>'
                         '</key></effect></fxchain></fxchannel></fxmixer></song></lmms-project>')
    assert lmms_render.master_effects_off(root) == ["Limiter"]
    switch = ET.fromstring(lmms_render.render_variant(root, [])).find(".//effect/on")
    assert switch.get("value") == "0" and switch.get("id") is None  # no automation can switch it back on


def test_render_song_writes_exact_stems_and_a_mapping(projects_root, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    renderer = fake_renderer()
    info = lmms_render.render_song(PROJECT, out, projects_root=projects_root, renderer=renderer)
    song = out / "Surrender-Main"
    assert info["written"] and info["residual_db"] < -100
    assert sorted(p.name for p in song.iterdir()) == ["bass.flac", "drums.flac", "mapping.json", "other.flac", "piano.flac"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # the work folder is gone
    # one render of the whole song and one per kept track, never the stock recording or the muted track
    kept = sorted(n for n in TRACKS if n not in ("Hat", "Unused"))
    assert renderer.calls[0] == kept and sorted(sum(renderer.calls[1:], [])) == kept
    assert all(len(c) == 1 for c in renderer.calls[1:])
    mapping = json.loads((song / "mapping.json").read_text())
    stems = {key.split(" ", 1)[1]: value["stem"] for key, value in mapping["tracks"].items()}
    assert stems == {"Kick": "drums", "Mute Bass": "bass", "Default preset": "bass", "Lead": "other", "E-Piano": "piano"}
    assert mapping["tracks"]["01 Default preset"]["rule"].startswith("synth, 1.00 of energy")
    assert mapping["left_out"] == {
        "04 Unused": "muted in the project",
        "05 Never played": "silent (not played in the song)",
        "07 Hat": "plays LMMS stock recording drums/hihat_closed01.ogg (provenance unknown)",
    }
    assert mapping["licence"] == "Artistic-2.0" and mapping["master_effects_off"] == ["fastLookaheadLimiter"]
    # the stems, undone by the one gain, sum to the whole render of the kept tracks
    total = sum(sf.read(song / f"{s}.flac", always_2d=True)[0] for s in ("drums", "bass", "piano", "other"))
    t = np.arange(NUM_SAMPLES) / RATE
    whole = sum(0.3 * np.sin(2 * np.pi * TRACKS[n][3] * t) for n in kept)
    expected = np.stack([whole, 0.5 * whole], axis=1) * mapping["gain"]
    assert np.abs(total - expected).max() < 4 / 32768  # 16-bit FLAC, four stems
    assert np.abs(total).max() <= 0.99 + 1e-4
    for path in song.glob("*.flac"):
        assert sf.info(path).frames == NUM_SAMPLES and sf.info(path).samplerate == RATE


def test_stock_samples_can_be_kept(projects_root, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    info = lmms_render.render_song(PROJECT, out, projects_root=projects_root, renderer=fake_renderer(),
                                   stock_samples=True)
    mapping = json.loads((out / "Surrender-Main" / "mapping.json").read_text())
    assert info["written"] and mapping["stock_samples"] is True
    assert any(key.endswith(" Hat") and value["stem"] == "drums" for key, value in mapping["tracks"].items())


def test_a_song_whose_tracks_do_not_sum_to_it_is_not_written(projects_root, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    info = lmms_render.render_song(PROJECT, out, projects_root=projects_root, renderer=fake_renderer(additive=False))
    assert not info["written"] and info["residual_db"] > -40 and info["stems"] == {}
    assert not (out / "Surrender-Main").exists()


def test_list_needs_no_lmms(capsys):
    assert lmms_render.main(["--list"]) == 0
    table = capsys.readouterr().out
    assert "Saber-FinalStep | Saber Rastikerdar | BSD-2-Clause | yes" in table
    assert "Jousboxx-BuzzerBeater" in table and "with --share-alike" in table


def test_random_takes_are_written_when_the_sum_follows_the_song(projects_root, tmp_path):
    """Each render draws new noise for a track (like DrumSynth): no exact sum, the same levels."""
    base = fake_renderer()
    seeds = iter(range(1000))

    def noisy(project: pathlib.Path, out: pathlib.Path) -> None:
        base(project, out)
        waveform, rate = sf.read(out, always_2d=True)
        if "Kick" in base.calls[-1]:
            noise = np.random.default_rng(next(seeds)).normal(0, 0.05, waveform.shape)
            sf.write(out, waveform + noise, rate, subtype="FLOAT", format="WAV")

    out = tmp_path / "out"
    out.mkdir()
    info = lmms_render.render_song(PROJECT, out, projects_root=projects_root, renderer=noisy)
    assert info["written"] and info["check"] == "random takes"
    assert info["residual_db"] > -40 and info["envelope_db"] < 1


def test_envelope_difference_tells_a_limiter_from_another_take():
    rng = np.random.default_rng(0)
    t = np.arange(2 * RATE) / RATE
    tone = np.stack([0.5 * np.sin(2 * np.pi * 110 * t) * (t % 0.5 < 0.25)] * 2, axis=1)
    take_a = tone + rng.normal(0, 0.05, tone.shape)
    take_b = tone + rng.normal(0, 0.05, tone.shape)
    assert lmms_render.envelope_difference_db(take_a, take_a) == 0
    assert lmms_render.envelope_difference_db(take_b, take_a) < 0.5
    assert lmms_render.envelope_difference_db(np.tanh(4 * take_a) / 4, take_a) > 3


def test_shared_compressor_or_side_chain_is_not_additive():
    def project(effect: str, kick_channel: int, bass_channel: int) -> ET.Element:
        tracks = "".join(
            f'<track type="0" name="{n}" muted="0"><instrumenttrack fxch="{c}"><instrument name="kicker"/>'
            f'</instrumenttrack></track>' for n, c in (("Kick", kick_channel), ("Bass", bass_channel)))
        mixer = ('<fxmixer><fxchannel num="0"/>'
                 f'<fxchannel num="1"><fxchain enabled="1"><effect on="1" name="{effect}"/></fxchain>'
                 '<send channel="0" amount="1"/></fxchannel>'
                 '<fxchannel num="2"><send channel="1" amount="1"/></fxchannel></fxmixer>')
        return ET.fromstring(f"<lmms-project><song><trackcontainer>{tracks}</trackcontainer>{mixer}</song></lmms-project>")

    assert lmms_render.shared_nonlinear(project("waveshaper", 1, 2), [0, 1]) == [
        "waveshaper on mixer channel 1 shared by tracks [0, 1]"]  # channel 2 sends into channel 1
    assert lmms_render.shared_nonlinear(project("waveshaper", 1, 0), [0, 1]) == []  # only the kick on it
    assert lmms_render.shared_nonlinear(project("eq", 1, 2), [0, 1]) == []  # linear
    assert lmms_render.shared_nonlinear(project("peakcontrollereffect", 1, 0), [0, 1]) == [
        "peak controller on mixer channel 1 fed by tracks [0]"]
    assert lmms_render.shared_nonlinear(project("peakcontrollereffect", 1, 0), [1]) == []  # its source left out


FAKE_LMMS = '''#!{python}
"""A stand-in for `lmms render`: a tone per audible instrument track, named by its track."""
import json, os, sys, xml.etree.ElementTree as ET
import numpy as np, soundfile as sf
args = sys.argv[1:]
with open(os.environ["FAKE_LMMS_LOG"], "a") as log:
    log.write(json.dumps({{"args": args, "qpa": os.environ.get("QT_QPA_PLATFORM")}}) + "\\n")
if os.environ.get("FAKE_LMMS_FAIL"):
    sys.exit("cannot open display")
project, out = args[args.index("render") + 1], args[args.index("--output") + 1]
t = np.arange(22050) / 44100
mix = np.zeros(22050)
for track in ET.parse(project).getroot().iter("track"):
    if track.get("type") == "0" and track.get("muted") != "1" and any(n.get("vol") != "0" for n in track.iter("note")):
        mix += 0.1 * np.sin(2 * np.pi * (100 + sum(track.get("name").encode()) % 1000) * t)
sf.write(out, np.stack([mix, mix], axis=1).astype(np.float32), 44100, subtype="FLOAT", format="WAV")
'''


@pytest.fixture
def fake_lmms(tmp_path, monkeypatch) -> pathlib.Path:
    path = tmp_path / "bin" / "lmms"
    path.parent.mkdir()
    path.write_text(FAKE_LMMS.format(python=sys.executable))
    path.chmod(0o755)
    monkeypatch.setenv("FAKE_LMMS_LOG", str(tmp_path / "lmms-calls.jsonl"))
    return path


def test_lmms_renderer_runs_lmms_render_headless(fake_lmms, tmp_path, monkeypatch):
    project = tmp_path / "song.mmp"
    project.write_text(project_xml())
    lmms_render.LmmsRenderer(str(fake_lmms))(project, tmp_path / "song.wav")
    call = json.loads((tmp_path / "lmms-calls.jsonl").read_text())
    assert call["qpa"] == "offscreen"
    assert call["args"][call["args"].index("render"):] == [
        "render", str(project), "--float", "--format", "wav", "--output", str(tmp_path / "song.wav")]
    assert sf.info(tmp_path / "song.wav").samplerate == RATE
    monkeypatch.setenv("FAKE_LMMS_FAIL", "1")
    with pytest.raises(RuntimeError, match="cannot open display"):
        lmms_render.LmmsRenderer(str(fake_lmms))(project, tmp_path / "again.wav")


def test_main_renders_the_chosen_projects_and_reports(fake_lmms, projects_root, tmp_path, capsys):
    out = tmp_path / "songs"
    code = lmms_render.main(["--out", str(out), "--projects", "Surrender-Main", "--lmms", str(fake_lmms),
                             "--projects-root", str(projects_root)])
    report = capsys.readouterr().out
    assert code == 0, report
    assert "Surrender-Main: 0.5 s, residual" in report and "1 of 1 songs written" in report
    assert sorted(p.name for p in (out / "Surrender-Main").iterdir()) == [
        "bass.flac", "drums.flac", "mapping.json", "other.flac", "piano.flac"]


def test_main_reports_a_failing_song_and_exits_non_zero(fake_lmms, projects_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_LMMS_FAIL", "1")
    code = lmms_render.main(["--out", str(tmp_path / "songs"), "--projects", "Surrender-Main",
                             "--lmms", str(fake_lmms), "--projects-root", str(projects_root)])
    report = capsys.readouterr().out
    assert code == 1 and "Surrender-Main: FAILED:" in report and "failed: Surrender-Main" in report
