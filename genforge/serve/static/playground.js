// The playground: lists models, streams /v1/completions (SSE) into #output as plain text
// (textContent, never HTML: model output is untrusted), shows /v1/images/generations' images for a
// prompt in the Images tab, plays generated audio (music, speech, waveforms) in the Audio tab, queues prompts for the reviewers when the
// server has a reviewer page (/health's "review"; the link and the button show only then).
"use strict";
const $ = (id) => document.getElementById(id);
let controller = null;
let keyRefused = false;  // the status line shows the server's "missing API key" answer

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api_key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function say(text) { $("status").textContent = text; keyRefused = false; }

async function errorText(resp) {
  try { return (await resp.json()).error.message; } catch (e) { return resp.status + " " + resp.statusText; }
}

async function loadModels() {
  const resp = await fetch("/v1/models", { headers: headers() });
  if (!resp.ok) { say(await errorText(resp)); keyRefused = resp.status === 401; return false; }
  if (keyRefused) say("");  // the key now typed is accepted: the old refusal no longer holds
  const models = (await resp.json()).data;
  fill($("model"), models.filter((m) => m.kind === "text"));
  fill($("image-model"), models.filter((m) => m.kind === "image" || m.kind === "text_image"));
  audioModels = models;
  showAudioMode();
  return true;
}

function fill(select, models) {
  select.replaceChildren();
  for (const m of models) {
    const option = document.createElement("option");
    option.value = m.id;
    option.textContent = m.id + (m.kind === "image" ? " (no prompt)" : "");
    select.appendChild(option);
  }
}

function showTab(name) {  // "text", "images" or "audio"
  for (const tab of ["text", "images", "audio"]) {
    $(tab + "-pane").hidden = tab !== name;
    $("tab-" + tab).setAttribute("aria-pressed", String(tab === name));
  }
}

// The Audio tab's modes: the models of a kind, the controls shown, and what Generate does.
// A mode returns the pieces to show: {wav (base64), label, midi (base64, optional)}.
const AUDIO_MODES = {
  music: { label: "Music", kind: "music", controls: "music-controls", run: generateMusic },
  speak: { label: "Speech", kind: "speech", controls: "speech-controls", run: generateSpeech },
  waveform: { label: "Waveform", kind: "audio", controls: "waveform-controls", run: generateWaveform },
};
let audioModels = [];
let reviewOn = false;  // the server has a reviewer page (/health)

function showAudioMode() {
  const select = $("audio-mode");
  if (select.options.length === 0) {
    for (const [name, mode] of Object.entries(AUDIO_MODES)) {
      const option = document.createElement("option");
      option.value = name; option.textContent = mode.label;
      select.appendChild(option);
    }
  }
  const mode = AUDIO_MODES[select.value];
  for (const m of Object.values(AUDIO_MODES)) $(m.controls).hidden = m !== mode;
  $("to-review-music").hidden = !(reviewOn && select.value === "music");
  fill($("audio-model"), audioModels.filter((m) => m.kind === mode.kind));
}

async function generateMusic(body) {  // /v1/music/generations: base64 WAV and MIDI per piece
  body.n = Number($("music-n").value);
  body.temperature = Number($("music-temperature").value);
  body.max_tokens = Number($("music-max-tokens").value);
  for (const [field, id] of [["key", "music-key"], ["meter", "music-meter"], ["style", "music-style"]]) {
    if ($(id).value.trim()) body[field] = $(id).value.trim();
  }
  if ($("music-bars").value !== "") body.bars = Number($("music-bars").value);
  const file = $("music-prompt").files[0];
  if (file) {
    const bytes = new Uint8Array(await file.arrayBuffer());
    let binary = "";
    for (const b of bytes) binary += String.fromCharCode(b);
    body.prompt_midi = btoa(binary);
  }
  const resp = await fetch("/v1/music/generations", { method: "POST", headers: headers(), body: JSON.stringify(body) });
  if (!resp.ok) throw new Error(await errorText(resp));
  return (await resp.json()).data.map((p) => ({
    wav: p.b64_wav, midi: p.b64_midi,
    label: `${p.notes} notes, ${p.seconds.toFixed(1)} s` +
      Object.entries(p.conditions).map(([k, v]) => `, ${k} ${v}`).join(""),
  }));
}

async function generateWaveform(body) {  // /v1/audio/generations: base64 WAV per clip (prompt + continuation)
  body.n = Number($("waveform-n").value);
  body.seconds = Number($("waveform-seconds").value);
  if ($("waveform-temperature").value !== "") body.temperature = Number($("waveform-temperature").value);
  const file = $("waveform-prompt").files[0];
  if (file) {
    const bytes = new Uint8Array(await file.arrayBuffer());
    let binary = "";
    for (const b of bytes) binary += String.fromCharCode(b);
    body.prompt_audio = btoa(binary);
  }
  const resp = await fetch("/v1/audio/generations", { method: "POST", headers: headers(), body: JSON.stringify(body) });
  if (!resp.ok) throw new Error(await errorText(resp));
  return (await resp.json()).data.map((c) => ({
    wav: c.b64_wav,
    label: `${c.seconds.toFixed(1)} s` + (c.prompt_seconds ? ` (the first ${c.prompt_seconds.toFixed(1)} s: the prompt)` : ""),
  }));
}

async function generateSpeech(body) {  // /v1/audio/speech (OpenAI's route): the WAV bytes themselves
  const ask = { model: body.model, input: $("speech-input").value, voice: $("speech-voice").value.trim() || "default",
                speed: Number($("speech-speed").value), response_format: "wav" };
  const resp = await fetch("/v1/audio/speech", { method: "POST", headers: headers(), body: JSON.stringify(ask) });
  if (!resp.ok) throw new Error(await errorText(resp));
  const bytes = new Uint8Array(await resp.arrayBuffer());
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  const seconds = (bytes.length - 44) / 2 / new DataView(bytes.buffer).getUint32(24, true);  // 16-bit mono WAV
  return [{ wav: btoa(binary), label: `${ask.voice}: ${seconds.toFixed(1)} s` }];
}

async function generateAudio() {  // the chosen mode's pieces, each in an <audio> element
  if (!await ready()) return;
  const status = (text) => { $("audio-status").textContent = text; };
  const body = { model: $("audio-model").value };
  if ($("audio-seed").value !== "") body.seed = Number($("audio-seed").value);
  $("generate-audio").disabled = true; status("generating…");
  try {
    const pieces = await AUDIO_MODES[$("audio-mode").value].run(body);
    $("audio-out").replaceChildren();
    pieces.forEach((piece, i) => {
      const row = document.createElement("figure");
      const audio = document.createElement("audio");
      audio.controls = true;
      audio.src = "data:audio/wav;base64," + piece.wav;
      const caption = document.createElement("figcaption");
      caption.textContent = piece.label;  // text, never HTML
      row.append(audio, caption);
      if (piece.midi) {
        const link = document.createElement("a");
        link.href = "data:audio/midi;base64," + piece.midi;
        link.download = `piece-${i}.mid`;
        link.textContent = "MIDI";
        caption.append(" ", link);
      }
      $("audio-out").appendChild(row);
    });
    status("done");
  } catch (e) {
    status(e.message || String(e));
  } finally {
    $("generate-audio").disabled = false;
  }
}

async function generateImages() {  // /v1/images/generations: base64 PNGs shown as <img> (never as HTML)
  if (!await ready()) return;
  const status = (text) => { $("image-status").textContent = text; };
  const body = { model: $("image-model").value, prompt: $("image-prompt").value, n: Number($("image-n").value),
                 response_format: "b64_json" };
  for (const [field, id] of [["guidance_scale", "guidance"], ["steps", "steps"], ["seed", "image-seed"],
                           ["rerank", "image-rerank"]]) {
    if ($(id).value !== "") body[field] = Number($(id).value);
  }
  if ($("negative-prompt").value.trim()) body.negative_prompt = $("negative-prompt").value;
  $("generate-images").disabled = true; status("generating…");
  try {
    const resp = await fetch("/v1/images/generations", { method: "POST", headers: headers(), body: JSON.stringify(body) });
    if (!resp.ok) { status(await errorText(resp)); return; }
    $("grid").replaceChildren();
    for (const item of (await resp.json()).data) {
      const img = document.createElement("img");
      img.src = "data:image/png;base64," + item.b64_json;
      img.alt = body.prompt;
      $("grid").appendChild(img);
    }
    status("done");
  } catch (e) {
    status(String(e));
  } finally {
    $("generate-images").disabled = false;
  }
}

async function ready() {  // models listed, e.g. once a key is typed and the first listing was refused
  return $("model").options.length > 0 || await loadModels();
}

async function showReview() {
  const resp = await fetch("/health");
  const on = resp.ok && (await resp.json()).review === true;
  $("review-link").hidden = !on;
  $("to-review").hidden = !on;
  $("to-review-images").hidden = !on;
  reviewOn = on;
  showAudioMode();
}

async function generate() {
  if (!await ready()) return;
  const body = {
    model: $("model").value, prompt: $("prompt-box").value, stream: true,
    temperature: Number($("temperature").value), top_p: Number($("top_p").value),
    max_tokens: Number($("max_tokens").value),
  };
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  $("output").textContent = "";
  controller = new AbortController();
  $("generate").disabled = true; $("stop").disabled = false; say("generating…");
  try {
    const resp = await fetch("/v1/completions", { method: "POST", headers: headers(), body: JSON.stringify(body),
                                                  signal: controller.signal });
    if (!resp.ok) { say(await errorText(resp)); return; }
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const line = buffer.slice(0, cut).replace(/^data: /, "");
        buffer = buffer.slice(cut + 2);
        if (line === "[DONE]") { say("done"); continue; }
        const event = JSON.parse(line);
        if (event.error) { say(event.error.message); continue; }
        $("output").textContent += event.choices[0].text;
      }
    }
  } catch (e) {
    say(e.name === "AbortError" ? "stopped" : String(e));
  } finally {
    $("generate").disabled = false; $("stop").disabled = true; controller = null;
  }
}

function musicConditions() {  // the Music mode's conditions as a reviewer prompt: "key=D meter=3/4"
  return [["key", "music-key"], ["meter", "music-meter"], ["style", "music-style"]]
    .filter(([, id]) => $(id).value.trim()).map(([name, id]) => `${name}=${$(id).value.trim()}`).join(" ") || "any";
}

async function toReview(kind) {  // the reviewers compare two outputs (texts, images, pieces) for the prompt
  const prompt = kind === "image" ? $("image-prompt").value : kind === "music" ? musicConditions() : $("prompt-box").value;
  const resp = await fetch("/playground/review-prompt", { method: "POST", headers: headers(),
                                                          body: JSON.stringify({ prompt, kind }) });
  const text = resp.ok ? "queued for review" : await errorText(resp);
  if (kind === "image") $("image-status").textContent = text;
  else if (kind === "music") $("audio-status").textContent = text;
  else say(text);
}

document.addEventListener("DOMContentLoaded", () => {
  $("generate").addEventListener("click", generate);
  $("stop").addEventListener("click", () => controller && controller.abort());
  $("to-review").addEventListener("click", () => toReview("text"));
  $("to-review-images").addEventListener("click", () => toReview("image"));
  $("generate-images").addEventListener("click", generateImages);
  $("tab-text").addEventListener("click", () => showTab("text"));
  $("tab-images").addEventListener("click", () => showTab("images"));
  $("tab-audio").addEventListener("click", () => showTab("audio"));
  $("audio-mode").addEventListener("change", showAudioMode);
  $("generate-audio").addEventListener("click", generateAudio);
  $("to-review-music").addEventListener("click", () => toReview("music"));
  let typing = null;  // the models again once the key has been typed (or pasted), not per keystroke
  $("api_key").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(loadModels, 300); });
  $("api_key").addEventListener("change", () => { clearTimeout(typing); loadModels(); });
  loadModels();
  showReview();
});
