"""Size, latency and fidelity of every export against the Keras model, and the server's throughput.

    .venv/bin/python benchmarks/export_speed.py            # 4stems, the model's 11.8 s chunks, 30 s server clip
    .venv/bin/python benchmarks/export_speed.py --quick    # 3 s chunks, fewer repeats (a few minutes)
    .venv/bin/python benchmarks/export_speed.py --json export.json

Builds a random-weight model from ``configs/NAME.json`` (compute and file sizes do not depend on the
weight values), exports it to TFLite (waveform chunk and masks models; float32, float16, int8),
ONNX (both) and a SavedModel, and reports for each: file size, median latency per chunk and per
second of audio, the ratio to the Keras baseline measured in the same run (< 1: faster), and the
SNR against Keras on real music (the bundled CC0 excerpt). The baselines are the separator's own
``tf.function`` chunk (tf.signal STFT) for waveform models and the Keras model in a ``tf.function``
for masks models. Then it serves the SavedModel on 127.0.0.1 and reports latency and requests/s for
a 30 s clip through ``:predict`` (WAV bytes signature) and ``/v1/separate``, against
``Separator.separate`` on the same clip. Timings are never asserted; the script always exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import io
import json
import os
import pathlib
import statistics
import sys
import tempfile
import threading
import time
import urllib.request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import soundfile as sf

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "caesium_excerpt.ogg"


def snr_db(reference, estimate) -> float:
    reference = np.asarray(reference, np.float64)
    noise = np.sum((reference - estimate) ** 2)
    return float(10 * np.log10(np.sum(reference**2) / max(noise, 1e-30)))


def median_time(function, repeats: int) -> float:
    function()  # warm-up (graph tracing, interpreter allocation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def music(seconds: float, sample_rate: int) -> np.ndarray:
    """``seconds`` of the CC0 excerpt (looped if needed), float32 stereo."""
    waveform, rate = sf.read(EXAMPLE, dtype="float32", always_2d=True)
    assert rate == sample_rate, rate
    needed = int(seconds * sample_rate)
    return np.ascontiguousarray(np.tile(waveform, (needed // waveform.shape[0] + 1, 1))[:needed])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="4stems", help="config in configs/ (default 4stems)")
    parser.add_argument("--chunk-seconds", type=float, default=None, help="chunk length of the exports (default: the model's)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--server-seconds", type=float, default=30.0, help="clip length for the server (default 30)")
    parser.add_argument("--server-requests", type=int, default=6, help="requests per server measurement")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="TFLite/onnxruntime threads")
    parser.add_argument("--quick", action="store_true", help="3 s chunks, 3 repeats, 3 server requests")
    parser.add_argument("--json", type=pathlib.Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.chunk_seconds = args.chunk_seconds or 3.0
        args.repeats = min(args.repeats, 3)
        args.server_requests = min(args.server_requests, 3)

    import keras
    import tensorflow as tf

    from stemtf import export, litert_runner, spectral
    from stemtf.config import load_config
    from stemtf.model import build_model
    from stemtf.separator import Separator

    print(f"load average at start: {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs; TF {tf.__version__}")
    config = load_config(ROOT / "configs" / f"{args.model}.json")
    keras.utils.set_random_seed(0)
    model = build_model(config)
    frames = config.segment_frames_for(args.chunk_seconds)
    length = config.chunk_samples_for(frames)
    chunk_seconds = length / config.sample_rate
    print(f"model {config.name}: {model.count_params() / 1e6:.1f} M parameters; chunk {frames} frames = {chunk_seconds:.2f} s")
    chunk = music(chunk_seconds + 5, config.sample_rate)[5 * config.sample_rate :][:length]  # skip the intro
    results: dict = {"model": config.name, "segment_frames": frames, "chunk_seconds": chunk_seconds, "rows": [], "server": {}}

    # Baselines: the separator's chunk function (numpy STFT, Keras masks) and the Keras masks model.
    separator = Separator(model, config, segment_frames=frames)
    keras_chunk = separator._separate_chunk(chunk)
    keras_time = median_time(lambda: separator._separate_chunk(chunk), args.repeats)
    magnitude = np.abs(spectral.stft(chunk, n_fft=config.n_fft, hop_length=config.hop_length).numpy())[None, :, : config.max_bins]
    masks_fn = export.masks_function(model, config, segment_frames=frames)
    keras_masks = {k: v.numpy() for k, v in masks_fn(magnitude).items()}
    keras_masks_time = median_time(lambda: masks_fn(magnitude), args.repeats)
    matmul_fn = export.waveform_chunk_function(model, config, segment_frames=frames)
    matmul_time = median_time(lambda: matmul_fn(chunk), args.repeats)
    matmul_out = matmul_fn(chunk)
    matmul_snr = min(snr_db(keras_chunk[i], matmul_out[s].numpy()) for i, s in enumerate(config.stems))

    rows = results["rows"]

    def add(name, size, seconds, baseline, snr):
        rows.append({"artifact": name, "size_mb": size / 1e6 if size else None, "latency_s": seconds,
                     "per_audio_second_ms": 1000 * seconds / chunk_seconds, "ratio_vs_keras": seconds / baseline, "snr_db": snr})

    add("keras waveform (tf.signal STFT, baseline)", None, keras_time, keras_time, float("inf"))
    add("tf waveform (DFT-as-matmul STFT)", None, matmul_time, keras_time, matmul_snr)
    add("keras masks (baseline)", None, keras_masks_time, keras_masks_time, float("inf"))

    with tempfile.TemporaryDirectory(prefix="stemtf-bench-") as work:
        work = pathlib.Path(work)
        for kind in export.KINDS:
            for quantize in export.QUANTIZATIONS:
                start = time.perf_counter()
                path = export.export_tflite(model, config, work / f"{kind}_{quantize}.tflite", kind=kind, quantize=quantize, segment_frames=frames)
                print(f"  exported {path.name} in {time.perf_counter() - start:.1f} s", flush=True)
                from ai_edge_litert.interpreter import Interpreter

                runner = Interpreter(model_path=str(path), num_threads=args.threads).get_signature_runner("serving_default")
                if kind == "waveform":
                    out = runner(waveform=chunk)
                    seconds = median_time(lambda: runner(waveform=chunk), args.repeats)
                    snr = min(snr_db(keras_chunk[i], out[s]) for i, s in enumerate(config.stems))
                    add(f"tflite waveform {quantize}", path.stat().st_size, seconds, keras_time, snr)
                else:
                    out = runner(magnitude=magnitude)
                    seconds = median_time(lambda: runner(magnitude=magnitude), args.repeats)
                    snr = min(snr_db(keras_masks[s], out[s]) for s in config.stems)
                    add(f"tflite masks {quantize}", path.stat().st_size, seconds, keras_masks_time, snr)
                del runner
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.threads
        for kind in export.KINDS:
            start = time.perf_counter()
            path = export.export_onnx(model, config, work / f"{kind}.onnx", kind=kind, segment_frames=frames)
            print(f"  exported {path.name} in {time.perf_counter() - start:.1f} s", flush=True)
            session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            names = [o.name for o in session.get_outputs()]
            feed = {"waveform": chunk} if kind == "waveform" else {"magnitude": magnitude}
            out = dict(zip(names, session.run(names, feed)))
            seconds = median_time(lambda: session.run(names, feed), args.repeats)
            if kind == "waveform":
                snr = min(snr_db(keras_chunk[i], out[s]) for i, s in enumerate(config.stems))
                add("onnx waveform", path.stat().st_size, seconds, keras_time, snr)
            else:
                add("onnx masks", path.stat().st_size, seconds, keras_masks_time, min(snr_db(keras_masks[s], out[s]) for s in config.stems))
            del session

        # Whole-file parity of the reference runner on the float32 TFLite chunk model (overlap-add).
        clip = music(min(args.server_seconds, 3 * chunk_seconds), config.sample_rate)
        runner_model = litert_runner.ChunkModel(export.export_tflite(model, config, work / "runner.tflite", segment_frames=frames),
                                                num_threads=args.threads)
        start = time.perf_counter()
        runner_stems = litert_runner.separate(clip, config.sample_rate, runner_model)
        runner_time = time.perf_counter() - start
        expected = Separator(model, config, segment_frames=frames, overlap=runner_model.overlap_samples / config.sample_rate).separate(clip, config.sample_rate)
        results["runner"] = {"seconds_of_audio": clip.shape[0] / config.sample_rate, "wall_s": runner_time,
                             "snr_db": min(snr_db(expected[s], runner_stems[s]) for s in config.stems)}

        # The server, on a 30 s clip.
        results["server"] = bench_server(model, config, work, args)

    print(f"\n{config.name}, chunk {chunk_seconds:.2f} s, {args.threads} threads, median of {args.repeats}:")
    print(f"{'artifact':44s} {'size MB':>8s} {'s/chunk':>8s} {'ms/s audio':>10s} {'vs Keras':>9s} {'SNR dB':>7s}")
    for row in rows:
        size = f"{row['size_mb']:.1f}" if row["size_mb"] else "-"
        snr = "ref" if row["snr_db"] == float("inf") else f"{row['snr_db']:.1f}"
        print(f"{row['artifact']:44s} {size:>8s} {row['latency_s']:8.3f} {row['per_audio_second_ms']:10.1f} "
              f"{row['ratio_vs_keras']:8.2f}x {snr:>7s}")
    runner = results["runner"]
    print(f"\nreference runner (numpy + ai-edge-litert, float32): {runner['seconds_of_audio']:.1f} s of music in "
          f"{runner['wall_s']:.2f} s; SNR vs Separator {runner['snr_db']:.1f} dB")
    server = results["server"]
    print(f"\nserver, {server['clip_seconds']:.0f} s clip ({server['wav_mb']:.1f} MB WAV), {args.server_requests} requests each:")
    print(f"  Separator.separate in-process (baseline): {server['baseline_s']:.2f} s")
    for key in ("predict_wav", "separate_upload"):
        entry = server[key]
        print(f"  {key:16s} latency median {entry['latency_s']:.2f} s ({entry['latency_s'] / server['baseline_s']:.2f}x baseline); "
              f"2 concurrent clients: {entry['requests_per_s']:.2f} requests/s")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float) + "\n")
    return 0


def bench_server(model, config, work: pathlib.Path, args) -> dict:
    import uvicorn

    from stemtf import export, serve
    from stemtf.separator import Separator

    clip = music(args.server_seconds, config.sample_rate)
    buffer = io.BytesIO()
    sf.write(buffer, clip, config.sample_rate, format="WAV", subtype="PCM_16")
    wav = buffer.getvalue()
    baseline = median_time(lambda: Separator(model, config).separate(clip, config.sample_rate), 1)
    export.export_savedmodel(model, config, work / "served" / "1")
    served = serve.ServedModel(work / "served", max_duration=args.server_seconds + 10, max_concurrency=2)
    app = serve.create_app(served, max_upload_mb=len(wav) * 2 / 1e6 + 1)
    sock = serve.bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    predict_body = json.dumps({"signature_name": "separate_wav", "instances": [{"b64": base64.b64encode(wav).decode()}]}).encode()

    def predict():
        request = urllib.request.Request(f"{base}/v1/models/{served.name}:predict", data=predict_body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as response:
            assert response.status == 200
            response.read()

    def upload():
        request = urllib.request.Request(f"{base}/v1/separate", data=wav, headers={"Content-Type": "audio/wav"})
        with urllib.request.urlopen(request, timeout=600) as response:
            assert response.status == 200
            response.read()

    result = {"clip_seconds": args.server_seconds, "wav_mb": len(wav) / 1e6, "baseline_s": baseline}
    try:
        for key, function in (("predict_wav", predict), ("separate_upload", upload)):
            latency = median_time(function, args.server_requests)
            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
                list(pool.map(lambda _: function(), range(args.server_requests)))
            result[key] = {"latency_s": latency, "requests_per_s": args.server_requests / (time.perf_counter() - start)}
            print(f"  server {key}: {latency:.2f} s", flush=True)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
    return result


if __name__ == "__main__":
    sys.exit(main())
