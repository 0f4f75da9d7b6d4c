// Progressive enhancement only: every page works without this file.
"use strict";
// Times in the reader's own time zone: <time datetime="ISO" data-local>.
for (const el of document.querySelectorAll("time[data-local]")) {
  const when = new Date(el.getAttribute("datetime"));
  if (!Number.isNaN(when.getTime())) {
    el.textContent = when.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }
}
// A show/hide button beside each password field.
for (const input of document.querySelectorAll("input[type=password]")) {
  const wrap = document.createElement("span");
  wrap.className = "password-field";
  input.replaceWith(wrap);
  wrap.append(input);
  const toggle = document.createElement("button");
  toggle.type = "button";
  toggle.textContent = "Show";
  toggle.setAttribute("aria-pressed", "false");
  toggle.setAttribute("aria-label", "Show password");
  toggle.addEventListener("click", () => {
    const shown = input.type === "text";
    input.type = shown ? "password" : "text";
    toggle.textContent = shown ? "Show" : "Hide";
    toggle.setAttribute("aria-pressed", String(!shown));
    toggle.setAttribute("aria-label", shown ? "Show password" : "Hide password");
    input.focus();
  });
  wrap.append(toggle);
}
// A copy button beside each <pre class="copyable"> (without scripts the text is selectable).
if (navigator.clipboard) {
  for (const pre of document.querySelectorAll("pre.copyable")) {
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "copy";
    copy.textContent = "Copy";
    copy.setAttribute("aria-label", "Copy to the clipboard");
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(pre.textContent);
        copy.textContent = "Copied";
      } catch {
        copy.textContent = "Copy failed: select the text";
      }
    });
    pre.after(copy);
  }
}
// Console: ask before a destructive form acts (without scripts the server still checks it).
for (const form of document.querySelectorAll("form[data-confirm]")) {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
}
// Console: a form is sent once; a second click while it is on its way does nothing.
for (const form of document.querySelectorAll("body.console form[method=post]")) {
  form.addEventListener("submit", (event) => {
    if (event.defaultPrevented) return;
    if (form.dataset.sent) { event.preventDefault(); return; }
    form.dataset.sent = "1";
  });
}
window.addEventListener("pageshow", (event) => {
  if (!event.persisted) return; // back from the history cache: the page may be used again
  for (const form of document.querySelectorAll("form[data-sent]")) delete form.dataset.sent;
});
