/* The storyboard's drag and drop: drop a scene card on another to move it there; the new running
   order is posted (every scene id, in order) and the storyboard comes back from the server. The
   up/down buttons do the same without JavaScript.
   Every storyboard carries the time the server read it (data-revision); one read earlier than the
   one shown (a reconnect's re-read answering after a move, a late socket fragment) is not swapped in.
   A move's answer goes into the storyboard's slot, so it lands even when a re-read replaced the
   storyboard meanwhile (an answer for a replaced element would be swapped into nothing). */
(function () {
  "use strict";
  var dragged = null;
  function board(el) { return el && el.closest ? el.closest("[data-storyboard][data-reorder-url]") : null; }
  document.addEventListener("dragstart", function (e) {
    var card = e.target.closest && e.target.closest("[data-scene-card]");
    if (!card || !board(card)) { return; }
    dragged = card;
    card.classList.add("dragging");
    e.dataTransfer.effectAllowed = "move";
    e.dataTransfer.setData("text/plain", card.dataset.sceneCard);
  });
  document.addEventListener("dragend", function () {
    if (dragged) { dragged.classList.remove("dragging"); }
    dragged = null;
  });
  document.addEventListener("dragover", function (e) {
    var card = e.target.closest && e.target.closest("[data-scene-card]");
    if (dragged && card && card !== dragged && board(card) === board(dragged)) { e.preventDefault(); }
  });
  function revision(el) { return el && el.dataset ? Number(el.dataset.revision || 0) : 0; }
  function stale(target, incoming) {
    return !!(target && target.matches && target.matches("[data-storyboard]") && incoming && incoming < revision(target));
  }
  document.addEventListener("htmx:beforeSwap", function (e) {
    var target = e.detail.target;
    if (target && target.hasAttribute && target.hasAttribute("data-storyboard-slot")) {
      target = target.querySelector("[data-storyboard]");
    }
    var found = /id="storyboard-\d+"[^>]*? data-revision="(\d+)"/.exec(e.detail.serverResponse || "");
    if (found && stale(target, Number(found[1]))) { e.detail.shouldSwap = false; }
  });
  document.addEventListener("htmx:oobBeforeSwap", function (e) {
    var fragment = e.detail.fragment;
    var incoming = fragment && fragment.querySelector ? fragment.querySelector("[data-storyboard]") : null;
    if (incoming && stale(e.detail.target, revision(incoming))) { e.detail.shouldSwap = false; }
  });
  document.addEventListener("drop", function (e) {
    var card = e.target.closest && e.target.closest("[data-scene-card]");
    var section = board(card);
    if (!dragged || !card || card === dragged || section !== board(dragged)) { return; }
    e.preventDefault();
    var cards = Array.prototype.slice.call(section.querySelectorAll("[data-scene-card]"));
    var from = cards.indexOf(dragged), to = cards.indexOf(card);
    cards.splice(from, 1);
    cards.splice(to, 0, dragged);
    // Into the storyboard's slot, which a reconnect's re-read (it replaces the storyboard) leaves in place.
    var slot = section.parentElement.hasAttribute("data-storyboard-slot") ? section.parentElement : section;
    htmx.ajax("POST", section.dataset.reorderUrl, {
      source: slot, target: slot, swap: slot === section ? "outerHTML" : "innerHTML", values: { order: cards.map(function (c) { return c.dataset.sceneCard; }) }
    });
  });
})();
