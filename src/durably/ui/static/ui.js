// durably web UI: the little the pages need beyond HTML. Every page works without it;
// this adds the theme toggle, confirmation dialogs, live updates, bulk progress and a few
// conveniences. No dependencies, no build.
"use strict";

(function theme() {
  const root = document.documentElement;
  const saved = localStorage.getItem("durably-theme");
  if (saved === "light" || saved === "dark") root.dataset.theme = saved;
  document.addEventListener("DOMContentLoaded", () => {
    const button = document.getElementById("theme-toggle");
    if (!button) return;
    const current = () => root.dataset.theme ||
      (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
    const label = () => { button.textContent = current() === "dark" ? "Light theme" : "Dark theme"; };
    button.hidden = false;
    label();
    button.addEventListener("click", () => {
      root.dataset.theme = current() === "dark" ? "light" : "dark";
      localStorage.setItem("durably-theme", root.dataset.theme);
      label();
    });
  });
})();

// Forms that change something ask first; the answer travels as confirm=yes (without this
// script the server shows its own confirmation page instead).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
  if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); return; }
  if (!form.querySelector('input[name="confirm"]')) {
    const input = document.createElement("input");
    input.type = "hidden"; input.name = "confirm"; input.value = "yes";
    form.appendChild(input);
  }
});

// Replace a region with the same region of a fresh copy of the page, keeping open <details>.
async function refreshRegion(selector) {
  const response = await fetch(location.href, { headers: { "x-durably-live": "1" } });
  if (!response.ok) return null;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  const next = fresh.querySelector(selector);
  const region = document.querySelector(selector);
  if (!next || !region) return null;
  const open = [...region.querySelectorAll("details")].map((d) => d.open);
  // relative times worded for the same instant on both sides, so that only real changes count
  const now = Date.now();
  refreshTimes(region, now); refreshTimes(next, now);
  if (region.innerHTML !== next.innerHTML) {
    region.innerHTML = next.innerHTML;
    region.querySelectorAll("details").forEach((d, i) => { if (open[i]) d.open = true; });
  }
  return next;
}

function every(ms, tick) {
  let timer = null;
  const run = async () => {
    timer = null;
    if (!document.hidden) {
      try { if ((await tick()) === false) return; } catch (e) { /* next tick retries */ }
    }
    timer = setTimeout(run, ms);
  };
  timer = setTimeout(run, ms);
  return () => { if (timer) clearTimeout(timer); };
}

// Relative times ("3 min ago", "in 2 s"): the server writes them; this keeps them fresh,
// worded as present.relative words them. The absolute time stays in datetime and the tooltip.
function relative(atMs, nowMs) {
  const delta = (atMs - nowMs) / 1000;
  const seconds = Math.abs(delta);
  if (seconds < 1) return "just now";
  for (const [size, unit] of [[86400, "d"], [3600, "h"], [60, "min"], [1, "s"]]) {
    if (seconds >= size) {
      const n = Math.floor(seconds / size);
      return delta > 0 ? "in " + n + " " + unit : n + " " + unit + " ago";
    }
  }
  return "just now";
}

function refreshTimes(root = document, now = Date.now()) {
  root.querySelectorAll("time[data-rel]").forEach((el) => {
    const at = Date.parse(el.getAttribute("datetime"));
    if (!Number.isNaN(at)) {
      const text = relative(at, now);
      if (el.textContent !== text) el.textContent = text;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  refreshTimes();
  every(1000, () => { refreshTimes(); return true; });  // a text update, no request

  const interval = Number(document.body.dataset.liveInterval) || 2000;

  // The detail page follows a running invocation until it completes.
  const region = document.getElementById("live-region");
  if (region && region.dataset.live === "on") {
    every(interval, async () => {
      const next = await refreshRegion("#live-region");
      if (next && next.dataset.live !== "on") { region.dataset.live = "off"; return false; }
      return true;
    });
  }

  // The list refreshes its count and rows while "Live" is ticked (remembered).
  const live = document.querySelector("[data-live-toggle]");
  if (live) {
    let stop = null;
    const apply = () => {
      localStorage.setItem("durably-list-live", live.checked ? "1" : "0");
      if (stop) { stop(); stop = null; }
      if (live.checked) {
        stop = every(interval * 2, async () => {
          await refreshRegion("#rows");
          await refreshRegion("#count");
          return true;
        });
      }
    };
    live.checked = localStorage.getItem("durably-list-live") === "1";
    live.addEventListener("change", apply);
    apply();
  }

  const selectAll = document.getElementById("select-all");
  if (selectAll) {
    selectAll.addEventListener("change", () => {
      document.querySelectorAll('#rows tbody input[name="id"]').forEach((box) => {
        box.checked = selectAll.checked;
      });
    });
  }

  // A bulk run: POST chunk after chunk, drawing the progress, until the server says done.
  const bulk = document.querySelector("form[data-bulk]");
  if (bulk) {
    bulk.addEventListener("submit", async (event) => {
      event.preventDefault();
      const box = document.getElementById("bulk-progress");
      const bar = box.querySelector("progress");
      const status = box.querySelector("p");
      box.hidden = false;
      bulk.querySelector("button").disabled = true;
      const data = new FormData(bulk);
      let done = 0; let failed = 0;
      for (;;) {
        data.set("done", String(done)); data.set("failed", String(failed));
        // (bulk.action would be the input named "action")
        const response = await fetch(new URL(bulk.getAttribute("action"), location.href), {
          method: "POST", body: new URLSearchParams(data), headers: { accept: "application/json" },
        });
        if (!response.ok) { status.textContent = "Stopped: the server answered " + response.status; return; }
        const step = await response.json();
        done = step.done; failed = step.failed;
        bar.max = Math.max(step.expected, 1); bar.value = done + failed;
        status.textContent = (step.finished ? "Done: " : "In progress: ") + done + " of " +
          step.expected + " done" + (failed ? ", " + failed + " refused" : "") + ".";
        if (step.finished) return;
      }
    });
  }

  const journalFilter = document.querySelector("[data-filter-journal]");
  if (journalFilter) {
    journalFilter.addEventListener("change", () => {
      document.querySelector(".timeline").classList.toggle("only-notable", journalFilter.checked);
    });
  }

  const entryFilter = document.querySelector("[data-filter-entries]");
  if (entryFilter) {
    entryFilter.addEventListener("input", () => {
      const needle = entryFilter.value.toLowerCase();
      document.querySelectorAll("tr[data-entry]").forEach((row) => {
        row.hidden = needle !== "" && !row.dataset.entry.toLowerCase().includes(needle);
      });
    });
  }

  // The playground's schema forms: the raw JSON follows the fields as they are typed, and
  // a raw body is checked to be JSON before it is sent (the server checks both again).
  document.querySelectorAll("form[data-schema-form]").forEach((form) => {
    const raw = form.querySelector("[data-json-body]");
    const inputs = [...form.querySelectorAll("[data-kind]")];
    const value = (input) => {
      const text = input.value;
      if (input.dataset.kind === "integer" || input.dataset.kind === "number") return Number(text);
      if (input.dataset.kind === "boolean") return text === "true";
      return text;
    };
    const fromFields = () => {
      if (!raw) return;
      if (inputs.length === 1 && inputs[0].name === "f:") {
        raw.value = JSON.stringify(inputs[0].value === "" && inputs[0].dataset.kind !== "string"
          ? null : value(inputs[0]), null, 2);
        return;
      }
      const body = {};
      inputs.forEach((input) => {
        if (input.value !== "") {
          body[input.name.slice(2)] = value(input);
        }
      });
      raw.value = JSON.stringify(body, null, 2);
    };
    inputs.forEach((input) => input.addEventListener("input", fromFields));
    if (raw) {
      raw.addEventListener("input", () => raw.setCustomValidity(""));
      form.addEventListener("submit", (event) => {
        const mode = event.submitter && event.submitter.value;
        if (!mode || !mode.endsWith("-json") || raw.value.trim() === "") return;
        try { JSON.parse(raw.value); } catch (e) {
          event.preventDefault();
          raw.setCustomValidity("Not JSON: " + e.message);
          raw.reportValidity();
        }
      });
    }
  });

  const query = document.getElementById("query");
  if (query) {
    query.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) query.form.requestSubmit();
    });
  }
});
