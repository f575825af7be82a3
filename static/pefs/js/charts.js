// PEFS charts on plotly.js (served from the plotly PyPI package): curves, parallel coordinates,
// score vs parameters with the Pareto front, EDFs, grouped bars with error bars.
(function () {
  "use strict";

  const PEFS = (window.PEFS = window.PEFS || {});
  const COLORS = ["#3b5bdb", "#f08c00", "#2f9e44", "#ae3ec9", "#e03131", "#1098ad", "#5c940d", "#d6336c",
                  "#7048e8", "#0c8599", "#e8590c", "#495057"];
  // Final-stage arms: the selected design stands out; baselines wear their strategy's colour,
  // which the page embeds from the strategy registry (base.html: {% pefs_strategies %}).
  const STRATEGIES = (function () {
    const el = document.getElementById("pefs-strategies");
    return el ? JSON.parse(el.textContent) : {};
  })();
  const ARM_COLORS = { selected: "#1c2430", full: "#adb5bd" };
  Object.keys(STRATEGIES).forEach(function (name) { ARM_COLORS[name] = STRATEGIES[name].colour; });
  const CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

  function layout(extra) {
    return Object.assign({
      margin: { l: 56, r: 16, t: 28, b: 44 },
      font: { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12, color: "#1c2430" },
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#fff",
      xaxis: { gridcolor: "#eef0f3", zeroline: false },
      yaxis: { gridcolor: "#eef0f3", zeroline: false },
      legend: { orientation: "h", y: -0.2, font: { size: 11 } },
      hoverlabel: { namelength: -1 },
    }, extra || {});
  }

  function empty(el, message) {
    if (window.Plotly && el._fullLayout) Plotly.purge(el);
    el.innerHTML = '<div class="chart-empty"></div>';
    el.firstChild.textContent = message;
  }

  // Make room for a plot: drop an empty-state message, keep an existing plot for Plotly.react.
  function prepare(el) {
    if (!el._fullLayout) el.innerHTML = "";
  }

  // series: [{label, steps, values, color?, dash?}]
  function curves(el, series, opts) {
    if (!series.length) { empty(el, opts.empty || "No points yet."); return; }
    prepare(el);
    const traces = series.map(function (s, i) {
      return {
        type: "scattergl", mode: s.steps.length < 30 ? "lines+markers" : "lines", name: s.label, x: s.steps, y: s.values,
        marker: { size: 5 },
        line: { color: s.color || COLORS[i % COLORS.length], width: 1.8, dash: s.dash || "solid" },
        hovertemplate: "%{fullData.name}<br>step %{x}: %{y:.4g}<extra></extra>",
      };
    });
    Plotly.react(el, traces, layout({
      title: { text: opts.title, font: { size: 13 }, x: 0.01 },
      xaxis: { title: { text: "step" }, gridcolor: "#eef0f3" },
      yaxis: { title: { text: opts.ytitle || "" }, gridcolor: "#eef0f3", type: opts.ytype || "linear" },
      showlegend: series.length <= 12,
    }), CONFIG);
  }

  function paretoFront(params, scores) {
    const order = params.map(function (_, i) { return i; })
      .sort(function (a, b) { return params[a] - params[b] || scores[b] - scores[a]; });
    const front = [];
    let best = -Infinity;
    order.forEach(function (i) { if (scores[i] > best) { best = scores[i]; front.push(i); } });
    return front;
  }

  function parcoords(el, all) {
    // Only sampled designs have choices of every component; final-stage runs are left out.
    const keep = all.id.map(function (_, i) { return i; }).filter(function (i) { return all.kinds[all.kind[i]] === "sample"; });
    const pick = function (column) { return keep.map(function (i) { return column[i]; }); };
    const data = { id: pick(all.id), score: pick(all.score), components: all.components, labels: all.labels, codes: {} };
    all.components.forEach(function (name) { data.codes[name] = pick(all.codes[name]); });
    if (!data.id.length) { empty(el, "No finished trials yet: the chart fills in as trials succeed."); return; }
    prepare(el);
    const dims = [];
    data.components.forEach(function (name) {
      const codes = data.codes[name];
      const used = Array.from(new Set(codes.filter(function (c) { return c >= 0; }))).sort(function (a, b) { return a - b; });
      const hasNone = codes.some(function (c) { return c < 0; });
      if (used.length + (hasNone ? 1 : 0) < 2) return;  // a fixed component says nothing here
      const ticks = used.map(function (c) { return data.labels[name][c]; });
      const position = {};
      used.forEach(function (c, i) { position[c] = i; });
      dims.push({
        label: name.replace("assignment.", ""),
        values: codes.map(function (c) { return c < 0 ? -1 : position[c]; }),
        tickvals: (hasNone ? [-1] : []).concat(used.map(function (_, i) { return i; })),
        ticktext: (hasNone ? ["—"] : []).concat(ticks),
        range: [hasNone ? -1 : 0, Math.max(used.length - 1, 1)],
      });
    });
    dims.push({ label: "score", values: data.score });
    Plotly.react(el, [{
      type: "parcoords",
      line: { color: data.score, colorscale: "Viridis", showscale: false },
      dimensions: dims,
      labelangle: -20,
      labelfont: { size: 11 }, tickfont: { size: 10 },
    }], layout({ margin: { l: 64, r: 40, t: 60, b: 24 } }), CONFIG);
  }

  // A log axis labels every digit of a narrow range; with "~s" those labels (2k 3k 4k ...) overlap.
  // One label per decade once the counts span one, else 1-2-5 per decade.
  function logTickStep(values) {
    const positive = values.filter(function (v) { return v > 0; });
    if (!positive.length) return undefined;
    const decades = Math.log10(Math.max.apply(null, positive) / Math.min.apply(null, positive));
    return decades >= 1 ? 1 : "D2";
  }

  function pareto(el, data, trialUrl) {
    if (!data.id.length) { empty(el, "No finished trials yet: scores and parameter counts appear here."); return; }
    prepare(el);
    const front = paretoFront(data.params, data.score);
    const byKind = {};
    data.id.forEach(function (_, i) { const kind = data.kinds[data.kind[i]]; (byKind[kind] = byKind[kind] || []).push(i); });
    const names = { sample: "sampled designs", selected: "selected design", baseline: "baselines" };
    const trains = function (i) {
      const n = data.optimised ? data.optimised[i] : null;
      return n === null || n === undefined ? "" : "<br>trains " + PEFS.formatNumber(n) + " (head and reparameterisation included)";
    };
    const describe = function (i) { return [data.id[i], data.stages[data.stage[i]], data.arm[i], trains(i)]; };
    const traces = Object.keys(byKind).map(function (kind, k) {
      const idx = byKind[kind];
      return {
        type: "scattergl", mode: "markers", name: names[kind] || kind,
        x: idx.map(function (i) { return data.params[i]; }), y: idx.map(function (i) { return data.score[i]; }),
        customdata: idx.map(describe),
        marker: { size: kind === "sample" ? 6 : 10, color: COLORS[k % COLORS.length], opacity: kind === "sample" ? 0.55 : 0.95,
                  symbol: kind === "selected" ? "star" : kind === "baseline" ? "diamond" : "circle" },
        hovertemplate: "trial %{customdata[0]} (%{customdata[1]}) %{customdata[2]}<br>%{x:,} stored parameters%{customdata[3]}<br>score %{y:.2f}<extra></extra>",
      };
    });
    traces.push({
      type: "scatter", mode: "lines+markers", name: "Pareto front",
      x: front.map(function (i) { return data.params[i]; }), y: front.map(function (i) { return data.score[i]; }),
      line: { color: "#e03131", width: 2, shape: "hv" }, marker: { size: 8, color: "#e03131", symbol: "circle-open" },
      customdata: front.map(describe),
      hovertemplate: "Pareto: trial %{customdata[0]}<br>%{x:,} stored parameters%{customdata[3]}<br>score %{y:.2f}<extra></extra>",
    });
    Plotly.react(el, traces, layout({
      xaxis: { title: { text: "stored PEFT parameters, the budget's count (log scale)" }, type: "log", gridcolor: "#eef0f3",
               tickformat: "~s", dtick: logTickStep(data.params) },
      yaxis: { title: { text: "score (0-100)" }, gridcolor: "#eef0f3" },
    }), CONFIG);
    if (trialUrl && !el.dataset.clickBound) {
      el.dataset.clickBound = "1";
      el.on("plotly_click", function (event) {
        const point = event.points && event.points[0];
        if (point && point.customdata) window.location.href = trialUrl.replace(/0\/$/, point.customdata[0] + "/");
      });
    }
  }

  // choices: the wizard's choice rows (each {choice, label, n, mean, median, std, ci95, edf: [[x, F], ...]});
  // label names every alias ("uniform = decreasing"). recommended: highlighted, never a tie.
  function edf(el, choices, recommended) {
    const withData = choices.filter(function (c) { return c.edf && c.edf.length; });
    if (!withData.length) { empty(el, "No successful trials in this stage yet, so there is no distribution to plot."); return; }
    prepare(el);
    const traces = withData.map(function (c, i) {
      const xs = [c.edf[0][0]].concat(c.edf.map(function (p) { return p[0]; }));
      const ys = [0].concat(c.edf.map(function (p) { return p[1]; }));
      const rec = c.choice === recommended;
      return {
        type: "scatter", mode: "lines", name: (c.label || c.choice) + " (n=" + c.n + ")" + (rec ? " ★ recommended" : ""),
        x: xs, y: ys, line: { shape: "hv", width: rec ? 4 : 1.8, color: COLORS[i % COLORS.length] },
        opacity: rec || !recommended ? 1 : 0.75,
        hovertemplate: (c.label || c.choice) + "<br>score ≤ %{x:.2f}: %{y:.0%}<extra></extra>",
      };
    });
    Plotly.react(el, traces, layout({
      xaxis: { title: { text: "score (higher is better: a better choice's curve lies to the right)" }, gridcolor: "#eef0f3" },
      yaxis: { title: { text: "fraction of designs with score ≤ x" }, range: [0, 1.02], tickformat: ".0%", gridcolor: "#eef0f3" },
    }), CONFIG);
  }

  // Mean of each choice with its 95% CI (bootstrap widened to Student-t) as a horizontal interval; the recommendation bold.
  function meanCI(el, choices, recommended) {
    const rows = choices.filter(function (c) { return c.mean !== null && c.mean !== undefined; });
    if (!rows.length) { empty(el, "No choice has a successful trial yet."); return; }
    prepare(el);
    const names = rows.map(function (c) { return (c.label || c.choice) + " (n=" + c.n + ")"; });
    Plotly.react(el, [{
      type: "scatter", mode: "markers", orientation: "h", x: rows.map(function (c) { return c.mean; }), y: names,
      error_x: { type: "data", symmetric: false, thickness: 2, width: 6, color: "#5f6b7a",
                 array: rows.map(function (c) { return c.ci95 ? c.ci95[1] - c.mean : 0; }),
                 arrayminus: rows.map(function (c) { return c.ci95 ? c.mean - c.ci95[0] : 0; }) },
      marker: { size: 11, color: rows.map(function (c) { return c.choice === recommended ? "#2f9e44" : "#3b5bdb"; }) },
      hovertemplate: "%{y}<br>mean %{x:.2f}<extra></extra>",
    }], layout({
      // Room for the longest label ("uniform = decreasing (n=12)"), within reason.
      margin: { l: Math.min(280, 20 + 7 * Math.max.apply(null, names.map(function (n) { return n.length; }))), r: 16, t: 10, b: 40 },
      showlegend: false,
      xaxis: { title: { text: "mean score with 95% CI" }, gridcolor: "#eef0f3" },
      yaxis: { autorange: "reversed", gridcolor: "#eef0f3" },
    }), CONFIG);
  }

  // groups: [{name, values: {task: {mean, std}}}], tasks: [task names]
  function groupedBars(el, groups, tasks) {
    if (!groups.length) { empty(el, "The final stage has no finished trials yet."); return; }
    prepare(el);
    const traces = groups.map(function (g, i) {
      return {
        type: "bar", name: g.name, x: tasks,
        y: tasks.map(function (t) { return g.values[t] ? g.values[t].mean : null; }),
        error_y: { type: "data", visible: true, array: tasks.map(function (t) { return g.values[t] ? (g.values[t].std || 0) : 0; }), thickness: 1.2, width: 3 },
        marker: { color: ARM_COLORS[g.arm] || COLORS[i % COLORS.length], opacity: g.arm === "selected" ? 1 : 0.8 },
        hovertemplate: g.name + "<br>%{x}: %{y:.2f}<extra></extra>",
      };
    });
    Plotly.react(el, traces, layout({
      barmode: "group", bargap: 0.25,
      yaxis: { title: { text: "score (0-100), mean ± std over seeds" }, gridcolor: "#eef0f3" },
    }), CONFIG);
  }

  PEFS.charts = { curves: curves, parcoords: parcoords, pareto: pareto, edf: edf, meanCI: meanCI, groupedBars: groupedBars,
                  empty: empty, paretoFront: paretoFront, COLORS: COLORS, STRATEGIES: STRATEGIES };
})();
