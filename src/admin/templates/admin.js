"use strict";
// The admin pages' only script: a confirmation before each action, and a device's request
// log kept fresh. Errors are collected for the browser test.
window.adminErrors = window.adminErrors || [];
window.addEventListener("error", function (e) { window.adminErrors.push(String(e.message)); });
document.querySelectorAll("form[data-confirm]").forEach(function (form) {
  form.addEventListener("submit", function (e) {
    if (!window.confirm(form.getAttribute("data-confirm"))) {
      e.preventDefault();
    }
  });
});
var log = document.getElementById("log");
if (log && log.getAttribute("data-src")) {
  window.setInterval(function () {
    fetch(log.getAttribute("data-src"), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.text(); })
      .then(function (rows) { log.innerHTML = rows; })
      .catch(function () { /* the next refresh tries again */ });
  }, 5000);
}
