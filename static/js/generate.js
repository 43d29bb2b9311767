/* The Generate form: tell the server which field changed, so it re-renders only the choices that
   depend on that field (a project's characters and workflows, a character's versions). */
(function () {
  "use strict";
  document.addEventListener("htmx:configRequest", function (e) {
    var form = e.detail.elt;
    var event = e.detail.triggeringEvent;
    if (!form.matches || !form.matches("form[data-generate-form]") || !event || !event.target) { return; }
    if (event.target.name) { e.detail.parameters.changed = event.target.name; }
  });
})();
