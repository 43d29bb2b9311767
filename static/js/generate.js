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
  // The settings come back with a project or mode switch. A number the person changed (it differs
  // from the default it was shown with) keeps what is in the field now, even if typed while the
  // answer was on its way, and the field being typed in keeps the focus.
  var focused = null;
  document.addEventListener("htmx:oobBeforeSwap", function (e) {
    var target = e.detail.target;
    var fragment = e.detail.fragment;
    if (!target || target.id !== "generate-controls" || !fragment || !fragment.querySelector) { return; }
    focused = target.contains(document.activeElement) ? document.activeElement.name : null;
    target.querySelectorAll("input[type=number], input[type=text]").forEach(function (input) {
      var shown = target.querySelector("input[type=hidden][name='shown_" + input.name + "']");
      if (!shown || input.value === shown.value) { return; }
      var incoming = fragment.querySelector("input[name='" + input.name + "']:not([type=hidden])");
      if (incoming) { incoming.setAttribute("value", input.value); }
    });
  });
  document.addEventListener("htmx:oobAfterSwap", function (e) {
    if (!focused || !e.detail.target || e.detail.target.id !== "generate-controls") { return; }
    var field = document.querySelector("#generate-controls [name='" + focused + "']:not([type=hidden])");
    focused = null;
    if (field) { field.focus(); }
  });
})();
