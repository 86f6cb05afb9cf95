// The buyer's status page: asks GET /api/requests/status every few seconds and shows the state
// without a reload. The page is complete without this script (it refreshes itself instead).
(function () {
  "use strict";

  var root = document.getElementById("buyer-status");
  if (!root || !window.fetch) {
    return;
  }
  var url = root.getAttribute("data-status-url");
  var pollMs = (parseInt(root.getAttribute("data-poll-seconds"), 10) || 3) * 1000;
  var FINAL = { declined: true, cancelled: true, completed: true };
  var status = root.getAttribute("data-status");
  var expiresAt = root.getAttribute("data-expires-at");

  function setHidden(element, hidden) {
    if (hidden) {
      element.setAttribute("hidden", "");
    } else {
      element.removeAttribute("hidden");
    }
  }

  function each(selector, fn) {
    Array.prototype.forEach.call(root.querySelectorAll(selector), fn);
  }

  function timeLeft(iso) {
    var seconds = Math.round((Date.parse(iso) - Date.now()) / 1000);
    if (!(seconds > 0)) {
      return "now";
    }
    if (seconds >= 7200) {
      return "in about " + Math.round(seconds / 3600) + " hours";
    }
    var minutes = Math.max(1, Math.floor(seconds / 60));
    return "in " + minutes + (minutes === 1 ? " minute" : " minutes");
  }

  function showCountdown() {
    if (expiresAt) {
      each("[data-countdown]", function (element) {
        element.textContent = timeLeft(expiresAt);
      });
    }
  }

  function render(data) {
    status = data.status;
    expiresAt = data.expiresAt || expiresAt;
    root.setAttribute("data-status", status);
    each("[data-state]", function (element) {
      setHidden(element, element.getAttribute("data-state") !== status);
    });
    each("[data-reason]", function (element) {
      setHidden(element, element.getAttribute("data-reason") !== data.cancelReason);
    });
    each("[data-join-link]", function (element) {
      if (data.joinUrl) {
        element.setAttribute("href", data.joinUrl);
      }
    });
    each("[data-join-ready]", function (element) {
      setHidden(element, !data.joinUrl);
    });
    each("[data-join-waiting]", function (element) {
      setHidden(element, Boolean(data.joinUrl));
    });
    each("[data-outcome]", function (element) {
      element.textContent = data.outcome || "";
      setHidden(element, !data.outcome);
    });
    each("[data-problem-link]", function (element) {
      if (data.problemUrl) {
        element.setAttribute("href", data.problemUrl);
      }
    });
    each("[data-problem]", function (element) {
      setHidden(element, !data.problemUrl);
    });
    each("[data-final-only]", function (element) {
      setHidden(element, !FINAL[status]);
    });
    each("[data-scheduled]", function (element) {
      setHidden(element, !data.scheduledStart);
    });
    if (data.scheduledStart) {
      each("[data-scheduled-start]", function (element) {
        if (element.getAttribute("datetime") === data.scheduledStart) return;  // already rendered by the server
        element.setAttribute("datetime", data.scheduledStart);
        element.textContent = inBuyersZone(data.scheduledStart);
      });
      each("[data-join-link]", function (element) { element.textContent = "Your call page"; });
    }
    showCountdown();
  }

  // The booked time in the zone the buyer paid from (the page names it), as the server writes it.
  function inBuyersZone(iso) {
    var zone = root.getAttribute("data-time-zone") || "UTC";
    var date = new Date(iso);
    try {
      var text = new Intl.DateTimeFormat("en-GB", {
        weekday: "long", day: "numeric", month: "long", year: "numeric",
        hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: zone
      }).format(date);
      return text + " (" + zone + ")";
    } catch (e) {
      return date.toISOString();
    }
  }

  function schedule(ms) {
    if (!FINAL[status]) {
      window.setTimeout(check, ms);
    }
  }

  function check() {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (data) {
        if (data) {
          render(data);
        }
        // Fast while the payment is being confirmed; a seller's answer can take hours.
        schedule(status === "processing" ? pollMs : pollMs * 4);
      })
      .catch(function () {
        schedule(pollMs * 4);
      });
  }

  showCountdown();
  window.setInterval(showCountdown, 30000);
  schedule(pollMs);
})();
