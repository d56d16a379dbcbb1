// dashfrog flow viewer: the only script of our own (the CSP allows scripts from this origin
// only, and no eval). It localises times, ticks the elapsed time of running flows, draws the
// Mermaid diagrams and shows the custom window fields. Page data is never evaluated: Mermaid
// reads the diagram as text from an escaped <pre>.
(function () {
  "use strict";

  function duration(ms) {
    if (ms < 1000) return ms.toFixed(1) + " ms";
    var s = ms / 1000;
    if (s < 60) return s.toFixed(2) + " s";
    if (s < 3600) return Math.floor(s / 60) + "m " + String(Math.floor(s % 60)).padStart(2, "0") + "s";
    return Math.floor(s / 3600) + "h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  }

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      if (el.dataset.localised) return;
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when.getTime())) return;
      el.title = el.textContent;
      el.textContent = when.toLocaleString();
      el.dataset.localised = "1";
    });
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-running-since]").forEach(function (el) {
      var since = Number(el.getAttribute("data-running-since"));
      if (since > 0) el.textContent = duration(Math.max(0, now - since)) + " so far";
    });
  }

  var mermaidReady = false;
  function diagrams(root) {
    if (!window.mermaid) return;
    if (!mermaidReady) {
      window.mermaid.initialize({
        startOnLoad: false,
        securityLevel: "strict",
        maxTextSize: 5000000,
        maxEdges: 20000,
      });
      mermaidReady = true;
    }
    var nodes = Array.prototype.slice.call(root.querySelectorAll("pre.mermaid:not([data-processed])"));
    if (root.matches && root.matches("pre.mermaid:not([data-processed])")) nodes.push(root);
    if (nodes.length) {
      window.mermaid.run({ nodes: nodes }).catch(function (err) {
        nodes.forEach(function (n) { n.setAttribute("data-error", String(err && err.message || err)); });
      });
    }
  }

  function windows(root) {
    root.querySelectorAll("select.window-select").forEach(function (sel) {
      var form = sel.closest("form");
      var custom = form && form.querySelector(".custom");
      if (!custom || sel.dataset.bound) return;
      sel.dataset.bound = "1";
      sel.addEventListener("change", function () {
        custom.classList.toggle("hidden", sel.value !== "custom");
      });
    });
  }

  function enhance(root) {
    localTimes(root);
    windows(root);
    diagrams(root);
    tick();
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button.draw-diagram");
    if (!button) return;
    var source = document.querySelector("pre.mermaid-source");
    if (!source) return;
    source.classList.remove("hidden", "mermaid-source");
    source.classList.add("mermaid");
    button.disabled = true;
    diagrams(document);
  });

  document.addEventListener("DOMContentLoaded", function () {
    enhance(document);
    // htmx swaps in fresh rows and flow sections: enhance them too.
    document.body.addEventListener("htmx:load", function (event) { enhance(event.target); });
    setInterval(tick, 1000);
  });
})();
