// stemtf web page: upload a song, follow its separation, play the stems in sync.
// Plain JavaScript and the Web Audio API: no framework, no build step, nothing fetched from elsewhere.
// Two ways to separate: on the server (`stemtf serve`: upload, poll the job), or on this device
// (device.js + worker.js, LiteRT.js in WebAssembly: nothing is uploaded). The page exported by
// `stemtf export MODEL --format web` (<body data-mode="device">) has only the second; the server's
// page offers it too when the server serves the device files and the browser can run them.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#2d6cdf", "#e8590c", "#2f9e44", "#ae3ec9", "#0c8599", "#c2255c", "#5c940d", "#1864ab"];
const TITLES = {
  not_audio: "Not an audio file.",
  too_long: "Too long.",
  too_big: "Too big.",
  busy: "The server is busy.",
  timeout: "The upload stalled.",
  not_found: "Gone.",
  unknown_model: "Unknown model.",
  failed: "The separation failed.",
  network: "No connection.",
  playback: "Cannot play the stems.",
  bad_request: "Refused.",
  cancelled: "Cancelled.",
};

const page = { options: null, file: null, jobId: null, pollTimer: null, upload: null, player: null, device: null, deviceJob: null };

// Device-only page: the exported static folder, no server behind it.
const deviceOnly = () => document.body.dataset.mode === "device";

class ApiError extends Error {
  constructor(kind, message, retryAfter) {
    super(message);
    this.kind = kind;
    this.retryAfter = retryAfter;
  }
}

// Turn any failed response into an ApiError with a sentence, whatever the body is.
async function apiError(response) {
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON: fall back to the status */ }
  const kind = (body && body.kind) || (response.status === 503 ? "busy" : response.status === 413 ? "too_big" : "bad_request");
  const message = (body && body.error) || `The server answered ${response.status} ${response.statusText}.`;
  return new ApiError(kind, message, Number(response.headers.get("Retry-After")) || null);
}

async function api(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (_) {
    throw new ApiError("network", "Check that `stemtf serve` is still running, then try again.");
  }
  if (!response.ok) throw await apiError(response);
  return response;
}

function setState(state) { document.body.dataset.state = state; }

function showError(error) {
  const kind = error instanceof ApiError ? error.kind : "failed";
  $("error-title").textContent = TITLES[kind] || TITLES.failed;
  let text = error.message || String(error);
  if (kind === "busy" && error.retryAfter) text += ` Try again in about ${formatSeconds(error.retryAfter)}.`;
  $("error-text").textContent = text;
  $("error").dataset.kind = kind;
  $("error").hidden = false;
}

function hideError() { $("error").hidden = true; }

function formatTime(seconds) {
  seconds = Math.max(0, seconds || 0);
  const minutes = Math.floor(seconds / 60);
  return `${minutes}:${(seconds - minutes * 60).toFixed(1).padStart(4, "0")}`;
}

function formatSeconds(seconds) {
  seconds = Math.round(seconds);
  if (seconds < 60) return `${Math.max(1, seconds)} s`;
  return seconds % 60 ? `${Math.floor(seconds / 60)} min ${seconds % 60} s` : `${seconds / 60} min`;
}

// --- Choosing a file and a model ---

// The device's separator: its script (device.js) and its model list, from `base`; null where unusable.
async function loadDevice(base) {
  if (!window.StemtfDevice) {
    await new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = `${base}device.js`;
      script.onload = resolve;
      script.onerror = () => reject(new Error("device.js did not load"));
      document.head.append(script);
    });
  }
  if (!window.StemtfDevice.supported()) return null;
  return { base, index: await window.StemtfDevice.loadIndex(base) };
}

async function loadOptions() {
  try {
    if (deviceOnly()) {
      page.device = await loadDevice("./");
      if (!page.device) {
        showError(new ApiError("failed", "This browser cannot separate on the device (it needs WebAssembly with SIMD and Web Workers); try a recent Chrome, Edge, Firefox or Safari."));
        return;
      }
      page.options = { models: page.device.index.models, max_duration: page.device.index.max_duration, max_upload_mb: null };
    } else {
      page.options = await (await api("/v1/separators")).json();
      if (page.options.device) {
        try {
          page.device = await loadDevice(page.options.device);
        } catch (_) {
          page.device = null;  // the server page works as before
        }
        $("on-device-row").hidden = !page.device;
      }
    }
  } catch (error) {
    showError(error);
    return;
  }
  const select = $("model");
  select.textContent = "";
  for (const model of page.options.models) {
    const option = document.createElement("option");
    option.value = model.name;
    option.textContent = `${model.name} (${model.stems.length} stems)`;
    select.append(option);
  }
  if (!page.options.models.length) {
    showError(new ApiError("unknown_model", "This server offers no separation model; start it with `stemtf serve --models 4stems`."));
  }
  const { max_upload_mb: mb, max_duration: seconds } = page.options;
  $("limits").textContent = deviceOnly()
    ? `Up to ${formatSeconds(seconds)} of audio, separated in this browser: nothing is uploaded. WAV, FLAC, OGG, MP3 and what else this browser decodes.`
    : `Up to ${mb} MB and ${formatSeconds(seconds)} of audio. WAV, FLAC, OGG, MP3, M4A and more.`;
  showStems();
  updateButton();
}

function showStems() {
  const chips = $("model-stems");
  chips.textContent = "";
  const model = page.options && page.options.models.find((m) => m.name === $("model").value);
  if (!model) return;
  // "STEM + the rest": the server sums every other stem into no_STEM (two_stems, as in Demucs).
  const output = $("two-stems");
  const kept = output.value;
  output.replaceChildren(new Option("every stem", ""));
  model.stems.forEach((stem) => output.append(new Option(`${stem} + the rest`, stem)));
  output.value = model.stems.includes(kept) ? kept : "";
  model.stems.forEach((stem, index) => {
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.textContent = stem;
    chip.style.setProperty("--dot", COLORS[index % COLORS.length]);
    chips.append(chip);
  });
}

function chooseFile(file) {
  if (!file) return;
  hideError();
  page.file = file;
  $("file-name").textContent = `${file.name} (${(file.size / 1e6).toFixed(1)} MB)`;
  updateButton();
}

function updateButton() {
  const busy = ["uploading", "queued", "running"].includes(document.body.dataset.state);
  $("separate").disabled = !page.file || !$("model").value || busy;
  const onDevice = $("on-device");
  if (onDevice && page.device) {
    // Only the models the device folder has can run here.
    const here = page.device.index.models.some((m) => m.name === $("model").value);
    onDevice.disabled = !here;
    if (!here) onDevice.checked = false;
  }
}

const useDevice = () => deviceOnly() || Boolean(page.device && $("on-device") && $("on-device").checked);

// --- A job: upload, follow, cancel ---

function separate() {
  hideError();
  const file = page.file;
  if (!file) return;
  if (useDevice()) { separateOnDevice(file); return; }
  const limit = page.options.max_upload_mb * 1e6;
  if (file.size > limit) {  // say it now instead of sending megabytes the server will refuse
    showError(new ApiError("too_big", `${file.name} is ${(file.size / 1e6).toFixed(1)} MB; this server accepts at most ${page.options.max_upload_mb} MB.`));
    return;
  }
  stopPolling();
  closePlayer();
  const form = new FormData();
  form.append("model", $("model").value);
  if ($("two-stems").value) form.append("two_stems", $("two-stems").value);
  form.append("file", file, file.name);
  // XMLHttpRequest rather than fetch: it reports upload progress.
  const request = new XMLHttpRequest();
  page.upload = request;
  request.open("POST", "/v1/jobs");
  request.upload.onprogress = (event) => {
    if (event.lengthComputable) showProgress(event.loaded / event.total, `Uploading… ${Math.round(100 * event.loaded / event.total)}%`);
  };
  request.onload = () => {
    page.upload = null;
    let body = null;
    try { body = JSON.parse(request.responseText); } catch (_) { /* handled below */ }
    if (request.status === 202 && body) {
      page.jobId = body.id;
      followJob(body);
      return;
    }
    const kind = (body && body.kind) || (request.status === 413 ? "too_big" : request.status === 503 ? "busy" : "bad_request");
    endJob(new ApiError(kind, (body && body.error) || `The server answered ${request.status}.`,
      Number(request.getResponseHeader("Retry-After")) || null));
  };
  request.onerror = () => { page.upload = null; endJob(new ApiError("network", "The upload did not reach the server; is `stemtf serve` still running?")); };
  request.onabort = () => { page.upload = null; endJob(null); };
  $("job-name").textContent = file.name;
  $("job").hidden = false;
  $("cancel").disabled = false;
  setState("uploading");
  updateButton();
  showProgress(0, "Uploading…");
  request.send(form);
}

// --- A job on this device: decode, separate in the worker, no upload ---

async function separateOnDevice(file) {
  closePlayer();
  const job = new window.StemtfDevice.DeviceJob(page.device.base, page.device.index);
  page.deviceJob = job;
  $("job-name").textContent = file.name;
  $("job").hidden = false;
  $("cancel").disabled = false;
  setState("running");
  updateButton();
  showProgress(0, "Decoding…");
  let result;
  try {
    result = await job.run(file, $("model").value, $("two-stems").value, {
      onStatus: (text) => { if (page.deviceJob === job) showProgress(0, text); },
      onProgress: (fraction, done, total, seconds) => {
        if (page.deviceJob !== job) return;
        const left = done ? ` About ${formatSeconds(seconds / done * (total - done))} left.` : "";
        showProgress(fraction, done ? `Separating on this device: chunk ${done} of ${total}.${left}` : "Separating the first chunk on this device…");
      },
    });
  } catch (error) {
    if (page.deviceJob !== job) return;
    page.deviceJob = null;
    if (error.kind === "cancelled") { endJob(null, "Cancelled."); return; }
    endJob(new ApiError(error.kind || "failed", error.message || String(error)));
    return;
  }
  if (page.deviceJob !== job) { job.release(); return; }
  page.deviceJob = null;
  $("cancel").disabled = true;
  showProgress(1, `Separated ${formatTime(result.duration)} into ${result.stems.length} stems. Loading the player…`);
  result.device = job;
  document.body.dataset.timings = JSON.stringify(result.timings);  // load and separation seconds (benchmarks/browser_speed.py)
  openPlayer(result);
}

function showProgress(value, text) {
  const bar = $("progress");
  if (value === null) bar.removeAttribute("value"); else bar.value = value;
  $("job-status").textContent = text;
}

function followJob(job) {
  if (job.id !== page.jobId) return;  // an answer about a job the page has moved on from
  if (job.status === "queued") {
    setState("queued");
    const ahead = job.queue_position - 1;
    showProgress(0, ahead ? `Waiting in the queue: ${ahead} song${ahead > 1 ? "s" : ""} before this one.` : "Waiting in the queue: next.");
  } else if (job.status === "cancelling") {
    showProgress(job.progress, "Cancelling…");
  } else if (job.status === "running") {
    setState("running");
    if (job.loading_model) {
      showProgress(0, `Loading the ${job.model} model…`);
    } else if (!job.progress) {
      showProgress(0, "Separating the first chunk…");
    } else {
      const left = job.time_left === null ? "" : ` About ${formatSeconds(job.time_left)} left.`;
      showProgress(job.progress, `Separating: ${Math.round(job.progress * 100)}%.${left}`);
    }
  } else if (job.status === "done") {
    showProgress(1, `Separated ${formatTime(job.duration)} into ${job.stem_names.length} stems. Loading the player…`);
    stopPolling();
    $("cancel").disabled = true;
    openPlayer(job);
    return;
  } else if (job.status === "failed") {
    endJob(new ApiError(job.kind || "failed", job.error || "The separation failed."));
    return;
  } else {
    endJob(null, "Cancelled.");
    return;
  }
  page.pollTimer = setTimeout(poll, job.status === "queued" ? 1000 : 400);
}

async function poll() {
  const id = page.jobId;
  try {
    followJob(await (await api(`/v1/jobs/${id}`)).json());
  } catch (error) {
    if (id === page.jobId) endJob(error);
  }
}

function stopPolling() {
  clearTimeout(page.pollTimer);
  page.pollTimer = null;
}

function endJob(error, message) {
  stopPolling();
  page.jobId = null;
  if (error) {
    $("job").hidden = true;
    showError(error);
  } else {
    showProgress(0, message || "Cancelled.");
  }
  $("cancel").disabled = true;
  setState(error ? "error" : "idle");
  updateButton();
}

async function cancel() {
  if (page.upload) { page.upload.abort(); return; }
  if (page.deviceJob) { page.deviceJob.cancel(); return; }
  const id = page.jobId;
  if (!id) return;
  $("cancel").disabled = true;
  showProgress(null, "Cancelling…");
  try {
    await api(`/v1/jobs/${id}`, { method: "DELETE" });
    poll();  // the job reports "cancelled" once the separator stops at its next chunk
  } catch (error) {
    endJob(error);
  }
}

// --- The stem player ---

async function openPlayer(job) {
  closePlayer();
  setState("loading");
  let context;
  try {
    // At the job's rate the stems need no resampling (browsers accept 8-96 kHz; fall back to the default).
    context = new AudioContext({ sampleRate: job.sample_rate });
  } catch (_) {
    context = new AudioContext();
  }
  let buffers;
  try {
    buffers = job.device ? job.stems.map((stem) => {  // separated here: the samples are in hand
      const buffer = context.createBuffer(stem.channels.length, stem.channels[0].length, job.sample_rate);
      stem.channels.forEach((data, c) => buffer.copyToChannel(data, c));
      stem.channels = null;  // the player's copy is enough: a long song's memory counts
      return buffer;
    }) : await Promise.all(job.stems.map(async (stem) => {
      const data = await (await api(stem.wav)).arrayBuffer();
      return context.decodeAudioData(data);
    }));
  } catch (error) {
    context.close();
    endJob(error instanceof ApiError ? error : new ApiError("playback", `The browser could not decode the stems (${error.message}).`));
    return;
  }
  if (!job.device && job.id !== page.jobId) { context.close(); return; }
  page.player = new Player(context, job, buffers);
  $("zip").href = job.zip;
  if (job.zipName) $("zip").download = job.zipName; else $("zip").setAttribute("download", "");
  $("player").hidden = false;
  $("job-status").textContent = `Separated ${formatTime(job.duration)} into ${job.stems.length} stems with ${job.model}${job.device ? " on this device" : ""}.`;
  setState("ready");
  updateButton();
}

function closePlayer() {
  if (page.player) page.player.close();
  if (page.player && page.player.job.device) page.player.job.device.release();
  page.player = null;
  $("player").hidden = true;
  $("lanes").textContent = "";
}

// The mixture lane: the sum of the stems, which is the original (stemtf's masks sum to one).
function mixBuffers(context, buffers) {
  const channels = Math.max(...buffers.map((b) => b.numberOfChannels));
  const length = Math.max(...buffers.map((b) => b.length));
  const mix = context.createBuffer(channels, length, buffers[0].sampleRate);
  for (let c = 0; c < channels; c++) {
    const out = mix.getChannelData(c);
    for (const buffer of buffers) {
      const data = buffer.getChannelData(Math.min(c, buffer.numberOfChannels - 1));
      for (let i = 0; i < data.length; i++) out[i] += data[i];
    }
  }
  return mix;
}

// Min/max per bucket over all channels: computed once, drawn at any width.
function peaks(buffer, buckets) {
  const size = buffer.length / buckets;
  const low = new Float32Array(buckets);
  const high = new Float32Array(buckets);
  for (let c = 0; c < buffer.numberOfChannels; c++) {
    const data = buffer.getChannelData(c);
    for (let b = 0; b < buckets; b++) {
      const end = Math.min(data.length, Math.floor((b + 1) * size));
      let lo = low[b], hi = high[b];
      for (let i = Math.floor(b * size); i < end; i++) {
        const v = data[i];
        if (v < lo) lo = v; else if (v > hi) hi = v;
      }
      low[b] = lo; high[b] = hi;
    }
  }
  return { low, high };
}

// In-place iterative radix-2 FFT of (re, im), length a power of two.
function fft(re, im) {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j], re[i]];
      [im[i], im[j]] = [im[j], im[i]];
    }
  }
  for (let size = 2; size <= n; size <<= 1) {
    const half = size >> 1;
    const step = -2 * Math.PI / size;
    for (let start = 0; start < n; start += size) {
      for (let k = 0; k < half; k++) {
        const wr = Math.cos(step * k), wi = Math.sin(step * k);
        const a = start + k, b = a + half;
        const tr = re[b] * wr - im[b] * wi, ti = re[b] * wi + im[b] * wr;
        re[b] = re[a] - tr; im[b] = im[a] - ti;
        re[a] += tr; im[a] += ti;
      }
    }
  }
}

// A log-frequency spectrogram (30 Hz to Nyquist, 90 dB range) of a buffer's channel average, as ImageData.
function spectrogram(g, buffer, width, height, color) {
  const size = 2048;
  const window = Float32Array.from({ length: size }, (_, i) => 0.5 - 0.5 * Math.cos(2 * Math.PI * i / size));
  const channels = Array.from({ length: buffer.numberOfChannels }, (_, c) => buffer.getChannelData(c));
  const nyquist = buffer.sampleRate / 2;
  const rowBin = Int32Array.from({ length: height }, (_, y) => {
    const frequency = 30 * Math.pow(nyquist / 30, 1 - (y + 0.5) / height);
    return Math.min(size / 2 - 1, Math.round(frequency / buffer.sampleRate * size));
  });
  const [r, gr, b] = [1, 3, 5].map((i) => parseInt(color.slice(i, i + 2), 16));
  const image = g.createImageData(width, height);
  const re = new Float32Array(size), im = new Float32Array(size);
  const reference = size / 4;  // a full-scale sine's peak through the Hann window
  for (let x = 0; x < width; x++) {
    const start = Math.round((x + 0.5) / width * buffer.length) - size / 2;
    for (let i = 0; i < size; i++) {
      const index = start + i;
      let sum = 0;
      if (index >= 0 && index < buffer.length) for (const data of channels) sum += data[index];
      re[i] = sum / channels.length * window[i];
      im[i] = 0;
    }
    fft(re, im);
    for (let y = 0; y < height; y++) {
      const bin = rowBin[y];
      const level = 20 * Math.log10(Math.hypot(re[bin], im[bin]) / reference + 1e-9);
      const v = Math.min(1, Math.max(0, (level + 90) / 90));
      const p = 4 * (y * width + x);
      // Dark to the lane's colour to white: loud bins stand out, silence stays dark.
      const t = v < 0.7 ? v / 0.7 : 1;
      const w = v < 0.7 ? 0 : (v - 0.7) / 0.3;
      image.data[p] = 20 + t * (r - 20) + w * (255 - r);
      image.data[p + 1] = 24 + t * (gr - 24) + w * (255 - gr);
      image.data[p + 2] = 32 + t * (b - 32) + w * (255 - b);
      image.data[p + 3] = 255;
    }
  }
  return image;
}

class Player {
  constructor(context, job, buffers) {
    this.context = context;
    this.job = job;
    this.duration = Math.max(...buffers.map((b) => b.duration));
    this.offset = 0;
    this.playing = false;
    this.sources = [];
    this.lanes = job.stems.map((stem, index) => this.makeLane(stem.name, buffers[index], COLORS[index % COLORS.length], stem));
    const mixture = this.makeLane("mixture", mixBuffers(context, buffers), "#495057", null);
    // One vertical scale for every lane (the loudest peak fills 90%): quiet stems look quiet.
    this.scale = 0.9 / Math.max(1e-4, ...[...this.lanes, mixture].map((lane) => Math.max(...lane.peaks.high, ...lane.peaks.low.map(Math.abs))));
    mixture.muted = true;  // heard on its own when soloed; otherwise the stems are the mix
    this.lanes.push(mixture);
    this.updateGains();
    this.frame = requestAnimationFrame(() => this.tick());
    // Redraw a lane whenever its canvas changes size: when the player is shown, on rotation, on resize.
    this.resizer = new ResizeObserver((entries) => {
      for (const entry of entries) this.draw(this.lanes.find((lane) => lane.el.contains(entry.target)));
    });
    for (const lane of this.lanes) this.resizer.observe(lane.el.querySelector("canvas"));
  }

  makeLane(name, buffer, color, stem) {
    const template = document.createElement("div");
    template.className = `lane${stem ? "" : " mixture"}`;
    template.dataset.stem = name;
    template.dataset.duration = buffer.duration.toFixed(4);
    template.innerHTML = `
      <div class="lane-head">
        <span class="lane-name"><span class="swatch"></span><span class="label"></span></span>
        <button class="mute" aria-pressed="false" title="Mute">M</button>
        <button class="solo" aria-pressed="false" title="Solo">S</button>
        <button class="view" aria-pressed="false" title="Spectrogram">Spectrum</button>
        <input class="volume" type="range" min="0" max="1.5" step="0.01" value="1">
        <span class="downloads"></span>
      </div>
      <div class="wave"><canvas></canvas><div class="playhead"></div></div>`;
    const el = template;
    el.querySelector(".swatch").style.background = color;
    el.querySelector(".label").textContent = name;
    el.querySelector(".mute").setAttribute("aria-label", `Mute ${name}`);
    el.querySelector(".solo").setAttribute("aria-label", `Solo ${name}`);
    el.querySelector(".volume").setAttribute("aria-label", `${name} volume`);
    el.querySelector(".view").setAttribute("aria-label", `Spectrogram of ${name}`);
    el.dataset.view = "waveform";
    if (stem) {
      for (const [format, url] of [["WAV", stem.wav], ["MP3", stem.mp3]]) {
        if (!url) continue;  // separated on the device: WAV only
        const link = document.createElement("a");
        link.href = url;
        link.download = stem.mp3 ? "" : `${name}.wav`;
        link.textContent = format;
        link.className = `download-${format.toLowerCase()}`;
        el.querySelector(".downloads").append(link, " ");
      }
    }
    $("lanes").append(el);
    const gain = this.context.createGain();
    gain.connect(this.context.destination);
    const lane = { name, buffer, color, el, gain, muted: false, solo: false, volume: 1, spectrogram: false, peaks: peaks(buffer, 4000) };
    el.querySelector(".mute").addEventListener("click", () => { lane.muted = !lane.muted; this.updateGains(); });
    el.querySelector(".solo").addEventListener("click", () => { lane.solo = !lane.solo; this.updateGains(); });
    el.querySelector(".volume").addEventListener("input", (event) => { lane.volume = Number(event.target.value); this.updateGains(); });
    el.querySelector(".view").addEventListener("click", (event) => {
      lane.spectrogram = !lane.spectrogram;
      event.target.setAttribute("aria-pressed", String(lane.spectrogram));
      el.dataset.view = lane.spectrogram ? "spectrogram" : "waveform";
      this.draw(lane);
    });
    const wave = el.querySelector(".wave");
    const seekTo = (event) => {
      const box = wave.getBoundingClientRect();
      this.seek(Math.min(1, Math.max(0, (event.clientX - box.left) / box.width)) * this.duration);
    };
    wave.addEventListener("pointerdown", (event) => { wave.setPointerCapture(event.pointerId); seekTo(event); });
    wave.addEventListener("pointermove", (event) => { if (wave.hasPointerCapture(event.pointerId)) seekTo(event); });
    return lane;
  }

  draw(lane) {
    if (!lane) return;
    const canvas = lane.el.querySelector("canvas");
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    canvas.width = width;
    canvas.height = height;
    const g = canvas.getContext("2d");
    g.clearRect(0, 0, width, height);
    if (lane.spectrogram) {
      // At most ~1000 columns: the cost is one FFT per column.
      const columns = Math.min(width, 1000);
      const image = spectrogram(g, lane.buffer, columns, height, lane.color);
      if (columns === width) {
        g.putImageData(image, 0, 0);
      } else {
        const scratch = document.createElement("canvas");
        scratch.width = columns;
        scratch.height = height;
        scratch.getContext("2d").putImageData(image, 0, 0);
        g.drawImage(scratch, 0, 0, width * lane.buffer.duration / this.duration, height);
      }
      return;
    }
    g.fillStyle = lane.color;
    const { low, high } = lane.peaks;
    const middle = height / 2;
    // The lane's length in pixels is its share of the longest lane, so lanes stay aligned in time.
    const used = width * lane.buffer.duration / this.duration;
    for (let x = 0; x < used; x++) {
      const from = Math.floor(x / used * low.length);
      const to = Math.max(from + 1, Math.floor((x + 1) / used * low.length));
      let lo = 0, hi = 0;
      for (let b = from; b < to; b++) { lo = Math.min(lo, low[b]); hi = Math.max(hi, high[b]); }
      const top = middle - Math.min(1, hi * this.scale) * middle;
      g.fillRect(x, top, 1, Math.max(1, middle - Math.max(-1, lo * this.scale) * middle - top));
    }
  }

  updateGains() {
    const anySolo = this.lanes.some((lane) => lane.solo);
    for (const lane of this.lanes) {
      const audible = !lane.muted && (!anySolo || lane.solo);
      lane.gain.gain.value = audible ? lane.volume : 0;
      lane.el.dataset.gain = lane.gain.gain.value.toFixed(3);
      lane.el.classList.toggle("silent", !audible);
      lane.el.querySelector(".mute").setAttribute("aria-pressed", String(lane.muted));
      lane.el.querySelector(".solo").setAttribute("aria-pressed", String(lane.solo));
    }
  }

  position() {
    if (!this.playing) return this.offset;
    return Math.min(this.duration, this.context.currentTime - this.startedAt);
  }

  play() {
    if (this.playing) return;
    if (this.offset >= this.duration - 0.01) this.offset = 0;
    this.context.resume().catch(() => { /* reported below */ });
    // A context that stays suspended plays nothing: no output device, or sound blocked for the page.
    setTimeout(() => {
      if (this.playing && this.context.state !== "running") {
        showError(new ApiError("playback", "The browser has not started sound: check the audio output and that sound is allowed for this page."));
      }
    }, 1500);
    // Every source starts at the same context time: the lanes stay sample-aligned.
    const when = this.context.currentTime + 0.05;
    this.sources = this.lanes.map((lane) => {
      const source = this.context.createBufferSource();
      source.buffer = lane.buffer;
      source.connect(lane.gain);
      source.start(when, Math.min(this.offset, lane.buffer.duration));
      return source;
    });
    this.startedAt = when - this.offset;
    this.playing = true;
    $("play").innerHTML = "&#10074;&#10074;";
    $("play").setAttribute("aria-label", "Pause");
  }

  pause() {
    if (!this.playing) return;
    this.offset = this.position();
    this.stopSources();
    this.playing = false;
    $("play").innerHTML = "&#9654;";
    $("play").setAttribute("aria-label", "Play");
  }

  toggle() { if (this.playing) this.pause(); else this.play(); }

  seek(seconds) {
    const wasPlaying = this.playing;
    if (wasPlaying) { this.stopSources(); this.playing = false; }
    this.offset = Math.min(Math.max(0, seconds), this.duration);
    if (wasPlaying) this.play();
    this.render();
  }

  stopSources() {
    for (const source of this.sources) { try { source.stop(); } catch (_) { /* never started */ } source.disconnect(); }
    this.sources = [];
  }

  render() {
    const position = this.position();
    const fraction = this.duration ? position / this.duration : 0;
    for (const lane of this.lanes) lane.el.querySelector(".playhead").style.left = `calc(${(fraction * 100).toFixed(3)}% - 1px)`;
    $("time").textContent = `${formatTime(position)} / ${formatTime(this.duration)}`;
    if (document.activeElement !== $("seek")) $("seek").value = fraction;
  }

  tick() {
    if (this.playing && this.position() >= this.duration) this.pause();
    this.render();
    this.frame = requestAnimationFrame(() => this.tick());
  }

  close() {
    cancelAnimationFrame(this.frame);
    this.resizer.disconnect();
    this.stopSources();
    this.context.close();
  }
}

// --- Wiring ---

function init() {
  const drop = $("drop");
  $("file").addEventListener("change", (event) => chooseFile(event.target.files[0]));
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    chooseFile(event.dataTransfer.files[0]);
  });
  // A file dropped anywhere else must not make the browser navigate away from the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  $("model").addEventListener("change", () => { showStems(); updateButton(); });
  $("separate").addEventListener("click", separate);
  $("cancel").addEventListener("click", cancel);
  $("error-close").addEventListener("click", hideError);
  // Closing or leaving the tab ends an on-device separation (its worker dies with the page): ask first.
  window.addEventListener("beforeunload", (event) => {
    if (page.deviceJob && page.deviceJob.running()) { event.preventDefault(); event.returnValue = ""; }
  });
  $("play").addEventListener("click", () => page.player && page.player.toggle());
  $("seek").addEventListener("input", (event) => page.player && page.player.seek(Number(event.target.value) * page.player.duration));
  document.addEventListener("keydown", (event) => {
    if (!page.player || event.target.matches("input[type=text], select, textarea")) return;
    if (event.code === "Space" || event.key === " ") {
      event.preventDefault();  // no page scroll, and no click on a focused button
      if (!event.repeat) page.player.toggle();
    } else if (event.key === "ArrowLeft" && event.target === document.body) {
      page.player.seek(page.player.position() - 5);
    } else if (event.key === "ArrowRight" && event.target === document.body) {
      page.player.seek(page.player.position() + 5);
    }
  });
  document.addEventListener("keyup", (event) => {
    if (page.player && (event.code === "Space" || event.key === " ") && event.target.matches("button")) event.preventDefault();
  });
  loadOptions();
}

init();
