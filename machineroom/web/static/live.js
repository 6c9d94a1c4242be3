// Live progress, and nothing else: follow a starting action until its run exists, and a
// running run's task results as they are recorded. Plain DOM, no library; the cookie
// authenticates the same-origin GETs.
"use strict";

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function badge(word) {
  return el("span", { class: "badge s-" + word }, word);
}

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (response.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); }
  if (!response.ok) throw new Error(url + ": " + response.status);
  return response.json();
}

function resultRow(r) {
  const row = el("tr", { class: "result new", "data-id": String(r.id) });
  row.append(el("td"), el("td", {}, r.task), el("td", { class: "wide small" }, r.duration.toFixed(2) + " s"), el("td", {}, r.message));
  row.firstChild.append(badge(r.status));
  if (r.diff) {
    const details = el("details");
    details.append(el("summary", {}, "diff"), el("pre", { class: "diff" }, r.diff));
    row.lastChild.append(details);
  }
  return row;
}

function hostSection(hostId) {
  const box = document.getElementById("hosts");
  for (const section of box.querySelectorAll("section.run-host")) {
    if (section.dataset.host === hostId) return section.querySelector("tbody");
  }
  const none = document.getElementById("no-results");
  if (none) none.remove();
  const section = el("section", { class: "run-host", "data-host": hostId });
  const h2 = el("h2");
  h2.append(el("a", { href: "/hosts/" + encodeURIComponent(hostId) }, hostId));
  const table = el("table", { class: "results" });
  table.innerHTML = "<thead><tr><th>status</th><th>task</th><th class=\"wide\">time</th><th>message</th></tr></thead><tbody></tbody>";
  const scroll = el("div", { class: "scroll" });
  scroll.append(table);
  section.append(h2, scroll);
  box.append(section);
  return table.querySelector("tbody");
}

function showCounts(counts) {
  const box = document.getElementById("run-counts");
  box.textContent = "";
  // as the CLI recap counts them: ok includes changed and the failures ignored
  const ignored = Math.min(counts.ignored || 0, counts.failed || 0);
  const shown = Object.assign({}, counts, {
    ok: (counts.ok || 0) + (counts.changed || 0) + ignored,
    failed: (counts.failed || 0) - ignored,
  });
  for (const word of ["ok", "changed", "failed", "unreachable", "skipped"]) {
    if (shown[word]) { box.append(el("span", { class: "badge s-" + word, "data-count": word }, word + " " + shown[word]), " "); }
  }
}

async function followRun(box) {
  let last = Number(box.dataset.last || 0);
  const id = box.dataset.run;
  while (true) {
    try {
      const progress = await getJSON("/api/runs/" + id + "/results?after=" + last);
      for (const r of progress.results) {
        hostSection(r.host_id).append(resultRow(r));
        last = Math.max(last, r.id);
      }
      showCounts(progress.run.counts);
      const status = document.getElementById("run-status");
      status.replaceChildren(badge(progress.run.status));
      if (progress.run.status !== "running") {
        if (box.dataset.reload === "1") { location.reload(); return; }  // the finished run's matrix
        document.getElementById("run-finished").textContent = (progress.run.finished_at || "").slice(0, 19).replace("T", " ");
        box.dataset.live = "0";
        return;
      }
    } catch (error) {
      console.warn(error);
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function followAction(box) {
  const id = box.dataset.action;
  // A run whose every host refuses its key ends as its first results come in: once there
  // are results, look once more before moving on to the run's page, so that refused keys
  // are shown here. A longer run is followed on its own page.
  let looks = 0;
  while (true) {
    try {
      const action = await getJSON("/api/actions/" + id);
      document.getElementById("action-output").textContent = action.output_tail;
      // host keys refused: stay here, where they are shown (and an admin may trust them)
      if (action.host_keys && action.host_keys.length) { location.reload(); return; }
      const ended = action.run_status && action.run_status !== "running";
      if (action.run_id && (ended || (action.run_results > 0 && ++looks > 1))) {
        location.replace("/runs/" + action.run_id);
        return;
      }
      if (!action.running && !action.run_id) {
        document.getElementById("action-state").textContent = "Ended with exit code " + action.exit_code + " before recording a run.";
        return;
      }
    } catch (error) {
      console.warn(error);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const run = document.getElementById("run");
  if (run && run.dataset.live === "1") followRun(run);
  const action = document.getElementById("action");
  if (action && !action.dataset.run) followAction(action);
  if (action && action.dataset.run && action.dataset.stay !== "1") location.replace("/runs/" + action.dataset.run);
});
