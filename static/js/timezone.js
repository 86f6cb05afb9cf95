// Time zones in the browser: pick the browser's own zone in the zone selects the server marked
// (the person corrects it if it is wrong), show times in the zone a select names, and open a
// booked call's room on time. Every page works without this script: the server renders times in
// a named zone and the selects have a value.
(function () {
  "use strict";

  var browserZone = "";
  try { browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { browserZone = ""; }

  // --- The browser's zone as the default ------------------------------------------------------
  document.querySelectorAll("select[data-browser-zone]").forEach(function (select) {
    if (!browserZone) return;
    var option = Array.prototype.find.call(select.options, function (o) { return o.value === browserZone; });
    if (option) select.value = browserZone;
  });

  // --- Times shown in the zone a select names -------------------------------------------------
  function formatIn(zone, date, withDate) {
    var options = { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: zone };
    if (withDate) { options.weekday = "short"; options.day = "numeric"; options.month = "short"; }
    try { return new Intl.DateTimeFormat(undefined, options).format(date); } catch (e) { return null; }
  }

  document.querySelectorAll("[data-zone-source]").forEach(function (container) {
    var select = document.getElementById(container.getAttribute("data-zone-source"));
    if (!select) return;
    function render() {
      container.querySelectorAll("time[datetime]").forEach(function (el) {
        var text = formatIn(select.value, new Date(el.getAttribute("datetime")), el.hasAttribute("data-with-date"));
        if (text) el.textContent = text;
      });
      container.querySelectorAll("[data-zone-name]").forEach(function (el) { el.textContent = select.value.replace(/_/g, " "); });
    }
    select.addEventListener("change", render);
    render();
  });

  // --- A booked call: open the room when its time comes ---------------------------------------
  var booked = document.getElementById("scheduled-call");
  if (booked) {
    var opensAt = Date.parse(booked.getAttribute("data-opens-at"));
    var serverNow = Date.parse(booked.getAttribute("data-server-time"));
    if (!isNaN(opensAt) && !isNaN(serverNow)) {
      // Counted from the server's clock, so a wrong clock on this computer does not matter.
      var wait = Math.max(0, opensAt - serverNow) + 1000;
      if (wait < 2147483647) setTimeout(function () { window.location.reload(); }, wait);
    }
  }
})();
