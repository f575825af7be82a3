// Trial page: the trial's loss and metric curves. Points come from the metrics API after a cursor,
// then, while the trial is queued or running, from the search's WebSocket (trial.metric, and
// trial.status for a change of state, which reloads the page so scores, design and actions show
// it). A reconnect and a slow safety poll read the API again in case an event was missed.
(function () {
  "use strict";

  const PEFS = window.PEFS;
  const SAFETY_POLL_MS = 30000;
  const config = JSON.parse(document.getElementById("trial-config").textContent);
  const statusEl = document.getElementById("trial-live");
  const series = {};  // name -> Map(step -> value), latest attempt only
  let attempt = config.attempt;  // points of an earlier attempt (a retried trial) are not drawn
  let cursor = 0;
  let drawTimer = null;
  let loaded = null;      // the first backfill: later ones start from its cursor
  let reloading = false;

  function draw() {
    drawTimer = null;
    const pick = function (test) {
      return Object.keys(series).sort().filter(test).map(function (name) {
        const steps = Array.from(series[name].keys()).sort(function (a, b) { return a - b; });
        return { label: name, steps: steps, values: steps.map(function (s) { return series[name].get(s); }) };
      });
    };
    // The training loss per step beside the evaluation set's loss per evaluation (eval_loss).
    const loss = pick(function (n) { return /:(eval_)?loss$/.test(n); });
    const metrics = pick(function (n) { return !/:(loss|eval_loss|lr|examples_per_s)$/.test(n); });
    const lossEl = document.getElementById("chart-loss");
    PEFS.charts.curves(lossEl, loss, { title: "training loss (and evaluation loss)", ytitle: "loss", empty: "No loss recorded yet." });
    PEFS.charts.curves(document.getElementById("chart-metric"), metrics,
      { title: "evaluation metrics", ytitle: "value", empty: "No evaluation yet: metrics appear after the first evaluation." });
    lossEl.dataset.points = loss.reduce(function (total, s) { return total + s.steps.length; }, 0);  // browser tests
  }

  function scheduleDraw() { if (!drawTimer) drawTimer = setTimeout(draw, 300); }

  function addPoint(pointAttempt, name, step, value) {
    if (pointAttempt > attempt) { attempt = pointAttempt; Object.keys(series).forEach(function (k) { delete series[k]; }); }
    if (pointAttempt < attempt) return;
    (series[name] = series[name] || new Map()).set(step, value);
  }

  // Every point after the cursor, page by page until the API says there is no more.
  async function backfill() {
    for (let page = 0; page < 20; page++) {
      const data = await PEFS.getJSON(config.metrics + "?trial=" + config.trial + "&after=" + cursor + "&max_points=4000");
      data.series.forEach(function (s) {
        s.steps.forEach(function (step, i) { addPoint(s.attempt, s.name, step, s.values[i]); });
      });
      cursor = data.next;
      if (!data.more) break;
    }
    scheduleDraw();
  }

  function isLive(status) { return status === "queued" || status === "running"; }

  function statusChanged(status) {
    if (status === config.status) return false;
    if (reloading) return true;
    reloading = true;
    backfill().catch(function () {}).then(function () { window.location.reload(); });
    return true;
  }

  function onEvent(event) {
    if (event.type === "trial.metric" && event.trial === config.trial) {
      event.points.forEach(function (p) { addPoint(event.attempt, p[1], p[0], p[2]); });
      scheduleDraw();
    } else if (event.type === "trial.status" && event.trial.id === config.trial) {
      statusChanged(event.trial.status);
    }
  }

  async function catchUp() {
    await loaded;
    const trial = await PEFS.getJSON(config.detail);
    if (!statusChanged(trial.status)) await backfill();
  }

  document.addEventListener("DOMContentLoaded", function () {
    loaded = backfill().catch(function (error) {
      statusEl.textContent = "could not load the curves (" + error.message + "); reload to try again";
      statusEl.className = "live-status reconnecting";
    });
    if (!isLive(config.status)) {
      statusEl.textContent = "final";
      statusEl.className = "live-status";
      return;
    }
    const follower = PEFS.followSearch({ ws: config.ws, wsPort: config.wsPort, statusEl: statusEl, onEvent: onEvent, catchUp: catchUp,
                                         safetyMs: SAFETY_POLL_MS });
    PEFS.live = Object.assign(follower.counters, { dropConnection: follower.dropConnection });
  });
})();
