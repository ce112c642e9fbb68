// The web UI's only script: copy-to-clipboard buttons (no inline script: the pages'
// Content-Security-Policy allows scripts from this origin only).
"use strict";
document.addEventListener("click", function (event) {
  const button = event.target.closest("[data-copy]");
  if (!button) {
    return;
  }
  const field = document.getElementById(button.dataset.copy);
  if (!field) {
    return;
  }
  field.select();
  const done = function () {
    button.textContent = "Copied";
    button.classList.add("copied");
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(field.value).then(done, function () {
      document.execCommand("copy");
      done();
    });
  } else {
    document.execCommand("copy");
    done();
  }
});
