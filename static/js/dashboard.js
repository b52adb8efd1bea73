// Keeps the status card live without inline scripts (the CSP forbids them):
// - ticks the expiry countdown every second between server updates;
// - asks htmx to re-fetch the card every data-poll-seconds, only while the tab is visible;
// - empties the error slot once a later request succeeds, so an old error never outlives its cause.
(function () {
  "use strict";

  function plural(count, word) {
    return count + " " + word + (count === 1 ? "" : "s");
  }

  function tickCountdowns() {
    var now = Date.now();
    document.querySelectorAll(".countdown[data-expires-at]").forEach(function (element) {
      var remaining = Date.parse(element.getAttribute("data-expires-at")) - now;
      if (isNaN(remaining)) return;
      if (remaining <= 0) {
        element.textContent = "expired";
        return;
      }
      var minutes = Math.floor(remaining / 60000);
      var days = Math.floor(minutes / 1440);
      var hours = Math.floor((minutes % 1440) / 60);
      element.textContent = plural(days, "day") + ", " + plural(hours, "hour") + ", " + plural(minutes % 60, "minute");
      element.setAttribute("data-ticked", String(now));
    });
  }

  var lastPoll = Date.now();

  function pollCard() {
    var card = document.getElementById("instagram-card");
    if (!card || !window.htmx || document.visibilityState !== "visible") return;
    var seconds = parseInt(card.getAttribute("data-poll-seconds") || "30", 10);
    if (Date.now() - lastPoll >= seconds * 1000) {
      lastPoll = Date.now();
      window.htmx.trigger(card, "poll");
    }
  }

  document.addEventListener("visibilitychange", function () {
    // Coming back to the tab: refresh at once instead of showing stale status.
    if (document.visibilityState === "visible") {
      lastPoll = 0;
      pollCard();
    }
  });

  // The page's own messages (from the last reconnect, say) describe a moment that is over once the
  // connection changes under the open page: they go, and the card's notice tells what is true now.
  document.body.addEventListener("connection-changed", function () {
    document.querySelectorAll("section.flashes").forEach(function (section) {
      section.remove();
    });
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var slot = document.getElementById("htmx-errors");
    if (slot && event.detail && event.detail.successful && !slot.contains(event.detail.elt)) {
      slot.replaceChildren();
    }
  });

  setInterval(function () {
    tickCountdowns();
    pollCard();
  }, 1000);
  tickCountdowns();
})();
