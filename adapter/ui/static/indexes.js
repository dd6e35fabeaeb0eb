// Index versions: activate, roll back and delete (each confirmed first) and diff, through the
// /faces/index/versions routes; the page is reloaded after a change to show the new state.
"use strict";

(() => {
  const el = SV.el;

  function diffTable(diff) {
    const rows = Object.entries(diff.sources).map(([name, s]) =>
      el("tr", {}, el("th", { scope: "row" }, name), el("td", {}, s.performers_added),
        el("td", {}, s.performers_removed), el("td", {}, s.faces_added), el("td", {}, s.faces_removed)));
    return [
      el("p", {}, `From ${diff.base} to ${diff.other}: ${diff.performers_added} performers added, ` +
        `${diff.performers_removed} removed; ${diff.faces_added} faces added, ${diff.faces_removed} removed.`),
      el("table", {},
        el("thead", {}, el("tr", {}, ["Source", "Performers +", "Performers −", "Faces +", "Faces −"]
          .map((label) => el("th", { scope: "col" }, label)))),
        el("tbody", {}, rows)),
    ];
  }

  async function change(text, okLabel, method, url, done) {
    if (!(await SV.confirmAction(text, okLabel))) return;
    try {
      await SV.api(method, url);
      SV.notice(done);
      window.location.reload();
    } catch (error) {
      SV.notice(`Not done: ${error.message}`, true);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (!button) return;
      const version = button.closest("tr[data-version]").dataset.version;
      const path = `/faces/index/versions/${encodeURIComponent(version)}`;
      if (button.dataset.action === "activate") {
        change(`Serve face look-ups from version ${version}?`, "Activate", "POST", `${path}/activate`,
          `Version ${version} is active.`);
      } else if (button.dataset.action === "delete") {
        change(`Delete version ${version} for good? Its files are removed.`, "Delete", "DELETE", path,
          `Version ${version} was deleted.`);
      }
    });
    const rollback = document.getElementById("rollback");
    if (rollback) {
      rollback.addEventListener("click", () => change("Go back to the previous version?", "Roll back",
        "POST", "/faces/index/rollback", "Rolled back."));
    }
    const form = document.getElementById("diff-form");
    if (form) {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const base = encodeURIComponent(form.base.value), other = encodeURIComponent(form.other.value);
        const target = document.getElementById("diff-result");
        try {
          target.replaceChildren(...diffTable(await SV.api("GET", `/faces/index/versions/${base}/diff/${other}`)));
        } catch (error) {
          target.replaceChildren(el("p", { class: "bad" }, error.message));
        }
      });
    }
  });
})();
