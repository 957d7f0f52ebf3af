// strix.js: only what links and forms alone cannot do; every page works without it.
"use strict";

// A live view that does not load shows its placeholder, never a broken image.
document.querySelectorAll(".stream img").forEach(function (img) {
  function offline() { img.parentNode.classList.add("offline"); }
  if (img.complete && !img.naturalWidth) offline();
  img.addEventListener("error", offline);
});

// Home page: page a camera's events in place, and refresh the newest ones.
function loadStrip(strip, search) {
  return fetch("/strip/" + strip.dataset.camera + search).then(function (reply) {
    if (!reply.ok) throw new Error(reply.statusText);
    return reply.text();
  }).then(function (html) {
    var fresh = document.createElement("template");
    fresh.innerHTML = html.trim();
    if (fresh.content.firstChild.innerHTML !== strip.innerHTML) strip.replaceWith(fresh.content);
  });
}

document.addEventListener("click", function (event) {
  var link = event.target.closest(".strip .pager a");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
  event.preventDefault();
  var strip = link.closest(".strip"), id = strip.id;
  loadStrip(strip, link.search).then(function () {
    history.replaceState(null, "", link.href);
    var pager = document.getElementById(id).querySelector(".pager");
    (pager.querySelector("a[rel=" + link.rel + "]") || pager.querySelector("a") || pager).focus();
  }, function () { location.href = link.href; });
});

var cameras = document.querySelector(".cameras[data-refresh]");
if (cameras) setInterval(function () {
  if (document.hidden) return;
  document.querySelectorAll('.strip[data-offset="0"]').forEach(function (strip) {
    loadStrip(strip, location.search).catch(function () {});
  });
}, cameras.dataset.refresh * 1000);

// Event page: switch between the video and the debug video at the same moment.
var toggle = document.getElementById("debug-toggle");
if (toggle) toggle.addEventListener("click", function (event) {
  event.preventDefault();
  var video = document.querySelector(".player video"), at = video.currentTime,
      playing = !video.paused, shown = video.getAttribute("src"), text = toggle.textContent;
  history.replaceState(null, "", toggle.href);
  video.src = toggle.dataset.src;
  video.addEventListener("loadedmetadata", function () {
    video.currentTime = at;
    if (playing) video.play();
  }, {once: true});
  toggle.dataset.src = shown;
  toggle.textContent = toggle.dataset.text;
  toggle.dataset.text = text;
  var href = toggle.dataset.href;
  toggle.dataset.href = toggle.href;
  toggle.href = href;
});

// Event page without a video: its frames one by one, at the speed they were taken.
var slideshow = document.querySelector(".slideshow");
if (slideshow) (function () {
  var frames = slideshow.dataset.frames.split(" "), base = slideshow.dataset.base,
      image = slideshow.querySelector("img"), button = slideshow.querySelector("button"),
      counter = slideshow.querySelector("output"), shown = 0, timer = null;
  function step() {
    shown = (shown + 1) % frames.length;
    image.src = base + frames[shown];
    image.alt = "Frame " + (shown + 1) + " of " + frames.length;
    counter.textContent = (shown + 1) + " / " + frames.length;
    new Image().src = base + frames[(shown + 1) % frames.length];
  }
  function play(on) {
    clearInterval(timer);
    timer = on ? setInterval(step, 1000 / slideshow.dataset.fps) : null;
    button.textContent = on ? "Pause" : "Play";
  }
  button.hidden = false;
  button.addEventListener("click", function () { play(!timer); });
  play(frames.length > 1);
})();
