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
