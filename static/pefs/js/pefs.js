// PEFS page behaviour shared by every page: local times, clickable rows, preset filling.
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

  PEFS.csrfToken = function () {
    const match = document.cookie.match(/(?:^|; )csrftoken=([^;]*)/);
    return match ? decodeURIComponent(match[1]) : "";
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

  // Preset select: copy the chosen preset's values into every editable field it governs.
  function bindPresets(root) {
    (root || document).querySelectorAll("select[data-presets]").forEach(function (select) {
      if (select.dataset.bound) return;
      select.dataset.bound = "1";
      const presets = JSON.parse(document.getElementById(select.dataset.presets).textContent);
      select.addEventListener("change", function () {
        const values = presets[select.value] || {};
        Object.keys(values).forEach(function (key) {
          const inputs = select.form.querySelectorAll('[name="' + key + '"]');
          inputs.forEach(function (input) {
            const value = values[key];
            if (input.type === "checkbox") input.checked = Boolean(value);
            else if (input.type === "radio") input.checked = input.value === String(value);
            else input.value = value === null ? "" : value;
          });
          if (inputs.length) inputs[0].dispatchEvent(new Event("change", { bubbles: true }));
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
