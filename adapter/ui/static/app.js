// Shared by every page: JSON calls to the HTTP API (with the CSRF token when logged in), notices,
// a confirmation dialog, and times shown in the browser's own zone. No framework, no build step.
"use strict";

const SV = (() => {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  async function api(method, url, body) {
    const headers = { Accept: "application/json" };
    const token = csrf();
    if (token) headers["X-CSRF-Token"] = token;
    const init = { method, headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (!response.ok) {
      const detail = data && data.detail !== undefined
        ? (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail))
        : response.statusText;
      throw new Error(`${detail} (HTTP ${response.status})`);
    }
    return data;
  }

  function notice(text, bad) {
    const box = document.getElementById("notice");
    if (!box) return;
    box.textContent = text;
    box.classList.toggle("bad", Boolean(bad));
    box.hidden = !text;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "style") node.style.cssText = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "—";
    const s = Math.max(0, Math.round(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return h ? `${h} h ${m} min` : m ? `${m} min ${r} s` : `${r} s`;
  }

  function clock(seconds) {
    const s = Math.max(0, seconds);
    const m = Math.floor(s / 60), r = Math.round(s % 60);
    return `${m}:${String(r).padStart(2, "0")}`;
  }

  // Resolves true when the user confirms in the page's <dialog id="confirm">.
  function confirmAction(text, okLabel) {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-text").textContent = text;
    document.getElementById("confirm-ok").textContent = okLabel;
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.returnValue = "";
      dialog.showModal();
    });
  }

  function localTimes() {
    for (const node of document.querySelectorAll("time.when")) {
      const at = Number(node.getAttribute("datetime"));
      if (at) node.textContent = new Date(at * 1000).toLocaleString();
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    localTimes();
    const logout = document.getElementById("logout");
    if (logout) {
      logout.addEventListener("click", async () => {
        await fetch("/ui/logout", { method: "POST", headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin" });
        window.location.assign("/ui/login");
      });
    }
  });

  return { api, notice, el, duration, clock, confirmAction };
})();
