// The jobs page: "select all" for the page's checkboxes, and the bulk buttons enabled only
// with a selection. (A file: the Content-Security-Policy allows no inline script.)
(function () {
  function sync() {
    var form = document.getElementById("bulk");
    if (!form) { return; }
    var picked = form.querySelectorAll("input[name=id]:checked").length;
    form.querySelectorAll("[data-needs-selection]").forEach(function (b) {
      b.disabled = picked === 0;
    });
  }
  document.addEventListener("change", function (event) {
    var t = event.target;
    if (t && t.id === "pick-all") {
      document.querySelectorAll("#bulk input[name=id]").forEach(function (box) {
        box.checked = t.checked;
      });
    }
    sync();
  });
  document.addEventListener("DOMContentLoaded", sync);
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var button = event.submitter;
    if (form && form.id === "bulk" && button && button.value === "delete") {
      var n = form.querySelectorAll("input[name=id]:checked").length;
      if (!window.confirm("Delete " + n + " job(s) and their attempts for good?")) {
        event.preventDefault();
      }
    }
  });
})();
