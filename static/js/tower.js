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
    }
    // A standalone asset page: Close returns to the gallery as it was left (filters, scroll) when
    // the gallery opened it, else the link goes to the gallery.
    var back = e.target.closest && e.target.closest("[data-close-page]");
    if (back && document.referrer) {
      var from = new URL(document.referrer);
      if (from.origin === window.location.origin && from.pathname === back.pathname && window.history.length > 1) {
        e.preventDefault();
        window.history.back();
      }
    }
  });
  // Esc closes the dialog natively; however it closes, drop its content (a video stops playing).
  document.addEventListener("close", function (e) {
    if (e.target.id === "lightbox") { document.getElementById("lightbox-body").innerHTML = ""; }
  }, true);
  // A standalone asset page: the arrow keys follow its Newer / Older links, Esc its Close.
  document.addEventListener("keydown", function (e) {
    var dialog = document.getElementById("lightbox");
    if ((dialog && dialog.open) || !document.querySelector("[data-asset-nav]")) { return; }
    if (e.target.closest && e.target.closest("input, select, textarea, video")) { return; }
    var link = null;
    if (e.key === "ArrowLeft") { link = document.querySelector("[data-asset-nav] [data-nav=prev]"); }
    else if (e.key === "ArrowRight") { link = document.querySelector("[data-asset-nav] [data-nav=next]"); }
    else if (e.key === "Escape") { link = document.querySelector("[data-close-page]"); }
    if (link) { e.preventDefault(); link.click(); }
  });
  // The arrow keys move the lightbox to the previous / next output among the tiles of the page.
  document.addEventListener("keydown", function (e) {
    var dialog = document.getElementById("lightbox");
    if (!dialog || !dialog.open || (e.key !== "ArrowLeft" && e.key !== "ArrowRight")) { return; }
    if (e.target.closest && e.target.closest("input, select, textarea, video")) { return; }
    var view = dialog.querySelector("[data-asset-view]");
    if (!view) { return; }
    var tiles = Array.prototype.filter.call(document.querySelectorAll(".tile[data-asset]"), function (t) {
      return !dialog.contains(t);
    });
    var index = tiles.findIndex(function (t) { return t.dataset.asset === view.dataset.assetView; });
    var next = index < 0 ? null : tiles[index + (e.key === "ArrowRight" ? 1 : -1)];
    if (next) {
      e.preventDefault();
      htmx.ajax("GET", next.getAttribute("hx-get"), { target: "#lightbox-body", swap: "innerHTML" });
    }
  });
  // Back restores htmx's copy of the page, taken when the next filter was already chosen; set the
  // filter forms from the restored address so the fields match the grid and the next change.
  document.addEventListener("htmx:historyRestore", function () {
    var params = new URLSearchParams(window.location.search);
    document.querySelectorAll("form.filters").forEach(function (form) {
      Array.prototype.forEach.call(form.elements, function (field) {
        if (!field.name || field.type === "submit" || field.type === "button") { return; }
        var value = params.get(field.name) || "";
        if (field.type === "checkbox" || field.type === "radio") { field.checked = params.getAll(field.name).indexOf(field.value) >= 0; }
        else { field.value = value; }
      });
    });
  });
  // Animated outputs: the tile shows a still of the first frame and plays the output on hover.
  document.addEventListener("mouseover", function (e) {
    var tile = e.target.closest && e.target.closest(".tile[data-play]");
    if (!tile || tile.dataset.playing) { return; }
    tile.dataset.playing = "1";
    var img = tile.querySelector("img");
    if (tile.dataset.playKind === "video") {
      var video = document.createElement("video");
      video.className = "hover-play"; video.muted = true; video.loop = true; video.autoplay = true;
      video.playsInline = true; video.src = tile.dataset.play;
      tile.insertBefore(video, img ? img.nextSibling : tile.firstChild);
    } else if (img) {
      img.dataset.still = img.getAttribute("src");
      img.setAttribute("src", tile.dataset.play);
    }
  });
  document.addEventListener("mouseout", function (e) {
    var tile = e.target.closest && e.target.closest(".tile[data-play]");
    if (!tile || (e.relatedTarget && tile.contains(e.relatedTarget))) { return; }
    delete tile.dataset.playing;
    var video = tile.querySelector("video.hover-play");
    if (video) { video.pause(); video.remove(); }
    var img = tile.querySelector("img[data-still]");
    if (img) { img.setAttribute("src", img.dataset.still); delete img.dataset.still; }
  });
})();
