/* Tower's own glue: live-socket indicator, resync on (re)connect, lightbox. No framework. */
(function () {
  "use strict";
  document.addEventListener("htmx:wsOpen", function () {
    var dot = document.getElementById("live-dot");
    if (dot) { dot.classList.add("on"); dot.title = "live"; }
    // Events sent while the socket was down are lost; re-read the true state from the server.
    htmx.trigger(document.body, "tower:resync");
  });
  document.addEventListener("htmx:wsClose", function () {
    var dot = document.getElementById("live-dot");
    if (dot) { dot.classList.remove("on"); dot.title = "offline"; }
  });
  // The lightbox: asset links carry hx-get into #lightbox-body; open the dialog once it is filled.
  document.addEventListener("htmx:afterSwap", function (e) {
    if (e.detail.target && e.detail.target.id === "lightbox-body") {
      var dialog = document.getElementById("lightbox");
      if (dialog && !dialog.open) { dialog.showModal(); }
    }
  });
  document.addEventListener("click", function (e) {
    var dialog = document.getElementById("lightbox");
    if (dialog && (e.target === dialog || (e.target.closest && e.target.closest("[data-close-lightbox]")))) {
      dialog.close();
      document.getElementById("lightbox-body").innerHTML = "";
    }
  });
})();
