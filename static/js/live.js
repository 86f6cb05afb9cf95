// Live pages: the dashboard, the requests page and the buyer's status page change by themselves.
// The page names a long-poll (data-live-url) and the version it was rendered with
// (data-live-version). The long-poll answers as soon as something changed; the page then fetches
// itself again and swaps in each region marked data-live-region (by id), so what shows is what the
// server renders, one way. A region the person is using (focus inside, an open <details>, a field
// they typed in) is left alone until they are done. Without JavaScript the page refreshes itself
// (a <noscript> meta refresh).
(function () {
  "use strict";

  var root = document.querySelector("[data-live-url]");
  if (!root || !window.fetch || !window.DOMParser) return;
  var url = root.getAttribute("data-live-url");
  var version = root.getAttribute("data-live-version") || "0";
  var failures = 0;
  var waiting = false;
  var stale = false;  // a change is known but a busy region still shows the old state
  var statusLine = document.querySelector("[data-live-status]");

  function later(ms) { window.setTimeout(wait, ms); }

  function wait() {
    if (waiting) return;
    if (document.hidden) return;  // resumed by visibilitychange: a hidden tab holds no server thread
    waiting = true;
    var address = url + (url.indexOf("?") < 0 ? "?" : "&") + "since=" + encodeURIComponent(version);
    fetch(address, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 401 || response.status === 403 || response.status === 404) {
          throw new Error("stop");
        }
        if (!response.ok) throw new Error("retry");
        return response.json();
      })
      .then(function (data) {
        waiting = false;
        failures = 0;
        if (data.changed) return refresh().then(function () { later(0); });
        later(data.retryAfter ? data.retryAfter * 1000 : 0);
      })
      .catch(function (error) {
        waiting = false;
        if (error && error.message === "stop") return;  // logged out, or the page is gone: the meta refresh is off, nothing to do
        failures += 1;
        later(Math.min(30000, 1000 * Math.pow(2, failures)));
      });
  }

  function busy(region) {
    var active = document.activeElement;
    if (active && active !== document.body && region.contains(active)) return true;
    if (region.querySelector("details[open]")) return true;
    return Array.prototype.some.call(region.querySelectorAll("textarea, input[type=text], input[type=email]"), function (field) {
      return field.value !== field.defaultValue;
    });
  }

  function swap(doc) {
    var skipped = false;
    document.querySelectorAll("[data-live-region]").forEach(function (region) {
      var fresh = doc.getElementById(region.id);
      if (!fresh || fresh.outerHTML === region.outerHTML) return;
      if (busy(region)) { skipped = true; return; }
      region.replaceWith(document.adoptNode(fresh));
    });
    if (doc.title) document.title = doc.title;
    if (window.ChatLinkTimes) window.ChatLinkTimes.localise(document);
    return skipped;
  }

  function refresh() {
    // X-ChatLink-Live: the server keeps its flash messages for the next real page, not this fetch.
    return fetch(window.location.href, { credentials: "same-origin", cache: "no-store", headers: { Accept: "text/html", "X-ChatLink-Live": "1" } })
      .then(function (response) { return response.ok ? response.text() : Promise.reject(new Error("retry")); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("[data-live-url]");
        stale = swap(doc);
        // The fetched page read its version before its data: anything later comes on the next wait.
        if (fresh) version = fresh.getAttribute("data-live-version") || version;
        if (statusLine) statusLine.textContent = stale ? "There is news: finish what you are doing to see it." : "";
        root.setAttribute("data-live-version", version);
        root.dispatchEvent(new CustomEvent("live:updated", { bubbles: true }));
      });
  }

  // A region left alone because it was in use is brought up to date once it is free.
  function retryStale() {
    if (stale) window.setTimeout(function () { if (stale) refresh().catch(function () {}); }, 300);
  }
  document.addEventListener("focusout", retryStale);
  document.addEventListener("toggle", retryStale, true);
  document.addEventListener("submit", function () { stale = false; }, true);

  document.addEventListener("visibilitychange", function () { if (!document.hidden) wait(); });
  wait();
})();
