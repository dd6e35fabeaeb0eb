// Try it: an image is sent as base64 to /identify (faces and names, drawn on a canvas) and to
// /ui/api/tag-image (tags with confidences); a video path goes to /process_video/ (tag spans as the
// AITagger markers would be) and /identify/scene (people and their time ranges).
"use strict";

(() => {
  const el = SV.el;

  function readFile(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
  }

  function loadImage(url) {
    return new Promise((resolve, reject) => {
      const image = new Image();
      image.onload = () => resolve(image);
      image.onerror = () => reject(new Error("the browser cannot show this image"));
      image.src = url;
    });
  }

  function draw(image, faces) {
    const canvas = document.getElementById("picture");
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    const g = canvas.getContext("2d");
    g.drawImage(image, 0, 0);
    const line = Math.max(2, Math.round(image.naturalWidth / 300));
    g.lineWidth = line;
    g.font = `${Math.max(14, line * 7)}px system-ui, sans-serif`;
    g.textBaseline = "bottom";
    for (const face of faces) {
      const box = face.box;
      const best = face.matches && face.matches[0];
      const label = best ? `${best.name} ${(best.confidence * 100).toFixed(0)}%` : "unknown";
      g.strokeStyle = best ? "#6fd08c" : "#ffd479";
      g.strokeRect(box.x, box.y, box.width, box.height);
      const width = g.measureText(label).width + 8;
      const height = line * 9;
      g.fillStyle = "rgba(0, 0, 0, 0.75)";
      g.fillRect(box.x, Math.max(0, box.y - height), width, height);
      g.fillStyle = "#ffffff";
      g.fillText(label, box.x + 4, Math.max(height, box.y) - 2);
    }
    canvas.dataset.faces = String(faces.length);
    const names = faces.map((f) => (f.matches && f.matches[0] ? f.matches[0].name : "unknown"));
    canvas.setAttribute("aria-label", `The image with ${faces.length} face(s): ${names.join(", ") || "none"}`);
    document.getElementById("faces-caption").textContent =
      `${faces.length} face(s): ${names.join(", ") || "none found"}`;
    document.getElementById("figure").hidden = false;
  }

  function showTags(answer) {
    const target = document.getElementById("tags");
    const categories = Object.entries(answer.categories).filter(([, tags]) => tags.length);
    if (!categories.length) {
      target.replaceChildren(el("p", { class: "muted" }, "No tag above its threshold."));
      return;
    }
    target.replaceChildren(...categories.map(([category, tags]) => el("section", {},
      el("h4", {}, category),
      el("ul", { class: "plain" }, tags.map((t) => el("li", {}, `${t.tag} `,
        el("span", { class: "muted" }, `${(t.confidence * 100).toFixed(0)}%`)))))));
  }

  async function tryImage(file) {
    SV.notice(`Looking at ${file.name}…`);
    const url = await readFile(file);
    const encoded = url.slice(url.indexOf(",") + 1);
    const [image, faces, tags] = await Promise.allSettled([
      loadImage(url),
      SV.api("POST", "/identify", { image_base64: encoded }),
      SV.api("POST", "/ui/api/tag-image", { image_base64: encoded }),
    ]);
    const problems = [];
    if (image.status === "fulfilled") {
      draw(image.value, faces.status === "fulfilled" ? faces.value.faces : []);
    } else problems.push(image.reason.message);
    if (faces.status === "rejected") problems.push(`faces: ${faces.reason.message}`);
    if (tags.status === "fulfilled") showTags(tags.value);
    else problems.push(`tags: ${tags.reason.message}`);
    SV.notice(problems.length ? problems.join("; ") : `${file.name}: done.`, problems.length > 0);
  }

  function bar(label, spans, duration, kind) {
    return el("div", { class: "timeline-row" },
      el("span", {}, label),
      el("div", { class: "bar", role: "img", "aria-label": `${label}: ` +
        spans.map((s) => `${SV.clock(s.start)}–${SV.clock(s.end)}`).join(", ") },
        spans.map((s) => el("span", {
          class: `span ${kind}`,
          title: `${SV.clock(s.start)}–${SV.clock(s.end)}`,
          style: `left:${(100 * s.start) / duration}%;width:${(100 * (s.end - s.start)) / duration}%`,
        }))));
  }

  async function tryVideo(form) {
    const path = form.path.value.trim();
    const interval = Number(form.frame_interval.value) || 2;
    const target = document.getElementById("timeline");
    target.replaceChildren(el("p", { class: "muted" }, "Tagging and identifying… (a long video takes a while)"));
    const [tagged, people] = await Promise.allSettled([
      SV.api("POST", "/process_video/", { path, frame_interval: interval, return_confidence: true }),
      SV.api("POST", "/identify/scene", { video_path: path }),
    ]);
    const rows = [];
    const problems = [];
    let duration = 0;
    let spans = {};
    if (tagged.status === "fulfilled") {
      const info = tagged.value.result.video_tag_info;
      spans = info.tag_timespans || {};
      duration = (info.video_metadata && info.video_metadata.duration) || 0;
    } else problems.push(`tags: ${tagged.reason.message}`);
    const persons = people.status === "fulfilled" ? people.value.persons : [];
    if (people.status === "fulfilled") duration = duration || people.value.duration || 0;
    else problems.push(`people: ${people.reason.message}`);
    for (const byTag of Object.values(spans)) {
      for (const list of Object.values(byTag)) for (const s of list) duration = Math.max(duration, s.end || s.start);
    }
    duration = duration || 1;
    rows.push(el("p", {}, `Duration ${SV.clock(duration)}`));
    for (const [category, byTag] of Object.entries(spans)) {
      rows.push(el("h3", {}, category));
      for (const [tag, list] of Object.entries(byTag)) {
        rows.push(bar(tag, list.map((s) => ({ start: s.start, end: s.end === undefined || s.end === null ? s.start + interval : s.end })), duration, "tag"));
      }
    }
    rows.push(el("h3", {}, "People"));
    if (!persons.length) rows.push(el("p", { class: "muted" }, "No one identified."));
    for (const person of persons) {
      const name = person.best_match ? person.best_match.name : `unknown person ${person.person_id}`;
      rows.push(bar(name, person.time_ranges, duration, "person"));
    }
    for (const p of problems) rows.push(el("p", { class: "bad" }, p));
    target.replaceChildren(...rows);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const input = document.getElementById("image-file");
    const drop = document.getElementById("drop");
    input.addEventListener("change", () => input.files[0] && tryImage(input.files[0]));
    drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      if (event.dataTransfer.files[0]) tryImage(event.dataTransfer.files[0]);
    });
    document.getElementById("video-form").addEventListener("submit", (event) => {
      event.preventDefault();
      tryVideo(event.target);
    });
  });
})();
