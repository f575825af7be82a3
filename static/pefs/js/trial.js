// Trial page: the trial's loss and score curves from the metrics API; while it runs, new points
// are fetched after the last cursor every few seconds.
(function () {
  "use strict";

  const PEFS = window.PEFS;
  const config = JSON.parse(document.getElementById("trial-config").textContent);
  const statusEl = document.getElementById("trial-live");
  const series = {};  // name -> Map(step -> value), latest attempt only
  let attempt = 0;
  let cursor = 0;

  function draw() {
    const pick = function (test) {
      return Object.keys(series).sort().filter(test).map(function (name) {
        const steps = Array.from(series[name].keys()).sort(function (a, b) { return a - b; });
        return { label: name, steps: steps, values: steps.map(function (s) { return series[name].get(s); }) };
      });
    };
    PEFS.charts.curves(document.getElementById("chart-loss"), pick(function (n) { return /:loss$/.test(n); }),
      { title: "training loss", ytitle: "loss", empty: "No loss recorded yet." });
    PEFS.charts.curves(document.getElementById("chart-metric"),
      pick(function (n) { return !/:(loss|lr|examples_per_s)$/.test(n); }),
      { title: "evaluation metrics", ytitle: "value", empty: "No evaluation yet: metrics appear after the first evaluation." });
  }

  async function fetchMore() {
    for (let page = 0; page < 20; page++) {
      const response = await fetch(config.metrics + "?trial=" + config.trial + "&after=" + cursor + "&max_points=4000",
                                   { credentials: "same-origin" });
      if (!response.ok) throw new Error("metrics answered " + response.status);
      const data = await response.json();
      data.series.forEach(function (s) {
        if (s.attempt > attempt) { attempt = s.attempt; Object.keys(series).forEach(function (k) { delete series[k]; }); }
        if (s.attempt < attempt) return;
        const map = (series[s.name] = series[s.name] || new Map());
        s.steps.forEach(function (step, i) { map.set(step, s.values[i]); });
      });
      cursor = data.next;
      if (!data.more) break;
    }
  }

  async function trialStatus() {
    const response = await fetch(config.detail, { credentials: "same-origin" });
    if (!response.ok) throw new Error("trial answered " + response.status);
    return (await response.json()).status;
  }

  // While the trial is queued or running: new points every 3 s; once it is final, a last fetch
  // and a reload so scores, design and actions show the final state.
  async function tick() {
    try {
      const status = config.status === "queued" || config.status === "running" ? await trialStatus() : config.status;
      await fetchMore();
      draw();
      if (status !== config.status) { window.location.reload(); return; }
      const live = status === "running" || status === "queued";
      statusEl.textContent = live ? "updating every 3 s" : "final";
      statusEl.className = "live-status " + (live ? "connected" : "");
      if (live) setTimeout(tick, 3000);
    } catch (error) {
      statusEl.textContent = "could not load the curves (" + error.message + "); retrying…";
      statusEl.className = "live-status reconnecting";
      setTimeout(tick, 5000);
    }
  }

  document.addEventListener("DOMContentLoaded", tick);
})();
