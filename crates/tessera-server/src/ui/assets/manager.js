// The License Server Manager's few conveniences; every form works without them.
(function () {
  "use strict";
  // Column chooser: checkboxes `data-column="name"` hide the cells `data-col="name"`; kept per
  // table in the browser.
  document.querySelectorAll("details.columns").forEach(function (box) {
    var table = document.getElementById(box.dataset.table);
    if (!table) return;
    var key = "columns:" + box.dataset.table;
    var hidden = JSON.parse(localStorage.getItem(key) || "[]");
    function apply() {
      box.querySelectorAll("input[data-column]").forEach(function (c) {
        table.querySelectorAll('[data-col="' + c.dataset.column + '"]').forEach(function (cell) {
          cell.hidden = !c.checked;
        });
      });
    }
    box.querySelectorAll("input[data-column]").forEach(function (c) {
      c.checked = hidden.indexOf(c.dataset.column) < 0;
      c.addEventListener("change", function () {
        var now = [];
        box.querySelectorAll("input[data-column]").forEach(function (x) { if (!x.checked) now.push(x.dataset.column); });
        localStorage.setItem(key, JSON.stringify(now));
        apply();
      });
    });
    apply();
  });
  // Settings kept in the browser (usable while the server does not answer): page size as a cookie
  // the server reads, the server to manage in local storage.
  var settings = document.getElementById("settings-form");
  if (settings) {
    var saved = JSON.parse(localStorage.getItem("manager-settings") || "{}");
    ["host", "port", "instance", "kind", "https"].forEach(function (k) {
      var f = settings.elements[k];
      if (f && saved[k] !== undefined) {
        if (f.length && f[0] && f[0].type === "radio") {
          for (var i = 0; i < f.length; i++) f[i].checked = f[i].value === saved[k];
        } else { f.value = saved[k]; }
      }
    });
    settings.addEventListener("submit", function () {
      var out = {};
      ["host", "port", "instance", "kind", "https"].forEach(function (k) {
        var f = settings.elements[k];
        if (f) out[k] = f.value;
      });
      localStorage.setItem("manager-settings", JSON.stringify(out));
    });
  }
  // +/- rows of a repeated fieldset (activation ids and counts).
  document.querySelectorAll("[data-rows]").forEach(function (list) {
    function renumber() {
      list.querySelectorAll("[data-row] .remove").forEach(function (b) {
        b.disabled = list.querySelectorAll("[data-row]").length < 2;
      });
    }
    list.addEventListener("click", function (e) {
      var b = e.target.closest("button");
      if (!b) return;
      if (b.classList.contains("remove")) {
        e.preventDefault();
        b.closest("[data-row]").remove();
        renumber();
      } else if (b.classList.contains("add")) {
        e.preventDefault();
        var rows = list.querySelectorAll("[data-row]");
        var copy = rows[rows.length - 1].cloneNode(true);
        copy.querySelectorAll("input").forEach(function (i) { i.value = i.type === "number" ? "1" : ""; });
        rows[rows.length - 1].after(copy);
        renumber();
        copy.querySelector("input").focus();
      }
    });
    renumber();
  });
})();
// The activation rows: the + and − buttons are shown, and the blank rows beyond the first are
// left out (without the script the form offers several rows at once).
(function () {
  "use strict";
  document.querySelectorAll("[data-rows]").forEach(function (list) {
    list.querySelectorAll("[data-js]").forEach(function (b) { b.hidden = false; });
    var rows = list.querySelectorAll("[data-row]");
    var kept = 0;
    rows.forEach(function (r) {
      var filled = r.querySelector("input").value.trim() !== "";
      if (filled || kept === 0) { kept++; } else { r.remove(); }
    });
    list.querySelectorAll("[data-row] .remove").forEach(function (b) {
      b.disabled = list.querySelectorAll("[data-row]").length < 2;
    });
  });
})();
