// stemtf in the browser: the separation, in a worker so the page never freezes.
//
// A port of stemtf's numpy engine (stemtf/dsp.py, stemtf/plans.py): the STFT pair (periodic Hann window, padding by
// n_fft - hop_length in front), the masks model on LiteRT.js (magnitudes of the lowest max_bins bins
// -> one mask per stem), the masks extended to every bin (mask_extension / extension_bins), one
// inverse STFT per stem (the last stem is the chunk minus the others when the masks sum to one), and
// the chunk plan with its linear cross-fade (plans.ChunkPlan, dsp.crossfade_ramp). Arithmetic is float64 and
// the results float32, so the stems agree with `stemtf separate` on the same model file up to the
// runtimes' float32 differences in the network (tests/test_web_export.py measures it).
//
// Messages in:  {type: "start", base, model, channels: [Float32Array...], threads}
// Messages out: {type: "status", text} | {type: "progress", done, total, seconds}
//               | {type: "done", stems: [[Float32Array per channel] per stem], timings}
//               | {type: "error", kind, message}
"use strict";

// ---------------------------------------------------------------------------------------------------
// FFT: an iterative radix-2 complex FFT on float64 arrays, tables built once per size.

class FFT {
  constructor(size) {
    if (size & (size - 1)) throw new Error(`The FFT size must be a power of two. Received ${size}.`);
    this.size = size;
    this.cos = new Float64Array(size / 2);
    this.sin = new Float64Array(size / 2);
    for (let k = 0; k < size / 2; k++) {
      this.cos[k] = Math.cos(2 * Math.PI * k / size);
      this.sin[k] = Math.sin(2 * Math.PI * k / size);
    }
    this.reverse = new Uint32Array(size);
    const bits = Math.log2(size);
    for (let i = 0; i < size; i++) {
      let r = 0;
      for (let b = 0; b < bits; b++) r |= ((i >> b) & 1) << (bits - 1 - b);
      this.reverse[i] = r;
    }
  }

  // In place: sign -1 forward (exp(-2 pi i k n / N)), +1 inverse (not scaled).
  transform(re, im, sign) {
    const n = this.size, reverse = this.reverse, cosT = this.cos, sinT = this.sin;
    for (let i = 0; i < n; i++) {
      const j = reverse[i];
      if (i < j) {
        let t = re[i]; re[i] = re[j]; re[j] = t;
        t = im[i]; im[i] = im[j]; im[j] = t;
      }
    }
    for (let size = 2; size <= n; size <<= 1) {
      const half = size >> 1, stride = n / size;
      for (let start = 0; start < n; start += size) {
        for (let k = 0, t = 0; k < half; k++, t += stride) {
          const wr = cosT[t], wi = sign * sinT[t];
          const a = start + k, b = a + half;
          const tr = re[b] * wr - im[b] * wi, ti = re[b] * wi + im[b] * wr;
          re[b] = re[a] - tr; im[b] = im[a] - ti;
          re[a] += tr; im[a] += ti;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// One chunk: stemtf.dsp.separate_chunk.

class ChunkSeparator {
  constructor(model, description) {
    const d = description;
    this.model = model;
    this.stems = d.stems;
    this.nFft = d.n_fft;
    this.hop = d.hop_length;
    this.maxBins = d.max_bins;
    this.numBins = d.n_fft / 2 + 1;
    this.extension = d.mask_extension;
    this.extensionBins = d.extension_bins;
    this.channels = d.num_channels;
    this.chunkSamples = d.chunk_samples;
    this.front = d.n_fft - d.hop_length;
    this.frames = d.segment_frames;
    this.inputName = d.inputs[0].name;
    if (this.nFft % this.hop) throw new Error("n_fft must be a multiple of hop_length.");
    this.fft = new FFT(this.nFft);
    // Periodic Hann window (tf.signal.hann_window), and the synthesis window of istft_numpy:
    // window / the sum of the overlapping squared windows.
    const n = this.nFft, overlap = n / this.hop;
    this.window = new Float64Array(n);
    for (let i = 0; i < n; i++) this.window[i] = Math.fround(0.5 - 0.5 * Math.cos(2 * Math.PI * i / n));
    const denominator = new Float64Array(this.hop);
    for (let i = 0; i < n; i++) denominator[i % this.hop] += this.window[i] * this.window[i];
    this.synthesis = new Float64Array(n);
    for (let i = 0; i < n; i++) this.synthesis[i] = this.window[i] / denominator[i % this.hop];
    // Work arrays, allocated once.
    const T = this.frames, B = this.numBins, C = this.channels;
    this.specRe = new Float64Array(T * C * B);  // (frame, channel, bin)
    this.specIm = new Float64Array(T * C * B);
    this.magnitude = new Float32Array(T * this.maxBins * C);  // (1, frame, max_bins, channel): the model's input
    this.re = new Float64Array(n);
    this.im = new Float64Array(n);
    this.maskA = new Float64Array(B);
    this.maskB = new Float64Array(B);
    this.modelSeconds = 0;  // time in the network (LiteRT.js), for the benchmark
  }

  // The STFT of a chunk (L samples per channel) into specRe/specIm; two real channels per complex FFT.
  analyze(chunk) {
    const n = this.nFft, hop = this.hop, B = this.numBins, C = this.channels, T = this.frames;
    const L = chunk[0].length, front = this.front, re = this.re, im = this.im, window = this.window;
    for (let t = 0; t < T; t++) {
      for (let c = 0; c < C; c += 2) {
        const a = chunk[c], b = c + 1 < C ? chunk[c + 1] : null;
        const start = t * hop - front;
        for (let i = 0; i < n; i++) {
          const s = start + i;
          const inside = s >= 0 && s < L;
          re[i] = inside ? a[s] * window[i] : 0;
          im[i] = inside && b ? b[s] * window[i] : 0;
        }
        this.fft.transform(re, im, -1);
        // Split: A[k] = (Z[k] + conj Z[N-k]) / 2, B[k] = (Z[k] - conj Z[N-k]) / 2i.
        const rowA = (t * C + c) * B, rowB = (t * C + c + 1) * B;
        for (let k = 0; k < B; k++) {
          const m = (n - k) % n;
          const zr = re[k], zi = im[k], wr = re[m], wi = -im[m];
          this.specRe[rowA + k] = 0.5 * (zr + wr);
          this.specIm[rowA + k] = 0.5 * (zi + wi);
          if (b) {
            this.specRe[rowB + k] = 0.5 * (zi - wi);
            this.specIm[rowB + k] = -0.5 * (zr - wr);
          }
        }
      }
    }
    // Float32 magnitudes of the lowest bins, frame-major then bin then channel.
    const F = this.maxBins, mag = this.magnitude;
    for (let t = 0; t < T; t++) {
      for (let c = 0; c < C; c++) {
        const row = (t * C + c) * B;
        for (let f = 0; f < F; f++) {
          const x = Math.fround(this.specRe[row + f]), y = Math.fround(this.specIm[row + f]);
          mag[(t * F + f) * C + c] = Math.hypot(x, y);
        }
      }
    }
  }

  // The full-band mask of one frame and channel: the predicted bins, then the fill (dsp.mask_fill):
  // "average" of the top extension_bins, the "edge" bin, or "zeros" (Spleeter's cut above max_bins).
  fullMask(mask, t, c, out) {
    const F = this.maxBins, C = this.channels, B = this.numBins;
    let fill = 0;
    if (F < B) {
      if (this.extension === "average") {
        let sum = 0;
        for (let f = F - this.extensionBins; f < F; f++) sum += mask[(t * F + f) * C + c];
        fill = Math.fround(sum / this.extensionBins);
      } else if (this.extension === "edge") {
        fill = mask[(t * F + F - 1) * C + c];
      } else if (this.extension !== "zeros") {
        throw new Error(`Unknown mask extension ${this.extension}.`);
      }
    }
    for (let f = 0; f < F; f++) out[f] = mask[(t * F + f) * C + c];
    for (let f = F; f < B; f++) out[f] = fill;
  }

  // The inverse STFT of the chunk's spectrogram times a mask: (L samples per channel).
  synthesize(mask, length) {
    const n = this.nFft, hop = this.hop, B = this.numBins, C = this.channels, T = this.frames;
    const front = this.front, re = this.re, im = this.im, synthesis = this.synthesis;
    const out = Array.from({ length: C }, () => new Float64Array(length));
    for (let t = 0; t < T; t++) {
      for (let c = 0; c < C; c += 2) {
        const two = c + 1 < C;
        this.fullMask(mask, t, c, this.maskA);
        if (two) this.fullMask(mask, t, c + 1, this.maskB);
        const rowA = (t * C + c) * B, rowB = (t * C + c + 1) * B;
        // Z = A + iB over the full circle (Hermitian halves), imaginary parts of DC and Nyquist dropped (as irfft).
        for (let k = 0; k < B; k++) {
          let ar = this.specRe[rowA + k] * this.maskA[k], ai = this.specIm[rowA + k] * this.maskA[k];
          let br = two ? this.specRe[rowB + k] * this.maskB[k] : 0, bi = two ? this.specIm[rowB + k] * this.maskB[k] : 0;
          if (k === 0 || k === B - 1) { ai = 0; bi = 0; }
          re[k] = ar - bi; im[k] = ai + br;
          if (k > 0 && k < B - 1) {
            re[n - k] = ar + bi; im[n - k] = br - ai;  // conj(A) + i conj(B)
          }
        }
        this.fft.transform(re, im, 1);
        const start = t * hop - front;
        const outA = out[c], outB = two ? out[c + 1] : null;
        for (let i = 0; i < n; i++) {
          const s = start + i;
          if (s < 0 || s >= length) continue;
          const w = synthesis[i] / n;
          outA[s] += re[i] * w;
          if (outB) outB[s] += im[i] * w;
        }
      }
    }
    return out;
  }

  // float32 (L per channel) -> stems [stem][channel] Float64Array(L).
  async separate(chunk) {
    const T = this.frames, F = this.maxBins, C = this.channels;
    this.analyze(chunk);
    const input = new self.litert.Tensor(this.magnitude, [1, T, F, C]);
    let outputs;
    const started = performance.now();
    try {
      outputs = await this.model.run({ [this.inputName]: input });
    } finally {
      input.delete();
    }
    this.modelSeconds += (performance.now() - started) / 1000;
    const masks = [];
    for (const stem of this.stems) {
      const tensor = outputs[stem];
      const host = await tensor.moveTo("wasm");
      masks.push(Float32Array.from(host.toTypedArray()));
      host.delete();
    }
    for (const name of Object.keys(outputs)) if (!outputs[name].deleted) outputs[name].delete();
    // Ratio masks sum to one in every bin (every stemtf model's): then the last stem is the chunk minus the others.
    let worst = 0;
    for (let i = 0; i < masks[0].length; i++) {
      let sum = 0;
      for (const mask of masks) sum = Math.fround(sum + mask[i]);
      worst = Math.max(worst, Math.abs(sum - 1));
    }
    const L = chunk[0].length;
    // Masks cut to zero above max_bins do not sum to one there: every stem is synthesized.
    if (worst > 1e-4 || masks.length < 2 || this.extension === "zeros") return masks.map((mask) => this.synthesize(mask, L));
    const others = masks.slice(0, -1).map((mask) => this.synthesize(mask, L));
    const last = Array.from({ length: C }, (_, c) => {
      const rest = new Float64Array(L);
      for (let i = 0; i < L; i++) {
        let sum = 0;
        for (const stem of others) sum += Math.fround(stem[c][i]);
        rest[i] = chunk[c][i] - sum;
      }
      return rest;
    });
    return [...others, last];
  }
}

// ---------------------------------------------------------------------------------------------------
// Many chunks: stemtf.plans.ChunkPlan offline. Chunk k starts at k * stride and is zero-padded past the
// end; its head fades in over the overlap (after the first), its tail fades out (before the last). When
// the last full chunk ends exactly at the end, ChunkPlan.finish keeps its tail unfaded: the same as
// this count, where that chunk is the last one.

async function separateWaveform(separator, channels, description, report) {
  const L = description.chunk_samples, overlap = description.overlap_samples, stride = L - overlap;
  const N = channels[0].length, C = channels.length, S = description.stems.length;
  const count = N <= L ? 1 : 1 + Math.ceil((N - L) / stride);
  const ramp = new Float64Array(overlap);
  for (let i = 0; i < overlap; i++) ramp[i] = Math.fround((i + 0.5) / Math.max(overlap, 1));
  // Fails here (RangeError) rather than mid-run when the song is too long for the device's memory.
  const output = Array.from({ length: S }, () => Array.from({ length: C }, () => new Float32Array(N)));
  const chunk = Array.from({ length: C }, () => new Float32Array(L));
  report(0, count);
  for (let index = 0; index < count; index++) {
    const start = index * stride, valid = Math.min(L, N - start);
    for (let c = 0; c < C; c++) {
      chunk[c].fill(0);
      chunk[c].set(channels[c].subarray(start, start + valid));
    }
    const stems = await separator.separate(chunk);
    for (let s = 0; s < S; s++) {
      for (let c = 0; c < C; c++) {
        const data = stems[s][c], target = output[s][c];
        for (let i = 0; i < valid; i++) {
          let value = Math.fround(data[i]);
          if (index > 0 && i < overlap) value = Math.fround(value * ramp[i]);
          if (index < count - 1 && i >= stride) value = Math.fround(value * Math.fround(1 - ramp[i - stride]));
          target[start + i] += value;
        }
      }
    }
    report(index + 1, count);
  }
  return output;
}

// ---------------------------------------------------------------------------------------------------
// The worker's state: the runtime and the model load once and stay for the next song.

const state = { runtime: null, models: new Map() };

async function loadRuntime(base, threads) {
  if (!state.runtime) {
    state.runtime = (async () => {
      // A classic worker: LiteRT.js loads its WebAssembly glue with importScripts, which module workers lack.
      self.litert = await import(new URL("litert/index.js", base).href);
      // Emscripten finds its .wasm next to the page's script unless told: in a worker that is worker.js's
      // folder. The factory takes self.Module as its settings.
      const wasm = new URL("litert/wasm/", base).href;
      self.Module = {
        locateFile: (path) => wasm + path,
        mainScriptUrlOrBlob: `${wasm}litert_wasm_threaded_internal.js`,  // what threads start (threaded build only)
        // The runtime's native log lines arrive on stderr; INFO and WARNING lines are not errors.
        printErr: (text) => {
          if (/^(INFO|VERBOSE)\b/.test(text)) console.debug(text);
          else if (/^WARNING\b/.test(text)) console.warn(text);
          else console.error(text);
        },
      };
      await self.litert.loadLiteRt(wasm, threads ? { threads: true } : {});
      return self.litert;
    })();
  }
  return state.runtime;
}

async function loadModel(base, entry, threads) {
  const key = entry.file;
  if (!state.models.has(key)) {
    state.models.set(key, (async () => {
      const response = await fetch(new URL(entry.file, base).href);
      if (!response.ok) throw new Error(`The model file ${entry.file} could not be loaded (${response.status}).`);
      const bytes = new Uint8Array(await response.arrayBuffer());
      const options = { accelerator: "wasm" };
      if (threads) options.cpuOptions = { numThreads: threads };
      return self.litert.loadAndCompile(bytes, options);
    })());
  }
  try {
    return await state.models.get(key);
  } catch (error) {
    state.models.delete(key);
    throw error;
  }
}

self.onmessage = async (event) => {
  const message = event.data;
  if (message.type !== "start") return;
  const { base, model: entry, channels } = message;
  const threads = message.threads || 0;
  const post = (data, transfer) => self.postMessage(data, transfer || []);
  const timings = {};
  try {
    let started = performance.now();
    post({ type: "status", text: "Loading the runtime…" });
    await loadRuntime(base, threads);
    post({ type: "status", text: `Loading the ${entry.name} model…` });
    const compiled = await loadModel(base, entry, threads);
    timings.load = (performance.now() - started) / 1000;
    started = performance.now();
    const separator = new ChunkSeparator(compiled, entry.description);
    const output = await separateWaveform(separator, channels, entry.description, (done, total) =>
      post({ type: "progress", done, total, seconds: (performance.now() - started) / 1000 }));
    timings.separate = (performance.now() - started) / 1000;
    timings.model = separator.modelSeconds;
    timings.threads = threads;
    post({ type: "done", stems: output, timings }, output.flat().map((array) => array.buffer));
  } catch (error) {
    const memory = error instanceof RangeError || /memory|allocation|Array buffer/i.test(String(error && error.message));
    post({
      type: "error",
      kind: memory ? "too_long" : "failed",
      message: memory
        ? "This song is too long for this device's memory; try a shorter excerpt, or the server."
        : `The separation failed in the browser: ${(error && error.message) || error}.`,
    });
  }
};
