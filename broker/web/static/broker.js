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
// Console: the policy editor's live validator. Each <textarea data-validate="identity|resource">
// is posted (debounced) to /console/validate and its findings shown in #<id>-findings (which the
// markup makes aria-live). Without scripts the server validates on save and shows the same list.
for (const area of document.querySelectorAll("textarea[data-validate]")) {
  const out = document.getElementById(area.id + "-findings");
  // the console's token: the editor's own form's (the sign-out form's is for another purpose)
  const csrfInput = (area.form && area.form.querySelector("input[name=csrf]"))
    || document.querySelector(".console-main input[name=csrf]");
  if (!out || !csrfInput) continue;
  let timer = 0;
  let seq = 0;
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const render = (report) => {
    const found = [...(report.errors || []), ...(report.warnings || [])];
    const parts = [];
    if (found.length) {
      const list = el("ul", "findings-list");
      for (const f of found) {
        const item = el("li", "finding finding-" + f.severity);
        item.dataset.code = f.code;
        item.append(el("span", "badge " + (f.severity === "error" ? "bad" : "warn"), f.severity), " ",
          el("code", "finding-path", f.path || "(document)"), " ",
          el("span", "finding-message", f.message), " ",
          el("span", "finding-fix", "Fix: " + f.fix));
        list.append(item);
      }
      parts.push(list);
    } else {
      const ok = el("p", "findings-ok");
      ok.append(el("span", "badge ok", "ok"), " No problems found.");
      parts.push(ok);
    }
    const fmt = (n) => Number(n).toLocaleString("en-US");
    parts.push(el("p", "muted findings-size",
      `${fmt(report.size)} of ${fmt(report.limit)} characters (without whitespace).`));
    out.replaceChildren(...parts);
  };
  const check = async () => {
    const mine = ++seq;
    const body = new URLSearchParams({ document: area.value, kind: area.dataset.validate });
    try {
      const resp = await fetch("/console/validate", {
        method: "POST",
        body,
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrfInput.value, "Accept": "application/json" },
      });
      if (mine !== seq) return; // a later edit is on its way
      if (!resp.ok) {
        out.replaceChildren(el("p", "muted", "The document could not be checked now; it is checked again when you save."));
        return;
      }
      render(await resp.json());
    } catch {
      if (mine === seq) out.replaceChildren(el("p", "muted", "The document could not be checked now; it is checked again when you save."));
    }
  };
  area.addEventListener("input", () => {
    seq++; // an answer still on its way is for older text
    clearTimeout(timer);
    timer = setTimeout(check, 300);
  });
  // a document already there (an edit) is checked at once; a failed save's findings are kept
  if (area.value.trim() && !out.childElementCount) check();
}
