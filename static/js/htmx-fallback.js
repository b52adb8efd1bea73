// Runs right after the CDN <script>: when the CDN was unreachable, load the copy we ship.
(function () {
  if (window.htmx) return;
  var current = document.currentScript;
  var script = document.createElement("script");
  script.src = current.getAttribute("data-local-src");
  document.head.appendChild(script);
})();
