// DraftGrid keyboard and touch triage (issue 13); Gradio runs this once when the page loads.
// draftgrid/ui_triage.py fills in the key map (its SHORTCUTS are the one list of keys) and says
// how a mark travels: the page queues it, one send at a time carries the whole queue down.
() => {
  if (window.dgTriage) return;
  const KEYMAP = __DG_KEYMAP__;
  const TYPING = /^(TEXTAREA|SELECT)$/;
  const TEXT_INPUTS = /^(text|number|search|email|password|url|tel|)$/;
  const SWIPE_PX = 50;
  const state = {focusId: null, focusIndex: 0, batch: null, viewing: null, queue: [], inflight: false, waiters: []};

  const $ = (selector) => document.querySelector(selector);
  const thumbs = () => Array.from(document.querySelectorAll("#dg-grid button.thumbnail-item"));
  const imageId = (thumb) => {
    const img = thumb.querySelector("img");
    const found = img && /([0-9a-f]{32})\.(none|selected|rejected)\.png/.exec(img.getAttribute("src") || "");
    return found ? found[1] : null;
  };
  const typing = (el) => !!el && (el.isContentEditable || TYPING.test(el.tagName) ||
    (el.tagName === "INPUT" && TEXT_INPUTS.test((el.getAttribute("type") || "").toLowerCase())));
  const open = (id) => $(id) && $(id).classList.contains("dg-open");

  // ------------------------------------------------------------------ focus
  function focusedIndex(list) {
    const byId = state.focusId ? list.findIndex((t) => imageId(t) === state.focusId) : -1;
    return byId >= 0 ? byId : Math.min(state.focusIndex, list.length - 1);
  }
  function paintFocus() {
    const list = thumbs();
    const index = focusedIndex(list);
    list.forEach((t, i) => t.classList.toggle("dg-focus", i === index));
    const grid = $("#dg-grid");
    if (grid) grid.dataset.focusIndex = String(index);
  }
  function focusAt(index) {
    const list = thumbs();
    if (!list.length) return;
    const i = Math.max(0, Math.min(list.length - 1, index));
    state.focusIndex = i;
    state.focusId = imageId(list[i]);
    paintFocus();
    list[i].scrollIntoView({block: "nearest"});
  }
  function columns(list) {
    if (!list.length) return 1;
    const top = list[0].getBoundingClientRect().top;
    return Math.max(1, list.filter((t) => Math.abs(t.getBoundingClientRect().top - top) < 2).length);
  }
  function move(delta) {
    focusAt(focusedIndex(thumbs()) + delta);
    if (state.viewing) {
      state.viewing = state.focusId;
      push({op: "view"});
    }
  }
  function targetId() {  // the image a mark is for: the viewer's, else the focused one
    if (state.viewing) return state.viewing;
    const list = thumbs();
    const thumb = list[focusedIndex(list)];
    return thumb ? imageId(thumb) : null;
  }

  // ------------------------------------------------------------------ the queue to the server
  function pump() {
    if (state.inflight) return;
    if (!state.queue.length) {
      state.waiters.splice(0).forEach((run) => run());
      return;
    }
    state.inflight = true;
    $("#dg-keys-send").click();
  }
  function push(action) {
    state.queue.push(action);
    pump();
  }
  function whenIdle(run) {
    state.waiters.push(run);
    pump();
  }
  const click = (selector) => () => {
    const button = $(selector);
    if (button && !button.disabled) button.click();
  };

  // ------------------------------------------------------------------ the viewer and the sheet
  function openViewer() {
    const id = targetId();
    if (!id) return;
    state.viewing = id;
    $("#dg-viewer").classList.add("dg-open");
    push({op: "view"});
  }
  function closeViewer() {
    state.viewing = null;
    const viewer = $("#dg-viewer");
    if (viewer) viewer.classList.remove("dg-open");
  }

  const COMMANDS = {
    left: () => move(-1),
    right: () => move(1),
    up: () => state.viewing || move(-columns(thumbs())),
    down: () => state.viewing || move(columns(thumbs())),
    toggle: () => targetId() && push({op: "toggle", image: targetId()}),
    reject: () => targetId() && push({op: "reject", image: targetId()}),
    favourite: () => targetId() && push({op: "favourite", image: targetId()}),
    select_all: () => push({op: "select_all"}),
    clear: () => push({op: "clear"}),
    open: openViewer,
    refine: () => whenIdle(click("#dg-refine")),
    generate: () => whenIdle(click("#dg-generate")),
    help: () => $("#dg-help").classList.toggle("dg-open"),
    escape: () => {
      if (state.viewing) closeViewer();
      else if (open("#dg-help")) $("#dg-help").classList.remove("dg-open");
      else click("#dg-stop")();
    },
  };
  const run = (command) => COMMANDS[command] && COMMANDS[command]();

  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      if (typing(event.target)) event.target.blur();
      run("generate");
      return;
    }
    if (typing(event.target)) {
      if (event.key === "Escape") event.target.blur();  // out of the text box: the keys work again
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || !(event.key in KEYMAP)) return;
    event.preventDefault();  // no page scroll on Space / arrows, no native click of a focused button
    run(KEYMAP[event.key]);
  }, true);

  document.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest("[data-dg-cmd]");
    if (button) {
      event.preventDefault();
      run(button.dataset.dgCmd);
      return;
    }
    const thumb = event.target.closest && event.target.closest("#dg-grid button.thumbnail-item");
    if (thumb) {  // a click or a tap selects (the gallery's own event) and moves the focus there
      state.focusIndex = thumbs().indexOf(thumb);
      state.focusId = imageId(thumb);
      paintFocus();
    }
  }, true);

  // touch in the viewer: swipe left / right moves, a tap on the picture selects
  let touch = null;
  document.addEventListener("touchstart", (event) => {
    if (!state.viewing || !event.target.closest("#dg-viewer-body")) return;
    const t = event.changedTouches[0];
    touch = {x: t.clientX, y: t.clientY, onImage: event.target.tagName === "IMG"};
  }, {passive: true});
  document.addEventListener("touchend", (event) => {
    if (!touch) return;
    const t = event.changedTouches[0];
    const dx = t.clientX - touch.x, dy = t.clientY - touch.y;
    if (Math.abs(dx) >= SWIPE_PX && Math.abs(dx) > Math.abs(dy)) run(dx < 0 ? "right" : "left");
    else if (touch.onImage && Math.abs(dx) < 10 && Math.abs(dy) < 10) run("toggle");
    touch = null;
  }, {passive: true});

  // a streamed gallery update redraws the thumbnails: paint the focus again; a new batch starts at
  // its first image
  new MutationObserver(() => {
    const count = $("#dg-count");
    const batch = count ? count.dataset.batch : null;
    if (batch !== state.batch) {
      state.batch = batch;
      state.focusId = null;
      state.focusIndex = 0;
      closeViewer();
    }
    paintFocus();
  }).observe(document.body, {childList: true, subtree: true, attributes: true, attributeFilter: ["src"]});

  window.dgTriage = {
    take: () => JSON.stringify({actions: state.queue.splice(0), viewing: state.viewing}),
    done: () => {
      state.inflight = false;
      pump();
    },
  };
}
