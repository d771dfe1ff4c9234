// The /ws/ops client: hello → welcome → snapshot/deltas into a Store; a watchdog for silent
// sockets, and reconnects with backoff that resume from the last stream and seq.

const WATCHDOG_MS = 40_000; // the server sends a heartbeat every 15 s when idle
const BACKOFF_MIN_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;
const AUTH_CODES = new Set([4401, 4403]); // unknown key / not the operations centre
const utf8 = new TextDecoder();

export class FeedClient {
  /**
   * @param {object} o
   * @param {string} o.key ops API key
   * @param {string[]} o.layers layers to subscribe to
   * @param {import('./store.js').Store} o.store
   * @param {() => void} o.onChange state changed (the caller throttles rendering)
   * @param {(s: {state: string, retryIn?: number, reason?: string}) => void} o.onStatus
   * @param {(reason: string) => void} o.onAuthFailure the key was refused: no more retries
   */
  constructor({ key, layers, store, onChange, onStatus, onAuthFailure }) {
    Object.assign(this, { key, layers, store, onChange, onStatus, onAuthFailure });
    this.url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws/ops`;
    this.ws = null;
    this.attempt = 0;
    this.lastFrameAt = 0;
    this.retryTimer = null;
    this.stopped = false;
    this.reason = '';
    this.watchdog = setInterval(() => this.#checkAlive(), 5_000);
  }

  start() {
    this.stopped = false;
    this.#connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.watchdog);
    this.ws?.close(1000);
  }

  /** Change the filters; the server answers with a fresh snapshot. */
  subscribe(filters) {
    if (filters.layers) this.layers = filters.layers;
    this.#send({ type: 'subscribe', ...filters });
  }

  #connect() {
    this.onStatus({ state: this.attempt ? 'reconnecting' : 'connecting' });
    const ws = new WebSocket(this.url);
    ws.binaryType = 'arraybuffer'; // the server sends UTF-8 JSON in binary frames
    this.ws = ws;
    this.lastFrameAt = Date.now();
    ws.onopen = () => {
      const hello = { type: 'hello', key: this.key, subscribe: { layers: this.layers } };
      // Resuming lets the server send only what changed while we were away.
      if (this.store.stream) hello.resume = { stream: this.store.stream, seq: this.store.seq };
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (event) => this.#receive(event.data);
    ws.onclose = (event) => this.#closed(ws, event);
    // onerror is always followed by onclose, which does the work.
  }

  #receive(data) {
    this.lastFrameAt = Date.now();
    let frame;
    try {
      frame = JSON.parse(typeof data === 'string' ? data : utf8.decode(data));
    } catch {
      return; // the server only sends JSON; ignore anything else rather than die
    }
    switch (frame.type) {
      case 'welcome':
        this.attempt = 0;
        this.reason = '';
        this.onStatus({ state: 'live' });
        break;
      case 'snapshot':
        this.store.applySnapshot(frame, this.layers);
        this.onChange();
        break;
      case 'delta':
        this.store.applyDelta(frame);
        this.onChange();
        break;
      case 'heartbeat':
        this.onChange(); // nothing new, but the status line shows the connection is alive
        break;
      case 'error':
        this.reason = frame.reason ?? '';
        break;
      default: // pong and future frame types need nothing
    }
  }

  #closed(ws, event) {
    if (ws !== this.ws || this.stopped) return; // an older socket, or we closed it
    this.ws = null;
    if (AUTH_CODES.has(event.code)) {
      this.stopped = true;
      this.onStatus({ state: 'refused', reason: this.reason });
      this.onAuthFailure(this.reason || event.reason || '密钥无效');
      return;
    }
    this.#retry(this.reason || event.reason);
  }

  #retry(reason) {
    // Exponential backoff with jitter, so a restarted server is not hit by every wall
    // screen at the same instant.
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    const delay = Math.round(base * (0.75 + Math.random() * 0.25));
    this.attempt += 1;
    this.onStatus({ state: 'reconnecting', retryIn: delay, reason });
    this.retryTimer = setTimeout(() => this.#connect(), delay);
  }

  #checkAlive() {
    // A socket can die without a close (sleeping laptop, dropped NAT entry): silence is
    // the only sign, so a silent socket is dropped and the usual reconnect follows.
    if (!this.ws || Date.now() - this.lastFrameAt < WATCHDOG_MS) return;
    const ws = this.ws;
    this.ws = null; // so its late onclose is ignored
    ws.close();
    this.#retry('连接超时');
  }

  #send(message) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }
}
