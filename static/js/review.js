/* The review page's keys: A approve, R then 1–9 reject with a category, S skip, U undo, P promote.
   Every key presses a button that also works without JS (a form that POSTs). */
(function () {
  "use strict";
  var armed = false; // R was pressed: the next digit picks the category

  function card() { return document.getElementById("review-card"); }
  // A key can come while htmx is still settling a new card, before it has wired the card's forms;
  // wiring them first (idempotent) keeps the press an HTMX swap rather than a full page post.
  function wire(form) { if (form && window.htmx) { window.htmx.process(form); } }
  function press(key) {
    var button = card() && card().querySelector('button[data-key="' + key + '"]');
    if (button && !button.disabled) { wire(button.form); button.click(); return true; }
    return false;
  }
  function rejectForm() { return document.getElementById("review-reject"); }
  function arm(on) {
    armed = on;
    var form = rejectForm();
    if (form) { form.classList.toggle("armed", on); }
  }
  function rejectWith(digit) {
    var form = rejectForm();
    if (!form) { return; }
    var boxes = form.querySelectorAll('input[name="category"]');
    var chosen = null;
    boxes.forEach(function (box) {
      box.checked = box.getAttribute("data-digit") === digit;
      if (box.checked) { chosen = box; }
    });
    if (!chosen) { return; }
    if (chosen.value === "other") {
      var note = document.getElementById("review-note");
      if (note) { note.focus(); return; } // Enter in the note sends the form
    }
    wire(form);
    form.requestSubmit();
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || !card()) { return; }
    var target = e.target;
    var typing = target && (target.tagName === "INPUT" && target.type === "text" || target.tagName === "TEXTAREA" || target.tagName === "SELECT" || target.isContentEditable);
    if (typing) {
      if (e.key === "Escape") { target.blur(); arm(false); }
      return;
    }
    var key = e.key.toLowerCase();
    if (armed && /^[1-9]$/.test(key)) { e.preventDefault(); arm(false); rejectWith(key); return; }
    if (key === "escape") { arm(false); return; }
    if (key === "r") { e.preventDefault(); arm(!armed); return; }
    arm(false);
    if ("aspu".indexOf(key) >= 0 && key.length === 1) {
      if (press(key)) { e.preventDefault(); }
    }
  });

  // A refused action (400: "other" without a note…) comes back as a card with the error: show it.
  document.addEventListener("htmx:beforeSwap", function (e) {
    if (e.detail.target && e.detail.target.id === "review-card" && e.detail.xhr.status === 400) {
      e.detail.shouldSwap = true;
      e.detail.isError = false;
    }
  });
  // htmx gives the focus back to an element with the same id during the swap: the new card's note
  // field would then swallow the next keys. A new card starts with the keys live (unless an error
  // asks for the note). afterSwap comes right after that, before the person can press anything.
  document.addEventListener("htmx:afterSwap", function (e) {
    if (!e.detail.target || e.detail.target.id !== "review-card") { return; }
    arm(false);
    var active = document.activeElement;
    if (active && card().contains(active) && !card().querySelector("[data-error]")) { active.blur(); }
  });
  // The card is ready for keys once htmx has settled it (attributes swapped, focus handled):
  // marked for anyone who needs to know (the browser test waits on it).
  function ready() { var c = card(); if (c) { c.setAttribute("data-ready", "1"); } }
  document.addEventListener("htmx:beforeSwap", function (e) {
    if (e.detail.target && e.detail.target.id === "review-card") { e.detail.target.removeAttribute("data-ready"); }
  });
  document.addEventListener("htmx:afterSettle", function (e) {
    if (e.detail.target && e.detail.target.id === "review-card") { ready(); }
  });
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", ready); } else { ready(); }
})();
