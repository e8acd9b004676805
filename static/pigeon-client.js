/*
 * Pigeon's browser client: no build step, no dependencies.
 *
 *   const client = new PigeonClient("wss://pigeon.example/ws", {
 *     token: "<subscriber JWT>",          // or getToken: async () => "<fresh JWT>"
 *     topics: ["news"],
 *     onPush: (push) => console.log(push.subject, push.body),
 *   });
 *   client.start();
 *
 * It reconnects with exponential backoff and jitter, asks for what it missed (`since=` for
 * the user's own pushes, `since` per topic when it subscribes again), and calls onReset when
 * the server says pushes were lost (older than retention).
 */
(function (global) {
  "use strict";

  class PigeonClient {
    constructor(url, options) {
      const o = options || {};
      this.url = url;
      this.token = o.token;
      this.getToken = o.getToken;
      this.topics = new Set(o.topics || []);
      this.onPush = o.onPush || function () {};
      this.onReset = o.onReset || function () {};
      this.onError = o.onError || function () {};
      this.onOpen = o.onOpen || function () {};
      this.onClose = o.onClose || function () {};
      this.minDelay = o.minDelay || 500;
      this.maxDelay = o.maxDelay || 30000;
      this.autoAck = !!o.autoAck;
      this.userOffset = o.since || null; // last offset of a push to the user
      this.topicOffsets = {}; // topic -> last offset seen
      this.attempt = 0;
      this.stopped = true;
      this.socket = null;
      this.timer = null;
    }

    async start() {
      this.stopped = false;
      const token = this.getToken ? await this.getToken() : this.token;
      const u = new URL(this.url, global.location ? global.location.href : undefined);
      u.searchParams.set("token", token);
      if (this.userOffset) u.searchParams.set("since", this.userOffset);
      const socket = new WebSocket(u.toString());
      this.socket = socket;
      socket.onopen = () => {
        this.attempt = 0;
        this._resubscribe();
        this.onOpen();
      };
      socket.onmessage = (event) => this._receive(event.data);
      socket.onclose = (event) => {
        this.socket = null;
        this.onClose(event);
        if (!this.stopped) this._retry();
      };
      socket.onerror = () => {}; // onclose follows and retries
    }

    subscribe(topics) {
      for (const t of topics) this.topics.add(t);
      this._send({ type: "subscribe", topics: topics });
    }

    unsubscribe(topics) {
      for (const t of topics) this.topics.delete(t);
      this._send({ type: "unsubscribe", topics: topics });
    }

    ack(id) {
      this._send({ type: "ack", id: id });
    }

    close() {
      this.stopped = true;
      clearTimeout(this.timer);
      if (this.socket) this.socket.close(1000, "bye");
    }

    _send(frame) {
      if (this.socket && this.socket.readyState === WebSocket.OPEN) {
        this.socket.send(JSON.stringify(frame));
      }
    }

    _resubscribe() {
      const fresh = [];
      for (const t of this.topics) {
        const since = this.topicOffsets[t];
        if (since) this._send({ type: "subscribe", topics: [t], since: since });
        else fresh.push(t);
      }
      if (fresh.length) this._send({ type: "subscribe", topics: fresh });
    }

    _receive(text) {
      let frame;
      try { frame = JSON.parse(text); } catch (e) { return; }
      switch (frame.type) {
        case "push":
          if (frame.topic) this.topicOffsets[frame.topic] = frame.offset;
          else this.userOffset = frame.offset;
          this.onPush(frame);
          if (this.autoAck) this.ack(frame.id);
          break;
        case "reset":
          this.onReset(frame);
          break;
        case "error":
          this.onError(frame);
          break;
        default:
          break;
      }
    }

    _retry() {
      const base = Math.min(this.maxDelay, this.minDelay * Math.pow(2, this.attempt));
      const delay = base / 2 + Math.random() * base / 2;
      this.attempt += 1;
      this.timer = setTimeout(() => this.start().catch((e) => {
        this.onError({ type: "error", code: "connect_failed", message: String(e) });
        this._retry();
      }), delay);
    }
  }

  global.PigeonClient = PigeonClient;
  if (typeof module !== "undefined" && module.exports) module.exports = PigeonClient;
})(typeof window !== "undefined" ? window : globalThis);
