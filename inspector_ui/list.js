// A virtualised list: only the rows in (or near) the viewport exist in the DOM, so 100,000 rows cost what
// forty do. Rows have one fixed height; a spacer gives the scroll range; each row is placed with a transform.

export const ROW_HEIGHT = 32;
const OVERSCAN = 10;

export class VirtualList {
  // build(item, index, selected) -> element; keyOf(item) -> stable key; sigOf(item, selected) -> string
  // that changes whenever the row's content must be rebuilt.
  constructor(container, { build, keyOf, sigOf }) {
    this.container = container;
    this.build = build;
    this.keyOf = keyOf;
    this.sigOf = sigOf;
    this.items = [];
    this.isSelected = () => false;
    this.cache = new Map(); // key -> { el, sig }
    this.spacer = document.createElement("div");
    this.spacer.className = "rows-spacer";
    this.spacer.setAttribute("aria-hidden", "true");
    this.queued = false;
    container.addEventListener("scroll", () => this.schedule(), { passive: true });
    if (typeof ResizeObserver === "function") new ResizeObserver(() => this.schedule()).observe(container);
  }

  setItems(items, isSelected) {
    this.items = items;
    this.isSelected = isSelected;
    this.paint();
  }

  schedule() {
    if (this.queued) return;
    this.queued = true;
    requestAnimationFrame(() => {
      this.queued = false;
      this.paint();
    });
  }

  paint() {
    const total = this.items.length;
    const container = this.container;
    this.spacer.style.height = `${total * ROW_HEIGHT}px`;
    const viewport = container.clientHeight || 800;
    const top = Math.min(container.scrollTop, Math.max(0, total * ROW_HEIGHT - viewport));
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(total, Math.ceil((top + viewport) / ROW_HEIGHT) + OVERSCAN);
    const keep = new Map();
    const els = [this.spacer];
    for (let index = first; index < last; index++) {
      const item = this.items[index];
      const key = this.keyOf(item);
      if (keep.has(key)) continue;
      const selected = this.isSelected(item);
      const sig = this.sigOf(item, selected);
      let entry = this.cache.get(key);
      if (!entry || entry.sig !== sig) entry = { el: this.build(item, index, selected), sig };
      entry.el.style.transform = `translateY(${index * ROW_HEIGHT}px)`;
      entry.el.setAttribute("aria-posinset", String(index + 1));
      entry.el.setAttribute("aria-setsize", String(total));
      keep.set(key, entry);
      els.push(entry.el);
    }
    this.cache = keep;
    const current = container.children;
    let same = current.length === els.length;
    for (let i = 0; same && i < els.length; i++) same = current[i] === els[i];
    if (!same) container.replaceChildren(...els);
  }

  // Scroll just enough for row `index` to be fully visible.
  reveal(index) {
    if (index < 0) return;
    const container = this.container;
    const top = index * ROW_HEIGHT;
    const viewport = container.clientHeight;
    if (top < container.scrollTop) container.scrollTop = top;
    else if (top + ROW_HEIGHT > container.scrollTop + viewport) container.scrollTop = top + ROW_HEIGHT - viewport;
    this.paint();
  }
}
