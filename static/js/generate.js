/* The Generate form: tell the server which field changed, so it re-renders only the choices that
   depend on that field (a project's characters and workflows, a character's versions); add and
   remove LoRA rows; a file chosen for an image input waits for the submit (no preview request). */
(function () {
  "use strict";
  function form() { return document.querySelector("form[data-generate-form]"); }
  document.addEventListener("htmx:configRequest", function (e) {
    var elt = e.detail.elt;
    var event = e.detail.triggeringEvent;
    if (!elt.matches || !elt.matches("form[data-generate-form]") || !event || !event.target) { return; }
    if (event.target.type === "file") { e.preventDefault(); return; }
    if (event.target === elt) { e.detail.parameters.changed = "loras"; return; }  // a LoRA row removed
    if (event.target.name) { e.detail.parameters.changed = event.target.name; }
  });
  document.addEventListener("click", function (e) {
    var add = e.target.closest && e.target.closest("[data-lora-add]");
    var remove = e.target.closest && e.target.closest("[data-lora-remove]");
    if (add) {
      var rows = add.closest("[data-lora-rows]");
      var template = rows.querySelector("template[data-lora-template]");
      var row = template.content.firstElementChild.cloneNode(true);
      rows.insertBefore(row, template);
      var name = row.querySelector("[data-lora-name]");
      if (name) { name.focus(); }
    } else if (remove) {
      var f = form();
      remove.closest("[data-lora-row]").remove();
      // The preview follows: the LoRAs the job would get changed.
      if (f) { f.dispatchEvent(new Event("change", { bubbles: true })); }
    }
  });
})();
