"""``stemtf stream``: separate a live stream with a constant latency."""

from __future__ import annotations

import pathlib
import signal
import sys
from typing import Optional

import typer

from stemtf.cli.app import app, load_status, names, signals
from stemtf import options
from stemtf.errors import StemtfError
from stemtf.interrupts import Interrupted


@app.command()
def stream(
    source: str = typer.Argument("-", metavar="INPUT", help="An audio file (WAV, FLAC, OGG, MP3; others through ffmpeg), a raw PCM file with --raw, or - for standard input (a WAV or raw PCM pipe)."),
    model: str = typer.Option(options.DEFAULT_MODEL, "--model", "-m", help="Model name or directory."),
    output_dir: Optional[pathlib.Path] = typer.Option(None, "--output-dir", "-o", help="Write OUTPUT.wav files here.", show_default=False),
    stdout: bool = typer.Option(False, "--stdout", help="Write the one selected output as raw 16-bit PCM to standard output."),
    keep: Optional[str] = typer.Option(None, "--keep", help="Comma-separated stems to output, each on its own (default: all).", show_default=False),
    remove: Optional[str] = typer.Option(None, "--remove", help="Comma-separated stems to leave out of one mix (karaoke: --remove vocals).", show_default=False),
    raw: bool = typer.Option(False, "--raw", help="The input is raw PCM (give --rate, --channels, --sample-format), not WAV."),
    rate: int = typer.Option(options.DEFAULT_RAW_RATE, "--rate", help="Sample rate of raw input (other rates than the model's are resampled)."),
    channels: int = typer.Option(options.DEFAULT_RAW_CHANNELS, "--channels", help="Channels of raw input (1 or 2)."),
    sample_format: str = typer.Option(options.DEFAULT_SAMPLE_FORMAT, "--sample-format", help="Raw input samples: s16le, s32le or f32le."),
    latency: Optional[float] = typer.Option(None, "--latency", help="Seconds (e.g. 0.5): mask a sliding window of STFT frames within this latency (default: one chunk, see --segment-frames).", show_default=False),
    segment_frames: Optional[int] = typer.Option(None, "--segment-frames", help="STFT frames per chunk without --latency: the latency (128 = 2.97 s ... 512 = 11.8 s, the default).", show_default=False),
    align: Optional[bool] = typer.Option(None, "--align/--no-align", help="Trim the latency from the start and flush the tail, so outputs line up with the input (default: with --output-dir; --no-align keeps the live delay).", show_default=False),
    block_size: int = typer.Option(options.DEFAULT_BLOCK_SIZE, "--block-size", help="Samples read per block."),
    runtime: str = typer.Option(options.DEFAULT_RUNTIME, "--runtime", help="Mask runtime: auto, keras or litert."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
) -> None:
    """Separate a live stream with a constant latency: audio in (file or pipe), chosen stems out as they come."""
    from stemtf import streamio
    from stemtf.config import load_model_config

    # Every option and output is checked before the input is opened, a model loads or a file is made.
    config, _ = load_model_config(model)
    selected = streamio.select_outputs(config.stems, names(keep), names(remove))
    _check_options(stdout, output_dir, selected, block_size, latency, segment_frames, config)
    if raw:
        streamio.check_raw(rate, channels, sample_format)
    if source != "-":
        options.check_input_file(source)
    targets = _targets(output_dir, selected, overwrite)
    frames = options.check_segment_frames(segment_frames, config) if latency is None else config.min_segment_frames
    with _open_source(source, (rate, channels, sample_format) if raw else None) as pcm:
        from stemtf.separator import Separator
        from stemtf.streaming import StreamingSeparator

        status = load_status(runtime, quiet=False)
        # with --latency only the sliding window's masks model runs: the chunk one is never converted
        separator = Separator.from_pretrained(model, runtime=runtime, segment_frames=frames, on_status=status,
                                              defer_loading=latency is not None)
        streamer = StreamingSeparator(separator, sample_rate=pcm.sample_rate, num_channels=pcm.num_channels, latency=latency)
        typer.echo(_describe(streamer, separator), err=True)
        sink = streamio.StemSink(selected, targets, sample_rate=pcm.sample_rate, num_channels=pcm.num_channels,
                                 trim=streamer.latency_samples if (output_dir is not None if align is None else align) else 0,
                                 overwrite=overwrite)
        stopped = _run(pcm, streamer, sink, block_size)
    if stopped is not None:
        typer.echo(f"stemtf: stopped ({signal.Signals(stopped).name}); the files hold every stem up to that point.", err=True)
        raise typer.Exit(128 + stopped)


def _check_options(stdout, output_dir, selected, block_size, latency, segment_frames, config) -> None:
    if stdout == (output_dir is not None):
        raise StemtfError("Give exactly one of --output-dir DIR (WAV files) or --stdout (raw 16-bit PCM).")
    if stdout and len(selected) != 1:
        raise StemtfError("--stdout writes one stream: choose it with --keep STEM or --remove STEMS.")
    if block_size < 1:
        raise StemtfError(f"--block-size must be >= 1. Received {block_size}.")
    if latency is not None and segment_frames is not None:
        raise StemtfError("--latency and --segment-frames both set the latency: give one of them.")
    if latency is not None:
        from stemtf import sliding

        sliding.plan_for_latency(latency, config)  # before any loading


def _targets(output_dir: pathlib.Path | None, selected: dict, overwrite: bool) -> dict[str, pathlib.Path]:
    """``{output: OUTPUT_DIR/OUTPUT.wav}``; existing files are refused now, before anything runs."""
    if output_dir is None:
        return {}
    from stemtf import outputs

    targets = {name: output_dir / f"{name}.wav" for name in selected}
    for target in targets.values():
        if target.is_dir():
            raise StemtfError(f"Output {str(target)!r} is a directory; choose another --output-dir.")
        if target.exists() and not overwrite:
            raise outputs.exists_error(target)
    return targets


def _open_source(source: str, raw: tuple[int, int, str] | None):
    """The input's blocks: a WAV or raw pipe, a raw file, or any audio file through stemtf's readers."""
    from stemtf import streamio

    if source == "-":
        return streamio.PcmSource(streamio.stdin_binary(), raw=raw)
    if raw is not None:
        return streamio.PcmSource(open(source, "rb"), raw=raw)
    from stemtf import audio

    return streamio.ReaderSource(audio.open_audio(source))


def _describe(streamer, separator) -> str:
    plan = (f"chunks of {separator.chunk_samples} samples" if streamer.plan == "chunk" else
            f"sliding window of {streamer.window_frames} frames, {streamer.step_frames} masked per run, "
            f"{streamer.lookahead_frames} ahead")
    return f"latency {streamer.latency:.3f} s ({streamer.latency_samples:g} samples at {streamer.sample_rate} Hz; {plan})"


def _run(pcm, streamer, sink, block_size: int) -> int | None:
    """Stream every block through; the stop signal's number if one ended it early, else None."""
    import time

    started, seconds, stopped = time.perf_counter(), 0.0, None
    try:
        with signals.at_callbacks():  # a stop signal takes effect between two blocks
            for block in pcm.blocks(block_size):
                sink.send(streamer.process(block), block.shape[0])
                seconds += block.shape[0] / pcm.sample_rate
                signals.check()
        sink.send(streamer.flush(), 0, last=True)
    except (Interrupted, KeyboardInterrupt) as error:
        stopped = getattr(error, "signum", signal.SIGINT)
    except BaseException:
        sink.abort()  # a failed stream leaves no file behind
        raise
    sink.commit()  # also on Ctrl-C: what was separated so far is a complete, playable file
    elapsed = time.perf_counter() - started
    if seconds:
        typer.echo(f"real-time factor {elapsed / seconds:.2f} ({seconds:.1f} s of audio in {elapsed:.1f} s)", err=True)
    sys.stdout.flush()
    return stopped
