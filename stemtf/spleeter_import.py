"""``stemtf import spleeter``: a Spleeter model folder, release archive or release name -> a stemtf model folder.

Sources:

- a **model folder** as ``spleeter`` leaves it in ``pretrained_models/NAME`` (``checkpoint`` +
  ``model.*``);
- a **release archive** (``2stems.tar.gz``, ...), extracted into a temporary folder;
- ``spleeter:NAME`` (``2stems``, ``4stems``, ``5stems`` and their ``-16kHz`` variants): the archive is
  downloaded from Spleeter's GitHub release as ``spleeter`` downloads it
  (``{base}/{archive}.tar.gz``, checked against the SHA-256 in ``{base}/checksum.json``; ``base`` is
  ``https://github.com/deezer/spleeter/releases/download/v1.4.0``, ``$STEMTF_SPLEETER_URL``
  overrides it) once: the verified archive is kept in the user cache for later imports.

The result is a normal stemtf model folder (``config.json``, ``model.weights.h5``, a ``README.md``
model card) in the user model store (:func:`stemtf.config.user_model_store`, so ``-m spleeter-4stems``
finds it) or in ``output_dir``. Nothing is half-written: downloads go to a temporary file, archives
to a temporary folder, the model to a temporary folder renamed into place at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

from stemtf.config import CONFIG_FILE, MASK_EXTENSIONS, ModelConfig, user_model_store
from stemtf.errors import ModelError, SpleeterCheckpointError, SpleeterDownloadError
from stemtf import spleeter

URL_ENV = "STEMTF_SPLEETER_URL"
DEFAULT_URL = "https://github.com/deezer/spleeter/releases/download/v1.4.0"
CHECKSUM_INDEX = "checksum.json"
MODEL_CARD = "README.md"
_TIMEOUT_S = 60


def release_url() -> str:
    """Where Spleeter's release archives are: ``$STEMTF_SPLEETER_URL``, else Spleeter's v1.4.0 GitHub release."""
    return os.environ.get(URL_ENV, DEFAULT_URL).rstrip("/")


def archive_cache() -> pathlib.Path:
    """Verified release archives, kept so that each is downloaded once: ``spleeter/`` next to the model store."""
    return user_model_store().parent / "spleeter"


def import_spleeter(
    source: str,
    *,
    name: str | None = None,
    output_dir: str | os.PathLike | None = None,
    release: str | None = None,
    spleeter_config: str | os.PathLike | None = None,
    mask_extension: str = "zeros",
    overwrite: bool = False,
    on_status: Callable[[str], None] | None = None,
) -> pathlib.Path:
    """Convert a Spleeter model into a stemtf model folder and return the folder.

    Args:
        source: A Spleeter model folder, a ``.tar.gz`` release archive, or ``spleeter:NAME``.
        name: The stemtf model's name (default ``spleeter-NAME``).
        output_dir: The model folder to write (default: ``user_model_store() / name``).
        release: Which of Spleeter's configs the checkpoint is (``4stems``, ``2stems-16kHz``, ...).
            Default: the ``spleeter:NAME``, else the folder's or archive's name when it is one,
            else from the number of U-Nets in the checkpoint (2, 4 or 5).
        spleeter_config: A Spleeter JSON config file for a model trained with Spleeter (instead of
            ``release``).
        mask_extension: ``zeros`` (Spleeter-exact: nothing above the network's 11 kHz) or stemtf's
            full-band ``average`` / ``edge``.
        overwrite: Replace an existing model folder.
        on_status: Called with one line per step (downloading, converting, ...).

    Raises:
        ModelError: bad source, unreadable or mismatched checkpoint (one line each).
        SpleeterDownloadError: no network, an interrupted download, a corrupt archive.
    """
    status = on_status or (lambda line: None)
    release = _check_source(source, release=release, spleeter_config=spleeter_config, mask_extension=mask_extension)
    if release is not None:
        default_name = f"spleeter-{release}"
    else:
        default_name = f"spleeter-{pathlib.Path(source).name.split('.')[0]}"
    name = name or default_name
    target = pathlib.Path(output_dir) if output_dir is not None else user_model_store() / name
    _check_target(target, overwrite=overwrite)

    with tempfile.TemporaryDirectory(prefix="stemtf-spleeter-") as scratch:
        checkpoint, origin = _checkpoint_of(source, release, pathlib.Path(scratch) / "checkpoint", status)
        status(f"reading the checkpoint in {checkpoint}")
        variables = spleeter.read_checkpoint(checkpoint)
        config, described = _config_for(variables, name=name, release=release, spleeter_config=spleeter_config,
                                        mask_extension=mask_extension)
        where = f"the checkpoint of {source!r}"
        spleeter.check_variables(variables, config, source=where)
        status(f"converting {len(variables)} variables into {config.name!r} ({described})")
        from stemtf.model import build_model, save_model

        model = build_model(config)
        consumed = spleeter.load_checkpoint_weights(model, config, variables, source=where)
        staging = _staging_folder(target)
        try:
            save_model(model, config, staging)
            (staging / MODEL_CARD).write_text(model_card(config, origin=origin, described=described, consumed=consumed,
                                                         skipped=len(variables) - consumed), encoding="utf-8")
            _move_into_place(staging, target, overwrite=overwrite)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    status(f"imported {config.name!r} into {target}")
    return target


def _check_source(source: str, *, release: str | None, spleeter_config, mask_extension: str) -> str | None:
    """Check the arguments of :func:`import_spleeter`; the release the source is, when its name or ``release`` says."""
    if mask_extension not in MASK_EXTENSIONS:
        raise ModelError(f"{{option:mask_extension}} must be one of {list(MASK_EXTENSIONS)}. Received {mask_extension!r}.")
    if release is not None and spleeter_config is not None:
        raise ModelError("Give the checkpoint's Spleeter release ({option:release}) or a Spleeter config file "
                         "({option:spleeter_config}), not both.")
    if release is not None and release not in spleeter.RELEASES:
        raise ModelError(f"Unknown Spleeter model {release!r}; Spleeter's are: {', '.join(spleeter.RELEASES)}.")
    if source.startswith("spleeter:"):
        wanted = source.split(":", 1)[1]
        if wanted not in spleeter.RELEASES:
            raise ModelError(f"Unknown Spleeter model {source!r}; use spleeter:{' | spleeter:'.join(spleeter.RELEASES)}.")
        if release is not None and release != wanted:
            raise ModelError(f"{source} is Spleeter's {wanted}, not {release}.")
        return wanted
    path = pathlib.Path(source)
    if not path.exists():
        raise ModelError(f"{source!r} does not exist: give a Spleeter model folder, a .tar.gz release archive or spleeter:NAME.")
    if release is None and spleeter_config is None:
        stem = path.name.removesuffix(".tar.gz").removesuffix(".tgz")
        return stem if stem in spleeter.RELEASES else None
    return release


def _check_target(target: pathlib.Path, *, overwrite: bool) -> None:
    """Refuse to replace a model folder without ``overwrite``, and anything but a model folder at all."""
    if target.exists() and not overwrite:
        raise ModelError(f"{str(target)!r} already exists; use {{option:overwrite}} to replace it, or {{option:name}} to "
                         "import it under another name.")
    if overwrite and target.is_dir() and any(target.iterdir()) and not (target / CONFIG_FILE).is_file():
        raise ModelError(f"{str(target)!r} is a non-empty folder that is not a stemtf model; it is not replaced.")


def _checkpoint_of(source: str, release: str | None, scratch: pathlib.Path, status: Callable[[str], None]) -> tuple[pathlib.Path, str]:
    """``(checkpoint folder, where it came from for the model card)``: downloaded, extracted into ``scratch``, or ``source``."""
    if source.startswith("spleeter:"):
        archive = fetch_release(spleeter.RELEASES[release].archive, on_status=status)
        try:
            checkpoint = extract_archive(archive, scratch)
        except ModelError:
            archive.unlink(missing_ok=True)  # verified yet unusable: fetch it again next time
            raise
        return checkpoint, f"`{source}`: {release_url()}/{spleeter.RELEASES[release].archive}.tar.gz (SHA-256 verified)"
    if pathlib.Path(source).is_file():
        return extract_archive(pathlib.Path(source), scratch), f"the archive `{pathlib.Path(source).name}`"
    return pathlib.Path(source), f"the model folder `{pathlib.Path(source).resolve()}`"


def _config_for(variables, *, name: str, release: str | None, spleeter_config, mask_extension: str) -> tuple[ModelConfig, str]:
    """The stemtf config of a checkpoint and a phrase saying which Spleeter config it is."""
    if spleeter_config is not None:
        params = spleeter.load_params(spleeter_config)
        return spleeter.config_from_params(params, name=name, mask_extension=mask_extension), f"Spleeter config {pathlib.Path(spleeter_config).name}"
    if release is None:
        unets = spleeter.count_unets(variables)
        guess = {2: "2stems", 4: "4stems", 5: "5stems"}.get(unets)
        if guess is None:
            if not unets:
                raise SpleeterCheckpointError("The source is not a Spleeter checkpoint (no conv2d_transpose variables).")
            raise ModelError(f"The checkpoint holds {unets} U-Nets, which is none of Spleeter's releases: pass its Spleeter "
                             "config ({option:spleeter_config}).")
        release = guess
    return spleeter.release_config(release, name=name, mask_extension=mask_extension), f"Spleeter's {release}"


def model_card(config: ModelConfig, *, origin: str, described: str, consumed: int, skipped: int) -> str:
    """The ``README.md`` of an imported model: its source, licence, conversion and inference mode."""
    exact = config.mask_extension == "zeros"
    band = (
        f"**Spleeter-exact** (`mask_extension: zeros`): like `spleeter separate`, nothing above bin "
        f"{config.max_bins} ({config.max_bins * config.sample_rate / config.n_fft / 1000:.1f} kHz) reaches any stem, so "
        "the stems do not sum to the mixture there. Import with `--mask-extension average` for stemtf's full band."
        if exact else
        f"**Full band** (`mask_extension: {config.mask_extension}`): the masks above bin {config.max_bins} are "
        "extended from the predicted ones, so the stems sum to the mixture (Spleeter itself drops that band: "
        "import with `--mask-extension zeros` for its exact output)."
    )
    chunks = (
        f"Spleeter's own grid (`chunking: spleeter`): one STFT of the song, masked {config.segment_frames} frames at a "
        "time without overlap, as `spleeter separate` does; `stemtf separate` then matches it to >= 40 dB per stem."
        if config.chunking == "spleeter" else
        f"stemtf's cross-faded chunks of {config.segment_frames} frames (`chunking: crossfade`, what streaming and "
        "the exports use); Spleeter's own grid is `chunking: spleeter` (the Spleeter-exact import's)."
    )
    return f"""# {config.name}

Deezer's Spleeter model ({described}, {len(config.stems)} stems: {', '.join(config.stems)}), converted for stemtf.

- **Source**: {origin}.
- **Licence**: MIT (Spleeter and its released models, (c) Deezer Research; https://github.com/deezer/spleeter).
  Cite Hennequin et al., "Spleeter: a fast and efficient music source separation tool with pre-trained
  models", JOSS 2020.
- **Conversion**: `stemtf import spleeter` read the TensorFlow 1 checkpoint (no `spleeter` import) and
  mapped its variables onto stemtf's Spleeter layout (`trunk: per_stem`, `unet.variant: spleeter`,
  `masks: {config.masks}`, activations {config.unet.encoder_activation}/{config.unet.decoder_activation},
  `separation_exponent: {config.separation_exponent:g}`): {consumed} variables used (each U-Net's deepest
  batch norm is in the checkpoint but unused by Spleeter's graph, and by this one), {skipped} training-state
  variables skipped (`global_step`, optimizer slots). Masks agree with Spleeter 2.4.2's graph to
  >= 100 dB SNR (`benchmarks/spleeter_parity.py`).
- **Inference**: {band}
- **Chunks**: {chunks}

Use it like any stemtf model: `stemtf separate song.mp3 -m {config.name}`, `stemtf export {config.name}`,
`stemtf train --from {config.name} ...`.
"""


def _staging_folder(target: pathlib.Path) -> pathlib.Path:
    """An empty temporary folder next to ``target`` (same file system, so the final rename is atomic)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    except OSError as error:
        raise ModelError(f"Cannot write into {str(target.parent)!r}: {error.strerror or error}.") from None


def _move_into_place(staging: pathlib.Path, target: pathlib.Path, *, overwrite: bool) -> None:
    if not target.exists():
        os.rename(staging, target)
        return
    if not overwrite:
        raise ModelError(f"{str(target)!r} appeared while importing; use {{option:overwrite}} to replace it.")
    old = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rename(target, old / target.name)
    os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# Archives and downloads


def extract_archive(archive: pathlib.Path, destination: pathlib.Path) -> pathlib.Path:
    """Extract a release archive (tar, gzip) safely into ``destination``; returns the folder holding ``checkpoint``.

    Raises:
        ModelError: not a readable tar archive, or no checkpoint in it.
    """
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(destination, filter="data")  # no absolute paths, links out or devices
    except (tarfile.TarError, OSError, EOFError) as error:
        raise ModelError(f"{str(archive)!r} is not a readable .tar.gz archive ({str(error).splitlines()[0] if str(error) else type(error).__name__}).") from None
    found = sorted(path.parent for path in destination.rglob("checkpoint") if path.is_file())
    if not found:
        found = sorted({path.parent for path in destination.rglob("*.index") if path.is_file()})
    if not found:
        raise ModelError(f"{str(archive)!r} holds no TensorFlow checkpoint (no `checkpoint` or *.index file).")
    return found[0]


def fetch_release(archive: str, *, on_status: Callable[[str], None] | None = None) -> pathlib.Path:
    """The verified release archive ``ARCHIVE.tar.gz``: from the cache, or downloaded and checked once.

    Raises:
        SpleeterDownloadError: unreachable server, HTTP error, short download, or checksum mismatch.
    """
    status = on_status or (lambda line: None)
    cached = archive_cache() / f"{archive}.tar.gz"
    if cached.is_file():
        return cached
    base = release_url()
    try:
        index = json.loads(_get(f"{base}/{CHECKSUM_INDEX}").decode("utf-8", "replace"))
    except json.JSONDecodeError:
        raise SpleeterDownloadError(f"{base}/{CHECKSUM_INDEX} is not the JSON checksum index of a Spleeter release.") from None
    if not isinstance(index, dict) or archive not in index:
        raise SpleeterDownloadError(f"{base}/{CHECKSUM_INDEX} has no checksum for {archive!r}; cannot verify the download.")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SpleeterDownloadError(f"Cannot create {str(cached.parent)!r}: {error.strerror or error}.") from None
    url = f"{base}/{archive}.tar.gz"
    status(f"downloading {url}")
    with _temporary_file(cached) as partial:
        digest = _download(url, partial)
        if digest != str(index[archive]).lower():
            raise SpleeterDownloadError(f"The download of {url} is corrupted (SHA-256 {digest[:12]}..., expected "
                                        f"{str(index[archive])[:12]}...); nothing was kept, please retry.")
        os.replace(partial, cached)
    return cached


@contextlib.contextmanager
def _temporary_file(final: pathlib.Path) -> Iterator[pathlib.Path]:
    handle, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(handle)
    path = pathlib.Path(name)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _open(url: str):
    try:
        return urllib.request.urlopen(url, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as error:
        raise SpleeterDownloadError(f"Cannot download {url}: HTTP {error.code} {error.reason}.") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise SpleeterDownloadError(f"Cannot reach {url}: {reason}; check the network (or ${URL_ENV}).") from None


def _get(url: str) -> bytes:
    with _open(url) as response:
        try:
            return response.read()
        except OSError as error:
            raise SpleeterDownloadError(f"The download of {url} was interrupted: {error}.") from None


def _download(url: str, path: pathlib.Path) -> str:
    """Stream ``url`` into ``path``; returns its SHA-256. A body shorter than its Content-Length is an error."""
    digest = hashlib.sha256()
    received = 0
    import http.client

    with _open(url) as response, open(path, "wb") as out:
        expected = response.headers.get("Content-Length")
        try:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                digest.update(block)
                received += len(block)
        except (OSError, http.client.HTTPException) as error:
            raise SpleeterDownloadError(f"The download of {url} was interrupted after {received} bytes ({type(error).__name__}); nothing was kept, please retry.") from None
    if expected is not None and expected.isdigit() and received != int(expected):
        raise SpleeterDownloadError(
            f"The download of {url} was interrupted: {received} of {int(expected)} bytes; nothing was kept, please retry."
        )
    return digest.hexdigest()
