/* Live parts of every portal page (portal/base.html): the alerts badge, and actions kept while offline.
 * Every word shown comes from the page (data-* attributes rendered by Django's i18n).
 *
 * Alerts: the badge in the header is filled from alerts/summary.json right away and then every poll_seconds while
 * the tab is visible; when alerts arrive that this tab has not shown yet, a toast lists them.
 *
 * Offline: a form that carries a one-time key (input name="idempotency_key", the request workspace's actions) and is
 * submitted while the browser is offline is not lost: its fields, key included, are kept in localStorage and the
 * panel shows it "waiting for the network". When the connection returns (or on the next page load online) each kept
 * form is sent once, in order, as JSON (header X-Portal-Replay), and the panel shows it done or failed with the
 * error's code and hint. The server acts once per key (portal/request.py run_once), so a form sent twice — a lost
 * answer, two tabs replaying at once — is still carried out once; the second answer says "replayed".
 */
(function () {
  "use strict";

  // --- alerts ------------------------------------------------------------------------------------------------------
  var link = document.getElementById("alerts-link");
  var badge = document.getElementById("alerts-count");
  var toast = document.getElementById("alerts-toast");
  var seen = null; // ids already shown by this tab (null until the first answer: nothing is "new" on load)
  var timer = null;
  var pollMs = 20000;

  function showToast(items) {
    if (!toast || !items.length) return;
    toast.textContent = "";
    var title = document.createElement("strong");
    title.textContent = toast.dataset.title;
    toast.appendChild(title);
    var list = document.createElement("ul");
    items.slice(0, 3).forEach(function (item) {
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.href = item.url;
      a.textContent = item.label + " · " + item.request;
      li.appendChild(a);
      li.appendChild(document.createTextNode(" (" + item.store + ")" + (item.code ? " " + item.code : "")));
      list.appendChild(li);
    });
    toast.appendChild(list);
    var close = document.createElement("button");
    close.type = "button";
    close.textContent = toast.dataset.close;
    close.addEventListener("click", function () { toast.hidden = true; });
    toast.appendChild(close);
    toast.hidden = false;
  }

  function poll() {
    if (!link || !badge) return;
    fetch(link.dataset.summary, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok || (response.headers.get("Content-Type") || "").indexOf("json") < 0) return null;
        return response.json();
      })
      .then(function (data) {
        if (!data) return;
        pollMs = Math.max(1, data.poll_seconds || 20) * 1000;
        badge.textContent = String(data.count);
        badge.hidden = data.count === 0;
        link.setAttribute("aria-label", link.firstChild.textContent.trim() + ": " + data.text);
        link.title = data.text;
        if (seen !== null) {
          showToast(data.latest.filter(function (item) { return seen.indexOf(item.id) < 0; }));
        }
        // Only the newest few can ever come back in an answer: remembering those is enough.
        seen = data.latest.map(function (item) { return item.id; }).concat(seen || []).slice(0, 50);
        link.dataset.polls = String(Number(link.dataset.polls || 0) + 1); // answers so far (tests wait on it)
      })
      .catch(function () { /* offline or the server restarting: the badge keeps its last figure */ })
      .then(schedule);
  }

  function schedule() {
    window.clearTimeout(timer);
    if (document.visibilityState === "visible") timer = window.setTimeout(poll, pollMs);
  }

  if (link && badge) {
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") poll(); else window.clearTimeout(timer);
    });
    window.addEventListener("online", poll);
    poll();
  }

  // --- actions kept while offline ----------------------------------------------------------------------------------
  var panel = document.getElementById("offline-panel");
  if (!panel) return;
  var stateLine = document.getElementById("offline-state");
  var list = document.getElementById("offline-items");
  var words = panel.dataset;
  // Per signed-in user: one person's kept actions are never sent with another person's session.
  var STORE = "portal.offline.v1." + (panel.dataset.user || "");
  var KEY = "idempotency_key";

  function load() {
    try { return JSON.parse(window.localStorage.getItem(STORE) || "[]"); } catch (e) { return []; }
  }
  function save(items) {
    try { window.localStorage.setItem(STORE, JSON.stringify(items)); } catch (e) { /* storage full or blocked */ }
  }
  function update(key, changes) {
    var items = load();
    items.forEach(function (item) { if (item.key === key) Object.keys(changes).forEach(function (k) { item[k] = changes[k]; }); });
    save(items);
    render();
  }

  function render() {
    var items = load();
    var offline = navigator.onLine === false;
    panel.classList.toggle("is-offline", offline);
    stateLine.textContent = offline ? words.offline : (items.length ? words.online : "");
    list.textContent = "";
    items.forEach(function (item) {
      var li = document.createElement("li");
      li.className = "kept kept-" + item.state;
      li.dataset.key = item.key;
      var what = document.createElement("a");
      what.href = item.page;
      what.textContent = item.label;
      var state = document.createElement("span");
      state.className = "state state-" + item.state;
      state.textContent = words[item.state] || item.state;
      li.appendChild(what);
      li.appendChild(state);
      if (item.note) {
        var note = document.createElement("span");
        note.className = "note";
        note.textContent = item.note;
        li.appendChild(note);
      }
      if (item.state === "done" || item.state === "failed") {
        var dismiss = document.createElement("button");
        dismiss.type = "button";
        dismiss.textContent = words.dismiss;
        dismiss.addEventListener("click", function () {
          save(load().filter(function (other) { return other.key !== item.key; }));
          render();
        });
        li.appendChild(dismiss);
      }
      list.appendChild(li);
    });
    panel.hidden = !offline && !items.length;
  }

  function text(node) {
    if (!node) return "";
    var copy = node.cloneNode(true);
    Array.prototype.forEach.call(copy.querySelectorAll("kbd"), function (k) { k.remove(); }); // shortcut hints
    return copy.textContent.replace(/\s+/g, " ").trim();
  }

  function label(form, submitter) {
    // "Approve refund · Request RL79000": the button pressed and the page (its title names the request).
    return (text(submitter) || text(form.querySelector("h3")) || form.action) + " · " + document.title;
  }

  // Capture phase: runs before the page's own submit handlers, which would mark the form as being sent.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (navigator.onLine !== false || !form || !form.hasAttribute("data-offline")) return;
    var keyField = form.querySelector('input[name="' + KEY + '"]');
    if (!keyField || !keyField.value) return; // only forms the server can take exactly once are kept
    // A check (e.g. for sensitive words) sends nothing and answers with a page: it cannot wait offline.
    if (event.submitter && event.submitter.name === "intent" && event.submitter.value === "check") return;
    event.preventDefault();
    event.stopImmediatePropagation();
    var hasFile = Array.prototype.some.call(form.querySelectorAll('input[type="file"]'), function (input) {
      return input.files && input.files.length;
    });
    if (hasFile) {
      stateLine.textContent = words.file;
      panel.hidden = false;
      return;
    }
    var data = new FormData(form);
    if (event.submitter && event.submitter.name) data.append(event.submitter.name, event.submitter.value);
    var fields = [];
    data.forEach(function (value, name) { if (typeof value === "string") fields.push([name, value]); });
    var items = load();
    if (!items.some(function (item) { return item.key === keyField.value; })) {
      items.push({ key: keyField.value, url: form.action, fields: fields, label: label(form, event.submitter),
                   page: window.location.href, state: "pending", note: "" });
      save(items);
    }
    Array.prototype.forEach.call(form.querySelectorAll("button, input[type=submit]"), function (b) { b.disabled = true; });
    render();
  }, true);

  function csrfToken(fields) {
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    var field = fields.filter(function (pair) { return pair[0] === "csrfmiddlewaretoken"; })[0];
    return field ? field[1] : "";
  }

  function send(item) {
    update(item.key, { state: "sending", note: "" });
    var body = new URLSearchParams();
    item.fields.forEach(function (pair) { body.append(pair[0], pair[1]); });
    return fetch(item.url, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "X-Portal-Replay": "1", "X-CSRFToken": csrfToken(item.fields), Accept: "application/json" },
    }).then(function (response) {
      var json = (response.headers.get("Content-Type") || "").indexOf("json") >= 0;
      if (!json) {
        // Signed out (the login page answered) or a server error: keep it; the key makes a later send safe.
        update(item.key, { state: "pending", note: response.redirected ? words.login : words.http });
        return false;
      }
      return response.json().then(function (data) {
        if (data.ok) {
          update(item.key, { state: "done", note: data.message || "" });
        } else {
          var error = data.error || {};
          update(item.key, { state: "failed", note: [error.code, error.message, error.hint].filter(Boolean).join(" ") });
        }
        return true;
      });
    }, function () {
      update(item.key, { state: "pending", note: "" }); // the network went again
      return false;
    });
  }

  function replay() {
    if (navigator.onLine === false) return Promise.resolve();
    var run = function () {
      var next = function () {
        var waiting = load().filter(function (item) { return item.state === "pending" || item.state === "sending"; });
        if (!waiting.length || navigator.onLine === false) return Promise.resolve();
        return send(waiting[0]).then(function (goOn) { return goOn ? next() : undefined; });
      };
      return next();
    };
    // One tab replays at a time where the browser can say so; the server's key covers the rest.
    if (navigator.locks && navigator.locks.request) return navigator.locks.request("portal-offline-replay", run);
    return run();
  }

  // Signing out ends what this person kept: asked first when something still waits to be sent.
  Array.prototype.forEach.call(document.querySelectorAll("form.logout"), function (logout) {
    logout.addEventListener("submit", function (event) {
      var waiting = load().filter(function (item) { return item.state === "pending" || item.state === "sending"; });
      if (waiting.length && !window.confirm(words.logout)) {
        event.preventDefault();
        return;
      }
      try { window.localStorage.removeItem(STORE); } catch (e) { /* nothing kept */ }
    });
  });

  window.addEventListener("offline", render);
  window.addEventListener("online", function () { render(); replay(); });
  window.addEventListener("storage", function (event) { if (event.key === STORE) render(); });
  render();
  replay();
})();
