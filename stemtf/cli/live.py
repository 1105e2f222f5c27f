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
    source: str = typer.Argument("-", metavar="INPUT", help="A WAV or raw PCM file, or - for standard input (a pipe)."),
    model: str = typer.Option(options.DEFAULT_MODEL, "--model", "-m", help="Model name or directory."),
    output_dir: Optional[pathlib.Path] = typer.Option(None, "--output-dir", "-o", help="Write OUTPUT.wav files here.", show_default=False),
    stdout: bool = typer.Option(False, "--stdout", help="Write the one selected output as raw 16-bit PCM to standard output."),
    keep: Optional[str] = typer.Option(None, "--keep", help="Comma-separated stems to output, each on its own (default: all).", show_default=False),
    remove: Optional[str] = typer.Option(None, "--remove", help="Comma-separated stems to leave out of one mix (karaoke: --remove vocals).", show_default=False),
    raw: bool = typer.Option(False, "--raw", help="The input is raw PCM (give --rate, --channels, --sample-format), not WAV."),
    rate: int = typer.Option(44100, "--rate", help="Sample rate of raw input (other rates than the model's are resampled)."),
    channels: int = typer.Option(2, "--channels", help="Channels of raw input (1 or 2)."),
    sample_format: str = typer.Option("s16le", "--sample-format", help="Raw input samples: s16le, s32le or f32le."),
    latency: Optional[float] = typer.Option(None, "--latency", help="Seconds (e.g. 0.5): mask a sliding window of STFT frames within this latency (default: one chunk, see --segment-frames).", show_default=False),
    segment_frames: Optional[int] = typer.Option(None, "--segment-frames", help="STFT frames per chunk without --latency: the latency (128 = 2.97 s ... 512 = 11.8 s, the default).", show_default=False),
    block_size: int = typer.Option(4096, "--block-size", help="Samples read per block."),
    runtime: str = typer.Option("auto", "--runtime", help="Mask runtime: auto, keras or litert."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
) -> None:
    """Separate a live stream with a constant latency: PCM in (file or pipe), chosen stems out as they come."""
    import time

    from stemtf import streamio
    from stemtf.config import load_model_config

    config, _ = load_model_config(model)
    outputs = streamio.select_outputs(config.stems, names(keep), names(remove))
    if stdout == (output_dir is not None):
        raise StemtfError("Give exactly one of --output-dir DIR (WAV files) or --stdout (raw 16-bit PCM).")
    if stdout and len(outputs) != 1:
        raise StemtfError("--stdout writes one stream: choose it with --keep STEM or --remove STEMS.")
    if block_size < 1:
        raise StemtfError(f"--block-size must be >= 1. Received {block_size}.")
    if latency is not None and segment_frames is not None:
        raise StemtfError("--latency and --segment-frames both set the latency: give one of them.")
    if latency is not None:
        from stemtf import sliding

        sliding.plan_for_latency(latency, config)  # before any loading
    frames = options.check_segment_frames(segment_frames, config) if latency is None else config.min_segment_frames
    if source != "-":
        options.check_input_file(source)
    handle = streamio.stdin_binary() if source == "-" else open(source, "rb")
    with handle:
        pcm = streamio.PcmSource(handle, raw=(rate, channels, sample_format) if raw else None)
        writers = {}
        if output_dir is not None:
            from stemtf.audio import AudioWriter

            output_dir.mkdir(parents=True, exist_ok=True)
            for name in outputs:
                target = output_dir / f"{name}.wav"
                if target.exists() and not overwrite:
                    raise StemtfError(f"Output {str(target)!r} already exists; pass --overwrite to replace it.")
                writers[name] = AudioWriter(target, sample_rate=pcm.sample_rate, num_channels=pcm.num_channels)
        from stemtf.separator import Separator
        from stemtf.streaming import StreamingSeparator

        status = load_status(runtime, quiet=False)
        # with --latency only the sliding window's masks model runs: the chunk one is never converted
        separator = Separator.from_pretrained(model, runtime=runtime, segment_frames=frames, on_status=status,
                                              defer_loading=latency is not None)
        streamer = StreamingSeparator(separator, sample_rate=pcm.sample_rate, num_channels=pcm.num_channels, latency=latency)
        plan = (f"chunks of {separator.chunk_samples} samples" if streamer.plan == "chunk" else
                f"sliding window of {streamer.window_frames} frames, {streamer.step_frames} masked per run, "
                f"{streamer.lookahead_frames} ahead")
        typer.echo(f"latency {streamer.latency:.3f} s ({streamer.latency_samples:g} samples at {streamer.sample_rate} Hz; {plan})", err=True)
        started, seconds = time.perf_counter(), 0.0

        def send(stems: dict) -> None:
            for name, parts in outputs.items():
                block = sum(stems[stem] for stem in parts)
                if stdout:
                    sys.stdout.buffer.write(streamio.to_pcm16(block))
                    sys.stdout.buffer.flush()
                else:
                    writers[name].write(block)

        stopped = None
        try:
            with signals.at_callbacks():  # a stop signal takes effect between two blocks
                for block in pcm.blocks(block_size):
                    send(streamer.process(block))
                    seconds += block.shape[0] / pcm.sample_rate
                    signals.check()
            send(streamer.flush())
        except (Interrupted, KeyboardInterrupt) as error:
            stopped = getattr(error, "signum", signal.SIGINT)
        finally:  # also on Ctrl-C: what was separated so far is a complete, playable file
            for writer in writers.values():
                writer.commit()
            elapsed = time.perf_counter() - started
            if seconds:
                typer.echo(f"real-time factor {elapsed / seconds:.2f} ({seconds:.1f} s of audio in {elapsed:.1f} s)", err=True)
        if stopped is not None:
            typer.echo(f"stemtf: stopped ({signal.Signals(stopped).name}); the files hold every stem up to that point.", err=True)
            raise typer.Exit(128 + stopped)
