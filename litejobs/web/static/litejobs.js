// litejobs dashboard: polling pauses while the tab is hidden, and catches up when it shows.
// (Loaded as a file: the Content-Security-Policy allows no inline script and no eval.)
document.addEventListener("htmx:beforeRequest", function (event) {
  var elt = event.detail && event.detail.elt;
  if (document.hidden && elt && elt.hasAttribute("data-poll")) {
    event.preventDefault();
  }
});
document.addEventListener("visibilitychange", function () {
  if (!document.hidden && window.htmx) {
    document.querySelectorAll("[data-poll]").forEach(function (elt) {
      window.htmx.trigger(elt, "refresh");
    });
  }
});
