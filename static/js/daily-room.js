// The Daily room: Daily Prebuilt in an iframe (daily-js, vendored in static/vendor/), with
// ChatLink's own clock around it. Joins and leaves are reported to the app as hints; the clock
// starts when Daily itself says both are in (its webhooks, or its presence polled by the worker).
// Daily ejects both at the room's exp (moved to the call's end by the server), and this page
// leaves at the same moment from the server's endsAt.
(function () {
  "use strict";

  var call = window.ChatLinkCall;
  var Daily = window.Daily || window.DailyIframe;
  var container = document.getElementById("daily-frame");
  if (!call || !container) {
    return;
  }
  if (!Daily) {
    call.setStatus("The video room could not load. Please reload this page.");
    return;
  }
  var cfg = call.cfg;
  var frame = null;
  var FINAL_ERRORS = { ejected: true, "exp-room": true, "exp-token": true };

  function waitingText() {
    return "Waiting for " + cfg.otherName + "…";
  }

  call.hangUp = function () {
    if (frame) {
      var leaving = frame;
      frame = null;
      leaving.leave().catch(function () {}).then(function () {
        leaving.destroy();
      });
    }
  };

  // A hint only: for a Daily room, Daily's own webhooks (or its presence) decide when the call starts.
  call.mediaState = function () {
    var others = frame ? Object.keys(frame.participants() || {}).filter(function (id) {
      return id !== "local";
    }) : [];
    return others.length ? "connected" : "joined";
  };

  call.onState(function (data) {
    if (!call.inCall) {
      return;
    }
    var otherPresent = cfg.party === "seller" ? data.buyerPresent : data.sellerPresent;
    call.setStatus(otherPresent ? "You are in the call with " + cfg.otherName + "." : waitingText());
  });

  function joined() {
    call.inCall = true;
    call.reportPresence("joined").catch(function (error) {
      call.setStatus(call.explain(error));
    });
    call.startHeartbeat();
  }

  function left() {
    if (!call.inCall) {
      return;
    }
    call.inCall = false;
    call.stopHeartbeat();
    call.reportPresence("left").catch(function () {});
    if (!call.ended) {
      call.setStatus("You left the call. Reload this page to rejoin until it ends.");
    }
  }

  function open(data) {
    frame = Daily.createFrame(container, {
      showLeaveButton: true,
      showFullscreenButton: true,
      iframeStyle: { width: "100%", height: "100%", border: "0" }
    });
    frame.on("joined-meeting", joined);
    frame.on("left-meeting", left);
    frame.on("participant-joined", function () {
      call.reportPresence(call.mediaState()).catch(function () {});
    });
    frame.on("error", function (event) {
      var type = event && event.error && event.error.type;
      if (FINAL_ERRORS[type]) {
        call.finish("Time is up. Thank you for using ChatLink.");
        call.fetchOutcome();
      } else {
        call.setStatus("The video room reported a problem: " + ((event && event.errorMsg) || "unknown error"));
      }
    });
    call.setStatus("Check your camera and microphone in the room below, then join.");
    return frame.join({ url: data.roomUrl, token: data.token });
  }

  call.retrying(function () {
    return call.api("create").then(function () {
      return call.api("join");
    });
  }, function (error) {
    call.setStatus(call.explain(error));
  }).then(open).catch(function (error) {
    call.setStatus(error.message || "The video room could not start.");
  });
})();
