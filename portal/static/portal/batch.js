/* A background job's page (portal/jobs_detail.html): follow its progress, then show its results.
 *
 * Every second the job's status document (data-status-url) is read; the <progress> bar and its "n of m" text
 * (translated by the server) follow it. When the job has finished the polling stops and the page's own HTML is
 * read once more to put the results (and the final facts) in place, without a reload. A hidden tab does not
 * poll (nobody reads it; the server is spared); when it shows again it polls at once. No framework.
 */
(function () {
  "use strict";
  var box = document.getElementById("job");
  if (!box || box.dataset.finished === "1" || !window.fetch) return;
  var every = parseInt(box.dataset.pollMs, 10) || 1000;
  var bar = document.getElementById("job-progress");
  var text = document.getElementById("job-progress-text");
  var status = document.getElementById("job-status");
  var failures = 0;
  var timer = null;
  var inFlight = false;
  var stopped = false;  // the job has finished: no more polling

  function update(data) {
    if (data.total > 0 || data.finished) {
      bar.max = data.total > 0 ? data.total : 1;
      bar.value = data.total > 0 ? data.done : 1;
    }
    bar.textContent = data.percent + "%";
    if (text.textContent !== data.text) text.textContent = data.text;
    status.textContent = data.status_label;
    status.className = "job-status " + data.status;
  }

  function swap(doc, selector) {
    var fresh = doc.querySelector(selector);
    var here = document.querySelector(selector);
    if (fresh && here) here.replaceWith(document.importNode(fresh, true));
  }

  function showResults() {
    window.fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        swap(doc, ".job-facts");
        swap(doc, "#job-report");
        box.dataset.finished = "1";
      })
      .catch(function () { window.location.reload(); });
  }

  function later(ms) {
    window.clearTimeout(timer);
    timer = document.hidden ? null : window.setTimeout(poll, ms);
  }

  function poll() {
    timer = null;
    if (inFlight || stopped || document.hidden) return;
    inFlight = true;
    window.fetch(box.dataset.statusUrl, { credentials: "same-origin", cache: "no-store",
                                          headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error(String(response.status));
        return response.json();
      })
      .then(function (data) {
        inFlight = false;
        failures = 0;
        update(data);
        if (data.finished) {
          stopped = true;
          showResults();
        } else {
          later(every);
        }
      })
      .catch(function () {
        // A network hiccup: try again, more slowly; after a few failures leave the page as it is.
        inFlight = false;
        failures += 1;
        if (failures < 10) later(every * 3);
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      window.clearTimeout(timer);
      timer = null;
    } else if (failures < 10) {
      poll();
    }
  });

  later(every);
})();
