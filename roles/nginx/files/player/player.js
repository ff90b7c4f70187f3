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
 *
 * A live stream published twice (dual hot streams) goes on from its other origin when its
 * own stops answering: a second hls.js warms up on the play URL with avoid=<that origin>
 * in a video beside the first, and takes its place at its first frame (see "dual hot").
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
    origin: null, // the origin (node id) of the live stream playing
    failovers: 0, // live: switches to the stream's other origin (its own stopped answering)
    returns: 0, // live: switches back once the other origin carries the stream again
    slowed: 0, // live: times the picture played slower to get back to hls.js's target latency
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
  var hls = null; // the hls.js playing in `video`
  var live = false; // src is a live stream's play URL
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

  // The events of the picture shown count; those of a standby warming up beside it do not.
  function watch(el) {
    el.addEventListener("playing", function () {
      if (el !== video) {
        return;
      }
      endStall();
      if (state.firstFrameMs === null && playingAt === null) {
        playingAt = performance.now();
        playingFrom = video.currentTime;
      }
    });
    // The first frame counts once the position moves: "playing" alone can precede it.
    el.addEventListener("timeupdate", function () {
      if (el === video && state.firstFrameMs === null && playingAt !== null && video.currentTime > playingFrom) {
        state.firstFrameMs = Math.round(playingAt);
        report("first_frame");
        if (window.fetch) {
          loadThumbnails(); // after the first frame: nothing the picture waits for
        }
      }
    });
    // A stall: playback waits for data while it was playing (not a seek, not a pause).
    el.addEventListener("waiting", function () {
      if (el === video && state.firstFrameMs !== null && stallStart === null && !video.seeking && !video.paused) {
        state.stalls += 1;
        stallStart = performance.now();
      }
    });
    ["seeking", "pause", "ended"].forEach(function (name) {
      el.addEventListener(name, function () {
        if (el === video) {
          endStall();
        }
      });
    });
    el.addEventListener("error", function () {
      if (el !== video) {
        return;
      }
      state.errors += 1;
      if (!hls) {
        show("Playback failed (" + (video.error ? video.error.code : "unknown") + ").");
      }
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

  // hls.js playing `url` in `el`: the page's player, or a standby warming up beside it.
  function newHls(el, url) {
    var Hls = window.Hls;
    // No worker: the CSP allows scripts of this origin only, not hls.js's blob: worker.
    // The lowest rung first: its first segment is the smallest, so the first frame comes
    // soonest; the bandwidth estimate then moves up the ladder. startFragPrefetch: that
    // segment is fetched while the media source opens, not after.
    // A live stream (the trackers' /live/ play URLs; 1 s segments) plays 2 segments behind
    // the newest instead of hls.js's 3: glass-to-glass about 3 s instead of 4 (docs/
    // benchmarks.md, l2), with a second of buffer still ahead of the picture.
    var config = { enableWorker: false, startLevel: 0, startFragPrefetch: true };
    if (live) {
      config.liveSyncDurationCount = 2;
      // A live stream whose primary publisher returns (dual hot streams): nginx-rtmp
      // restores the playlist for the returning publisher before its on_publish hook can
      // drop the relay that fed the stream meanwhile, so the relay's last fragment and the
      // primary's first get one media sequence number (docs/architecture.md). hls.js
      // refuses such a playlist unless told to go on; it then plays the primary's
      // fragments that follow.
      config.ignorePlaylistParsingErrors = true;
      // An edge answers a cached playlist in milliseconds and a fresh one in tens: one not
      // begun within half a second means its origin is in trouble, which warms the standby.
      config.playlistLoadPolicy = { default: LIVE_PLAYLIST_POLICY };
      config.fragLoadPolicy = { default: LIVE_FRAGMENT_POLICY };
    }
    var h = new Hls(config);
    h.on(Hls.Events.MANIFEST_PARSED, function () {
      if (h === hls) {
        buildMenu();
      } else {
        el.play().catch(function () {}); // a standby: played by hand, not by autoplay
      }
    });
    h.on(Hls.Events.LEVEL_SWITCHED, function (_event, data) {
      if (h !== hls) {
        return;
      }
      if (state.currentLevel !== -1 && state.currentLevel !== data.level) {
        state.switches += 1;
      }
      state.currentLevel = data.level;
      showLevel();
    });
    if (live) {
      h.on(Hls.Events.LEVEL_LOADED, function (_event, data) {
        listed(h, data.details);
      });
    }
    var recovered = false;
    h.on(Hls.Events.ERROR, function (_event, data) {
      if (h !== hls) {
        if (data.fatal) {
          standbyFailed(h);
        }
        return;
      }
      state.errors += 1;
      state.lastError = (data.fatal ? "fatal " : "") + data.details;
      if (live && data.type === Hls.ErrorTypes.NETWORK_ERROR && state.firstFrameMs !== null) {
        warmStandby("trouble"); // its origin, or the edge's way to it, is in trouble
      }
      if (!data.fatal) {
        return;
      }
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR && !recovered) {
        state.fatal += 1;
        recovered = true;
        h.recoverMediaError();
        return;
      }
      if (live && data.type === Hls.ErrorTypes.NETWORK_ERROR && standby) {
        playerDead = true; // the standby, warming up, takes over at its first frame
        return;
      }
      state.fatal += 1;
      if (live && data.type === Hls.ErrorTypes.NETWORK_ERROR) {
        h.destroy();
        hls = null;
        show("Reconnecting...");
        replayLive(performance.now());
        return;
      }
      show("Playback failed: " + data.details + (data.response && data.response.code ? " (HTTP " + data.response.code + ")" : "") + ".");
      h.destroy();
    });
    h.loadSource(url);
    h.attachMedia(el);
    return h;
  }

  function playWithHlsJs() {
    lastSn = null; // a fresh playlist (after a replay: another origin's numbering)
    lastNewSegment = null;
    hls = newHls(video, src.href);
  }

  // -- dual hot: a live stream goes on from its other origin --------------------------------
  //
  // The edge answers a playlist of a dead or frozen origin with an error only after 2 s,
  // and the registry drops the origin after 5: too late for a player holding 1.5-2 s of
  // buffer. So the page does not wait for either. The first sign of trouble (a playlist or
  // segment not begun within LIVE_*_POLICY's time, an error, or no new segment listed for
  // QUIET_MS) starts a second hls.js on the play URL with avoid=<this origin>, which the
  // tracker answers with the stream's other live publisher (its backup, on another
  // group's origin) or 404 no_backup. It plays muted beside the picture; at its first
  // frame it takes the picture's place (a fresh playlist, from a keyframe), and the old
  // hls.js goes. An origin that recovers before that keeps its viewers and the standby is
  // dropped. After a failover, the play URL is asked every RETURN_EVERY_MS whether
  // another origin carries the stream again (the primary's, back): if so, the same
  // warm-up takes the viewer back to it.

  var LIVE_PLAYLIST_POLICY = {
    maxTimeToFirstByteMs: 500,
    maxLoadTimeMs: 2000,
    timeoutRetry: { maxNumRetry: 4, retryDelayMs: 0, maxRetryDelayMs: 0 },
    errorRetry: { maxNumRetry: 4, retryDelayMs: 500, maxRetryDelayMs: 1000 }
  };
  var LIVE_FRAGMENT_POLICY = {
    maxTimeToFirstByteMs: 1000,
    maxLoadTimeMs: 5000,
    timeoutRetry: { maxNumRetry: 4, retryDelayMs: 0, maxRetryDelayMs: 0 },
    errorRetry: { maxNumRetry: 6, retryDelayMs: 500, maxRetryDelayMs: 2000 }
  };
  var QUIET_MS = 3000; // no new segment for this long (1 s segments; a relay restarts in ~2 s)
  var RETRY_STANDBY_MS = 2000; // after a standby that found no other origin
  var RETURN_EVERY_MS = 10000;
  // A discontinuity (a relay taking over, the primary back) can leave the picture closer
  // to the live edge than hls.js aims (2 segments), with less buffer for the next gap;
  // hls.js only ever catches up. So the page plays a little slower until it is back:
  // 0.9x while more than SLOW_BELOW_S short of hls.js's target latency, 1x within 0.1 s.
  var SLOW_BELOW_S = 0.4;
  var SLOW_RATE = 0.9;

  var standby = null; // {el, hls, why} warming up
  var standbyRefusedAt = -Infinity;
  var playerDead = false; // the picture's hls.js gave up; the standby is its only way on
  var lastNewSegment = null; // when the playlist last listed a segment it had not
  var lastSn = null;
  var away = false; // playing from an origin the stream's registry does not lead to first
  var awaySince = 0; // when the page moved away (performance.now())

  // An edge's live playlist, as the tracker's redirect names it (front.conf.j2's live HLS
  // location): "<prefix>/<token>/<expires>/<origin>/<name>/index.m3u8" -> "<origin>"; null
  // for any other URL.
  var EDGE_PLAYLIST = /\/[A-Za-z0-9_-]{22}\/[0-9]{1,12}\/([a-z0-9][a-z0-9_-]{0,63})\/[^/]+\/index\.m3u8$/;
  function originOf(url) {
    var found = EDGE_PLAYLIST.exec(new URL(url).pathname);
    return found ? found[1] : null;
  }

  function listed(h, details) {
    if (h !== hls) {
      return;
    }
    state.origin = originOf(details.url) || state.origin;
    if (lastSn === null || details.endSN > lastSn) {
      lastSn = details.endSN;
      lastNewSegment = performance.now();
      if (standby && !playerDead) {
        dropStandby(); // the origin answers again: no need to move
      }
    }
  }

  function avoiding(origin) {
    var url = new URL(src.href);
    url.searchParams.set("avoid", origin);
    return url.href;
  }

  // why: "trouble" (the origin playing), or "return" (the stream's first origin is back)
  function warmStandby(why) {
    if (standby || !state.origin || performance.now() - standbyRefusedAt < RETRY_STANDBY_MS) {
      return;
    }
    var el = document.createElement("video");
    el.className = "standby";
    el.muted = true;
    el.playsInline = true;
    el.preload = "auto";
    video.parentNode.insertBefore(el, video.nextSibling); // after: the page's first video stays the picture
    watch(el);
    standby = { el: el, hls: null, why: why };
    standby.hls = newHls(el, avoiding(state.origin));
    var at = el.currentTime;
    el.addEventListener("timeupdate", function moved() {
      if (standby && standby.el === el && el.currentTime > at && !el.paused) {
        el.removeEventListener("timeupdate", moved);
        takeOver();
      }
    });
  }

  function dropStandby() {
    standby.hls.destroy();
    standby.el.remove();
    standby = null;
  }

  // The standby's hls.js gave up: no other origin carries the stream (404 no_backup), or
  // that one is in trouble too.
  function standbyFailed(h) {
    if (!standby || standby.hls !== h) {
      return;
    }
    dropStandby();
    standbyRefusedAt = performance.now();
    if (playerDead) {
      state.fatal += 1;
      playerDead = false;
      hls.destroy();
      hls = null;
      show("Reconnecting...");
      replayLive(performance.now());
    }
  }

  // The standby shows its first frame: it becomes the picture.
  function takeOver() {
    var old = video;
    var oldHls = hls;
    var next = standby;
    standby = null;
    next.el.muted = old.muted;
    next.el.volume = old.volume;
    next.el.controls = old.controls;
    next.el.className = "";
    old.removeAttribute("id");
    next.el.id = "video";
    video = next.el;
    hls = next.hls;
    endStall();
    if (oldHls) {
      oldHls.destroy();
    }
    old.remove();
    if (next.why === "return") {
      state.returns += 1;
      away = false;
    } else {
      state.failovers += 1;
      away = true;
    }
    awaySince = performance.now();
    playerDead = false;
    lastSn = null;
    lastNewSegment = performance.now();
    state.origin = null; // the new playlist's URL names it
    message.hidden = true;
    buildMenu();
    showLevel();
  }

  // Every QUIET_MS/4: a playlist that stopped listing new segments is trouble too; away
  // from the stream's first origin, ask now and then whether it is back.
  function watchLive() {
    var lastAsked = 0;
    setInterval(function () {
      var now = performance.now();
      if (!hls || state.firstFrameMs === null) {
        return;
      }
      if (lastNewSegment !== null && now - lastNewSegment > QUIET_MS) {
        warmStandby("trouble");
      }
      var short = hls.targetLatency - hls.latency; // s closer to the live edge than aimed
      if (isFinite(short) && !video.paused) {
        if (short > SLOW_BELOW_S && video.playbackRate === 1) {
          video.playbackRate = SLOW_RATE;
          state.slowed += 1;
        } else if (short < 0.1 && video.playbackRate === SLOW_RATE) {
          video.playbackRate = 1;
        }
      }
      if (away && !standby && state.origin && now - Math.max(lastAsked, awaySince) > RETURN_EVERY_MS) {
        lastAsked = now;
        var from = state.origin;
        fetch(avoiding(from), { cache: "no-store" }).then(function (resp) {
          if (resp.body) {
            resp.body.cancel();
          }
          // a playlist of another origin: the stream is live there again
          if (resp.ok && originOf(resp.url) && originOf(resp.url) !== from && state.origin === from) {
            warmStandby("return");
          }
        }).catch(function () {});
      }
    }, QUIET_MS / 4);
  }

  function start() {
    var checked = checkedSource();
    if (checked.error) {
      state.refused = checked.error;
      show(checked.error);
      return;
    }
    src = checked.url;
    live = src.pathname.indexOf("/live/") === 0;
    video.poster = new URL("poster.jpg", src).href;
    watch(video);
    window.addEventListener("pagehide", function () {
      endStall();
      report("end");
    });
    if (window.Hls && window.Hls.isSupported()) {
      quality.addEventListener("change", chooseLevel);
      playWithHlsJs();
      if (live) {
        watchLive();
      }
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
