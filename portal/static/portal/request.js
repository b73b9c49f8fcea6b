/* The request workspace (portal/request.html): keyboard shortcuts, the evidence lightbox, the scanner's carrier.
 * No framework, no network: every action is a plain form that works without this script. The countdown badges
 * are recounted by queue.js (the queue's own script), and every word shown comes from the page.
 *
 * Shortcuts, ignored while typing in a field or with Ctrl/Alt/Meta held:
 *   a  submit the plain default approval (the form marked data-shortcut="approve"), when it is offered
 *   r  focus the reject reason
 *   n  open the next request in the queue (the link rel="next")
 *   Esc in a field leaves the field, so the shortcuts work again (a barcode scan puts the focus there).
 */
(function () {
  "use strict";

  function typing(target) {
    if (!target || !target.tagName) return false;
    var tag = target.tagName.toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  function submitForm(form) {
    if (!form) return;
    if (typeof form.requestSubmit === "function") {
      form.requestSubmit();
    } else {
      form.submit();
    }
  }

  var submitted = false; // one shortcut submit per page: a held key must not send the form again

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.altKey || event.metaKey) return;
    var dialog = document.getElementById("lightbox");
    if (dialog && dialog.open) return;
    if (typing(event.target)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    var key = event.key;
    if (key === "a") {
      var approve = document.querySelector('form[data-shortcut="approve"]');
      if (approve && !submitted) {
        event.preventDefault();
        submitted = true;
        submitForm(approve);
      }
    } else if (key === "r") {
      var reason = document.getElementById("reject-reason");
      if (reason) {
        event.preventDefault();
        reason.scrollIntoView({ block: "center" });
        reason.focus();
      }
    } else if (key === "n") {
      var next = document.querySelector('a[rel="next"]');
      if (next) {
        event.preventDefault();
        window.location.href = next.href;
      }
    }
  });

  // Forms are sent once: a second click while the first submit is on its way does nothing (the server's one-time
  // key would answer it with the first result anyway).
  Array.prototype.forEach.call(document.querySelectorAll("form.action"), function (form) {
    form.addEventListener("submit", function (event) {
      if (form.dataset.sending === "1") {
        event.preventDefault();
        return;
      }
      form.dataset.sending = "1";
    });
  });

  // Back from the next page (back/forward cache): the forms may be sent again.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;
    submitted = false;
    Array.prototype.forEach.call(document.querySelectorAll("form.action"), function (form) {
      delete form.dataset.sending;
    });
  });

  // --- evidence lightbox: the full image in a dialog; without the script the link opens it in a new tab ---------
  var dialog = document.getElementById("lightbox");
  var image = document.getElementById("lightbox-image");
  var open = document.getElementById("lightbox-open");
  if (dialog && image && typeof dialog.showModal === "function") {
    Array.prototype.forEach.call(document.querySelectorAll("a[data-lightbox]"), function (link) {
      link.addEventListener("click", function (event) {
        if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
        event.preventDefault();
        var thumb = link.querySelector("img");
        image.src = link.href;
        image.alt = thumb ? thumb.alt : "";
        if (open) open.href = link.href;
        dialog.showModal();
      });
    });
    dialog.addEventListener("click", function (event) {
      if (event.target === dialog) dialog.close(); // a click on the backdrop
    });
    dialog.addEventListener("close", function () {
      image.removeAttribute("src");
    });
  }

  // --- the scanner's carrier: remembered per market in this browser, so scanning parcel after parcel needs only
  // the number. A carrier the server selected (the parcel's own, or the one just refused) is never overridden. -----
  var carrier = document.querySelector("select[data-remember]");
  if (carrier) {
    var storageKey = carrier.dataset.remember;
    try {
      var saved = window.localStorage.getItem(storageKey);
      var preset = carrier.querySelector("option[selected]");
      if (!preset && saved && carrier.querySelector('option[value="' + saved.replace(/["\\]/g, "") + '"]')) {
        carrier.value = saved;
      }
      carrier.addEventListener("change", function () {
        window.localStorage.setItem(storageKey, carrier.value);
      });
    } catch (e) {
      // No storage in this browser (private mode, policy): the carrier is simply chosen each time.
    }
  }
})();
