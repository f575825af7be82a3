// Stage wizard: the EDF plot, and the approve form's live feedback (override needs a reason;
// the space diff follows the selected choice).
(function () {
  "use strict";

  // A stage still training reloads itself once its status changes (summary and decision appear).
  function watchStatus() {
    const config = JSON.parse(document.getElementById("stage-config").textContent);
    if (config.status !== "running") return;
    setTimeout(async function poll() {
      try {
        const response = await fetch(config.detail, { credentials: "same-origin" });
        if (response.ok && (await response.json()).status !== config.status) { window.location.reload(); return; }
      } catch (error) { /* try again on the next poll */ }
      setTimeout(poll, 4000);
    }, 4000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    watchStatus();
    const choices = JSON.parse(document.getElementById("edf-data").textContent) || [];
    const recommended = JSON.parse(document.getElementById("edf-recommended").textContent);
    const chart = document.getElementById("chart-edf");
    if (chart) window.PEFS.charts.edf(chart, choices, recommended);
    const ci = document.getElementById("chart-ci");
    if (ci) window.PEFS.charts.meanCI(ci, choices, recommended);

    const form = document.getElementById("approve-form");
    if (!form) return;
    const button = document.getElementById("approve-button");
    const reasonField = document.getElementById("reason-field");
    function update() {
      const picked = form.querySelector('input[name="choice"]:checked');
      const value = picked ? picked.value : null;
      const override = value !== null && value !== (button.dataset.recommended || null);
      button.textContent = !value ? "Approve" : override ? "Override: choose " + value : "Approve " + value + " (recommended)";
      reasonField.style.display = override || reasonField.querySelector(".errorlist") ? "" : "none";
      document.querySelectorAll("[data-pending-diff] .chip").forEach(function (chip) {
        chip.classList.toggle("kept", value !== null && chip.dataset.choice === value);
        chip.classList.toggle("removed", value !== null && chip.dataset.choice !== value);
      });
    }
    form.addEventListener("change", update);
    update();
  });
})();
