// The seller's dashboard: copy the paywall link, and keep "Available now" on while the page is
// open and seen. Everything else on the page works without a script (plain forms); live.js keeps
// it current.
(function () {
  "use strict";

  // Delegated, so it keeps working after live.js swaps parts of the page.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) return;
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

  // --- "Available now" stays on while this page is open and seen ------------------------------
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrfToken = csrfMeta ? csrfMeta.getAttribute("content") : "";
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
