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
