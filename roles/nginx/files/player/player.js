/* Installed by mediagrid's nginx role (front nodes); the loopback dev cluster serves this
 * same file. The cluster's player page: /player/#src=<HLS URL as the media API gives it>.
 *
 * The URL comes in the fragment, which the browser never sends, so its token stays out of
 * every server log. Only this origin's /hls/ playlists play: the page must not become an
 * open player for anyone's streams. hls.js plays them (MSE), or the browser itself where it
 * plays HLS natively. What the viewer saw (first-frame time, stalls, quality switches,
 * errors) goes to the tracker's POST /api/v1/qos once after the first frame and once when
 * the page goes away, and is readable as window.mediagridPlayer.
 */
(function () {
  "use strict";

  var HLS_PREFIX = "/hls/";
  var QOS_URL = "/api/v1/qos";

  var video = document.getElementById("video");
  var quality = document.getElementById("quality");
  var levelText = document.getElementById("level");
  var message = document.getElementById("message");

  // The measurements, live: times in ms from navigation start (performance.now()).
  var state = {
    firstFrameMs: null,
    stalls: 0,
    stallMs: 0,
    switches: 0,
    levels: [],
    currentLevel: -1,
    autoLevel: true,
    errors: 0,
    refused: null,
    reports: 0,
    reported: []
  };
  window.mediagridPlayer = state;

  var src = null; // the checked URL (a URL object)
  var hls = null;
  var playingAt = null; // when the first "playing" came, and the position then
  var playingFrom = 0;
  var stallStart = null;

  function show(text) {
    message.textContent = text;
    message.hidden = false;
  }

  // The HLS URL of the fragment, or a reason to refuse it.
  function checkedSource() {
    var raw = new URLSearchParams(location.hash.replace(/^#/, "")).get("src");
    if (!raw) {
      return { error: "No video given: open this page as /player/#src=<the video's HLS URL>." };
    }
    var url;
    try {
      url = new URL(raw, location.href);
    } catch (e) {
      return { error: "Not a URL: " + raw };
    }
    if (url.origin !== location.origin || url.username || url.password) {
      return { error: "Refused: this player plays only this cluster's videos, not those of " + url.origin + "." };
    }
    if (url.pathname.indexOf(HLS_PREFIX) !== 0 || !/\.m3u8$/.test(url.pathname)) {
      return { error: "Refused: not an HLS playlist of this cluster (under " + HLS_PREFIX + ")." };
    }
    return { url: url };
  }

  // -- QoS ---------------------------------------------------------------------------------

  function report(why) {
    var body = JSON.stringify({
      src: src.href,
      first_frame_ms: state.firstFrameMs,
      stalls: state.stalls,
      stall_ms: Math.round(state.stallMs + (stallStart === null ? 0 : performance.now() - stallStart)),
      switches: state.switches,
      errors: state.errors
    });
    state.reports += 1;
    state.reported.push(why);
    if (window.fetch) {
      // keepalive: the request outlives the page (pagehide), as a beacon would
      fetch(QOS_URL, {
        method: "POST",
        keepalive: true,
        credentials: "omit",
        headers: { "Content-Type": "application/json" },
        body: body
      }).catch(function () {});
    } else if (navigator.sendBeacon) {
      navigator.sendBeacon(QOS_URL, new Blob([body], { type: "application/json" }));
    }
  }

  function endStall() {
    if (stallStart !== null) {
      state.stallMs += performance.now() - stallStart;
      stallStart = null;
    }
  }

  function watch() {
    video.addEventListener("playing", function () {
      endStall();
      if (state.firstFrameMs === null && playingAt === null) {
        playingAt = performance.now();
        playingFrom = video.currentTime;
      }
    });
    // The first frame counts once the position moves: "playing" alone can precede it.
    video.addEventListener("timeupdate", function () {
      if (state.firstFrameMs === null && playingAt !== null && video.currentTime > playingFrom) {
        state.firstFrameMs = Math.round(playingAt);
        report("first_frame");
      }
    });
    // A stall: playback waits for data while it was playing (not a seek, not a pause).
    video.addEventListener("waiting", function () {
      if (state.firstFrameMs !== null && stallStart === null && !video.seeking && !video.paused) {
        state.stalls += 1;
        stallStart = performance.now();
      }
    });
    ["seeking", "pause", "ended"].forEach(function (name) {
      video.addEventListener(name, endStall);
    });
    video.addEventListener("error", function () {
      state.errors += 1;
      if (!hls) {
        show("Playback failed (" + (video.error ? video.error.code : "unknown") + ").");
      }
    });
    window.addEventListener("pagehide", function () {
      endStall();
      report("pagehide");
    });
  }

  // -- quality menu ------------------------------------------------------------------------

  function levelName(level) {
    var kbps = Math.round((level.bitrate || 0) / 1000);
    return (level.height ? level.height + "p" : level.name || "?") + (kbps ? " (" + kbps + " kbit/s)" : "");
  }

  function showLevel() {
    var level = hls.levels[state.currentLevel];
    levelText.textContent = level ? (state.autoLevel ? "Auto: " : "") + levelName(level) : "";
  }

  function buildMenu() {
    state.levels = hls.levels.map(function (level, i) {
      return { index: i, width: level.width, height: level.height, bitrate: level.bitrate, name: levelName(level) };
    });
    while (quality.options.length > 1) {
      quality.remove(1);
    }
    state.levels.forEach(function (level) {
      var option = document.createElement("option");
      option.value = String(level.index);
      option.textContent = level.name;
      quality.appendChild(option);
    });
    quality.disabled = state.levels.length < 2;
  }

  function chooseLevel() {
    var n = Number(quality.value);
    state.autoLevel = n === -1;
    if (n === -1) {
      hls.nextLevel = -1; // back to the bandwidth estimate, from the next segment
    } else {
      hls.currentLevel = n; // now: the buffer of the other rung is dropped
    }
    showLevel();
  }

  // -- playback ----------------------------------------------------------------------------

  function playWithHlsJs() {
    var Hls = window.Hls;
    // No worker: the CSP allows scripts of this origin only, not hls.js's blob: worker.
    // The lowest rung first: its first segment is the smallest, so the first frame comes
    // soonest; the bandwidth estimate then moves up the ladder.
    hls = new Hls({ enableWorker: false, startLevel: 0 });
    hls.on(Hls.Events.MANIFEST_PARSED, buildMenu);
    quality.addEventListener("change", chooseLevel);
    hls.on(Hls.Events.LEVEL_SWITCHED, function (_event, data) {
      if (state.currentLevel !== -1 && state.currentLevel !== data.level) {
        state.switches += 1;
      }
      state.currentLevel = data.level;
      showLevel();
    });
    var recovered = false;
    hls.on(Hls.Events.ERROR, function (_event, data) {
      state.errors += 1;
      if (!data.fatal) {
        return;
      }
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR && !recovered) {
        recovered = true;
        hls.recoverMediaError();
        return;
      }
      show("Playback failed: " + data.details + (data.response && data.response.code ? " (HTTP " + data.response.code + ")" : "") + ".");
      hls.destroy();
    });
    hls.loadSource(src.href);
    hls.attachMedia(video);
  }

  function start() {
    var checked = checkedSource();
    if (checked.error) {
      state.refused = checked.error;
      show(checked.error);
      return;
    }
    src = checked.url;
    video.poster = new URL("poster.jpg", src).href;
    watch();
    if (window.Hls && window.Hls.isSupported()) {
      playWithHlsJs();
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = src.href; // the browser's own HLS picks the rung: no menu
    } else {
      show("This browser cannot play HLS.");
    }
  }

  // another video in the fragment: start over with it
  window.addEventListener("hashchange", function () {
    location.reload();
  });
  start();
})();
