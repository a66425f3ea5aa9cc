// DraftGrid keyboard and touch triage (issue 13); Gradio runs this once when the page loads.
// draftgrid/ui_triage.py fills in the key map (its SHORTCUTS are the one list of keys) and says
// how a mark travels: the page queues it, one send at a time carries the whole queue down.
// The compare overlay's panes come from the server (draftgrid/ui_compare.py): keys pressed while
// it opens are held and run, in order, once they are there.
() => {
  if (window.dgTriage) return;
  const KEYMAP = __DG_KEYMAP__;
  const TYPING = /^(TEXTAREA|SELECT)$/;
  const TEXT_INPUTS = /^(text|number|search|email|password|url|tel|)$/;
  const SWIPE_PX = 50;
  const SPLIT_STEP = 10;  // [ and ] move the slider's handle by this many percent
  const state = {focusId: null, focusIndex: 0, batch: null, viewing: null, queue: [], inflight: false, waiters: [],
                 compare: null, openings: 0, slider: false, split: 50};

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
  function targetId() {  // the image a mark is for: compare's focused pane, the viewer's, else the focused one
    if (state.compare) return state.compare.ids ? state.compare.ids[state.compare.focus] || null : null;
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

  // ------------------------------------------------------------------ compare
  // state.compare = {token, around, ids, focus, held}: `ids` is null until the server's panes for
  // this opening (its token) are on the page; until then every command waits in `held`
  const compareRoot = () => $("#dg-compare");
  function shownCompare() {
    const shown = $("#dg-compare-body .dg-compare");
    return !!shown && !!state.compare && shown.dataset.token === String(state.compare.token);
  }
  function openCompare() {
    const around = targetId();
    if (!around) return;
    closeViewer();
    state.compare = {token: ++state.openings, around, ids: null, focus: 0, held: []};
    compareRoot().classList.add("dg-open");
    paintCompare();
    push({op: "view"});
  }
  function closeCompare() {
    state.compare = null;
    const root = compareRoot();
    if (root) root.classList.remove("dg-open");
  }
  function syncCompare() {  // the panes of this opening arrived: run the keys held meanwhile
    const c = state.compare;
    if (!c || c.ids || !shownCompare()) return;
    c.ids = Array.from(document.querySelectorAll("#dg-compare-body .dg-pane")).map((p) => p.dataset.imageId);
    c.focus = Math.max(0, c.ids.indexOf(c.around));
    paintCompare();
    c.held.splice(0).forEach(run);
  }
  function paintCompare() {
    const root = compareRoot(), c = state.compare;
    if (!root || !c) return;
    const two = !!c.ids && c.ids.length === 2;
    root.classList.toggle("dg-waiting", !shownCompare());
    root.classList.toggle("dg-slider-on", two && state.slider);
    root.dataset.paneFocus = String(c.focus);
    root.querySelectorAll("#dg-compare-body [data-pane]").forEach(
      (el) => el.classList.toggle("dg-focus", Number(el.dataset.pane) === c.focus));
    const left = root.querySelector(".dg-slider-left"), handle = root.querySelector(".dg-slider-handle");
    const range = root.querySelector(".dg-split");
    if (left) left.style.clipPath = `inset(0 ${100 - state.split}% 0 0)`;
    if (handle) handle.style.left = `${state.split}%`;
    if (range && range.value !== String(state.split)) range.value = String(state.split);
  }
  function movePane(delta) {
    const c = state.compare;
    if (!c.ids.length) return;
    c.focus = Math.max(0, Math.min(c.ids.length - 1, c.focus + delta));
    paintCompare();
  }
  function moveSplit(delta) {
    state.split = Math.max(0, Math.min(100, state.split + delta));
    paintCompare();
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
    compare: openCompare,
    refine: () => whenIdle(click("#dg-refine")),
    generate: () => whenIdle(click("#dg-generate")),
    help: () => $("#dg-help").classList.toggle("dg-open"),
    escape: () => {
      if (state.viewing) closeViewer();
      else if (open("#dg-help")) $("#dg-help").classList.remove("dg-open");
      else click("#dg-stop")();
    },
  };
  // in compare: the arrows move between the panes, a pick selects, the rest as on the grid
  const IN_COMPARE = {
    left: () => movePane(-1),
    right: () => movePane(1),
    toggle: () => targetId() && push({op: "pick", image: targetId()}),
    reject: COMMANDS.reject,
    favourite: COMMANDS.favourite,
    slider: () => {
      state.slider = !state.slider;
      paintCompare();
    },
    split_left: () => moveSplit(-SPLIT_STEP),
    split_right: () => moveSplit(SPLIT_STEP),
    refine: COMMANDS.refine,
    generate: COMMANDS.generate,
    help: COMMANDS.help,
    escape: () => {
      if (open("#dg-help")) $("#dg-help").classList.remove("dg-open");
      else closeCompare();  // back to the grid, its focus where it was
    },
  };
  function run(command) {
    const c = state.compare;
    if (c && !c.ids) c.held.push(command);
    else if (c) IN_COMPARE[command] && IN_COMPARE[command]();
    else COMMANDS[command] && COMMANDS[command]();
  }

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
    const pane = event.target.closest && event.target.closest("#dg-compare-body [data-pane]");
    if (pane && state.compare && state.compare.ids) {  // a click or a tap on a pane focuses and picks it
      state.compare.focus = Number(pane.dataset.pane);
      paintCompare();
      run("toggle");
      return;
    }
    const thumb = event.target.closest && event.target.closest("#dg-grid button.thumbnail-item");
    if (thumb) {  // a click or a tap moves the focus there and toggles it, through the send queue
      // like a key: one request at a time, in order. As the gallery's own events, clicks in a hurry
      // ran at once and their answers could arrive out of order, the last one shown stale.
      event.preventDefault();
      event.stopPropagation();
      state.focusIndex = thumbs().indexOf(thumb);
      state.focusId = imageId(thumb);
      paintFocus();
      run("toggle");
    }
  }, true);

  document.addEventListener("input", (event) => {  // the slider's handle, dragged (mouse or touch)
    if (!event.target.matches || !event.target.matches("#dg-compare .dg-split")) return;
    state.split = Number(event.target.value);
    paintCompare();
  }, true);

  // touch in the viewer and in compare: swipe left / right moves, a tap on the viewer's picture
  // selects (a tap on a pane is a click, above); the slider's range input drags natively
  let touch = null;
  document.addEventListener("touchstart", (event) => {
    const area = state.compare ? "#dg-compare-body" : state.viewing ? "#dg-viewer-body" : null;
    if (!area || !event.target.closest(area) || event.target.closest("input")) return;
    const t = event.changedTouches[0];
    touch = {x: t.clientX, y: t.clientY, onImage: !state.compare && event.target.tagName === "IMG"};
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
      closeCompare();
    }
    paintFocus();
    syncCompare();
    paintCompare();
  }).observe(document.body, {childList: true, subtree: true, attributes: true, attributeFilter: ["src"]});

  window.dgTriage = {
    take: () => JSON.stringify({actions: state.queue.splice(0), viewing: state.viewing,
                                compare: state.compare && {token: state.compare.token, around: state.compare.around,
                                                           ids: state.compare.ids}}),
    done: () => {
      state.inflight = false;
      pump();
    },
  };
}
