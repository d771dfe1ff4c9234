// The city's live state as the feed describes it: one Map (key → value) per layer.
// Pure (no DOM, no socket) so it can be tested under node.

export const LAYERS = ['events', 'incidents', 'tickets', 'alarms', 'device-health', 'h3', 'sla'];

export class Store {
  constructor() {
    this.layers = new Map(LAYERS.map((name) => [name, new Map()]));
    // Bumped whenever a layer changes, so renderers can skip layers that did not.
    this.versions = Object.fromEntries(LAYERS.map((name) => [name, 0]));
    this.stream = null;
    this.seq = 0;
    this.updatedAt = null; // Date of the last frame that changed something
  }

  get(layer) {
    return this.layers.get(layer);
  }

  counts() {
    return Object.fromEntries([...this.layers].map(([name, items]) => [name, items.size]));
  }

  /** A snapshot is the whole truth for the layers subscribed to: layers absent from its
   *  updates are empty now, so they are cleared too, not only the ones it mentions. */
  applySnapshot(frame, subscribed = LAYERS) {
    const replaced = new Set([...subscribed, ...frame.updates.map((u) => u.layer)]);
    for (const name of replaced) {
      this.#layer(name).clear();
      this.versions[name] += 1;
    }
    this.#apply(frame.updates);
    this.#advance(frame);
  }

  /** A delta carries each changed key once at its latest value (null: gone). `from` is not
   *  checked against our seq: with filters the server moves a client's cursor past changes
   *  it does not send, so a jump forward is normal, and values are idempotent anyway. */
  applyDelta(frame) {
    this.#apply(frame.updates);
    this.#advance(frame);
  }

  #apply(updates) {
    for (const { layer, key, value } of updates) {
      const items = this.#layer(layer);
      if (value == null) items.delete(key);
      else items.set(key, value);
      this.versions[layer] += 1;
    }
  }

  #advance(frame) {
    this.stream = frame.stream ?? this.stream;
    if (Number.isInteger(frame.seq)) this.seq = frame.seq;
    this.updatedAt = new Date();
  }

  #layer(name) {
    // A layer the server added after this page was built is kept rather than dropped.
    if (!this.layers.has(name)) {
      this.layers.set(name, new Map());
      this.versions[name] = 0;
    }
    return this.layers.get(name);
  }
}
