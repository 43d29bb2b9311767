/* The Generate form: tell the server which field changed, so it re-renders only the choices that
   depend on that field (a project's characters and workflows, a character's versions, the style's
   defaults, the image pickers). A file chosen in a picker is uploaded by the picker's own request,
   so the form's preview request is not sent for it. */
(function () {
  "use strict";
  document.addEventListener("htmx:configRequest", function (e) {
    var elt = e.detail.elt;
    var event = e.detail.triggeringEvent;
    if (!elt.matches || !elt.matches("form[data-generate-form]") || !event || !event.target) { return; }
    if (event.target.type === "file") { e.preventDefault(); return; }
    if (event.target === elt) { e.detail.parameters.changed = "loras"; return; }  // a LoRA row removed
    if (event.target.name) { e.detail.parameters.changed = event.target.name; }
  });
})();
