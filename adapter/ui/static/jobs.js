// Jobs list and job detail: live progress from each job's Server-Sent Events (/jobs/{id}/events),
// actions through POST /jobs/{id}/{cancel|pause|resume}, new jobs through POST /jobs.
"use strict";

(() => {
  const STOPPED = new Set(["succeeded", "failed", "cancelled", "paused", "interrupted"]);
  const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
  const watches = new Map();

  function rowsOf(id) {
    return document.querySelectorAll(`tr[data-job="${CSS.escape(id)}"]`);
  }

  function show(row, job) {
    const p = job.progress;
    row.dataset.state = job.state;
    const state = row.querySelector('[data-field="state"]');
    state.textContent = job.state;
    state.className = `state state-${job.state}`;
    const bar = row.querySelector("progress");
    bar.max = Math.max(p.total, 1);
    bar.value = p.done;
    const more = !p.listing_complete && !STOPPED.has(job.state) ? "+" : "";
    row.querySelector('[data-field="counts"]').textContent =
      `${p.done}/${p.total}${more} ${p.unit}` + (p.failed ? `, ${p.failed} failed` : "");
    row.querySelector('[data-field="rate"]').textContent = p.rate ? `${p.rate.toFixed(2)}/s` : "—";
    row.querySelector('[data-field="eta"]').textContent =
      job.state === "running" ? SV.duration(p.eta_seconds) : "—";
    row.querySelector('[data-action="pause"]').hidden = !["running", "queued"].includes(job.state);
    row.querySelector('[data-action="resume"]').hidden = !["paused", "interrupted"].includes(job.state);
    row.querySelector('[data-action="cancel"]').hidden = FINISHED.has(job.state);
  }

  // The detail page shows the message live; once a job it watched live stops, the page is loaded
  // again, once, for what only the server renders (summary, errors by kind, a build's diff).
  function showDetail(job, wasLive) {
    const message = document.querySelector('[data-field="message"]');
    if (!message) return;
    message.textContent = job.message || job.error || "";
    if (wasLive && STOPPED.has(job.state)) window.location.reload();
  }

  function update(job) {
    const wasLive = [...rowsOf(job.id)].some((row) => !STOPPED.has(row.dataset.state));
    for (const row of rowsOf(job.id)) show(row, job);
    showDetail(job, wasLive);
    const finishedBody = document.querySelector("#finished-jobs tbody");
    if (finishedBody && FINISHED.has(job.state)) {
      for (const row of rowsOf(job.id)) {
        if (row.closest("#active-jobs")) finishedBody.prepend(row);
      }
      const activeBody = document.querySelector("#active-jobs tbody");
      document.getElementById("no-active").hidden = activeBody.children.length > 0;
    }
  }

  function appendLog(event) {
    const log = document.getElementById("job-log");
    if (!log) return;
    const at = new Date(event.at * 1000).toLocaleTimeString();
    log.append(SV.el("li", { class: event.level }, `${at} ${event.level}: ${event.message}`));
    log.scrollTop = log.scrollHeight;
  }

  // One stream per job; it is closed once the job stops (the server ends it there too), so the
  // browser never reconnects to a stream that has nothing more to say.
  function watch(id) {
    if (watches.has(id)) return;
    const source = new EventSource(`/jobs/${encodeURIComponent(id)}/events`);
    watches.set(id, source);
    source.addEventListener("job", (message) => {
      const job = JSON.parse(message.data);
      update(job);
      if (STOPPED.has(job.state)) {
        source.close();
        watches.delete(id);
      }
    });
    source.addEventListener("log", (message) => appendLog(JSON.parse(message.data)));
    source.addEventListener("error", (message) => {
      if (message.data) SV.notice(`Live progress stopped: ${JSON.parse(message.data).detail}`, true);
    });
  }

  async function act(button) {
    const row = button.closest("tr[data-job]");
    const id = row.dataset.job;
    const action = button.dataset.action;
    button.disabled = true;
    try {
      const job = await SV.api("POST", `/jobs/${encodeURIComponent(id)}/${action}`);
      update(job);
      SV.notice(`${action}: job ${id.slice(0, 8)} is ${job.state}.`);
      if (!STOPPED.has(job.state)) watch(id);
    } catch (error) {
      SV.notice(`Could not ${action} the job: ${error.message}`, true);
    } finally {
      button.disabled = false;
    }
  }

  function params(form) {
    const kind = form.querySelector('input[name="kind"]:checked').value;
    if (kind === "build-face-index") {
      const sources = [];
      for (const box of form.querySelectorAll('input[name="source-stash"]:checked')) sources.push({ kind: "stash" });
      for (const box of form.querySelectorAll('input[name="source-stashbox"]:checked')) sources.push({ kind: "stash-box", name: box.value });
      const folder = form.querySelector("#source-folder").value.trim();
      if (folder) sources.push({ kind: "folder", path: folder });
      return { kind, params: { sources, activate: form.querySelector('input[name="activate"]').checked } };
    }
    const roots = [...form.querySelectorAll('input[name="root"]:checked')].map((box) => box.value);
    const extra = form.querySelector("#extra-root").value.trim();
    if (extra) roots.push(extra);
    return { kind, params: { roots } };
  }

  function addRow(job) {
    const template = document.getElementById("job-row");
    // The id goes into attributes of the row's HTML: escaped, though the server only makes UUIDs.
    const id = String(job.id).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
    const html = template.innerHTML.replaceAll("________", id);
    const body = document.querySelector("#active-jobs tbody");
    body.insertAdjacentHTML("afterbegin", html);
    const row = body.firstElementChild;
    const link = row.querySelector("th a");
    link.textContent = job.kind;
    row.querySelector("th .mono").textContent = job.id.slice(0, 8);
    row.querySelector("progress").setAttribute("aria-label", `Progress of ${job.kind} ${job.id.slice(0, 8)}`);
    document.getElementById("no-active").hidden = true;
    show(row, job);
  }

  function showKindFields(form) {
    const kind = form.querySelector('input[name="kind"]:checked').value;
    for (const block of form.querySelectorAll("[data-for]")) {
      block.hidden = !block.dataset.for.split(" ").includes(kind);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (button && button.closest("tr[data-job]")) act(button);
    });
    const form = document.getElementById("start-job");
    if (form) {
      showKindFields(form);
      form.addEventListener("change", () => showKindFields(form));
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        try {
          const job = await SV.api("POST", "/jobs", params(form));
          addRow(job);
          SV.notice(`Started ${job.kind} job ${job.id.slice(0, 8)}.`);
          watch(job.id);
        } catch (error) {
          SV.notice(`The job was not started: ${error.message}`, true);
        }
      });
    }
    for (const row of document.querySelectorAll("tr[data-job]")) {
      if (row.dataset.detail || !STOPPED.has(row.dataset.state)) watch(row.dataset.job);
    }
  });
})();
