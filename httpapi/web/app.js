// The search page: posts the query to /v1/search, lists the hits in rank
// order and plays a hit's video from the start of its segment.
"use strict";

const $ = (id) => document.getElementById(id);

function authHeaders() {
  const token = localStorage.getItem("vidx_token");
  return token ? { Authorization: "Bearer " + token } : {};
}

function seconds(s) {
  const m = Math.floor(s / 60);
  const rest = (s - m * 60).toFixed(1).padStart(4, "0");
  return m + ":" + rest;
}

function setStatus(text) {
  $("status").textContent = text;
}

async function search(text) {
  setStatus("Searching…");
  let resp;
  try {
    resp = await fetch("/v1/search", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders() },
      body: JSON.stringify({ text: text, top_k: 12 }),
    });
  } catch (err) {
    setStatus("The server cannot be reached.");
    return;
  }
  const body = await resp.json().catch(() => null);
  if (resp.status === 401) {
    $("auth").hidden = false;
    $("token").focus();
    setStatus("Enter the access token to search.");
    return;
  }
  if (!resp.ok || !body) {
    const msg = body && body.error ? body.error.message : "HTTP " + resp.status;
    setStatus("Search failed: " + msg);
    return;
  }
  render(body);
}

function render(result) {
  const list = $("results");
  list.replaceChildren();
  for (const hit of result.hits) {
    const li = document.createElement("li");
    li.className = "hit";
    li.dataset.videoId = hit.video_id;
    li.dataset.start = String(hit.start_s);
    li.dataset.end = String(hit.end_s);
    if (hit.media_url) li.dataset.media = hit.media_url;

    const button = document.createElement("button");
    button.type = "button";
    const label = hit.video_id + ", " + seconds(hit.start_s) + " to " + seconds(hit.end_s);
    button.setAttribute("aria-label", "Play " + label + ", rank " + hit.rank);

    const img = document.createElement("img");
    img.src = hit.thumbnail;
    img.alt = "";
    img.loading = "lazy";
    img.width = 224;
    img.height = 224;
    // A missing thumbnail leaves the grey box rather than a broken icon.
    img.addEventListener("error", () => { img.removeAttribute("src"); }, { once: true });

    const rank = document.createElement("span");
    rank.className = "rank";
    rank.textContent = "#" + hit.rank;
    const video = document.createElement("span");
    video.className = "video";
    video.textContent = hit.video_id;
    const times = document.createElement("span");
    times.className = "meta times";
    times.textContent = seconds(hit.start_s) + " – " + seconds(hit.end_s);
    const score = document.createElement("span");
    score.className = "meta score";
    score.textContent = "score " + hit.score.toFixed(4) + " · cosine " + hit.cosine.toFixed(4);

    button.append(img, rank, video, times, score);
    button.addEventListener("click", () => play(li));
    li.append(button);
    list.append(li);
  }
  const n = result.hits.length;
  setStatus(n === 0 ? "No clips found for “" + result.text + "”." :
    n + (n === 1 ? " clip" : " clips") + " for “" + result.text + "” (" + result.took_ms.toFixed(1) + " ms).");
}

function play(li) {
  const panel = $("player-panel");
  const player = $("player");
  const start = Number(li.dataset.start);
  $("player-error").textContent = "";
  $("now-playing").textContent = li.dataset.videoId + " from " + seconds(start);
  panel.hidden = false;
  if (!li.dataset.media) {
    player.removeAttribute("src");
    player.load();
    $("player-error").textContent = "This video's source cannot be played in the browser.";
    return;
  }
  const seek = () => {
    if (Math.abs(player.currentTime - start) > 0.01) player.currentTime = start;
  };
  player.onloadedmetadata = seek;
  player.onerror = () => {
    $("player-error").textContent = "The video could not be loaded.";
  };
  const src = new URL(li.dataset.media, location.href).href;
  if (player.src !== src) {
    player.src = src;
  } else if (player.readyState >= 1) {
    seek();
  }
  panel.scrollIntoView({ block: "nearest" });
  player.focus();
}

document.addEventListener("DOMContentLoaded", () => {
  $("search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("q").value.trim();
    if (text) search(text);
  });
  $("auth").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    localStorage.setItem("vidx_token", token);
    // Thumbnails and media are fetched by <img> and <video>, which send
    // cookies but not headers.
    document.cookie = "vidx_token=" + encodeURIComponent(token) + "; path=/; SameSite=Strict";
    $("auth").hidden = true;
    const text = $("q").value.trim();
    if (text) search(text);
  });
  $("close-player").addEventListener("click", () => {
    const player = $("player");
    player.pause();
    $("player-panel").hidden = true;
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && !$("player-panel").hidden) $("close-player").click();
    if (ev.key === "/" && !["INPUT", "TEXTAREA"].includes(document.activeElement.tagName)) {
      ev.preventDefault();
      $("q").focus();
    }
  });
  const q = new URLSearchParams(location.search).get("q");
  if (q) {
    $("q").value = q;
    search(q);
  }
});
