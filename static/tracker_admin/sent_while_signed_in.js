// An admin form is sent only while this browser is still signed in as the person who opened it.
// Sent after the session had ended (a working day's sign-in over, a password changed elsewhere,
// signed out in another tab), the admin redirected the save to its sign-in page and everything
// typed on the form was lost. Each POST form first asks the site whom the session opens the admin
// for (accounts:signed-in); when it is no one, or someone else, or the site cannot be reached, the
// form stays as it is and says why, and the same button sends it once the analyst has signed in
// again in another tab (fresh_csrf.js then sends the new sign-in's token). On the pages of
// accounts, roles and second factors (data-confirmation-needed), a save sent once the session's
// confirmation of who one is had run out (accounts.confirmation) went to the confirmation page,
// and what was typed was lost the same way: it is held too, until confirmed in another tab.
(function () {
  "use strict";
  var script = document.currentScript;
  var checkUrl = script.dataset.checkUrl;
  var openedBy = script.dataset.username;
  var confirmationNeeded = "confirmationNeeded" in script.dataset;
  var CHECKED = "sentWhileSignedIn";
  var ASKING = "signedInAsked";
  var UNREACHABLE = {};
  // A check unanswered this long is taken for a connection gone: a request the network dropped
  // unsaid waits for minutes, the form held without a word, and pressed again it waited with it.
  var CHECK_MILLISECONDS = 15000;

  function asked(form) {
    // Signing out needs no sign-in (the admin's own form, and the notice's that signs out someone
    // else); a form sent without requestSubmit cannot be sent again as the analyst sent it (the
    // button pressed names the action: Save, Save and continue…).
    return (
      form.method === "post" &&
      form.id !== "logout-form" &&
      !form.classList.contains("sign-out-to-sign-in") &&
      typeof form.requestSubmit === "function"
    );
  }

  function showNotice(reason, username) {
    var previous = document.getElementById("sent-while-signed-in");
    if (previous) {
      previous.remove();
    }
    var notices = document.getElementById("sent-while-signed-in-notices");
    var notice = notices.content.querySelector("[data-reason=" + reason + "]").cloneNode(true);
    var named = notice.querySelector("[data-username]");
    if (named) {
      named.textContent = username;
    }
    var list = document.createElement("ul");
    list.className = "messagelist";
    list.id = "sent-while-signed-in";
    list.appendChild(notice);
    var content = document.getElementById("content");
    content.parentNode.insertBefore(list, content);
    notice.focus();
  }

  document.addEventListener(
    "submit",
    function (event) {
      var form = event.target;
      if (!asked(form)) {
        return;
      }
      if (form.dataset[CHECKED]) {
        delete form.dataset[CHECKED];
        return;
      }
      // Held whole until the site answers: the form's own listeners (a review button's question
      // whether to leave the edits typed) hear only the submission that is sent, and once.
      event.preventDefault();
      event.stopPropagation();
      // A press while the site has not yet answered for an earlier one is the same save: nothing
      // on the page shows that a check is under way (a tab shows no loading for it, as it does for
      // a form sent), so on a slow connection the analyst pressed again, and the form was sent
      // twice, the second time as the first's duplicate.
      if (form.dataset[ASKING]) {
        return;
      }
      form.dataset[ASKING] = "yes";
      var submitter = event.submitter;

      function answered() {
        delete form.dataset[ASKING];
      }

      function send() {
        form.dataset[CHECKED] = "yes";
        form.requestSubmit(submitter && submitter.form === form ? submitter : undefined);
      }

      fetch(checkUrl, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "application/json" },
        signal: AbortSignal.timeout(CHECK_MILLISECONDS),
      })
        .then(
          function (response) {
            // A check that failed (the site busy, say, or a page other than the check's answering
            // for it) must not keep anyone from saving: sent as without it.
            return response.ok ? response.json().catch(function () { return null; }) : null;
          },
          function () {
            return UNREACHABLE;
          }
        )
        .then(function (session) {
          answered();
          if (session === UNREACHABLE) {
            showNotice("unreachable");
          } else if (session === null || typeof session.signed_in !== "boolean") {
            send();
          } else if (!session.signed_in) {
            showNotice("signed-out");
          } else if (session.username !== openedBy) {
            showNotice("someone-else", session.username);
          } else if (confirmationNeeded && session.identity_confirmed === false) {
            showNotice("unconfirmed");
          } else {
            send();
          }
        });
    },
    true
  );
})();
