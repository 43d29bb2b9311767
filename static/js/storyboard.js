/* The storyboard's drag and drop: drop a scene card on another to move it there; the new running
   order is posted (every scene id, in order) and the storyboard comes back from the server. The
   up/down buttons do the same without JavaScript. */
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
  document.addEventListener("drop", function (e) {
    var card = e.target.closest && e.target.closest("[data-scene-card]");
    var section = board(card);
    if (!dragged || !card || card === dragged || section !== board(dragged)) { return; }
    e.preventDefault();
    var cards = Array.prototype.slice.call(section.querySelectorAll("[data-scene-card]"));
    var from = cards.indexOf(dragged), to = cards.indexOf(card);
    cards.splice(from, 1);
    cards.splice(to, 0, dragged);
    htmx.ajax("POST", section.dataset.reorderUrl, {
      source: section, target: section, swap: "outerHTML", values: { order: cards.map(function (c) { return c.dataset.sceneCard; }) }
    });
  });
})();
