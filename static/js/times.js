// Times in the viewer's own time zone. The server writes every time as UTC with its zone said
// ("8 Dec 2026, 15:00 UTC") inside <time datetime="...Z" data-local="datetime|date|time">; this
// rewrites the text in the browser's zone, named ("8 Dec 2026, 16:00 CET"), and keeps the
// "… left" counters current. Without JavaScript the UTC text stays, which is still right.
(function () {
  "use strict";

  var STYLES = {
    datetime: { day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" },
    date: { day: "numeric", month: "short", year: "numeric" },
    time: { hour: "2-digit", minute: "2-digit", timeZoneName: "short" }
  };
  var formats = {};

  function format(style, date) {
    if (!formats[style]) {
      try {
        formats[style] = new Intl.DateTimeFormat(undefined, STYLES[style] || STYLES.datetime);
      } catch (e) {
        return null;
      }
    }
    return formats[style].format(date);
  }

  function left(deadline) {
    var minutes = Math.max(0, Math.floor((deadline - Date.now()) / 60000));
    if (minutes === 0) return "less than a minute left";
    var hours = Math.floor(minutes / 60);
    if (hours >= 48) return Math.round(hours / 24) + " days left";
    return hours ? hours + " h " + (minutes % 60) + " min left" : minutes + " min left";
  }

  function localise(root) {
    (root || document).querySelectorAll("time[data-local]").forEach(function (el) {
      var date = new Date(el.getAttribute("datetime"));
      var text = isNaN(date) ? null : format(el.getAttribute("data-local"), date);
      if (text && el.textContent !== text) {
        if (!el.title) el.title = el.textContent;  // the UTC time, on hover
        el.textContent = text;
      }
    });
    (root || document).querySelectorAll("[data-time-left]").forEach(function (el) {
      var deadline = Date.parse(el.getAttribute("data-time-left"));
      if (!isNaN(deadline)) el.textContent = left(deadline);
    });
  }

  window.ChatLinkTimes = { localise: localise };
  localise(document);
  window.setInterval(function () { localise(document); }, 30000);
})();
