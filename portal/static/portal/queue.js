/* The queue page (portal/queue.html): live SLA countdowns, saved filters and the batch-review selection.
 * No framework, no network.
 *
 * Every word shown comes from the page (data-* attributes translated by the server), so the script holds
 * no English: zh-hans users see their own units and phrases.
 */
(function () {
  "use strict";

  // --- SLA countdown -------------------------------------------------------------------------------
  // The server renders each badge's text and class; here they are recounted every second from data-due
  // (the deadline as ISO 8601). The thresholds match portal/queue.py (under 1 h, under 4 h).
  var HOUR = 3600;
  var table = document.getElementById("queue");

  function pad(n) {
    return n < 10 ? "0" + n : String(n);
  }

  function formatDuration(seconds, t) {
    // The same as queue.py's format_duration: time left rounds up, time overdue rounds down.
    var minutes = seconds > 0 ? Math.ceil(seconds / 60) : Math.floor(-seconds / 60);
    var days = Math.floor(minutes / 1440);
    var rest = minutes % 1440;
    var hours = Math.floor(rest / 60);
    var mins = rest % 60;
    if (days) return days + " " + t.unitDay + " " + pad(hours) + " " + t.unitHour;
    if (hours) return hours + " " + t.unitHour + " " + pad(mins) + " " + t.unitMinute;
    return mins + " " + t.unitMinute;
  }

  function badgeClass(seconds, breached) {
    if (breached || seconds <= 0) return "breached";
    if (seconds < HOUR) return "lt1h";
    if (seconds < 4 * HOUR) return "lt4h";
    return "ok";
  }

  function startCountdowns() {
    if (!table) return;
    var t = table.dataset;
    // The browser's clock may be off: count from the server's "now" at render time.
    var serverNow = Date.parse(t.serverNow);
    var skew = isNaN(serverNow) ? 0 : serverNow - Date.now();
    var badges = Array.prototype.slice.call(table.querySelectorAll(".sla-badge[data-due]")).map(function (el) {
      return { el: el, due: Date.parse(el.dataset.due), breached: el.dataset.breached === "1" };
    }).filter(function (b) { return !isNaN(b.due); });
    if (!badges.length) return;

    function tick() {
      var now = Date.now() + skew;
      badges.forEach(function (b) {
        var seconds = (b.due - now) / 1000;
        var label = seconds > 0 ? t.labelLeft : t.labelOverdue;
        var text = label.replace("%(time)s", formatDuration(seconds, t));
        if (b.el.textContent !== text) b.el.textContent = text;
        var css = badgeClass(seconds, b.breached);
        if (!b.el.classList.contains(css)) {
          b.el.classList.remove("breached", "lt1h", "lt4h", "ok");
          b.el.classList.add(css);
        }
      });
    }
    tick();
    window.setInterval(tick, 1000);
  }

  // --- saved filters -------------------------------------------------------------------------------
  // Kept in this browser's localStorage under one key per user id (data-storage-key): a saved filter is
  // only a query string of the queue, so nothing needs the server. There is no model for them on purpose
  // for now; a database model (shared across devices and with teammates) may replace this later, and
  // these entries could then be imported from here.
  var box = document.getElementById("saved-filters");
  var IGNORED = { cursor: true };
  var MAX_SAVED = 30;

  function storageAvailable(key) {
    try {
      var probe = key + ".probe";
      window.localStorage.setItem(probe, "1");
      window.localStorage.removeItem(probe);
      return true;
    } catch (e) {
      return false;
    }
  }

  function readSaved(key) {
    try {
      var list = JSON.parse(window.localStorage.getItem(key) || "[]");
      return Array.isArray(list) ? list.filter(function (f) {
        return f && typeof f.name === "string" && typeof f.query === "string";
      }) : [];
    } catch (e) {
      return [];
    }
  }

  function writeSaved(key, list) {
    window.localStorage.setItem(key, JSON.stringify(list.slice(0, MAX_SAVED)));
  }

  function currentQuery() {
    // The filters as applied now (the address bar), without the page cursor or empty fields.
    var params = new URLSearchParams(window.location.search);
    var kept = new URLSearchParams();
    params.forEach(function (value, name) {
      if (!IGNORED[name] && value !== "") kept.append(name, value);
    });
    return kept.toString();
  }

  function startSavedFilters() {
    if (!box) return;
    var d = box.dataset;
    var key = d.storageKey;
    var list = document.getElementById("saved-filter-list");
    var empty = document.getElementById("saved-filter-empty");
    var form = document.getElementById("save-filter");
    var nameInput = document.getElementById("save-filter-name");
    var status = document.getElementById("saved-filter-status");
    box.hidden = false;
    if (!key || !storageAvailable(key)) {
      form.hidden = true;
      empty.textContent = d.unavailableLabel;
      return;
    }

    function render() {
      var saved = readSaved(key);
      var here = currentQuery();
      list.textContent = "";
      saved.forEach(function (f, index) {
        var li = document.createElement("li");
        var a = document.createElement("a");
        a.href = "?" + f.query;
        a.textContent = f.name;
        if (f.query === here) a.setAttribute("aria-current", "true");
        var del = document.createElement("button");
        del.type = "button";
        del.textContent = "×";
        del.setAttribute("aria-label", d.deleteLabel + ": " + f.name);
        del.addEventListener("click", function () {
          var now = readSaved(key);
          now.splice(index, 1);
          writeSaved(key, now);
          render();
        });
        li.appendChild(a);
        li.appendChild(del);
        list.appendChild(li);
      });
      empty.hidden = saved.length > 0;
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var name = nameInput.value.trim();
      if (!name) return;
      var saved = readSaved(key).filter(function (f) { return f.name !== name; });
      saved.unshift({ name: name, query: currentQuery() });
      try {
        writeSaved(key, saved);
        status.textContent = d.savedLabel;
      } catch (e) {
        status.textContent = d.unavailableLabel;
      }
      nameInput.value = "";
      render();
    });
    // Another tab saved or deleted one: show it here too.
    window.addEventListener("storage", function (event) {
      if (event.key === key) render();
    });
    render();
  }

  // --- batch review (批量审核): the selection ------------------------------------------------------------
  // The row checkboxes belong to form#batch-form (form="batch-form"). Here: "select all on this page" (hidden
  // without the script), the live count and a picked row's highlight. An empty selection is refused by the
  // server with its code (ERR_VALIDATION), one message for every client.
  function startBatch() {
    var form = document.getElementById("batch-form");
    if (!form) return;
    var d = form.dataset;
    var all = document.getElementById("pick-all");
    var count = document.getElementById("batch-count");
    var matching = document.getElementById("batch-scope-matching");
    var boxes = Array.prototype.slice.call(document.querySelectorAll('#queue input[type=checkbox][name=ids]'));

    function picked() {
      return boxes.filter(function (b) { return b.checked; }).length;
    }

    function update() {
      var n = picked();
      boxes.forEach(function (b) {
        var row = b.closest("tr");
        if (row) row.classList.toggle("picked", b.checked);
      });
      all.checked = n > 0 && n === boxes.length;
      all.indeterminate = n > 0 && n < boxes.length;
      count.textContent = matching.checked ? d.matchingLabel : d.countLabel + " " + n;
    }

    all.hidden = false;
    all.addEventListener("change", function () {
      boxes.forEach(function (b) { b.checked = all.checked; });
      update();
    });
    boxes.forEach(function (b) { b.addEventListener("change", update); });
    form.addEventListener("change", update);
    // Back from the confirmation page (the browser's page cache keeps the ticks): count them again.
    window.addEventListener("pageshow", update);
    update();
  }

  startCountdowns();
  startSavedFilters();
  startBatch();
})();
