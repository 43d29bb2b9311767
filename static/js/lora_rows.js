/* LoRA rows (Generate page, project style): "Add LoRA" clones the row template, "Remove" drops a
   row and tells its form it changed (the Generate preview follows). Loaded by both pages, and
   again when htmx swaps the style form in: the handlers are installed once. */
(function () {
  "use strict";
  if (window.towerLoraRows) { return; }
  window.towerLoraRows = true;
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
      var form = remove.closest("form");
      remove.closest("[data-lora-row]").remove();
      if (form) { form.dispatchEvent(new Event("change", { bubbles: true })); }
    }
  });
})();
