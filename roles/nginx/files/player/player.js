/* Installed by mediagrid's nginx role (front nodes); the loopback dev cluster serves this
 * same file. The cluster's player page: /player/#src=<HLS URL as the media API gives it>.
 *
 * The URL comes in the fragment, which the browser never sends, so its token stays out of
 * every server log. Only this origin's playlists under the prefixes the page names
 * (data-hls-prefixes, from the role's nginx_hls_prefix) play: the page must not become an
 * open player for anyone's streams. hls.js plays them (MSE), or the browser itself where it
 * plays HLS natively. A video with a thumbnails track (thumbs.vtt beside its master
 * playlist) gets a scrub bar whose previews come from the track's sprite sheet. What the
 * viewer saw (first-frame time, stalls, quality switches, errors) goes to the tracker's
 * POST /api/v1/qos after the first frame and again when the page goes away, under one
 * random view id, and is readable as window.mediagridPlayer.
 */
(function () {
  "use strict";

  var HLS_PREFIXES = (document.documentElement.getAttribute("data-hls-prefixes") || "").split(/\s+/).filter(Boolean);
  var QOS_URL = "/api/v1/qos";
  var THUMBNAILS = "thumbs.vtt"; // the scrubbing previews' track, beside the master playlist

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
    fatal: 0, // of those, the ones hls.js could not get over
    replays: 0, // a live stream played again after its origin stopped answering
    lastError: null, // hls.js's details of the last one
    refused: null,
    reports: 0,
    reported: [],
    view: viewId(),
    thumbnails: 0, // cues of the thumbnails track, once loaded
    previewAt: null // the time the scrub preview shows, while it shows
  };
  window.mediagridPlayer = state;

  var src = null; // the checked URL (a URL object)
  var hls = null;
  var playingAt = null; // when the first "playing" came, and the position then
  var playingFrom = 0;
  var stallStart = null;
  var REPLAY_FOR_MS = 30000; // how long a live stream's play URL is asked again

  // A live stream whose playlist stopped coming (its origin died, say): the play URL is
  // asked again, once a second, until it leads to a playlist (the stream's backup origin,
  // once the registry has dropped the dead one: docs/architecture.md), answers the
  // tracker's JSON error (the stream ended), or REPLAY_FOR_MS has passed.
  function replayLive(since) {
    function later(why) {
      if (performance.now() - since > REPLAY_FOR_MS) {
        show("Playback failed: " + why + ".");
        return;
      }
      setTimeout(function () { replayLive(since); }, 1000);
    }
    fetch(src.href, { cache: "no-store" }).then(function (resp) {
      if (resp.ok) {
        state.replays += 1;
        message.hidden = true;
        playWithHlsJs();
        return;
      }
      var json = (resp.headers.get("Content-Type") || "").indexOf("application/json") === 0;
      if (json && resp.status >= 400 && resp.status < 500) {
        return resp.json().then(function (body) {
          show("Playback failed: " + ((body.error && body.error.code) || "HTTP " + resp.status) + ".");
        });
      }
      later("HTTP " + resp.status);
    }, function () { later("the network"); });
  }

  // A random id for this page load: the view's reports update one row.
  function viewId() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

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
    var under = HLS_PREFIXES.some(function (prefix) { return url.pathname.indexOf(prefix) === 0; });
    if (!under || !/\.m3u8$/.test(url.pathname)) {
      return { error: "Refused: not an HLS playlist of this cluster (under " + HLS_PREFIXES.join(" or ") + ")." };
    }
    return { url: url };
  }

  // -- QoS ---------------------------------------------------------------------------------

  function report(why) {
    var body = JSON.stringify({
      src: src.href,
      view: state.view,
      event: why,
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
        if (window.fetch) {
          loadThumbnails(); // after the first frame: nothing the picture waits for
        }
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
      report("end");
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

  // -- scrubbing previews ------------------------------------------------------------------

  // "00:01:02.500" or "01:02.500" -> seconds
  function vttSeconds(text) {
    return text.split(":").reduce(function (sum, part) { return sum * 60 + parseFloat(part); }, 0);
  }

  // The cues of a WebVTT thumbnails track: [{start, end, url, x, y, w, h}]; only pictures
  // of this origin (the sprite beside the track) are taken.
  function parseThumbnails(text, base) {
    var cues = [];
    var lines = text.split(/\r?\n/);
    for (var i = 0; i < lines.length - 1; i++) {
      var times = /^([0-9:.]+)\s+-->\s+([0-9:.]+)/.exec(lines[i]);
      var target = /^(.+)#xywh=(\d+),(\d+),(\d+),(\d+)$/.exec(lines[i + 1].trim());
      if (!times || !target) {
        continue;
      }
      var url = new URL(target[1], base);
      if (url.origin !== location.origin) {
        continue;
      }
      cues.push({
        start: vttSeconds(times[1]), end: vttSeconds(times[2]), url: url.href,
        x: +target[2], y: +target[3], w: +target[4], h: +target[5]
      });
    }
    return cues;
  }

  function cueAt(cues, t) {
    for (var i = 0; i < cues.length; i++) {
      if (t >= cues[i].start && t < cues[i].end) {
        return cues[i];
      }
    }
    return cues.length && t >= cues[cues.length - 1].end ? cues[cues.length - 1] : null;
  }

  function scrubBar(cues) {
    var bar = document.getElementById("scrub");
    var played = document.getElementById("played");
    var preview = document.getElementById("preview");
    var picture = document.getElementById("preview-picture");
    var label = document.getElementById("preview-time");

    function timeAt(event) {
      var box = bar.getBoundingClientRect();
      var share = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
      return { t: share * (video.duration || 0), x: event.clientX - box.left, width: box.width };
    }
    bar.addEventListener("pointermove", function (event) {
      var at = timeAt(event);
      var cue = cueAt(cues, at.t);
      if (!cue || !isFinite(at.t)) {
        return;
      }
      picture.style.width = cue.w + "px";
      picture.style.height = cue.h + "px";
      picture.style.backgroundImage = "url(\"" + cue.url + "\")";
      picture.style.backgroundPosition = -cue.x + "px " + -cue.y + "px";
      label.textContent = at.t.toFixed(1) + " s";
      preview.style.left = Math.min(Math.max(0, at.x - cue.w / 2), Math.max(0, at.width - cue.w)) + "px";
      preview.hidden = false;
      state.previewAt = at.t;
    });
    bar.addEventListener("pointerleave", function () {
      preview.hidden = true;
      state.previewAt = null;
    });
    bar.addEventListener("click", function (event) {
      var at = timeAt(event);
      if (isFinite(at.t)) {
        video.currentTime = at.t;
      }
    });
    video.addEventListener("timeupdate", function () {
      played.style.width = video.duration ? (100 * video.currentTime / video.duration) + "%" : "0";
    });
    state.thumbnails = cues.length;
    bar.hidden = false;
  }

  // The thumbnails track, if the video has one (a live stream or an audio file has none).
  function loadThumbnails() {
    var track = new URL(THUMBNAILS, src);
    fetch(track.href, { credentials: "omit" }).then(function (resp) {
      if (resp.status !== 200 || (resp.headers.get("Content-Type") || "").indexOf("text/vtt") !== 0) {
        return null;
      }
      return resp.text();
    }).then(function (text) {
      var cues = text ? parseThumbnails(text, track) : [];
      if (cues.length) {
        scrubBar(cues);
      }
    }).catch(function () {});
  }

  // -- playback ----------------------------------------------------------------------------

  function playWithHlsJs() {
    var Hls = window.Hls;
    // No worker: the CSP allows scripts of this origin only, not hls.js's blob: worker.
    // The lowest rung first: its first segment is the smallest, so the first frame comes
    // soonest; the bandwidth estimate then moves up the ladder. startFragPrefetch: that
    // segment is fetched while the media source opens, not after.
    // A live stream (the trackers' /live/ play URLs; 1 s segments) plays 2 segments behind
    // the newest instead of hls.js's 3: glass-to-glass about 3 s instead of 4 (docs/
    // benchmarks.md, l2), with a second of buffer still ahead of the picture.
    var live = src.pathname.indexOf("/live/") === 0;
    var config = { enableWorker: false, startLevel: 0, startFragPrefetch: true };
    // A live stream whose primary publisher returns (dual hot streams): nginx-rtmp restores
    // the playlist for the returning publisher before its on_publish hook can drop the
    // relay that fed the stream meanwhile, so the relay's last fragment and the primary's
    // first get one media sequence number (docs/architecture.md). hls.js refuses such a
    // playlist unless told to go on; it then plays the primary's fragments that follow.
    if (live) {
      config.liveSyncDurationCount = 2;
      config.ignorePlaylistParsingErrors = true;
    }
    hls = new Hls(config);
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
      state.lastError = (data.fatal ? "fatal " : "") + data.details;
      if (!data.fatal) {
        return;
      }
      state.fatal += 1;
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR && !recovered) {
        recovered = true;
        hls.recoverMediaError();
        return;
      }
      if (live && data.type === Hls.ErrorTypes.NETWORK_ERROR) {
        hls.destroy();
        show("Reconnecting...");
        replayLive(performance.now());
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
