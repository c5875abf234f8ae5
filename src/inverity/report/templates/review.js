/* inverity review page: the queue, one item at a time, keyboard-driven. No external resource; every string from
   the server is inserted with textContent (never as markup). Writes carry the session's CSRF token. */
(function () {
  "use strict";
  var csrf = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  var $ = function (id) { return document.getElementById(id); };
  var items = [], counts = null, idx = 0, current = null, flickerTimer = null, busy = false, split = 50;

  function say(text, bad) {
    var s = $("status");
    s.textContent = text;
    s.className = bad ? "status bad" : "status";
  }

  function api(method, url, body) {
    var opts = {method: method, credentials: "same-origin", headers: {"Accept": "application/json"}};
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.headers["X-CSRF-Token"] = csrf;
      opts.body = JSON.stringify(body);
    }
    return fetch(url, opts).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (r.status === 401) { window.location.assign("/review/login"); }
        if (!r.ok) { throw new Error((data && data.error) || ("HTTP " + r.status)); }
        return data;
      });
    });
  }

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    if (cls) { e.className = cls; }
    return e;
  }

  function fmt(v, digits) {
    if (v === null || v === undefined) { return "—"; }
    return typeof v === "number" ? v.toFixed(digits === undefined ? 1 : digits) : String(v);
  }

  function setSplit(v) {
    split = Math.max(0, Math.min(100, v));
    $("ov").style.clipPath = "inset(0 " + (100 - split) + "% 0 0)";
    $("divider").style.left = split + "%";
    $("slider").value = String(split);
    $("showing").textContent = split >= 100 ? "showing: original" : (split <= 0 ? "showing: reconstruction" : "");
  }

  function stopFlicker() {
    if (flickerTimer !== null) { clearInterval(flickerTimer); flickerTimer = null; }
    $("flicker").setAttribute("aria-pressed", "false");
  }

  function toggleFlicker() {
    if (flickerTimer !== null) { stopFlicker(); setSplit(50); return; }
    var showOriginal = true;
    setSplit(100);
    flickerTimer = setInterval(function () { showOriginal = !showOriginal; setSplit(showOriginal ? 100 : 0); }, 600);
    $("flicker").setAttribute("aria-pressed", "true");
  }

  function toggleError() {
    var e = $("err");
    e.hidden = !e.hidden;
    $("errbtn").setAttribute("aria-pressed", e.hidden ? "false" : "true");
  }

  function zoomTo(n) {
    var z = $("zoom");
    if (!current || !current.view || n < 1 || n > current.view.windows.length) {
      z.style.transform = "";
      return;
    }
    var w = current.view.windows[n - 1];
    var s = Math.max(1, Math.min(8, 0.8 / Math.max(w.w, w.h)));
    var tx = Math.max(0, Math.min(1 - 1 / s, w.x + w.w / 2 - 1 / (2 * s)));
    var ty = Math.max(0, Math.min(1 - 1 / s, w.y + w.h / 2 - 1 / (2 * s)));
    z.style.transform = "scale(" + s + ") translate(" + (-tx * 100) + "%, " + (-ty * 100) + "%)";
  }

  function renderQueue() {
    var q = $("queue");
    q.replaceChildren();
    items.forEach(function (it, i) {
      var li = el("li", (it.filename || it.id) + " — " + it.stage + ", " + (it.kind || "?"));
      li.dataset.id = it.id;
      if (i === idx) { li.className = "current"; }
      li.addEventListener("click", function () { show(i); });
      q.appendChild(li);
    });
    $("empty").hidden = items.length > 0;
    $("item").hidden = items.length === 0;
    var c = counts || {};
    $("counts").textContent = items.length + " pending · " + (c.approved || 0) + " approved · " +
      (c.rejected || 0) + " rejected · " + (c.rerouted || 0) + " re-routed";
  }

  function show(i) {
    if (!items.length) { current = null; renderQueue(); return; }
    idx = Math.max(0, Math.min(items.length - 1, i));
    stopFlicker();
    setSplit(50);
    zoomTo(0);
    hideNote();
    var it = items[idx];
    current = {item: it, view: null};
    renderQueue();
    $("title").textContent = it.filename || it.id;
    $("item").dataset.id = it.id;
    var c = it.checks || {};
    var q = it.quality !== null && it.quality !== undefined ? " q" + it.quality : "";
    $("facts").textContent = "policy " + it.policy + " · stage " + it.stage + q + " · " + fmt(it.bytes, 0) +
      " B · " + (it.kind || "?") + " (OOD score " + fmt(it.ood_score, 2) + ") · PSNR " + fmt(c.psnr) +
      " dB · SSIMULACRA2 " + fmt(c.ssimulacra2) + " · id " + it.id;
    var ul = $("reasons");
    ul.replaceChildren();
    (it.reasons || []).forEach(function (r) { ul.appendChild(el("li", r)); });
    var marks = $("marks"), wins = $("windows");
    marks.replaceChildren();
    wins.replaceChildren();
    ["recon", "orig", "err"].forEach(function (k) { $(k).removeAttribute("src"); });
    api("GET", "/review/item/" + encodeURIComponent(it.id)).then(function (v) {
      if (!current || current.item !== it) { return; }
      current.view = v;
      // small images are shown up to 3x (pixelated), large ones fit the column
      $("item").style.setProperty("--w", Math.max(v.width, Math.min(3 * v.width, 768)) + "px");
      $("recon").src = v.images.reconstruction;
      $("orig").src = v.images.original;
      $("err").src = v.images.error;
      v.windows.forEach(function (w, n) {
        var m = el("div", null, "mark");
        m.style.left = (w.x * 100) + "%"; m.style.top = (w.y * 100) + "%";
        m.style.width = (w.w * 100) + "%"; m.style.height = (w.h * 100) + "%";
        marks.appendChild(m);
        var b = el("button", "Worst window " + (n + 1) + " (" + fmt(w.psnr) + " dB)");
        b.type = "button";
        b.addEventListener("click", function () { zoomTo(n + 1); });
        wins.appendChild(b);
      });
    }).catch(function (e) { say("cannot show " + it.id + ": " + e.message, true); });
  }

  function load(keepId) {
    return api("GET", "/v1/review").then(function (data) {
      items = data.items || [];
      counts = data.counts || null;
      var at = keepId ? items.findIndex(function (x) { return x.id === keepId; }) : -1;
      show(at >= 0 ? at : Math.min(idx, Math.max(items.length - 1, 0)));
    }).catch(function (e) { say("cannot load the queue: " + e.message, true); });
  }

  function decide(verdict, note) {
    if (busy || !current) { return; }
    busy = true;
    var it = current.item;
    say((verdict === "approve" ? "approving " : "rejecting ") + (it.filename || it.id) + "…");
    api("POST", "/v1/assets/" + encodeURIComponent(it.id) + "/review", {verdict: verdict, note: note || "", output_sha256: it.output_sha256})
      .then(function (res) {
        var r = res.review || {};
        var msg = (verdict === "approve" ? "approved " : "rejected ") + (it.filename || it.id);
        if (verdict === "reject") {
          msg += res.decision && res.decision.stage !== it.stage
            ? "; re-routed to " + res.decision.stage + " (" + String(r.state).replace("_", " ") + ")"
            : "; not re-routed (" + (r.note || "no stage left") + ")";
        }
        say(msg);
        hideNote();
        return load(null);
      })
      .catch(function (e) { say(e.message, true); return load(null); })
      .then(function () { busy = false; });
  }

  function showNote() {
    if (!current) { return; }
    $("noteform").hidden = false;
    $("note").value = "";
    $("note").focus();
  }

  function hideNote() {
    $("noteform").hidden = true;
  }

  $("slider").addEventListener("input", function () { stopFlicker(); setSplit(parseFloat(this.value)); });
  $("flicker").addEventListener("click", toggleFlicker);
  $("errbtn").addEventListener("click", toggleError);
  $("unzoom").addEventListener("click", function () { zoomTo(0); });
  $("approve").addEventListener("click", function () { decide("approve"); });
  $("reject").addEventListener("click", showNote);
  $("noteform").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var note = $("note").value.trim();
    if (!note) { say("a rejection needs a note", true); return; }
    decide("reject", note);
  });
  $("note").addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("noteform").requestSubmit(); }
    if (ev.key === "Escape") { ev.preventDefault(); hideNote(); }
  });
  $("logout").addEventListener("click", function () {
    api("POST", "/review/logout", {}).then(function () { window.location.assign("/review/login"); });
  });
  document.addEventListener("keydown", function (ev) {
    var t = ev.target;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    if (t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT") && t.type !== "range") { return; }
    var k = ev.key;
    if (k === "a") { decide("approve"); }
    else if (k === "r") { ev.preventDefault(); showNote(); }
    else if (k === "j") { show(idx + 1); }
    else if (k === "k") { show(idx - 1); }
    else if (k === "f") { toggleFlicker(); }
    else if (k === "e") { toggleError(); }
    else if (k >= "0" && k <= "3") { zoomTo(parseInt(k, 10)); }
    else { return; }
    ev.preventDefault();
  });
  load(null);
}());
