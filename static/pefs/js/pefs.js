// PEFS page behaviour shared by every page: local times, JSON reads, following a search's live
// events, clickable rows, preset filling.
(function () {
  "use strict";

  const PEFS = (window.PEFS = window.PEFS || {});

  PEFS.formatTimes = function (root) {
    (root || document).querySelectorAll("time[datetime]").forEach(function (el) {
      const date = new Date(el.getAttribute("datetime"));
      if (isNaN(date)) return;
      const style = el.dataset.style || "datetime";
      el.textContent = style === "date" ? date.toLocaleDateString()
        : style === "time" ? date.toLocaleTimeString() : date.toLocaleString();
      el.title = date.toISOString();
    });
  };

  PEFS.formatNumber = function (value, digits) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits === undefined ? 0 : digits });
  };

  // Both parameter counts, as the param_counts template tag writes them (pefs_format.py).
  PEFS.formatParams = function (stored, optimised) {
    return '<span class="param-counts"><span data-count="stored">stored ' + PEFS.formatNumber(stored) +
      '</span> · <span data-count="trains">trains ' + PEFS.formatNumber(optimised) + "</span></span>";
  };

  // Seconds as the duration filter writes them (pefs_format.py): "8s", "2m 26s", "1h 05m".
  PEFS.formatDuration = function (seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(Number(seconds))) return "—";
    const total = Math.max(0, Math.round(Number(seconds)));
    const hours = Math.floor(total / 3600), minutes = Math.floor((total % 3600) / 60), secs = total % 60;
    const two = function (n) { return (n < 10 ? "0" : "") + n; };
    if (hours) return hours + "h " + two(minutes) + "m";
    if (minutes) return minutes + "m " + two(secs) + "s";
    return secs + "s";
  };

  PEFS.getJSON = async function (url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(url + " answered " + response.status);
    return response.json();
  };

  // Follows a search's live events: the WebSocket ws/searches/<id>/ carries trial.metric,
  // trial.status, stage.status and search.status for the whole search. Events can be missed
  // (a dropped connection, Redis restarting), and the database holds the truth, so the page's
  // catchUp(reason) reads the REST API: once the socket is open ("connect"), after every
  // reconnect ("reconnect") and, when safetyMs is given, every safetyMs as a slow safety net
  // ("safety"). The server sends {"type": "sync"} when it had to re-join the search's group (Redis
  // flushed or restarted): events were missed as in a reconnect, so it counts as one ("reconnect").
  // Reconnects back off from 1 s to 30 s; code 1008 (not the owner) stops.
  //
  //   const live = PEFS.followSearch({ ws: config.ws, wsPort: config.wsPort, statusEl: el, onEvent: handle,
  //                                    catchUp: async function (reason) { ... }, safetyMs: 30000 });
  //   live.counters.events; live.counters.resyncs; live.dropConnection();
  PEFS.followSearch = function (options) {
    const counters = { events: 0, reconnects: 0, resyncs: 0, backfills: 0, safetyPolls: 0 };
    const liveText = options.liveText || "live";
    let socket = null;
    let retryDelay = 1000;
    let everConnected = false;

    function setStatus(text, state) {
      if (!options.statusEl) return;
      options.statusEl.textContent = text;
      options.statusEl.className = "live-status " + (state || "");
    }

    async function catchUp(reason) {
      if (!options.catchUp) return;
      try {
        await options.catchUp(reason);
        if (reason === "reconnect") counters.backfills += 1;
      } catch (error) { /* the next reconnect or safety poll tries again */ }
    }

    function connect() {
      const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
      // WebSockets on their own port (make run: Daphne beside gunicorn), else the page's host and port.
      const host = options.wsPort ? window.location.hostname + ":" + options.wsPort : window.location.host;
      socket = new WebSocket(scheme + host + options.ws);
      setStatus(everConnected ? "reconnecting…" : "connecting…", "reconnecting");
      socket.onopen = function () {
        const reconnect = everConnected;
        everConnected = true;
        retryDelay = 1000;
        setStatus(liveText, "connected");
        if (reconnect) counters.reconnects += 1;
        catchUp(reconnect ? "reconnect" : "connect");
      };
      socket.onmessage = function (message) {
        const event = JSON.parse(message.data);
        if (event.type === "sync") { counters.resyncs += 1; catchUp("reconnect"); return; }
        counters.events += 1;
        options.onEvent(event);
      };
      socket.onclose = function (event) {
        if (event.code === 1008) { setStatus("not allowed to watch this search", ""); return; }
        setStatus("connection lost, reconnecting in " + Math.round(retryDelay / 1000) + "s…", "reconnecting");
        setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 30000);
      };
    }

    if (options.safetyMs) {
      setTimeout(async function poll() {
        counters.safetyPolls += 1;
        await catchUp("safety");
        setTimeout(poll, options.safetyMs);
      }, options.safetyMs);
    }
    connect();
    return {
      counters: counters,
      setStatus: setStatus,
      // Drops the socket as a network failure would (browser tests and debugging).
      dropConnection: function () { if (socket) socket.close(4000, "dropped"); },
    };
  };

  // Rows with data-href open their page on click or Enter, unless a control inside was used.
  document.addEventListener("click", function (event) {
    const row = event.target.closest("tr[data-href]");
    if (!row || event.target.closest("a, button, input, select, form, label")) return;
    window.location.href = row.dataset.href;
  });
  document.addEventListener("keydown", function (event) {
    const row = event.target.closest && event.target.closest("tr[data-href]");
    if (row && event.key === "Enter" && event.target === row) window.location.href = row.dataset.href;
  });

  // Preset select: a preset writes its own fields only (designs per stage, epochs, data sizes,
  // layer groups ...), never what describes the search itself (name, tasks, backbone, budget,
  // seed, auto-approve), and never a field the person edited by hand: such a field is marked
  // data-user-set and, where the preset would have changed it, says "kept your value" (issue 12:
  // a search started with 4 groups after the user chose 2). Layer groups are the preset's (the
  // study preset's 2) until the person sets them.
  const NOT_PRESET_FIELDS = ["name", "tasks", "backbone", "budget_kind", "budget_value", "seed",
                             "auto_approve", "preset"];

  function presetValueShown(input, value) {
    if (input.type === "checkbox") return input.checked === Boolean(value);
    if (input.type === "radio") return !input.checked || input.value === String(value);
    return input.value === (value === null ? "" : String(value));
  }

  function keptNote(input, value) {
    const note = document.createElement("span");
    note.className = "kept-note";
    note.dataset.keptNote = input.name;
    note.textContent = "kept your value (the preset has " + (value === null ? "none" : value) + ")";
    (input.closest(".field") || input.parentNode).appendChild(note);
  }

  function bindPresets(root) {
    (root || document).querySelectorAll("select[data-presets]").forEach(function (select) {
      if (select.dataset.bound) return;
      select.dataset.bound = "1";
      const form = select.form;
      const presets = JSON.parse(document.getElementById(select.dataset.presets).textContent);
      // Only what a person does counts as their value: the preset's own writes are not trusted events.
      function markUserSet(event) {
        const input = event.target;
        if (!event.isTrusted || !input.name || input === select) return;
        form.querySelectorAll('[name="' + input.name + '"]').forEach(function (el) { el.dataset.userSet = "1"; });
      }
      form.addEventListener("input", markUserSet);
      form.addEventListener("change", markUserSet);
      select.addEventListener("change", function () {
        const values = presets[select.value] || {};
        form.querySelectorAll("[data-kept-note]").forEach(function (note) { note.remove(); });
        Object.keys(values).forEach(function (key) {
          if (NOT_PRESET_FIELDS.indexOf(key) !== -1) return;
          const inputs = form.querySelectorAll('[name="' + key + '"]');
          if (!inputs.length) return;
          const value = values[key];
          if (inputs[0].dataset.userSet) {
            if (!Array.prototype.every.call(inputs, function (input) { return presetValueShown(input, value); })) {
              keptNote(inputs[0], value);
            }
            return;
          }
          inputs.forEach(function (input) {
            if (input.type === "checkbox") input.checked = Boolean(value);
            else if (input.type === "radio") input.checked = input.value === String(value);
            else input.value = value === null ? "" : value;
          });
          inputs[0].dispatchEvent(new Event("change", { bubbles: true }));
        });
      });
    });
  }

  // Budget unit: the hint next to the value follows the chosen kind.
  function bindBudgetUnit(root) {
    (root || document).querySelectorAll("[data-budget-unit]").forEach(function (hint) {
      const form = hint.closest("form");
      function update() {
        const kind = form.querySelector('[name="budget_kind"]:checked');
        hint.textContent = kind && kind.value === "absolute" ? "parameters" : "% of backbone parameters";
      }
      form.addEventListener("change", update);
      update();
    });
  }

  function init(root) {
    PEFS.formatTimes(root);
    bindPresets(root);
    bindBudgetUnit(root);
  }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:afterSwap", function (event) { init(event.target); });
  document.addEventListener("htmx:oobAfterSwap", function (event) { init(event.target); });
})();
