// The call page. ChatLinkCall (below) is what both rooms share: the API, the server's clock, the
// countdown with its one-minute warning, presence, and the end. Then, when the call uses the
// built-in room, this file runs it: camera and microphone, one RTCPeerConnection, and signaling
// through the app (POST /api/video/signal and /api/video/signal/poll, backed by Redis).
// static/js/daily-room.js runs the Daily room instead.
//
// Presence says what really happens, because the money follows it: "joined" while this window is in
// the room, "connected" only while media flows both ways (the built-in room: the peer connection is
// connected and the other party's video is playing), repeated every few seconds, and "left". The
// server starts the clock when both parties are connected, and settles an early end by the seconds
// both were connected.
(function () {
  "use strict";

  var root = document.getElementById("call");
  if (!root || !window.fetch) {
    return;
  }

  var cfg = {
    requestId: root.getAttribute("data-request-id"),
    token: root.getAttribute("data-token"),
    party: root.getAttribute("data-party"),
    provider: root.getAttribute("data-provider"),
    otherName: root.getAttribute("data-other-name"),
    durationSeconds: parseInt(root.getAttribute("data-duration-seconds"), 10) || 300
  };
  var FINAL = { completed: true, cancelled: true };
  // The server stops counting a window's media 12 s after its last "connected": beat well within.
  var HEARTBEAT_MS = 4000;
  var WARNING_MS = 60000;

  function $(id) {
    return document.getElementById(id);
  }

  function show(element, visible) {
    if (!element) {
      return;
    }
    if (visible) {
      element.removeAttribute("hidden");
    } else {
      element.setAttribute("hidden", "");
    }
  }

  function randomId() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  // One id per window: the server lets one window per party into the call at a time.
  var clientId = randomId();
  var listeners = [];
  var call = {
    cfg: cfg,
    clientId: clientId,
    startedAt: null,
    endsAt: null,
    skewMs: 0,
    bestRttMs: Infinity,
    ended: false,
    inCall: false,
    hangUp: function () {},
    // What the heartbeat reports while in the call: each room says whether its media flows.
    mediaState: function () {
      return "joined";
    }
  };

  function setStatus(text) {
    // Only real changes: the status is a live region, and polls repeat the same news.
    if ($("call-status").textContent !== text) {
      $("call-status").textContent = text;
    }
  }

  // The server's time minus ours, from the fastest exchange so far: the server's answer was
  // written somewhere within the round trip, most likely near its middle.
  function learnClock(serverTime, sentAt, receivedAt) {
    var server = Date.parse(serverTime);
    var rtt = receivedAt - sentAt;
    if (isNaN(server) || rtt > call.bestRttMs) {
      return;
    }
    call.bestRttMs = rtt;
    call.skewMs = server - (sentAt + rtt / 2);
  }

  function serverNow() {
    return Date.now() + call.skewMs;
  }

  function applyState(data) {
    if (!data || !data.status) {
      return;
    }
    if (data.startedAt && data.endsAt) {
      call.startedAt = Date.parse(data.startedAt);
      call.endsAt = Date.parse(data.endsAt);
    }
    listeners.forEach(function (fn) {
      fn(data);
    });
    if (FINAL[data.status]) {
      finish(data.status === "cancelled" ? "This call did not take place." : "Thank you for using ChatLink.");
      showOutcome(data);
    }
  }

  // The page learnt of the end on its own (its timer ran out, or a refusal said the other party
  // ended it between two polls): ask for the settled state until it comes. "end" on an ended
  // call changes nothing and answers it, outcome included; the server records the end within a
  // second or so (its timer, or its sweep).
  var outcomeAsked = false;
  function fetchOutcome() {
    if (outcomeAsked) {
      return;
    }
    outcomeAsked = true;
    var attempts = 0;
    (function ask() {
      attempts += 1;
      api("end").then(function (data) {
        if (!data.outcome && attempts < 10) {
          window.setTimeout(ask, 1500);
        }
      }, function () {
        if (attempts < 10) {
          window.setTimeout(ask, 1500);
        }
      });
    })();
  }

  // What happened and what it means for this party's money, as the server settled it.
  function showOutcome(data) {
    if (data.outcome) {
      $("call-outcome").textContent = data.outcome;
      show($("call-outcome"), true);
    }
    show($("call-problem"), Boolean(data.problemReportOpen));
  }

  function api(path, body) {
    var payload = { requestId: cfg.requestId, token: cfg.token, clientId: clientId };
    Object.keys(body || {}).forEach(function (key) {
      payload[key] = body[key];
    });
    var sentAt = Date.now();
    return fetch("/api/video/" + path, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(payload),
      credentials: "same-origin",
      cache: "no-store"
    }).then(function (response) {
      return response.json().catch(function () {
        return {};
      }).then(function (data) {
        if (data && data.serverTime) {
          learnClock(data.serverTime, sentAt, Date.now());
        }
        if (!response.ok) {
          var info = (data && data.error) || {};
          var error = new Error(info.message || "The request failed.");
          error.status = response.status;
          error.code = info.code;
          if (info.code === "call_ended") {
            finish("Thank you for using ChatLink.");
            fetchOutcome();
          }
          throw error;
        }
        applyState(data);
        return data;
      });
    });
  }

  function reportPresence(state) {
    return api("presence", { state: state });
  }

  // "left" must reach the server even while the page is being closed.
  function beaconLeft() {
    if (!call.inCall || call.ended) {
      return;
    }
    var body = JSON.stringify({
      requestId: cfg.requestId, token: cfg.token, clientId: clientId, state: "left"
    });
    if (navigator.sendBeacon) {
      navigator.sendBeacon("/api/video/presence", new Blob([body], { type: "application/json" }));
    }
  }
  window.addEventListener("pagehide", beaconLeft);

  var heartbeat = null;
  function startHeartbeat() {
    stopHeartbeat();
    heartbeat = window.setInterval(function () {
      if (call.inCall && !call.ended) {
        reportPresence(call.mediaState()).catch(function () {});
      }
    }, HEARTBEAT_MS);
  }
  function stopHeartbeat() {
    if (heartbeat) {
      window.clearInterval(heartbeat);
      heartbeat = null;
    }
  }

  function format(ms) {
    var total = Math.max(0, Math.ceil(ms / 1000));
    var minutes = Math.floor(total / 60);
    var seconds = total % 60;
    return minutes + ":" + (seconds < 10 ? "0" : "") + seconds;
  }

  var warned = false;
  function tick() {
    if (call.ended) {
      return;
    }
    if (!call.endsAt) {
      $("call-countdown").textContent = format(cfg.durationSeconds * 1000);
      return;
    }
    var left = call.endsAt - serverNow();
    $("call-countdown").textContent = format(left);
    show($("call-clock-note"), false);
    if (left <= WARNING_MS && !warned) {
      warned = true;
      show($("call-warning"), true);
    }
    if (left <= 0) {
      // Time is up: hang up here. A second later, ask the server for the settled end: its timer
      // normally has recorded it, and "end" then only answers it.
      finish("Time is up. Thank you for using ChatLink.");
      window.setTimeout(fetchOutcome, 1000);
    }
  }
  var clock = window.setInterval(tick, 250);

  function finish(message) {
    if (call.ended) {
      return;
    }
    call.ended = true;
    call.inCall = false;
    window.clearInterval(clock);
    stopHeartbeat();
    try {
      call.hangUp();
    } catch (ignored) {
      // The room is going away anyway.
    }
    $("call-countdown").textContent = "0:00";
    show($("call-warning"), false);
    show($("end-button"), false);
    // Only the ending is left to see: the room, its controls and the help go away.
    Array.prototype.forEach.call(root.querySelectorAll(".call-stage, .call-controls, .daily-frame, .call-help"),
      function (element) {
        show(element, false);
      });
    $("call-ended-text").textContent = message;
    // The buyer rates a call that took place (it had started) right here, not only from the email.
    if ($("call-rate")) show($("call-rate"), Boolean(call.endsAt));
    show($("call-ended"), true);
    setStatus("This call has ended.");
  }

  function explain(error) {
    if (error.code === "in_use") {
      return "This link is already open in another window. Close it; trying again…";
    }
    if (error.code === "room_not_ready") {
      return "Getting your room ready…";
    }
    if (error.status === 403) {
      return error.message;
    }
    return "Connection problem; trying again…";
  }

  // Keep trying while the problem is one that passes (room not ready, another window, network).
  function retrying(fn, onError) {
    return new Promise(function (resolve, reject) {
      function attempt() {
        fn().then(resolve, function (error) {
          if (call.ended || error.status === 403 || error.code === "call_ended") {
            reject(error);
            return;
          }
          if (onError) {
            onError(error);
          }
          window.setTimeout(attempt, error.code === "in_use" ? 5000 : 2000);
        });
      }
      attempt();
    });
  }

  var endButton = $("end-button");
  if (endButton) {
    endButton.addEventListener("click", function () {
      if (!window.confirm(endButton.getAttribute("data-confirm") || "End the call now for both of you?")) {
        return;
      }
      endButton.disabled = true;
      api("end").then(function (data) {
        finish("You ended the call. Thank you for using ChatLink.");
        showOutcome(data);
      }, function (error) {
        endButton.disabled = false;
        setStatus(error.message);
      });
    });
  }
  listeners.push(function (data) {
    show(endButton, Boolean(data.startedAt) && call.inCall && !FINAL[data.status]);
  });

  call.api = api;
  call.reportPresence = reportPresence;
  call.startHeartbeat = startHeartbeat;
  call.stopHeartbeat = stopHeartbeat;
  call.finish = finish;
  call.fetchOutcome = fetchOutcome;
  call.retrying = retrying;
  call.explain = explain;
  call.setStatus = setStatus;
  call.onState = function (fn) {
    listeners.push(fn);
  };
  window.ChatLinkCall = call;

  if (cfg.provider === "builtin") {
    builtinRoom(call);
  }

  // The built-in room.
  function builtinRoom(call) {
    var POLL_MS = 500;
    var joinButton = $("join-button");
    var leaveButton = $("leave-button");
    var muteButton = $("mute-button");
    var cameraButton = $("camera-button");
    var localVideo = $("local-video");
    var remoteVideo = $("remote-video");
    var localStream = null;
    var iceServers = [];
    var pc = null;
    var remoteId = null;
    var pendingCandidates = [];
    var cursor = null;
    var polling = false;
    var sendChain = Promise.resolve();
    var seller = cfg.party === "seller"; // the seller makes the offers; the buyer answers
    var remoteProgressAt = 0; // when the other party's video last advanced
    var reported = null;

    // Media flows both ways: the connection is up and the other party's video is playing (its time
    // advanced within the last 2 s; a frozen or black stream does not count).
    call.mediaState = function () {
      var playing = remoteVideo.srcObject && !remoteVideo.paused && remoteVideo.videoWidth > 0 &&
        Date.now() - remoteProgressAt < 2000;
      return pc && pc.connectionState === "connected" && playing ? "connected" : "joined";
    };

    // Tell the server at once when that changes (the heartbeat repeats it meanwhile).
    function mediaChanged() {
      if (!call.inCall || call.ended) {
        return;
      }
      var state = call.mediaState();
      if (state !== reported) {
        reported = state;
        call.reportPresence(state).catch(function () {
          reported = null;
        });
      }
    }
    remoteVideo.addEventListener("timeupdate", function () {
      var first = Date.now() - remoteProgressAt >= 2000;
      remoteProgressAt = Date.now();
      if (first) {
        mediaChanged();
      }
    });
    window.setInterval(mediaChanged, 1000);

    // At the end both pages hang up by themselves: no "bye" is needed (nor accepted any more).
    call.hangUp = function () {
      polling = false;
      closePeer();
      if (localStream) {
        localStream.getTracks().forEach(function (track) {
          track.stop();
        });
      }
    };

    function waitingText() {
      return "Waiting for " + cfg.otherName + "…";
    }

    // Messages are posted one after another, so the other side reads them in the order sent.
    function send(message) {
      message.from = call.clientId;
      if (remoteId && message.type !== "hello") {
        message.to = remoteId;
      }
      sendChain = sendChain.then(function () {
        return call.api("signal", { message: message });
      }).catch(function () {});
      return sendChain;
    }

    function closePeer() {
      if (pc) {
        pc.ontrack = pc.onicecandidate = pc.onconnectionstatechange = null;
        pc.close();
        pc = null;
      }
      pendingCandidates = [];
      remoteVideo.srcObject = null;
      show($("remote-placeholder"), true);
    }

    function newPeer() {
      closePeer();
      pc = new RTCPeerConnection({ iceServers: iceServers });
      if (localStream) {
        localStream.getTracks().forEach(function (track) {
          pc.addTrack(track, localStream);
        });
      }
      pc.ontrack = function (event) {
        remoteVideo.srcObject = event.streams[0];
        show($("remote-placeholder"), false);
      };
      pc.onicecandidate = function (event) {
        if (event.candidate) {
          send({ type: "candidate", candidate: event.candidate.toJSON() });
        }
      };
      pc.onconnectionstatechange = function () {
        if (!pc) {
          return;
        }
        if (pc.connectionState === "connected") {
          call.setStatus(call.startedAt ? "You are in the call with " + cfg.otherName + "." : waitingText());
        } else if (pc.connectionState === "failed") {
          call.setStatus("The video could not connect to " + cfg.otherName + "; trying again…");
          if (seller) {
            offer(true);
          }
        }
        mediaChanged();
      };
    }

    function offer(iceRestart) {
      if (!pc) {
        return;
      }
      pc.createOffer(iceRestart ? { iceRestart: true } : {}).then(function (description) {
        return pc.setLocalDescription(description);
      }).then(function () {
        send({ type: "offer", sdp: pc.localDescription.sdp });
      }).catch(function () {
        call.setStatus("Could not start the video connection; trying again…");
      });
    }

    function flushCandidates() {
      var waiting = pendingCandidates;
      pendingCandidates = [];
      waiting.forEach(function (candidate) {
        pc.addIceCandidate(candidate).catch(function () {});
      });
    }

    function handle(message) {
      if (message.to && message.to !== call.clientId) {
        return; // meant for another window of the other party
      }
      if (message.type === "hello") {
        // A hello to everyone means that window (re)joined and starts over; a hello addressed
        // to us is the answer to ours, and only matters if it comes from a window we do not know.
        var fresh = !message.to;
        if (fresh || message.from !== remoteId) {
          remoteId = message.from;
          newPeer();
          if (fresh) {
            send({ type: "hello", to: remoteId });
          }
          if (seller) {
            offer(false);
          }
        }
        return;
      }
      if (message.from !== remoteId || !pc) {
        return;
      }
      if (message.type === "offer" && !seller) {
        pc.setRemoteDescription({ type: "offer", sdp: message.sdp }).then(function () {
          flushCandidates();
          return pc.createAnswer();
        }).then(function (description) {
          return pc.setLocalDescription(description);
        }).then(function () {
          send({ type: "answer", sdp: pc.localDescription.sdp });
        }).catch(function () {});
      } else if (message.type === "answer" && seller) {
        pc.setRemoteDescription({ type: "answer", sdp: message.sdp }).then(flushCandidates).catch(function () {});
      } else if (message.type === "candidate" && message.candidate) {
        if (pc.remoteDescription) {
          pc.addIceCandidate(message.candidate).catch(function () {});
        } else {
          pendingCandidates.push(message.candidate);
        }
      } else if (message.type === "bye") {
        remoteId = null;
        closePeer();
        call.setStatus(cfg.otherName.charAt(0).toUpperCase() + cfg.otherName.slice(1) + " left. " + waitingText());
      }
    }

    function poll() {
      if (!polling || call.ended) {
        return;
      }
      call.api("signal/poll", { after: cursor }).then(function (data) {
        cursor = data.cursor || cursor;
        (data.messages || []).forEach(handle);
      }, function (error) {
        if (error.code === "in_use") {
          leave("This link was opened in another window, so this one left the call.");
        }
      }).then(function () {
        if (polling) {
          window.setTimeout(poll, POLL_MS);
        }
      });
    }

    function enter() {
      joinButton.disabled = true;
      call.setStatus("Joining…");
      call.retrying(function () {
        return call.api("join");
      }, function (error) {
        call.setStatus(call.explain(error));
      }).then(function (data) {
        iceServers = data.iceServers || [];
        cursor = data.signalCursor || null;
        remoteId = null;
        reported = "joined";
        return call.reportPresence("joined");
      }).then(function () {
        call.inCall = true;
        polling = true;
        show(joinButton, false);
        show(leaveButton, true);
        call.setStatus(call.startedAt ? "Connecting to " + cfg.otherName + "…" : waitingText());
        send({ type: "hello" });
        call.startHeartbeat();
        poll();
      }, function (error) {
        joinButton.disabled = false;
        call.setStatus(call.explain(error));
      });
    }

    function leave(message) {
      polling = false;
      call.inCall = false;
      reported = null;
      call.stopHeartbeat();
      send({ type: "bye" });
      closePeer();
      call.reportPresence("left").catch(function () {});
      show(leaveButton, false);
      show(joinButton, true);
      joinButton.disabled = false;
      joinButton.textContent = "Rejoin call";
      call.setStatus(message || "You left the call. You can rejoin until it ends.");
    }

    function toggle(kind, button, onLabel, offLabel) {
      if (!localStream) {
        return;
      }
      var tracks = kind === "audio" ? localStream.getAudioTracks() : localStream.getVideoTracks();
      var off = button.getAttribute("aria-pressed") !== "true";
      tracks.forEach(function (track) {
        track.enabled = !off;
      });
      button.setAttribute("aria-pressed", off ? "true" : "false");
      button.textContent = off ? offLabel : onLabel;
    }

    muteButton.addEventListener("click", function () {
      toggle("audio", muteButton, "Mute microphone", "Unmute microphone");
    });
    cameraButton.addEventListener("click", function () {
      toggle("video", cameraButton, "Turn camera off", "Turn camera on");
    });
    joinButton.addEventListener("click", enter);
    leaveButton.addEventListener("click", function () {
      leave();
    });
    call.onState(function (data) {
      if (!call.inCall) {
        return;
      }
      var otherPresent = seller ? data.buyerPresent : data.sellerPresent;
      if (!otherPresent) {
        call.setStatus(waitingText());
      } else if (data.startedAt && pc && pc.connectionState === "connected") {
        call.setStatus("You are in the call with " + cfg.otherName + ".");
      } else if (!data.startedAt) {
        call.setStatus("Connecting your video to " + cfg.otherName + "… The time starts when it connects.");
      }
    });

    // The pre-join screen: make sure the room exists, and show the camera.
    var media = navigator.mediaDevices && navigator.mediaDevices.getUserMedia
      ? navigator.mediaDevices.getUserMedia({ audio: true, video: true }).then(function (stream) {
        localStream = stream;
        localVideo.srcObject = stream;
      }, function () {
        call.setStatus("Allow the camera and microphone to be seen and heard; you can still join.");
      })
      : Promise.resolve();
    var room = call.retrying(function () {
      return call.api("create");
    }, function (error) {
      call.setStatus(call.explain(error));
    });
    Promise.all([room, media]).then(function () {
      if (call.ended) {
        return;
      }
      joinButton.disabled = false;
      if (!localStream) {
        muteButton.disabled = cameraButton.disabled = true;
      } else {
        call.setStatus("Check your camera and microphone, then join the call.");
      }
    }, function (error) {
      call.setStatus(error.message);
    });
  }
})();
