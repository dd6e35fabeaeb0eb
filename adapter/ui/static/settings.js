// "Test connections": one fresh probe of the configured Stash and each stash-box.
"use strict";

(() => {
  const el = SV.el;

  function line(label, status) {
    if (!status.configured) return el("li", {}, `${label}: not configured`);
    const ok = status.reachable && status.key_ok !== false;
    const text = ok
      ? `reachable, version ${status.version || "unknown"}, the key works`
      : status.error || "unreachable";
    return el("li", { class: ok ? "good" : "bad" }, `${label}: ${text}`);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const button = document.getElementById("test-connections");
    const target = document.getElementById("connections");
    button.addEventListener("click", async () => {
      button.disabled = true;
      target.replaceChildren(el("p", { class: "muted" }, "Asking…"));
      try {
        const answer = await SV.api("GET", "/ui/api/connections");
        const items = [line(`Stash ${answer.stash.url || ""}`.trim(), answer.stash)];
        for (const box of answer.stashboxes) items.push(line(`${box.name} (${box.endpoint})`, box));
        if (!answer.stashboxes.length) items.push(el("li", {}, "No stash-box endpoint is configured."));
        target.replaceChildren(el("ul", {}, items));
      } catch (error) {
        target.replaceChildren(el("p", { class: "bad" }, error.message));
      } finally {
        button.disabled = false;
      }
    });
  });
})();
