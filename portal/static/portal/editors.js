// Editors of quick replies and auto-rules: small conveniences over forms that work without JavaScript.
(function () {
  "use strict";

  // Deleting a reply or a rule asks first, as the team and addresses pages do: a form with data-confirm is sent
  // only when the question is accepted. It listens to submit, so the keyboard (Enter on the button) asks too.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || form.method.toLowerCase() !== "post") { return; }
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  // Variables: an "Insert" button puts {name} at the caret of the reply text and gives it the focus back.
  var body = document.getElementById("reply-body");
  document.querySelectorAll("button.insert-variable").forEach(function (button) {
    if (!body) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      var text = button.getAttribute("data-insert");
      var start = body.selectionStart, end = body.selectionEnd;
      body.value = body.value.slice(0, start) + text + body.value.slice(end);
      body.focus();
      body.setSelectionRange(start + text.length, start + text.length);
    });
  });

  // The rule's action: only the chosen action's settings are shown (all of them are shown without JavaScript).
  var action = document.getElementById("rule-action");
  var params = document.getElementById("action-params");
  if (action && params) {
    params.classList.add("js-on");
    var note = params.querySelector(".params-note");
    if (note) { note.hidden = true; }
    var show = function () {
      params.querySelectorAll(".param").forEach(function (el) {
        el.hidden = el.getAttribute("data-action") !== action.value;
      });
    };
    action.addEventListener("change", show);
    show();
  }
})();
