// Search page: live curves over the WebSocket (PEFS.followSearch: reconnect with backoff, then
// backfill from the metrics API after each trial's cursor), live table cells and status, and the
// finished-trial charts.
(function () {
  "use strict";

  const PEFS = window.PEFS;
  const config = JSON.parse(document.getElementById("search-config").textContent);
  const MAX_TRIALS = 12;       // curves shown at once: the most recently active trials
  const MAX_POINTS = 2000;     // per trial from the API (it downsamples long series)
  const statusEl = document.getElementById("live-status");
  const lossEl = document.getElementById("chart-loss");
  const metricEl = document.getElementById("chart-metric");

  // trial id -> {attempt, cursor, active (ms), status, series: {name: Map(step -> value)}}
  const trials = new Map();
  let redrawTimer = null;
  let chartsTimer = null;

  function track(id) {
    if (!trials.has(id)) trials.set(id, { attempt: 0, cursor: 0, active: Date.now(), status: "", series: {} });
    const t = trials.get(id);
    t.active = Date.now();
    if (trials.size > MAX_TRIALS) {  // forget the trial that has been quiet longest
      let oldest = null;
      trials.forEach(function (v, k) { if (oldest === null || v.active < trials.get(oldest).active) oldest = k; });
      trials.delete(oldest);
    }
    return t;
  }

  function addPoint(trialId, attempt, name, step, value) {
    const t = trials.get(trialId);
    if (!t) return;
    if (attempt > t.attempt) { t.attempt = attempt; t.series = {}; }  // a retry starts fresh curves
    if (attempt < t.attempt) return;
    (t.series[name] = t.series[name] || new Map()).set(step, value);
  }

  function isLoss(name) { return /:loss$/.test(name); }
  function isMetric(name) { return /:score$/.test(name); }

  function seriesFor(test) {
    const out = [];
    let total = 0;
    trials.forEach(function (t, id) {
      Object.keys(t.series).sort().forEach(function (name) {
        if (!test(name)) return;
        const steps = Array.from(t.series[name].keys()).sort(function (a, b) { return a - b; });
        total += steps.length;
        // Successive halving: the rung the trial is at (r2) or was halted after; the curve goes on.
        out.push({ label: "trial " + id + " · " + name.split(":")[0] + (t.rung ? " · " + t.rung : ""), steps: steps,
                   values: steps.map(function (s) { return t.series[name].get(s); }),
                   dash: t.status && t.status !== "running" ? "dot" : "solid" });
      });
    });
    return { series: out, total: total };
  }

  function redraw() {
    redrawTimer = null;
    const loss = seriesFor(isLoss);
    const metric = seriesFor(isMetric);
    PEFS.charts.curves(lossEl, loss.series, { title: "training loss", ytitle: "loss",
      empty: "No trial is training right now. Curves appear when a trial starts." });
    PEFS.charts.curves(metricEl, metric.series, { title: "evaluation score (0-100)", ytitle: "score",
      empty: "Evaluation scores appear after each trial's first evaluation." });
    lossEl.dataset.points = loss.total;       // read by the browser tests
    metricEl.dataset.points = metric.total;
  }

  function scheduleRedraw() { if (!redrawTimer) redrawTimer = setTimeout(redraw, 400); }

  // Points of one trial after its cursor, page by page until the API says there is no more.
  async function backfill(id) {
    const t = trials.get(id);
    if (!t) return;
    for (let page = 0; page < 20; page++) {
      const data = await PEFS.getJSON(config.metrics + "?trial=" + id + "&after=" + t.cursor + "&max_points=" + MAX_POINTS);
      data.series.forEach(function (s) {
        s.steps.forEach(function (step, i) { addPoint(s.trial, s.attempt, s.name, step, s.values[i]); });
      });
      t.cursor = data.next;
      if (!data.more) break;
    }
    scheduleRedraw();
  }

  async function discoverRunning() {
    try {
      const data = await PEFS.getJSON(config.trials + "?status=running&ordering=started_at");
      (data.results || []).forEach(function (row) { track(row.id); });
    } catch (error) { /* the table still shows the truth; curves catch up on the next event */ }
  }

  async function backfillAll() {
    await Promise.all(Array.from(trials.keys()).map(function (id) {
      return backfill(id).catch(function () { /* retried on the next reconnect */ });
    }));
    scheduleRedraw();
  }

  function refreshPage(what) {
    if (window.htmx) htmx.trigger(document.body, "pefs:" + what);
  }

  function updateRow(trial) {
    const row = document.querySelector('tr[data-trial="' + trial.id + '"]');
    if (!row) return;
    const set = function (key, html) { const cell = row.querySelector('[data-col="' + key + '"]'); if (cell) cell.innerHTML = html; };
    set("status", '<span class="badge s-' + trial.status + '">' + trial.status + "</span>");
    // The row's actions follow its status (CSS on data-status): a finished trial loses Cancel.
    row.dataset.status = trial.status;
    const cancel = row.querySelector(".row-cancel");
    if (cancel && trial.cancel_requested !== undefined) {
      cancel.disabled = Boolean(trial.cancel_requested);
      cancel.textContent = trial.cancel_requested ? "Stopping…" : "Cancel";
    }
    if (trial.rung_label !== undefined) { const rung = row.querySelector('[data-col="rung"]'); if (rung) rung.textContent = trial.rung_label; }
    if (trial.score !== null && trial.score !== undefined) set("score", Number(trial.score).toFixed(2));
    if (trial.trainable_params) set("params", PEFS.formatParams(trial.trainable_params, trial.optimised_params));
    if (trial.duration_s !== null && trial.duration_s !== undefined) set("duration", PEFS.formatDuration(trial.duration_s));
  }

  function onEvent(event) {
    switch (event.type) {
      case "trial.metric": {
        track(event.trial);
        event.points.forEach(function (p) { addPoint(event.trial, event.attempt, p[1], p[0], p[2]); });
        scheduleRedraw();
        break;
      }
      case "trial.status": {
        const trial = event.trial;
        if (trial.status === "running" && !trials.has(trial.id)) { track(trial.id); backfill(trial.id).catch(function () {}); }
        if (trials.has(trial.id)) {
          const t = trials.get(trial.id);
          t.status = trial.status;
          if (trial.rung_label) t.rung = (trial.halted ? "halted after r" : "r") + (trial.rung + 1);
          scheduleRedraw();
        }
        updateRow(trial);
        if (trial.status === "succeeded") scheduleCharts();
        break;
      }
      case "search.status": {
        const s = event.search;
        const done = document.getElementById("stat-done");
        // A cancelled search's count also holds the trials cancellation closed: the status refresh below says how many trained.
        if (done && s.status !== "cancelled") done.textContent = PEFS.formatNumber(s.trials_done);
        const total = document.getElementById("stat-total");
        if (total) total.textContent = PEFS.formatNumber(s.trials_total);
        const best = document.getElementById("stat-best");
        if (best && s.best_score !== null) best.textContent = Number(s.best_score).toFixed(2);
        refreshPage("status");
        break;
      }
      case "stage.status": {
        refreshPage("status");
        refreshPage("trials");
        scheduleCharts();
        break;
      }
    }
  }

  // After a reconnect, fill the gap: status, table, newly started trials and missed points.
  async function catchUp(reason) {
    if (reason !== "reconnect") return;  // the page was rendered and backfilled just before
    refreshPage("status");
    refreshPage("trials");
    await discoverRunning();
    await backfillAll();
  }

  // --- finished-trial charts, refreshed at most every 5 s ---
  async function loadCharts() {
    chartsTimer = null;
    const parEl = document.getElementById("chart-parcoords");
    const parEl2 = document.getElementById("chart-pareto");
    try {
      const data = await PEFS.getJSON(config.charts);
      PEFS.charts.parcoords(parEl, data);
      PEFS.charts.pareto(parEl2, data, config.trialUrl);
    } catch (error) {
      PEFS.charts.empty(parEl, "Could not load the chart data (" + error.message + "). Reload the page to try again.");
      PEFS.charts.empty(parEl2, "Could not load the chart data. Reload the page to try again.");
    }
  }
  function scheduleCharts() { if (!chartsTimer) chartsTimer = setTimeout(loadCharts, 5000); }

  document.addEventListener("DOMContentLoaded", function () {
    JSON.parse(document.getElementById("running-trials").textContent).forEach(function (id) { track(id); });
    redraw();
    backfillAll();
    loadCharts();
    const follower = PEFS.followSearch({ ws: config.ws, wsPort: config.wsPort, statusEl: statusEl, onEvent: onEvent, catchUp: catchUp });
    // Read by the browser tests: event and backfill counters, the tracked trials, a dropped connection.
    PEFS.live = Object.assign(follower.counters, { trials: trials, dropConnection: follower.dropConnection });
  });
})();
