// The seller's dashboard: copy the paywall link, keep the list of pending requests fresh, and
// accept or decline a request. The page works without this script; it only adds convenience.
(function () {
  "use strict";

  var POLL_MS = 5000;
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrfToken = csrfMeta ? csrfMeta.getAttribute("content") : "";

  // --- Copy the link ------------------------------------------------------------------------
  document.querySelectorAll("[data-copy-target]").forEach(function (button) {
    button.addEventListener("click", function () {
      var input = document.getElementById(button.getAttribute("data-copy-target"));
      var status = document.getElementById("copy-status");
      var done = function (ok) {
        if (status) status.textContent = ok ? "Link copied." : "Select the link and copy it.";
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value).then(function () { done(true); }, function () { done(false); });
      } else {
        // Plain-http development: the Clipboard API is unavailable, so select the text instead.
        input.focus();
        input.select();
        var ok = false;
        try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
        done(ok);
      }
    });
  });

  // --- Requests ------------------------------------------------------------------------------
  var section = document.getElementById("requests");
  if (!section) return;
  var list = document.getElementById("request-list");
  var empty = document.getElementById("requests-empty");
  var statusLine = document.getElementById("requests-status");
  var currency = (section.getAttribute("data-currency") || "usd").toUpperCase();
  var pollUrl = section.getAttribute("data-poll-url");
  // Times in the seller's own zone (their availability's) once they have set one, else the browser's.
  var zone = section.getAttribute("data-time-zone") || undefined;
  var dateFormat;
  try {
    dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short", timeZone: zone });
  } catch (e) {
    dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  }
  var money = new Intl.NumberFormat(undefined, { style: "currency", currency: currency });
  var exponent = money.resolvedOptions().maximumFractionDigits;

  function say(text) { if (statusLine) statusLine.textContent = text; }

  var wholeMoney = new Intl.NumberFormat(undefined, { style: "currency", currency: currency, minimumFractionDigits: 0 });

  // Whole amounts without ".00", as the server renders them.
  function formatMoney(cents) {
    var unit = Math.pow(10, exponent);
    return (cents % unit === 0 ? wholeMoney : money).format(cents / unit);
  }

  function localiseTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) el.textContent = dateFormat.format(when);
    });
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;  // textContent only: these are the buyer's own words
    return node;
  }

  function timeEl(iso) {
    var node = el("time", "", iso);
    node.setAttribute("datetime", iso);
    return node;
  }

  function button(label, action, id, className) {
    var node = el("button", "button button-small " + className, label);
    node.type = "button";
    node.setAttribute("data-action", action);
    node.setAttribute("data-id", id);
    return node;
  }

  function renderItem(item) {
    var li = el("li", "pending");
    li.setAttribute("data-id", item.id);
    var head = el("p", "pending-head");
    head.appendChild(el("strong", "", item.buyerEmail));
    head.appendChild(document.createTextNode(" "));
    head.appendChild(el("span", "pending-amount", formatMoney(item.grossCents) + " · you get " + formatMoney(item.netCents)));
    li.appendChild(head);
    if (item.note) li.appendChild(el("p", "pending-note", item.note));
    var times = el("p", "hint");
    times.appendChild(document.createTextNode("Requested "));
    times.appendChild(timeEl(item.createdAt));
    times.appendChild(document.createTextNode(" · expires "));
    times.appendChild(timeEl(item.expiresAt));
    li.appendChild(times);
    var proposed = item.proposedStarts || [];
    if (proposed.length) {
      li.appendChild(el("p", "pending-when", "Proposed times:"));
      var choices = el("ul", "proposed-list");
      proposed.forEach(function (start) {
        var choice = el("li");
        choice.appendChild(timeEl(start));
        choice.appendChild(document.createTextNode(" "));
        var pick = button("Accept this time", "accept", item.id, "button-primary");
        pick.setAttribute("data-start", start);
        choice.appendChild(pick);
        choices.appendChild(choice);
      });
      li.appendChild(choices);
    }
    var row = el("div", "row");
    row.appendChild(button(proposed.length ? "Accept for right now" : "Accept", "accept", item.id, "button-primary"));
    row.appendChild(button("Decline", "decline", item.id, "button-danger"));
    li.appendChild(row);
    return li;
  }

  function render(requests) {
    var pending = requests.filter(function (r) { return r.status === "PENDING"; });
    var fragment = document.createDocumentFragment();
    pending.forEach(function (item) { fragment.appendChild(renderItem(item)); });
    list.replaceChildren(fragment);
    localiseTimes(list);
    empty.hidden = pending.length > 0;
  }

  var timer = null;

  function refresh() {
    // Do not pull the list from under a seller who is about to click a button.
    if (document.hidden || list.contains(document.activeElement)) return;
    fetch(pollUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 404 || response.status === 405) {
          clearInterval(timer);  // no live endpoint on this server: the rendered list stays
          return null;
        }
        if (response.status === 401) {
          clearInterval(timer);
          say("You were logged out. Reload the page to log in again.");
          return null;
        }
        return response.ok ? response.json() : null;
      })
      .then(function (body) { if (body && Array.isArray(body.requests)) render(body.requests); })
      .catch(function () { /* offline for a moment: try again on the next tick */ });
  }

  list.addEventListener("click", function (event) {
    var target = event.target.closest("button[data-action]");
    if (!target) return;
    var action = target.getAttribute("data-action");
    var id = target.getAttribute("data-id");
    var start = target.getAttribute("data-start");
    var item = target.closest(".pending");
    var buttons = item ? item.querySelectorAll("button") : [target];
    Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
    say(action === "accept" ? "Accepting…" : "Declining…");
    fetch("/api/requests/" + encodeURIComponent(id) + "/" + action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken },
      body: JSON.stringify(start ? { startAt: start } : {})
    })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (body) {
          if (!response.ok) {
            var message = body && body.error && body.error.message;
            throw new Error(message || "That did not work (" + response.status + ").");
          }
          return body;
        });
      })
      .then(function () {
        if (item) item.remove();
        empty.hidden = list.children.length > 0;
        if (action === "accept" && start) {
          // The booked call is listed under "Calls", which this script does not redraw.
          say("Accepted for " + dateFormat.format(new Date(start)) + ". You and the buyer get a calendar invitation; the call is listed under Calls.");
          window.location.reload();
          return;
        }
        say(action === "accept" ? "Accepted. The buyer gets the call link by email." : "Declined. The buyer will not pay for this call.");
        refresh();
      })
      .catch(function (error) {
        say(error.message);
        Array.prototype.forEach.call(buttons, function (b) { b.disabled = false; });
      });
  });

  localiseTimes(list);
  if (pollUrl) timer = setInterval(refresh, POLL_MS);

  // --- "Available now" stays on while this page is open and seen ------------------------------
  var switchForm = document.getElementById("available-now");
  if (switchForm && switchForm.getAttribute("data-available") === "1") {
    setInterval(function () {
      if (document.hidden) return;
      fetch("/api/availability/heartbeat", {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRFToken": csrfToken }
      }).catch(function () { /* next minute */ });
    }, 60000);
  }
})();
