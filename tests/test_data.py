"""Contracts of stemtf.data on tiny generated tracks (8 kHz, under a second each)."""

from __future__ import annotations

import pathlib
import subprocess

import dataclasses

import numpy as np
import pytest
import soundfile as sf

from stemtf import data, spectral

RATE = 8000
GEOMETRY = {"sample_rate": RATE, "num_channels": 2, "n_fft": 256, "hop_length": 64, "max_bins": 64, "num_frames": 16, "batch_size": 3}


def tone(frequency: float, num_samples: int, seed: int) -> np.ndarray:
    """A stereo tone with a random level per channel, float32 ``(num_samples, 2)``."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / RATE
    return (np.sin(2 * np.pi * frequency * t)[:, None] * rng.uniform(0.1, 0.4, size=2)).astype(np.float32)


def write_folder(root: pathlib.Path, tracks: dict[str, dict[str, np.ndarray]], ext: str = "wav") -> pathlib.Path:
    for track, files in tracks.items():
        (root / track).mkdir(parents=True)
        for stem, waveform in files.items():
            sf.write(root / track / f"{stem}.{ext}", waveform, RATE, subtype="FLOAT" if ext == "wav" else None)
    return root


def toy_tracks(num_tracks: int = 3, num_samples: int = 6000) -> dict[str, dict[str, np.ndarray]]:
    return {
        f"song{i}": {"a": tone(300 + 50 * i, num_samples, i), "b": tone(1500 + 50 * i, num_samples, 100 + i)}
        for i in range(num_tracks)
    }


def as_arrays(dataset, num_batches: int):
    batches = []
    for mixture, stems in dataset.take(num_batches):
        batches.append((mixture.numpy(), {k: v.numpy() for k, v in stems.items()}))
    return batches


def test_folder_layout_reads_stems_mixture_and_silence(tmp_path):
    tracks = toy_tracks(2)
    tracks["song0"]["mixture"] = tracks["song0"]["a"] + tracks["song0"]["b"] + 0.01
    del tracks["song1"]["b"]  # a stem a track lacks is silence
    root = write_folder(tmp_path, tracks)
    (root / "song0" / "notes.txt").write_text("not audio")
    found = data.folder_tracks(root, stems=["a", "b"])
    assert [t.name for t in found] == ["song0", "song1"]
    assert found[0].mixture is not None and found[1].mixture is None
    assert found[1].stems["b"] == ()
    assert found[0].num_samples == 6000 and found[0].sample_rate == RATE

    crop = data.read_crop(found[0], 100, 500, sample_rate=RATE, num_channels=2)
    assert crop.shape == (3, 500, 2)
    np.testing.assert_allclose(crop[0], tracks["song0"]["mixture"][100:600], atol=1e-6)  # the mixture file
    crop = data.read_crop(found[1], 5800, 500, sample_rate=RATE, num_channels=2)
    np.testing.assert_allclose(crop[0, :200], tracks["song1"]["a"][5800:], atol=1e-6)  # sum of stems
    assert not crop[2].any() and not crop[:, 200:].any()  # silent stem, zero padding past the end


def test_stem_groups_merge_files(tmp_path):
    tracks = toy_tracks(2)
    tracks["song1"]["piano"] = tone(700, 6000, 7)
    root = write_folder(tmp_path, tracks)
    with pytest.raises(data.DataError, match="'piano' stem that no model stem takes"):
        data.folder_tracks(root, stems=["a", "b"])
    found = data.folder_tracks(root, stems=["a", "b"], stem_groups={"b": ["b", "piano"]})
    crop = data.read_crop(found[1], 0, 1000, sample_rate=RATE, num_channels=2)
    np.testing.assert_allclose(crop[2], tracks["song1"]["b"][:1000] + tracks["song1"]["piano"][:1000], atol=1e-6)
    with pytest.raises(data.DataError, match="'c', which is not one of the model's stems"):
        data.folder_tracks(root, stems=["a", "b"], stem_groups={"c": ["piano"]})


def test_resampling_and_mono(tmp_path):
    root = tmp_path / "data"
    (root / "x").mkdir(parents=True)
    sf.write(root / "x" / "a.flac", tone(200, 16000, 0)[:, :1], 16000)
    sf.write(root / "x" / "b.flac", tone(900, 16000, 1)[:, :1], 16000)
    (track,) = data.folder_tracks(root, stems=["a", "b"])
    crop = data.read_crop(track, 0, 4000, sample_rate=RATE, num_channels=2)
    assert crop.shape == (3, 4000, 2)
    np.testing.assert_allclose(crop[1, :, 0], crop[1, :, 1])
    assert np.abs(crop[1, 100:3900, 0]).max() > 0.05


def test_folder_of_m4a_stems_reads_through_ffmpeg(tmp_path):
    """Files soundfile cannot open are probed and read by ffmpeg: mono to stereo, zero padding at the end."""
    root = tmp_path / "data"
    (root / "x").mkdir(parents=True)
    sources = {"a": tone(300, RATE, 0)[:, :1], "b": tone(1100, RATE, 1)}
    for stem, waveform in sources.items():
        sf.write(tmp_path / f"{stem}.wav", waveform, RATE, subtype="FLOAT")
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / f"{stem}.wav"), "-c:a", "aac", "-b:a", "128k",
                        str(root / "x" / f"{stem}.m4a")], check=True)
    (track,) = data.folder_tracks(root, stems=["a", "b"])
    assert track.sample_rate == RATE and abs(track.num_samples - RATE) < 2048
    crop = data.read_crop(track, 4000, 2000, sample_rate=RATE, num_channels=2)
    assert crop.shape == (3, 2000, 2)
    np.testing.assert_allclose(crop[1, :, 0], crop[1, :, 1])  # the mono stem, on both channels
    for index, stem in enumerate(["a", "b"], start=1):
        expected = np.broadcast_to(sources[stem][4000:6000], (2000, 2))
        assert np.sqrt(np.mean((crop[index] - expected) ** 2)) < 0.1 * np.sqrt(np.mean(expected**2)), stem
    # AAC decodes a little past the length its header states (encoder padding): read well beyond it.
    late = data.read_crop(track, track.num_samples + 4096, 500, sample_rate=RATE, num_channels=2)
    assert late.shape == (3, 500, 2) and not late.any()


def test_csv_layout(tmp_path):
    root = write_folder(tmp_path / "audio", toy_tracks(2))
    manifest = tmp_path / "train.csv"
    manifest.write_text(
        "mix_path,a_path,b_path,duration\n"
        ",audio/song0/a.wav,audio/song0/b.wav,0.5\n"
        ",audio/song1/a.wav,,\n"
    )
    found = data.csv_tracks(manifest, stems=["a", "b"])
    assert found[0].num_samples == 4000 and found[1].num_samples == 6000
    assert found[1].stems["b"] == ()
    assert found[0].stems["a"][0].path == str(root / "song0" / "a.wav")
    train, validation = data.training_split(manifest, stems=["a", "b"], validation_fraction=0.5)
    assert len(train) == len(validation) == 1


def test_musdb_wav_layout(tmp_path):
    pytest.importorskip("musdb")
    root = tmp_path / "musdb"
    names = {"train": ["Actions - One Minute Smile", "Zeta - Train Song"], "test": ["Omega - Test Song"]}
    for subset, tracks in names.items():
        for i, name in enumerate(tracks):
            folder = root / subset / name
            folder.mkdir(parents=True)
            stems = {s: tone(200 * (k + 1), 4000, i * 10 + k) for k, s in enumerate(["vocals", "drums", "bass", "other"])}
            for stem, waveform in stems.items():
                sf.write(folder / f"{stem}.wav", waveform, RATE, subtype="FLOAT")
            sf.write(folder / "mixture.wav", sum(stems.values()), RATE, subtype="FLOAT")
    stems = ["vocals", "accompaniment"]
    groups = {"accompaniment": ["drums", "bass", "other"]}
    train, validation = data.training_split(root, stems=stems, stem_groups=groups)
    assert [t.name for t in train] == ["Zeta - Train Song"]
    assert [t.name for t in validation] == ["Actions - One Minute Smile"]  # MUSDB18's official valid split
    test = data.musdb_tracks(root, stems=stems, stem_groups=groups, subset="test")
    assert [t.name for t in test] == ["Omega - Test Song"]
    crop = data.read_crop(train[0], 0, 4000, sample_rate=RATE, num_channels=2)
    np.testing.assert_allclose(crop[0], crop[1] + crop[2], atol=1e-5)
    with pytest.raises(data.DataError, match="MUSDB18 has no 'guitar' source"):
        data.musdb_tracks(root, stems=["vocals", "guitar"])


def test_training_dataset_specs_determinism_and_augmentation(tmp_path):
    found = data.folder_tracks(write_folder(tmp_path, toy_tracks(3)), stems=["a", "b"])
    def make(seed, **kwargs):
        return data.training_dataset(found, stems=["a", "b"], seed=seed, **GEOMETRY, **kwargs)

    dataset = make(1)
    mixture_spec, stem_specs = dataset.element_spec
    assert mixture_spec.shape.as_list() == [None, 16, 64, 2]
    assert sorted(stem_specs) == ["a", "b"] and stem_specs["a"].shape.as_list() == [None, 16, 64, 2]

    first, again, other = as_arrays(dataset, 3), as_arrays(make(1), 3), as_arrays(make(2), 1)
    for (m1, s1), (m2, s2) in zip(first, again):
        np.testing.assert_array_equal(m1, m2)
        np.testing.assert_array_equal(s1["b"], s2["b"])
    assert not np.allclose(first[0][0], other[0][0])
    # Restarting at an example index continues the same stream (what resume relies on).
    later = as_arrays(make(1, first_example=3), 1)
    np.testing.assert_array_equal(later[0][0], first[1][0])

    # Augmentation changes levels; without it a crop is the plain sum of the stems.
    plain = as_arrays(make(1, augmentation=None), 1)
    mixture, _ = plain[0]
    assert mixture.shape == (3, 16, 64, 2)
    num_samples = spectral.segment_samples(16, n_fft=256, hop_length=64)
    reader = data.augment._ExampleReader(found, ["a", "b"], num_samples, RATE, 2, data.Augmentation(remix_probability=1.0), 5)
    example = reader(np.int64(0))
    np.testing.assert_allclose(example[0], example[1] + example[2], atol=1e-6)
    gains = [np.abs(example[k]).max() / 0.4 for k in (1, 2)]
    assert all(g <= 1.25 + 1e-6 for g in gains)
    swapped = data.augment._ExampleReader(found, ["a", "b"], num_samples, RATE, 2,
                                          data.Augmentation(gain_range=(1, 1), channel_swap_probability=1, remix_probability=0), 5)
    unswapped = data.augment._ExampleReader(found, ["a", "b"], num_samples, RATE, 2,
                                            data.Augmentation(gain_range=(1, 1), channel_swap_probability=0, remix_probability=0), 5)
    np.testing.assert_array_equal(swapped(np.int64(3))[1], unswapped(np.int64(3))[1][:, ::-1])


def test_speed_augmentation_changes_pitch_and_keeps_the_crop_length(tmp_path):
    found = data.folder_tracks(write_folder(tmp_path, toy_tracks(1, num_samples=8000)), stems=["a", "b"])  # a: 300 Hz, b: 1500 Hz
    num_samples = 2048

    def example(speed_range, index=0):
        augmentation = data.Augmentation(gain_range=(1, 1), channel_swap_probability=0, remix_probability=0, speed_range=speed_range)
        return data.augment._ExampleReader(found, ["a", "b"], num_samples, RATE, 2, augmentation, 3)(np.int64(index))

    def peak_hz(waveform):
        spectrum = np.abs(np.fft.rfft(waveform[:, 0] * np.hanning(len(waveform))))
        return np.argmax(spectrum) * RATE / len(waveform)

    for index in range(3):
        plain, fast, slow = example((1, 1), index), example((1.5, 1.5), index), example((0.8, 0.8), index)
        assert fast.shape == slow.shape == plain.shape == (3, num_samples, 2)
        np.testing.assert_allclose(fast[0], fast[1] + fast[2], atol=1e-6)
        for stem, hz in ((1, 300), (2, 1500)):  # every stem moves together: the song stays in tune with itself
            assert peak_hz(plain[stem]) == pytest.approx(hz, rel=0.02)
            assert peak_hz(fast[stem]) == pytest.approx(1.5 * hz, rel=0.02)
            assert peak_hz(slow[stem]) == pytest.approx(0.8 * hz, rel=0.02)
        assert np.abs(fast[1][-100:]).max() > 0.05  # no silent tail: enough source was read
    with pytest.raises(ValueError, match="speed_range"):
        data.Augmentation(speed_range=(1.2, 1.1))


def test_validation_dataset_is_fixed_crops(tmp_path):
    found = data.folder_tracks(write_folder(tmp_path, toy_tracks(2)), stems=["a", "b"])
    dataset = data.validation_dataset(found, stems=["a", "b"], crops_per_track=3, **GEOMETRY)
    batches = as_arrays(dataset, 10)
    assert sum(m.shape[0] for m, _ in batches) == 6
    np.testing.assert_array_equal(batches[0][0], as_arrays(dataset, 1)[0][0])


def test_split_is_reproducible_by_track(tmp_path):
    found = data.folder_tracks(write_folder(tmp_path, toy_tracks(4, 1000)), stems=["a", "b"])
    train, validation = data.split_tracks(found, validation_fraction=0.25, seed=3)
    assert len(validation) == 1 and len(train) == 3
    again = data.split_tracks(list(reversed(found)), validation_fraction=0.25, seed=3)[1]
    assert [t.name for t in again] == [t.name for t in validation]
    chosen = data.split_tracks(found, validation_tracks=["song2"])[1]
    assert [t.name for t in chosen] == ["song2"]


def test_bad_data_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(data.DataError, match="No tracks found"):
        data.folder_tracks(empty, stems=["a", "b"])
    with pytest.raises(data.DataError, match="does not exist"):
        data.folder_tracks(tmp_path / "nope", stems=["a", "b"])

    only_a = write_folder(tmp_path / "only_a", {"s": {"a": tone(200, 1000, 0)}})
    with pytest.raises(data.DataError, match="No track .* has a 'b' stem"):
        data.folder_tracks(only_a, stems=["a", "b"])

    uneven = write_folder(tmp_path / "uneven", {"s": {"a": tone(200, 1000, 0), "b": tone(900, 900, 1)}})
    with pytest.raises(data.DataError, match="different lengths"):
        data.folder_tracks(uneven, stems=["a", "b"])

    loose = tmp_path / "loose"
    loose.mkdir()
    sf.write(loose / "a.wav", tone(200, 1000, 0), RATE)
    with pytest.raises(data.DataError, match="holds audio files directly"):
        data.folder_tracks(loose, stems=["a", "b"])

    write_folder(tmp_path / "csvdata", toy_tracks(1, 1000))
    manifest = tmp_path / "m.csv"
    manifest.write_text("mixture_path,a_path,b_path,guitar_path\n,csvdata/song0/a.wav,csvdata/song0/b.wav,x.wav\n")
    with pytest.raises(data.DataError, match="column 'guitar_path' for stem 'guitar'"):
        data.csv_tracks(manifest, stems=["a", "b"])
    manifest.write_text("a_path,b_path\ncsvdata/song0/a.wav,csvdata/song0/missing.wav\n")
    with pytest.raises(data.DataError, match="missing.wav' does not exist"):
        data.csv_tracks(manifest, stems=["a", "b"])
    with pytest.raises(data.DataError, match="does not exist"):
        data.csv_tracks(tmp_path / "none.csv", stems=["a", "b"])


def test_musdb_stem_mp4_layout(tmp_path):
    """The .stem.mp4 release: five AAC streams (mixture, drums, bass, other, vocals) in one file."""
    pytest.importorskip("musdb")
    root = tmp_path / "musdb"
    rate, length = 44100, 44100
    t = np.arange(length) / rate
    sources = {s: np.stack([0.2 * np.sin(2 * np.pi * f * t)] * 2, axis=1).astype(np.float32)
               for s, f in zip(["drums", "bass", "other", "vocals"], [220, 110, 660, 440])}
    for subset, name in (("train", "Zeta - Train Song"), ("test", "Omega - Test Song")):
        (root / subset).mkdir(parents=True)
        inputs = []
        for stem, waveform in [("mixture", sum(sources.values())), *sources.items()]:
            path = tmp_path / f"{subset}-{stem}.wav"
            sf.write(path, waveform, rate, subtype="FLOAT")
            inputs += ["-i", str(path)]
        maps = [arg for index in range(5) for arg in ("-map", f"{index}:a")]
        subprocess.run(["ffmpeg", "-v", "error", *inputs, *maps, "-c:a", "aac", "-b:a", "256k",
                        str(root / subset / f"{name}.stem.mp4")], check=True)
    test = data.musdb_tracks(root, stems=["vocals", "drums", "bass", "other"], subset="test")
    assert [t.name for t in test] == ["Omega - Test Song"]
    assert abs(test[0].num_samples - length) < 4096
    crop = data.read_crop(test[0], 11025, 22050, sample_rate=rate, num_channels=2)
    assert crop.shape == (5, 22050, 2)
    # Each stream decodes to its own source (AAC is lossy: compare energies, not samples).
    for index, stem in enumerate(["vocals", "drums", "bass", "other"], start=1):
        expected = sources[stem][11025:33075]
        assert np.sqrt(np.mean((crop[index] - expected) ** 2)) < 0.3 * np.sqrt(np.mean(expected**2)), stem


# Partly labelled tracks: unknown stems (CSV "?"), sums of stems (a+b), and remixing only labelled stems.


def exact_noise(num_samples: int, seed: int) -> np.ndarray:
    """Stereo noise of exactly representable float32 values: bit-identical on every platform once written as FLOAT WAV."""
    rng = np.random.default_rng(seed)
    return (rng.integers(-1000, 1001, size=(num_samples, 2)) / 4096).astype(np.float32)


def _old_example(reader, index):
    """The example draw of `_ExampleReader` before partly labelled tracks existed (kept to pin the draw order)."""
    import math

    import soxr

    rng = np.random.default_rng([reader.seed, int(index)])
    kwargs = {"sample_rate": reader.sample_rate, "num_channels": reader.num_channels}

    def draw(num_samples):
        track = reader.tracks[rng.integers(len(reader.tracks))]
        length = int(track.num_samples * reader.sample_rate / track.sample_rate)
        return track, int(rng.integers(max(1, length - num_samples + 1)))

    augmentation = reader.augmentation
    low, high = augmentation.speed_range
    speed = float(rng.uniform(low, high)) if (low, high) != (1.0, 1.0) else 1.0
    needed = reader.num_samples if speed == 1.0 else math.ceil(reader.num_samples * speed) + 64
    track, start = draw(needed)
    if rng.random() < augmentation.remix_probability:
        stems = [data.read_crop(*draw(needed), needed, stems=[s], mixture=False, **kwargs)[0] for s in reader.stems]
    else:
        stems = list(data.read_crop(track, start, needed, stems=reader.stems, mixture=False, **kwargs))
    if speed != 1.0:
        stems = [soxr.resample(s, reader.sample_rate * speed, reader.sample_rate)[: reader.num_samples] for s in stems]
    for i in range(len(stems)):
        stems[i] = stems[i] * np.float32(rng.uniform(*augmentation.gain_range))
        if rng.random() < augmentation.channel_swap_probability and reader.num_channels == 2:
            stems[i] = stems[i][:, ::-1]
    stack = np.stack(stems)
    return np.concatenate([stack.sum(axis=0, keepdims=True), stack]).astype(np.float32)


def test_fully_labelled_example_draws_are_unchanged(tmp_path):
    """Runs resumed with partial-label support draw the very examples they drew before it."""
    import hashlib

    spec = {"song0": ["a", "b", "mixture"], "song1": ["a"], "song2": ["a", "b"]}  # a silent stem, a mixture file
    for i, (name, files) in enumerate(spec.items()):
        (tmp_path / "d" / name).mkdir(parents=True)
        for k, stem in enumerate(files):
            sf.write(tmp_path / "d" / name / f"{stem}.wav", exact_noise(3000 + 500 * i, 10 * i + k), RATE, subtype="FLOAT")
    tracks = data.folder_tracks(tmp_path / "d", stems=["a", "b"])
    digest = hashlib.sha256()
    for augmentation in (data.DEFAULT_AUGMENTATION, None):
        reader = data.augment._ExampleReader(tracks, ["a", "b"], 1024, RATE, 2, augmentation, 7)
        for index in range(24):
            digest.update(reader(np.int64(index)).tobytes())
    # Computed with the code before partly labelled tracks (commit 273a3ad).
    assert digest.hexdigest() == "6c12e71efe1a891bf794c5605057a652f681e742960214e2b292cc311b54a791"
    speedy = data.Augmentation(speed_range=(0.8, 1.2))
    reader = data.augment._ExampleReader(tracks, ["a", "b"], 1024, RATE, 2, speedy, 3)
    for index in range(12):
        np.testing.assert_array_equal(reader(np.int64(index)), _old_example(reader, index))
    assert len(data.training_dataset(tracks, stems=["a", "b"], **GEOMETRY).element_spec) == 2  # (mixture, stems)


def write_constants(root: pathlib.Path, values: dict[str, float], num_samples: int = 4000) -> pathlib.Path:
    """Files of one constant value each (``{"full/a": 0.1}`` -> ``root/full/a.wav``): every crop says where it came from."""
    for name, value in values.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / f"{name}.wav", np.full((num_samples, 2), value, np.float32), RATE, subtype="FLOAT")
    return root


PARTS = {"full/a": 0.1, "full/b": 0.2, "full/c": 0.3, "guitar/b": 0.02, "part/a": 0.01, "part/mix": 0.5, "band/bc": 0.05}
PARTS_CSV = (
    "mixture_path,a_path,b_path,c_path,b+c_path\n"
    ",full/a.wav,full/b.wav,full/c.wav,\n"  # fully labelled
    ",,guitar/b.wav,,\n"  # a part alone: the other stems are silent (fully labelled)
    "part/mix.wav,part/a.wav,?,,\n"  # b is in the mixture but unknown
    ",,,,band/bc.wav\n"  # b and c known only as a sum; a is silent
)


def test_csv_unknown_cells_and_sum_columns(tmp_path):
    write_constants(tmp_path, PARTS)
    (tmp_path / "m.csv").write_text(PARTS_CSV)
    full, guitar, part, band = data.csv_tracks(tmp_path / "m.csv", stems=["a", "b", "c"])
    assert not full.partly_labelled and not guitar.partly_labelled
    assert part.unknown == {"b"} and part.mixture is not None and part.labels("a") and not part.labels("b")
    assert band.sums == {("b", "c"): (data.AudioSource(str(tmp_path / "band" / "bc.wav")),)} and not band.unknown
    assert band.labels("a") and not band.labels("b") and not band.labels("c")
    assert data.stem_sums([full, part, band]) == [("b", "c")] and data.sum_name(("b", "c")) == "b+c"
    crop = data.read_crop(band, 0, 1000, sample_rate=RATE, num_channels=2, stems=["a", "b", "c"], sums=[("b", "c")])
    np.testing.assert_allclose(crop[:, 0, 0], [0.05, 0, 0, 0, 0.05])  # mixture = the sum; silent unlabelled stems
    crop = data.read_crop(part, 0, 1000, sample_rate=RATE, num_channels=2, stems=["a", "b", "c"], sums=[("b", "c")])
    np.testing.assert_allclose(crop[:, 0, 0], [0.5, 0.01, 0, 0, 0])  # the mixture file
    (tmp_path / "notes.csv").write_text("a_path,b_path,c_path,notes+remarks\nfull/a.wav,full/b.wav,full/c.wav,x\n")
    assert not data.csv_tracks(tmp_path / "notes.csv", stems=["a", "b", "c"])[0].partly_labelled  # other columns: ignored


@pytest.mark.parametrize(
    ("manifest", "pattern"),
    [
        ("a_path,b_path,c_path\nfull/a.wav,?,full/c.wav\n", r"line 2: Track 'line 2' has unknown stems \['b'\] but no mixture file"),
        ("mixture_path,a_path,b_path,c_path\n?,full/a.wav,full/b.wav,full/c.wav\n", "line 2: the mixture cannot be unknown"),
        ("a_path,b_path,c_path,b+c_path\nfull/a.wav,full/b.wav,,band/bc.wav\n", "gives the 'b' stem twice"),
        ("a_path,b+b_path\nfull/a.wav,band/bc.wav\n", "column 'b\\+b_path'; a sum column names two or more different stems"),
        ("a_path,b+c\nfull/a.wav,band/bc.wav\n", "column 'b\\+c'; name a column of summed stems like the others, b\\+c_path"),
        ("a_path,b+d_path\nfull/a.wav,band/bc.wav\n", "column 'b\\+d_path' for stem 'd', which no model stem takes"),
        ("mixture_path,a_path,b_path,c_path\npart/mix.wav,?,?,?\n", "labels none of its stems"),
        # rows and headers of any manifest
        ("a_path,b_path,c_path,duration\nfull/a.wav,full/b.wav,full/c.wav,long\n", "m.csv line 2: duration 'long' is not a number"),
        ("a_path,b_path,c_path,duration\nfull/a.wav,full/b.wav,full/c.wav,-1\n", "m.csv line 2: duration must be > 0 seconds. Received -1.0"),
        ("a_path,b_path\nfull/a.wav,full/b.wav\nfull/a.wav,full/nope.wav\n", r"m.csv line 3: b_path '.*nope.wav' does not exist"),
        ("a,b,c\nfull/a.wav,full/b.wav,full/c.wav\n", r"has no <stem>_path columns \(columns: \['a', 'b', 'c'\]\)"),
    ],
)
def test_bad_manifests_are_one_line_errors(tmp_path, manifest, pattern):
    write_constants(tmp_path, PARTS)
    (tmp_path / "m.csv").write_text(manifest)
    with pytest.raises(data.DataError, match=pattern) as caught:
        data.csv_tracks(tmp_path / "m.csv", stems=["a", "b", "c"])
    assert "\n" not in str(caught.value)


def test_track_checks_its_labels():
    source = data.AudioSource("x.wav")
    stems = {"a": (source,), "b": (), "c": ()}
    base = {"name": "t", "num_samples": 100, "sample_rate": RATE}
    with pytest.raises(data.DataError, match="sum of one stem"):
        data.Track(**base, stems=stems, sums={("b",): (source,)})
    with pytest.raises(data.DataError, match="labels 'a' with files and also puts it in the sum 'a\\+b'"):
        data.Track(**base, stems=stems, sums={("a", "b"): (source,)})
    with pytest.raises(data.DataError, match="puts 'b' in two sums"):
        data.Track(**base, stems={"a": (), "b": (), "c": (), "d": ()}, sums={("a", "b"): (source,), ("b", "c"): (source,)})
    with pytest.raises(data.DataError, match="marks 'b' unknown and also puts it in the sum"):
        data.Track(**base, stems=stems, mixture=source, unknown={"b"}, sums={("b", "c"): (source,)})
    with pytest.raises(data.DataError, match="marks 'z' unknown, which is not one of its stems"):
        data.Track(**base, stems=stems, mixture=source, unknown={"z"})
    with pytest.raises(data.DataError, match="unknown stems \\['b'\\] but no mixture file"):
        data.Track(**base, stems=stems, unknown={"b"})
    with pytest.raises(data.DataError, match="labels 'a' with files and also marks it unknown"):
        data.Track(**base, stems=stems, mixture=source, unknown={"a"})
    track = data.Track(**base, stems=stems, mixture=source, unknown={"b"})
    assert track.partly_labelled and track.unknown == frozenset({"b"})
    assert list(data.Track(**base, stems=stems, sums={("c", "b"): (source,)}).sums) == [("b", "c")]  # model order


def test_folder_sum_files_and_folders_of_parts(tmp_path):
    write_constants(tmp_path / "band", {"song/a": 0.1, "song/b+c": 0.2})
    (track,) = data.folder_tracks(tmp_path / "band", stems=["a", "b", "c"])
    assert list(track.sums) == [("b", "c")] and track.stems["a"]
    write_constants(tmp_path / "guitars", {"one/b": 0.1, "two/b": 0.2})
    with pytest.raises(data.DataError, match="No track .* has a 'a' stem"):
        data.folder_tracks(tmp_path / "guitars", stems=["a", "b"])
    found = data.folder_tracks(tmp_path / "guitars", stems=["a", "b"], require_every_stem=False)
    assert [t.name for t in found] == ["one", "two"] and not found[0].stems["a"]


def _identify(value: float, stem: str) -> str:
    """The file a stem of a crop of PARTS (gain 1) came from, by its constant value."""
    if value == 0:
        return "silence"
    (name,) = [name for name, v in PARTS.items() if np.isclose(v, value, atol=1e-6)]
    return name


@pytest.mark.parametrize("remix_silent_stems", [True, False])
def test_remix_takes_each_stem_only_from_tracks_that_label_it(tmp_path, remix_silent_stems):
    write_constants(tmp_path, PARTS)
    (tmp_path / "m.csv").write_text(PARTS_CSV)
    stems = ["a", "b", "c"]
    tracks = data.csv_tracks(tmp_path / "m.csv", stems=stems)
    augmentation = data.Augmentation(gain_range=(1, 1), channel_swap_probability=0, remix_probability=1,
                                      remix_silent_stems=remix_silent_stems)
    reader = data.augment._ExampleReader(tracks, stems, 512, RATE, 2, augmentation, 0, data.stem_sums(tracks))
    # The tracks labelling each stem on their own: b is never part's unknown b nor the band's (it is in a sum).
    expected = {"a": {"full/a", "part/a", "silence"}, "b": {"full/b", "guitar/b"}, "c": {"full/c", "silence"}}
    if not remix_silent_stems:
        expected = {stem: files - {"silence"} for stem, files in expected.items()}
    seen = {stem: set() for stem in stems}
    whole = 0
    for index in range(60):
        example, weights = reader(np.int64(index))
        assert example.shape == (5, 512, 2)
        if weights.tolist() == [1, 1, 1, 0]:  # a whole track's example: remixed
            np.testing.assert_allclose(example[0], example[1:4].sum(axis=0), atol=1e-6)
            for i, stem in enumerate(stems, start=1):
                seen[stem].add(_identify(example[i, 0, 0], stem))
        else:  # a partly labelled track is used whole, with its own mixture
            whole += 1
            if weights.tolist() == [1, 0, 1, 0]:  # part: b unknown
                np.testing.assert_allclose(example[:, 0, 0], [0.5, 0.01, 0, 0, 0], atol=1e-6)
            else:  # band: b+c as a sum
                assert weights.tolist() == [1, 0, 0, 1]
                np.testing.assert_allclose(example[:, 0, 0], [0.05, 0, 0, 0, 0.05], atol=1e-6)
    assert 10 < whole < 50
    assert seen == expected


def test_weighted_datasets_yield_sums_and_zero_weights_for_unlabelled_stems(tmp_path):
    write_constants(tmp_path, PARTS)
    (tmp_path / "m.csv").write_text(PARTS_CSV)
    tracks = data.csv_tracks(tmp_path / "m.csv", stems=["a", "b", "c"])
    validation = data.validation_dataset(tracks, stems=["a", "b", "c"], crops_per_track=1, **{**GEOMETRY, "batch_size": 4})
    ((mixture, magnitudes, weights),) = as_arrays_weighted(validation)
    assert sorted(magnitudes) == sorted(weights) == ["a", "b", "b.c", "c"]
    assert weights["b"].shape == (4, 1, 1)
    np.testing.assert_array_equal(weights["b"].ravel(), [1, 1, 0, 0])  # full, guitar, part (unknown), band (in the sum)
    np.testing.assert_array_equal(weights["b.c"].ravel(), [0, 0, 0, 1])
    np.testing.assert_array_equal(weights["a"].ravel(), [1, 1, 1, 1])  # the band's a is labelled silence
    assert magnitudes["b.c"][3].max() > 0 and not magnitudes["b.c"][:3].any()
    training = data.training_dataset(tracks, stems=["a", "b", "c"], seed=1, **GEOMETRY)
    assert len(training.element_spec) == 3 and sorted(training.element_spec[2]) == ["a", "b", "b.c", "c"]
    with pytest.raises(data.DataError, match="has the sum 'b\\+c', which `sums` leaves out"):
        data.training_dataset(tracks, stems=["a", "b", "c"], sums=[], **GEOMETRY)


def as_arrays_weighted(dataset):
    return [(m.numpy(), {k: v.numpy() for k, v in s.items()}, {k: v.numpy() for k, v in w.items()}) for m, s, w in dataset]


def test_colour_equalises_and_adds_a_room():
    rate = 44100
    t = np.arange(rate) / rate
    tones = {f: np.stack([np.sin(2 * np.pi * f * t)] * 2, axis=1).astype(np.float32) for f in (100.0, 3000.0, 12000.0)}
    room = np.random.default_rng(0).standard_normal(4410) * np.exp(-np.arange(4410) / 600)
    room /= np.sqrt(np.sum(room**2))
    flat = {"gains_db": [0, 0, 0, 0], "room": room}
    # Flat and dry: unchanged.
    np.testing.assert_allclose(data.augment.colour(tones[3000.0], rate, wet=0.0, **flat), tones[3000.0], atol=1e-5)
    # The equaliser: the tones at its frequencies get its gains (steady part, past the edges).
    gains = [6.0, 0.0, -3.0, -6.0]
    for frequency, gain in ((100.0, 6.0), (3000.0, -3.0), (12000.0, -6.0)):
        out = data.augment.colour(tones[frequency], rate, gains_db=gains, room=room, wet=0.0)
        level = 20 * np.log10(np.std(out[4000:-4000]) / np.std(tones[frequency][4000:-4000]))
        assert abs(level - gain) < 0.2, (frequency, level)
    # The room: an impulse becomes a causal decaying tail, the same in both channels.
    impulse = np.zeros((rate, 2), np.float32)
    impulse[1000] = 1.0
    wet = data.augment.colour(impulse, rate, wet=1.0, **flat)
    assert wet.shape == impulse.shape and wet.dtype == np.float32
    np.testing.assert_allclose(wet[:, 0], wet[:, 1])
    assert np.abs(wet[:990]).max() < 1e-6
    np.testing.assert_allclose(wet[1000:5410, 0], room, atol=1e-5)


def test_eq_reverb_draws_within_its_ranges():
    rate = 8000
    noise = np.random.default_rng(0).standard_normal((8000, 2)).astype(np.float32)
    for seed in range(5):
        out = data.augment.eq_reverb(noise, np.random.default_rng(seed), rate, eq_db=6.0)
        assert out.shape == noise.shape and np.isfinite(out).all()
        level = 20 * np.log10(np.std(out) / np.std(noise))
        assert -7.0 < level < 7.0
        assert not np.allclose(out, noise, atol=1e-3)
    np.testing.assert_array_equal(data.augment.eq_reverb(noise, np.random.default_rng(1), rate),
                                  data.augment.eq_reverb(noise, np.random.default_rng(1), rate))  # from the seed alone


def test_eq_reverb_probability_changes_stems_not_the_mixture_relation(tmp_path):
    spec = {"song0": ["a", "b"], "song1": ["a", "b"]}
    for i, (name, files) in enumerate(spec.items()):
        (tmp_path / "d" / name).mkdir(parents=True)
        for k, stem in enumerate(files):
            sf.write(tmp_path / "d" / name / f"{stem}.wav", exact_noise(6000, 10 * i + k), RATE, subtype="FLOAT")
    tracks = data.folder_tracks(tmp_path / "d", stems=["a", "b"])
    plain = data.Augmentation(gain_range=(1, 1), channel_swap_probability=0, remix_probability=0)
    coloured = dataclasses.replace(plain, eq_reverb_probability=1.0)
    changed = 0
    for index in range(6):
        before = data.augment._ExampleReader(tracks, ["a", "b"], 2048, RATE, 2, plain, 3)(np.int64(index))
        after = data.augment._ExampleReader(tracks, ["a", "b"], 2048, RATE, 2, coloured, 3)(np.int64(index))
        np.testing.assert_allclose(after[0], after[1:].sum(axis=0), atol=1e-5)  # the mixture is still the sum
        changed += not np.allclose(before, after, atol=1e-3)
    assert changed == 6
    with pytest.raises(ValueError, match="eq_reverb_probability"):
        data.Augmentation(eq_reverb_probability=1.5)
    with pytest.raises(ValueError, match="eq_db"):
        data.Augmentation(eq_db=-1)


def test_data_errors_name_keywords_and_the_cli_names_flags(tmp_path):
    tracks = toy_tracks(1)
    tracks["song0"]["piano"] = tone(700, 6000, 7)
    root = write_folder(tmp_path / "folder", tracks)
    with pytest.raises(data.DataError, match="'piano' stem that no model stem takes; merge it into one with `stem_groups`") as caught:
        data.folder_tracks(root, stems=["a", "b"])
    assert "stem that no model stem takes; merge it into one with --stem-group (a model stem" in caught.value.for_cli()
    manifest = tmp_path / "m.csv"
    manifest.write_text("a_path,b_path,piano_path\nfolder/song0/a.wav,folder/song0/b.wav,\n")
    with pytest.raises(data.DataError, match="use `stem_groups`") as caught:
        data.csv_tracks(manifest, stems=["a", "b"])
    assert caught.value.for_cli().endswith("rename the column or use --stem-group.")
    with pytest.raises(data.DataError, match="`layout` must be one of") as caught:
        data.training_split(root, stems=["a", "b"], layout="zip")
    assert caught.value.for_cli().startswith("--layout must be one of")
