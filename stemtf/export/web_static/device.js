// stemtf in the browser, the page's side: decode a song, hand it to the worker (worker.js), and turn
// the stems into what the stem player and the downloads need (WAV files, one zip). Nothing leaves the
// device. Used by the exported page (stemtf export MODEL --format web) and by `stemtf serve`'s page
// ("separate on this device").
"use strict";

(function () {
  // Checked before offering the device: a worker, WebAssembly with SIMD (LiteRT.js's builds need it) and
  // the Web Audio decoder.
  function supported() {
    try {
      if (typeof Worker !== "function" || typeof WebAssembly !== "object" || typeof OfflineAudioContext !== "function") return false;
      // The smallest module using a v128 instruction: validates only where WebAssembly SIMD exists.
      const simd = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]);
      return WebAssembly.validate(simd);
    } catch (_) {
      return false;
    }
  }

  // WebAssembly threads need a cross-origin isolated page (served with COOP/COEP headers, as `stemtf serve`
  // does); elsewhere LiteRT.js runs on one thread.
  function threads() {
    return self.crossOriginIsolated ? Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 4)) : 0;
  }

  class DeviceError extends Error {
    constructor(kind, message) {
      super(message);
      this.kind = kind;
    }
  }

  // stemtf-web.json: {models: [{name, stems, file, description}], max_duration, threads}.
  async function loadIndex(base) {
    base = new URL(base, location.href).href;
    let response;
    try {
      response = await fetch(new URL("stemtf-web.json", base).href, { cache: "no-cache" });
    } catch (_) {
      throw new DeviceError("network", "The page's files could not be loaded; is the static server still running?");
    }
    if (!response.ok) throw new DeviceError("network", `The page's model list could not be loaded (${response.status}).`);
    return response.json();
  }

  // A File -> float32 channels at the model's rate: the browser's own decoder (and resampler).
  async function decode(file, sampleRate, numChannels, maxDuration) {
    const bytes = await file.arrayBuffer();
    let buffer;
    try {
      const context = new OfflineAudioContext(1, 1, sampleRate);
      buffer = await context.decodeAudioData(bytes);
    } catch (_) {
      throw new DeviceError("not_audio", `This browser cannot decode ${file.name}; try a WAV, FLAC, OGG or MP3 file, or the server.`);
    }
    if (buffer.numberOfChannels > 2) {
      throw new DeviceError("not_audio", `${file.name} has ${buffer.numberOfChannels} channels; stemtf separates mono or stereo audio.`);
    }
    if (!buffer.length) throw new DeviceError("not_audio", `${file.name} holds no audio samples.`);
    if (maxDuration && buffer.duration > maxDuration) {
      throw new DeviceError("too_long", `${file.name} is ${Math.round(buffer.duration)} s long; this page separates at most ${Math.round(maxDuration)} s on a device (its memory). Cut it, or use the server.`);
    }
    let channels = Array.from({ length: buffer.numberOfChannels }, (_, c) => buffer.getChannelData(c).slice());
    // stemtf.audio.convert_channels: mono -> stereo duplicates, stereo -> mono averages.
    if (channels.length === 1 && numChannels === 2) channels = [channels[0], channels[0].slice()];
    if (channels.length === 2 && numChannels === 1) {
      const mono = new Float32Array(channels[0].length);
      for (let i = 0; i < mono.length; i++) mono[i] = (channels[0][i] + channels[1][i]) / 2;
      channels = [mono];
    }
    return { channels, inputChannels: buffer.numberOfChannels, duration: buffer.duration };
  }

  // 16-bit PCM WAV (as `stemtf separate`'s default), channels interleaved.
  function wavBytes(channels, sampleRate) {
    const C = channels.length, N = channels[0].length;
    const data = C * N * 2;
    const view = new DataView(new ArrayBuffer(44 + data));
    const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
    text(0, "RIFF"); view.setUint32(4, 36 + data, true); text(8, "WAVE");
    text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, C, true);
    view.setUint32(24, sampleRate, true); view.setUint32(28, sampleRate * C * 2, true);
    view.setUint16(32, C * 2, true); view.setUint16(34, 16, true);
    text(36, "data"); view.setUint32(40, data, true);
    let offset = 44;
    for (let i = 0; i < N; i++) {
      for (let c = 0; c < C; c++) {
        const v = Math.max(-1, Math.min(1, channels[c][i]));
        view.setInt16(offset, Math.round(v * 32767), true);
        offset += 2;
      }
    }
    return new Uint8Array(view.buffer);
  }

  // CRC-32 (zip's), table built once.
  const CRC_TABLE = (() => {
    const table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
    return table;
  })();

  function crc32(bytes) {
    let crc = 0xffffffff;
    for (let i = 0; i < bytes.length; i++) crc = CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
    return (crc ^ 0xffffffff) >>> 0;
  }

  // A zip of stored (uncompressed) files: [{name, blob, crc, size}] -> Blob. WAV barely compresses anyway.
  // The files' blobs are parts of the zip's, not copies: a long song's memory counts.
  function zipBlob(files) {
    const parts = [], central = [];
    let offset = 0;
    const encoder = new TextEncoder();
    for (const file of files) {
      const name = encoder.encode(file.name), crc = file.crc, size = file.size;
      const local = new DataView(new ArrayBuffer(30));
      local.setUint32(0, 0x04034b50, true); local.setUint16(4, 20, true); local.setUint16(8, 0, true);
      local.setUint32(14, crc, true); local.setUint32(18, size, true); local.setUint32(22, size, true);
      local.setUint16(26, name.length, true);
      parts.push(local.buffer, name, file.blob);
      const entry = new DataView(new ArrayBuffer(46));
      entry.setUint32(0, 0x02014b50, true); entry.setUint16(4, 20, true); entry.setUint16(6, 20, true);
      entry.setUint32(16, crc, true); entry.setUint32(20, size, true); entry.setUint32(24, size, true);
      entry.setUint16(28, name.length, true); entry.setUint32(42, offset, true);
      central.push(entry.buffer, name);
      offset += 30 + name.length + size;
    }
    const centralSize = central.reduce((sum, part) => sum + part.byteLength, 0);
    const end = new DataView(new ArrayBuffer(22));
    end.setUint32(0, 0x06054b50, true); end.setUint16(8, files.length, true); end.setUint16(10, files.length, true);
    end.setUint32(12, centralSize, true); end.setUint32(16, offset, true);
    return new Blob([...parts, ...central, end.buffer], { type: "application/zip" });
  }

  // One separation on this device. Callbacks: onStatus(text), onProgress(fraction, done, total, seconds).
  // Resolves to a job like the server's: {model, duration, sample_rate, stems: [{name, wav}], zip, buffers}.
  class DeviceJob {
    constructor(base, index) {
      this.base = new URL(base, location.href).href;
      this.index = index;
      this.worker = null;
      this.urls = [];
    }

    async run(file, modelName, twoStems, callbacks) {
      const entry = this.index.models.find((m) => m.name === modelName);
      if (!entry) throw new DeviceError("unknown_model", `This page has no model ${modelName}.`);
      const d = entry.description;
      callbacks.onStatus("Decoding…");
      const song = await decode(file, d.sample_rate, d.num_channels, this.index.max_duration);
      const result = await new Promise((resolve, reject) => {
        const worker = new Worker(new URL("worker.js", this.base).href);
        this.worker = worker;
        this.reject = reject;
        worker.onmessage = (event) => {
          const m = event.data;
          if (m.type === "status") callbacks.onStatus(m.text);
          else if (m.type === "progress") callbacks.onProgress(m.total ? m.done / m.total : 0, m.done, m.total, m.seconds);
          else if (m.type === "done") resolve(m);
          else if (m.type === "error") reject(new DeviceError(m.kind, m.message));
        };
        worker.onerror = (event) => {
          event.preventDefault();
          reject(new DeviceError("failed", `The separation stopped in the browser: ${event.message || "the worker failed"}.`));
        };
        worker.onmessageerror = () => reject(new DeviceError("failed", "The separation's results could not be received."));
        worker.postMessage({ type: "start", base: this.base, model: entry, channels: song.channels, threads: threads() },
          song.channels.map((c) => c.buffer));
      }).finally(() => this.stop());
      let stems = entry.stems.map((name, s) => ({ name, channels: result.stems[s] }));
      if (twoStems) {  // STEM and no_STEM, the sum of the others (stemtf separate --two-stems)
        const kept = stems.find((stem) => stem.name === twoStems);
        const rest = stems.filter((stem) => stem !== kept);
        const sum = kept.channels.map((_, c) => {
          const out = new Float32Array(kept.channels[c].length);
          for (const stem of rest) { const data = stem.channels[c]; for (let i = 0; i < out.length; i++) out[i] += data[i]; }
          return out;
        });
        stems = [kept, { name: `no_${twoStems}`, channels: sum }];
      }
      // Back to the input's channel count (stemtf.apply.from_model_format): stereo -> mono averages.
      for (const stem of stems) {
        if (song.inputChannels === 1 && stem.channels.length === 2) {
          const [a, b] = stem.channels, mono = new Float32Array(a.length);
          for (let i = 0; i < mono.length; i++) mono[i] = (a[i] + b[i]) / 2;
          stem.channels = [mono];
        }
      }
      const track = file.name.replace(/\.[^.]*$/, "") || "song";
      // Each WAV file's bytes live only until its Blob (and CRC) is made.
      const files = stems.map((stem) => {
        const bytes = wavBytes(stem.channels, d.sample_rate);
        return { name: `${track}/${stem.name}.wav`, blob: new Blob([bytes], { type: "audio/wav" }), crc: crc32(bytes), size: bytes.length };
      });
      const url = (blob) => { const u = URL.createObjectURL(blob); this.urls.push(u); return u; };
      return {
        model: entry.name,
        duration: song.duration,
        sample_rate: d.sample_rate,
        timings: result.timings,
        stems: stems.map((stem, s) => ({ name: stem.name, wav: url(files[s].blob), channels: stem.channels })),
        zip: url(zipBlob(files)),
        zipName: `${track}.zip`,
      };
    }

    running() { return this.worker !== null; }

    stop() {
      if (this.worker) this.worker.terminate();
      this.worker = null;
    }

    cancel() {
      const reject = this.reject;
      this.stop();
      if (reject) reject(new DeviceError("cancelled", "Cancelled."));
    }

    release() {
      for (const u of this.urls) URL.revokeObjectURL(u);
      this.urls = [];
    }
  }

  window.StemtfDevice = { supported, loadIndex, DeviceJob, DeviceError, wavBytes, zipBlob };
})();
