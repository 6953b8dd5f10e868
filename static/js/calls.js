/* Call list: after htmx replaces a row, keep keyboard focus on that row and announce what happened.
   Without JavaScript the forms post normally and the page reloads (see templates/calls/). */
(function () {
  "use strict";
  document.addEventListener("htmx:afterSettle", function (event) {
    var target = event.detail && event.detail.elt;
    var id = target && target.id;
    var row = id ? document.getElementById(id) : null;
    if (!row || !row.classList.contains("call-row")) { return; }
    var heading = row.querySelector("h3[tabindex]");
    if (heading) { heading.focus(); }
    var announcer = document.getElementById("call-announcer");
    var note = row.querySelector("[data-announce]");
    if (announcer && note) { announcer.textContent = note.textContent; }
  });
  // Stop a second click on the same row while the first is still being recorded.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var form = event.detail && event.detail.elt;
    if (form && form.querySelectorAll) {
      form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    }
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail && event.detail.elt;
    if (form && form.isConnected && form.querySelectorAll) {
      form.querySelectorAll("button").forEach(function (b) { b.disabled = false; });
    }
  });
})();
