// The reading room's hands: keyboard shortcuts and window/level by dragging over a film. Each gesture
// presses a hidden button of the visible workspace (or writes the dragged window into a hidden box), so
// the server-side handlers, with their role checks, stay the only way anything happens.
//   V next view · O overlay on/off · N / P next / previous study · Ctrl+Enter approve and sign
//   drag over a film: left/right = window width, up/down = window centre (level)
(() => {
  const shown = (el) => !!el && el.getClientRects().length > 0;
  const visibleGroup = (cls) => [...document.querySelectorAll("." + cls)].find(shown);
  const typing = (t) => !!t && (t.isContentEditable || t.tagName === "TEXTAREA" ||
    (t.tagName === "INPUT" && !["checkbox", "radio", "range", "button"].includes(t.type)));
  const press = (root, cls) => { const b = root && root.querySelector("." + cls); if (b) { b.click(); return true; } return false; };

  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      const approve = [...document.querySelectorAll("#approve-btn")].find(shown);
      if (approve) { e.preventDefault(); approve.click(); }
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
    const key = e.key.toLowerCase();
    const viewer = visibleGroup("xr-viewer-group");
    const reporting = visibleGroup("xr-reporting");
    const done = key === "v" ? press(viewer, "xr-next-view")
      : key === "o" ? press(viewer, "xr-toggle-overlay")
      : key === "n" ? press(reporting, "xr-next-study")
      : key === "p" ? press(reporting, "xr-prev-study") : false;
    if (done) e.preventDefault();
  });

  let drag = null;
  const clamp = (x, lo, hi) => Math.min(Math.max(Math.round(x), lo), hi);
  const slider = (group, cls) => group.querySelector("." + cls + " input[type=number]");
  document.addEventListener("dragstart", (e) => { if (e.target.closest?.(".xr-viewer")) e.preventDefault(); }, true);
  document.addEventListener("pointerdown", (e) => {
    const pane = e.target.closest?.(".xr-viewer");  // the film (inside Gradio's button), or an overlay on it
    const onFilm = e.target.tagName === "IMG" || !e.target.closest("button");  // not the fullscreen button
    const group = pane && onFilm && pane.closest(".xr-viewer-group");
    if (!group || e.button !== 0) return;
    const c = slider(group, "xr-centre"), w = slider(group, "xr-width");
    if (!c || !w) return;
    drag = { x: e.clientX, y: e.clientY, group, c0: +c.value, w0: +w.value, c: +c.value, w: +w.value, moved: false };
    e.preventDefault();  // no native image drag: it would cancel the pointer's moves (the click still comes)
  }, true);
  document.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 5) return;
    drag.moved = true;
    drag.w = clamp(drag.w0 + dx, 1, 255);
    drag.c = clamp(drag.c0 + dy, 0, 255);
    // A preview until the server's rendering arrives: contrast for the width, brightness for the level.
    const filter = `contrast(${drag.w0 / drag.w}) brightness(${1 + (drag.c0 - drag.c) / drag.w})`;
    drag.group.querySelectorAll(".xr-viewer img").forEach((im) => { im.style.filter = filter; });
  }, true);
  document.addEventListener("pointerup", () => {
    const d = drag;
    drag = null;
    if (!d || !d.moved) return;
    // The click that ends a drag must not zoom.
    const swallow = (e) => { e.stopPropagation(); e.preventDefault(); };
    document.addEventListener("click", swallow, { capture: true, once: true });
    setTimeout(() => document.removeEventListener("click", swallow, { capture: true }), 0);
    const box = d.group.querySelector(".xr-wl textarea, .xr-wl input");
    if (!box) return;
    box.value = `${d.c},${d.w},${Date.now()}`;  // always a change, even for the same window twice
    box.dispatchEvent(new Event("input", { bubbles: true }));
  }, true);
  document.addEventListener("load", (e) => {
    if (e.target.matches?.(".xr-viewer img")) e.target.style.filter = "";
  }, true);
})();
