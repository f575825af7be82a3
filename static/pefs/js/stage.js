// Stage wizard: the EDF plot, and the approve form's live feedback (override needs a reason;
// the space diff follows the selected choice). A stage still training follows the search's
// WebSocket and reloads once its status changes (summary and decision appear then).
(function () {
  "use strict";

  const PEFS = window.PEFS;
  const SAFETY_POLL_MS = 30000;

  function followStatus() {
    const config = JSON.parse(document.getElementById("stage-config").textContent);
    if (config.status !== "running") return;
    let reloading = false;
    function statusIs(status) {
      if (status === config.status || reloading) return;
      reloading = true;
      window.location.reload();
    }
    function onEvent(event) {
      if (event.type === "stage.status" && event.stage.id === config.stage) statusIs(event.stage.status);
      // Cancelling a search closes its stages without a stage event of their own: ask the API.
      else if (event.type === "search.status" && event.search.status !== "running") catchUp().catch(function () {});
    }
    async function catchUp() { statusIs((await PEFS.getJSON(config.detail)).status); }
    const follower = PEFS.followSearch({ ws: config.ws, wsPort: config.wsPort, statusEl: document.getElementById("stage-live"),
                                         onEvent: onEvent, catchUp: catchUp, safetyMs: SAFETY_POLL_MS });
    PEFS.live = Object.assign(follower.counters, { dropConnection: follower.dropConnection });
  }

  document.addEventListener("DOMContentLoaded", function () {
    followStatus();
    const choices = JSON.parse(document.getElementById("edf-data").textContent) || [];
    const recommended = JSON.parse(document.getElementById("edf-recommended").textContent);
    const chart = document.getElementById("chart-edf");
    if (chart) PEFS.charts.edf(chart, choices, recommended);
    const ci = document.getElementById("chart-ci");
    if (ci) PEFS.charts.meanCI(ci, choices, recommended);

    const form = document.getElementById("approve-form");
    if (!form) return;
    const button = document.getElementById("approve-button");
    const reasonField = document.getElementById("reason-field");
    function update() {
      const picked = form.querySelector('input[name="choice"]:checked');
      const value = picked ? picked.value : null;
      const override = value !== null && value !== (button.dataset.recommended || null);
      const word = button.dataset.recommendedWord || "recommended";
      button.textContent = !value ? "Approve" : override ? "Override: choose " + value : "Approve " + value + " (" + word + ")";
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
