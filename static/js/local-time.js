// Shows times in the reader's own time zone, on every page (the CSP forbids inline scripts).
// The server writes <time datetime="...Z" data-local="absolute|relative"> in UTC, which is what a
// reader without JavaScript sees; this rewrites the text into the browser's time zone and, where the
// template asked for one (data-local="relative"), a phrase such as "(2 hours ago)" kept fresh every
// half minute. htmx fires htmx:load on every fragment it swaps in, so those are rewritten too.
(function () {
  "use strict";

  // The page is in English; en-GB reads like the server's UTC text: "26 Nov 2026, 15:05 CET", the
  // year left out when it is this year's ("26 Nov, 15:05 CET").
  var options = { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", timeZoneName: "short" };
  var thisYear = new Intl.DateTimeFormat("en-GB", options);
  var otherYear = new Intl.DateTimeFormat("en-GB", Object.assign({ year: "numeric" }, options));

  function localTime(when, now) {
    var sameYear = new Date(when).getFullYear() === new Date(now).getFullYear();
    return (sameYear ? thisYear : otherYear).format(when);
  }

  // The same words as webapp/templating.py's relative_phrase.
  function duration(seconds) {
    var units = [["day", 86400], ["hour", 3600], ["minute", 60]];
    for (var i = 0; i < units.length; i++) {
      if (seconds >= units[i][1]) {
        var count = Math.floor(seconds / units[i][1]);
        return count + " " + units[i][0] + (count === 1 ? "" : "s");
      }
    }
    return "less than a minute";
  }

  function relativePhrase(when, now) {
    var seconds = Math.floor((when - now) / 1000);
    return seconds > 0 ? "in " + duration(seconds) : duration(-seconds) + " ago";
  }

  function localise(root) {
    if (!root || !root.querySelectorAll) return;
    var now = Date.now();
    var times = Array.prototype.slice.call(root.querySelectorAll("time[data-local]"));
    if (root.matches && root.matches("time[data-local]")) times.push(root);
    times.forEach(function (element) {
      var when = Date.parse(element.getAttribute("datetime"));
      if (isNaN(when)) return;
      var text = localTime(when, now);
      if (element.getAttribute("data-local") === "relative") text += " (" + relativePhrase(when, now) + ")";
      element.textContent = text;
    });
  }

  document.addEventListener("htmx:load", function (event) {
    localise(event.detail.elt);
  });
  setInterval(function () {
    localise(document);
  }, 30000);
  localise(document);
})();
