"""The ``tf.function`` graphs that get exported: waveform chunk, masks, whole-waveform separation, WAV bytes."""

from __future__ import annotations

import keras
import tensorflow as tf

from stemtf import apply
from stemtf.config import ModelConfig
from stemtf.export.artifacts import MAGNITUDE_INPUT, WAV_INPUT, WAVEFORM_INPUT


def waveform_chunk_function(model: keras.Model, config: ModelConfig, *, segment_frames: int | None = None):
    """A ``tf.function`` from one chunk ``(L, C)`` to ``{stem: (L, C)}`` with builtin-op-only STFTs.

    :func:`stemtf.apply.separate_chunk` with the DFT-as-matmul STFT pair and no Wiener filtering.
    """
    length = config.chunk_samples_for(segment_frames or config.segment_frames)
    transform = apply.transform_for(config, portable=True)

    @tf.function(input_signature=[tf.TensorSpec([length, config.num_channels], tf.float32, name=WAVEFORM_INPUT)], autograph=False)
    def separate_chunk(waveform):
        return dict(zip(config.stems, apply.separate_chunk(model, config, waveform, transform=transform)))

    return separate_chunk


def masks_function(model: keras.Model, config: ModelConfig, *, segment_frames: int | None = None):
    """A ``tf.function`` from magnitudes ``(1, T, max_bins, C)`` to ``{stem: (1, T, max_bins, C)}`` ratio masks."""
    frames = segment_frames or config.segment_frames
    spec = tf.TensorSpec([1, frames, config.max_bins, config.num_channels], tf.float32, name=MAGNITUDE_INPUT)

    @tf.function(input_signature=[spec], autograph=False)
    def masks(magnitude):
        outputs = model(magnitude, training=False)
        return {stem: outputs[stem] for stem in config.stems}

    return masks


def separate_function(
    model: keras.Model,
    config: ModelConfig,
    *,
    segment_frames: int | None = None,
    overlap_samples: int | None = None,
    wiener_iterations: int = 0,
):
    """A ``tf.function`` from a whole waveform ``(num_samples, C)`` to ``{stem: (num_samples, C)}``.

    The chunking, zero padding and linear cross-fade are :class:`~stemtf.separator.Separator`'s, in
    graph ops, so the result matches it. Chunks go through the network one at a time in a
    ``tf.while_loop`` that emits each stride of finished stems as soon as the next chunk's fade-in
    is added to it, so memory holds the output and one chunk, never every chunk's stems at once
    (the ``tf.map_fn`` form held them all, several times over: 7.6 GB for a 10-minute WAV).
    """
    length = config.chunk_samples_for(segment_frames or config.segment_frames)
    overlap = config.default_overlap_for(length) if overlap_samples is None else overlap_samples
    apply.check_overlap(overlap, length)
    stride = length - overlap
    channels, num_stems = config.num_channels, len(config.stems)

    def one_chunk(waveform):
        return tf.stack(apply.separate_chunk(model, config, waveform, wiener_iterations=wiener_iterations))  # (J, L, C)

    @tf.function(input_signature=[tf.TensorSpec([None, channels], tf.float32, name=WAVEFORM_INPUT)], autograph=False)
    def separate(waveform):
        num_samples = tf.shape(waveform)[0]
        count = apply.num_chunks(num_samples, chunk_samples=length, overlap_samples=overlap)
        total = (count - 1) * stride + length
        padded = tf.pad(waveform, [[0, total - num_samples], [0, 0]])
        ramp = tf.constant(apply.crossfade_ramp(overlap))
        ones = tf.ones([overlap])

        def step(index, carry, pieces):
            # Chunk `index` covers [index * stride, index * stride + L): its faded head plus the
            # previous chunk's faded tail (`carry`) and its middle are final; its tail waits.
            stems = one_chunk(tf.slice(padded, tf.stack([index * stride, 0]), [length, channels]))  # (J, L, C)
            fade_in = tf.where(index > 0, ramp, ones)
            fade_out = tf.where(index < count - 1, 1.0 - ramp, ones)
            head = stems[:, :overlap] * fade_in[None, :, None] + carry
            done = tf.concat([head, stems[:, overlap:stride]], axis=1)  # (J, stride, C)
            tail = stems[:, stride:] * fade_out[None, :, None]  # (J, overlap, C)
            return index + 1, tail, [array.write(index, done[j]) for j, array in enumerate(pieces)]

        # One TensorArray per stem, of (stride, C) pieces: each stem is concatenated in its final
        # layout, with no (num_samples, J, C) intermediate to transpose or slice apart.
        pieces = [tf.TensorArray(tf.float32, size=count, element_shape=[stride, channels]) for _ in config.stems]
        _, tail, pieces = tf.while_loop(
            lambda index, carry, pieces: index < count, step,
            [tf.constant(0), tf.zeros([num_stems, overlap, channels]), pieces], parallel_iterations=1,
        )
        return {stem: tf.concat([array.concat(), tail[j]], axis=0)[:num_samples]
                for j, (stem, array) in enumerate(zip(config.stems, pieces))}

    return separate


def wav_function(config: ModelConfig, separate):
    """A ``tf.function`` from WAV files ``(batch,)`` string to ``{stem + "_bytes": (batch,) string}``.

    Inputs must be 16-bit PCM WAV at the model's rate, mono or stereo; each output keeps its
    input's channel count. The ``_bytes`` suffix makes TF Serving's REST API send them base64.
    """
    rate, channels, num_stems = config.sample_rate, config.num_channels, len(config.stems)

    def one_file(data):
        decoded = tf.audio.decode_wav(data)
        waveform = decoded.audio
        have = tf.shape(waveform)[1]
        checks = [
            tf.debugging.assert_equal(
                decoded.sample_rate, rate, message=f"the WAV must be {rate} Hz (resample it, or use /v1/separate)"
            ),
            tf.debugging.assert_less_equal(have, 2, message="the WAV must be mono or stereo"),
        ]
        with tf.control_dependencies(checks):
            if channels == 2:
                model_input = tf.cond(have == 1, lambda: tf.tile(waveform, [1, 2]), lambda: tf.identity(waveform))
            else:
                model_input = tf.reduce_mean(waveform, axis=1, keepdims=True)
        stems = separate(tf.ensure_shape(model_input, [None, channels]))
        encoded = []
        for stem in config.stems:
            out = stems[stem]
            if channels == 2:
                out = tf.cond(have == 1, lambda out=out: tf.reduce_mean(out, axis=1, keepdims=True), lambda out=out: out)
            else:
                out = tf.tile(out, [1, have])
            encoded.append(tf.audio.encode_wav(tf.clip_by_value(out, -1.0, 1.0), rate))
        return tf.stack(encoded)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=WAV_INPUT)], autograph=False)
    def separate_wav(audio_bytes):
        files = tf.map_fn(one_file, audio_bytes, fn_output_signature=tf.TensorSpec([num_stems], tf.string))
        return {f"{stem}_bytes": files[:, index] for index, stem in enumerate(config.stems)}

    return separate_wav
