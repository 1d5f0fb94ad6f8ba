/*
 * booktime-live.js: the one browser client for booktime's live order events.
 *
 * No dependencies, no build step. Speaks three transports, best first:
 *   ws   - WebSocket  ws(s)://host/ws/live/   (all streams on one socket)
 *   sse  - EventSource /events/stream/?stream=...   (one per stream)
 *   poll - fetch      /events/poll/?stream=...&after=...   (one loop per stream)
 * It falls back to the next transport when one fails to open or keeps
 * dropping, reconnects with exponential backoff and jitter, and resumes every
 * stream from the last event id it saw, on every reconnect and every switch.
 * Duplicates (at-least-once delivery, overlapping backlogs) are dropped by id.
 *
 *   const live = new BooktimeLive({
 *     streams: ['order:42'], after: 123, token, transport,
 *     onEvent(stream, envelope) {}, onState(state, transport) {},
 *     onReset(stream, cursor) {}, onError(stream, code, message) {},
 *   });
 *   live.start();
 *
 * `after` is a number (same cursor for every stream) or {stream: id}; leave it
 * out to follow "from now". `token` (a tracking link's) goes in the WebSocket
 * subscribe frame and the long-poll's X-Tracking-Token header, never in a URL
 * (access logs keep URLs); SSE cannot send headers and relies on the cookie
 * the tracking page sets. `transport` forces one transport; by default
 * `?transport=ws|sse|poll` in the page URL does the same.
 * States: 'connecting', 'live' (with the transport), 'reconnecting', 'offline',
 * 'signed_out' (the server ended the sign-in: WebSocket close 4401; no retry).
 */
(function (global) {
  'use strict';

  var TRANSPORTS = ['ws', 'sse', 'poll'];
  var DEFAULTS = {
    backoffBase: 500, // ms before the first retry
    backoffMax: 15000, // ms cap; NAT boxes forget idle flows at ~60 s
    openTimeout: 8000, // ms a transport gets to open before it counts as failed
    // WebSocket and long-poll hear from the server at least every 25 s (a pong
    // to each ping, a long-poll answer within pollTimeout); silence well past
    // that means the connection is dead even if the browser has not noticed.
    silenceTimeout: 45000,
    pingInterval: 20000, // ms between WebSocket pings
    pollTimeout: 25, // s the server may hold a long-poll
    dropsBeforeFallback: 3, // drops in a short life before trying the next transport
    stableAfter: 30000, // ms a connection must live to forget earlier drops
    seenLimit: 2000, // ids remembered per stream for de-duplication
  };
  var FATAL_CODES = { bad_stream: 1, unauthenticated: 1, forbidden: 1 };

  function transportFromUrl() {
    try {
      var value = new URLSearchParams(global.location.search).get('transport');
      return TRANSPORTS.indexOf(value) >= 0 ? value : null;
    } catch (e) {
      return null;
    }
  }

  function BooktimeLive(options) {
    options = options || {};
    this.opts = {};
    var key;
    for (key in DEFAULTS) this.opts[key] = DEFAULTS[key];
    for (key in options) this.opts[key] = options[key];
    this.streams = (options.streams || []).slice();
    this.token = options.token || null;
    this.forced = options.transport || transportFromUrl();
    this.order = this.forced ? [this.forced] : TRANSPORTS.slice();
    this.index = 0;
    this.base = options.baseUrl || global.location.href;
    this.cursors = {};
    this.seen = {};
    this.fatal = {};
    var after = options.after;
    for (var i = 0; i < this.streams.length; i++) {
      var s = this.streams[i];
      var value = after !== null && typeof after === 'object' ? after[s] : after;
      this.cursors[s] = typeof value === 'number' && value >= 0 ? value : null;
      this.seen[s] = { ids: {}, queue: [], floor: this.cursors[s] === null ? -1 : this.cursors[s] };
    }
    this.state = 'idle';
    this.transport = null;
    this.attempt = 0;
    this.drops = 0;
    this.conn = null;
    this.generation = 0;
    this.timers = {};
    this.stopped = true;
  }

  BooktimeLive.prototype = {
    /** Connect and keep connected until stop(). */
    start: function () {
      if (!this.stopped) return this;
      this.stopped = false;
      var self = this;
      this._onOffline = function () {
        self._goOffline();
      };
      this._onOnline = function () {
        if (self.state === 'offline') {
          self.attempt = 0;
          self._connect();
        }
      };
      global.addEventListener('offline', this._onOffline);
      global.addEventListener('online', this._onOnline);
      if (global.navigator && global.navigator.onLine === false) this._goOffline();
      else this._connect();
      return this;
    },

    /** Close everything; no more callbacks. */
    stop: function () {
      this.stopped = true;
      this._teardown();
      global.removeEventListener('offline', this._onOffline);
      global.removeEventListener('online', this._onOnline);
      this._setState('idle', null);
    },

    /** The last event id seen on a stream (null: none yet). */
    cursor: function (stream) {
      return this.cursors[stream];
    },

    // -- state ---------------------------------------------------------------

    _setState: function (state, transport) {
      if (this.state === state && this.transport === transport) return;
      this.state = state;
      this.transport = transport;
      if (this.opts.onState) this.opts.onState(state, transport);
    },

    _activeStreams: function () {
      var self = this;
      return this.streams.filter(function (s) {
        return !self.fatal[s];
      });
    },

    // -- connection lifecycle ------------------------------------------------

    _connect: function () {
      if (this.stopped) return;
      this._teardown();
      if (!this._activeStreams().length) {
        this._setState('offline', null);
        return;
      }
      var name = this.order[this.index];
      var gen = ++this.generation;
      this.opened = false;
      this._setState(this.attempt === 0 && this.state !== 'reconnecting' ? 'connecting' : 'reconnecting', name);
      var self = this;
      this.timers.open = global.setTimeout(function () {
        if (gen === self.generation && !self.opened) self._failed(gen, 'open timeout');
      }, this.opts.openTimeout);
      this.conn = this['_open_' + name](gen);
    },

    /** A transport is up and serving: state goes live. */
    _opened: function (gen) {
      if (gen !== this.generation || this.opened) return;
      this.opened = true;
      this.openedAt = Date.now();
      global.clearTimeout(this.timers.open);
      this.attempt = 0;
      this._setState('live', this.order[this.index]);
      this._touch(gen);
    },

    /** Any traffic (event, heartbeat, pong): the connection is alive. */
    _touch: function (gen) {
      // SSE heartbeats are comment lines, invisible to scripts: the
      // EventSource notices a dead connection itself, so no timer there.
      if (gen !== this.generation || this.order[this.index] === 'sse') return;
      var self = this;
      global.clearTimeout(this.timers.silence);
      this.timers.silence = global.setTimeout(function () {
        self._failed(gen, 'silence');
      }, this.opts.silenceTimeout);
    },

    /** The current connection failed or dropped: decide what to try next. */
    _failed: function (gen, reason) {
      if (gen !== this.generation || this.stopped || this.state === 'offline') return;
      var wasOpen = this.opened;
      this._teardown();
      if (wasOpen && Date.now() - this.openedAt >= this.opts.stableAfter) this.drops = 0;
      this.drops += 1;
      // Never opened, or keeps dropping: the next transport may get through
      // (proxies that break WebSockets, buffering that breaks SSE).
      // After the last one, start over from the best: the failure may have
      // been the server restarting, not the network. The backoff keeps
      // growing across switches until something opens.
      if (!this.forced && (!wasOpen || this.drops >= this.opts.dropsBeforeFallback)) {
        this.index = (this.index + 1) % this.order.length;
        this.drops = 0;
      }
      this.lastFailure = reason;
      this._setState('reconnecting', this.order[this.index]);
      this._schedule();
    },

    _schedule: function () {
      var self = this;
      var ceiling = Math.min(this.opts.backoffMax, this.opts.backoffBase * Math.pow(2, this.attempt));
      // "Equal jitter": half fixed, half random, so a restarted server is not
      // hit by every client at the same instant, yet nobody waits for nothing.
      var delay = ceiling / 2 + Math.random() * (ceiling / 2);
      this.attempt += 1;
      global.clearTimeout(this.timers.retry);
      this.timers.retry = global.setTimeout(function () {
        self._connect();
      }, delay);
    },

    /** The server ended our sign-in (close 4401): stop for good, say so. */
    _signedOut: function () {
      this._teardown();
      this._setState('signed_out', null);
    },

    _goOffline: function () {
      // Signed out is final: going offline (and back online) must not turn
      // it into 'offline' and then a futile reconnect.
      if (this.stopped || this.state === 'signed_out') return;
      this._teardown();
      this._setState('offline', null);
    },

    _teardown: function () {
      this.generation += 1;
      for (var t in this.timers) {
        global.clearTimeout(this.timers[t]);
        global.clearInterval(this.timers[t]);
      }
      this.timers = {};
      var conn = this.conn;
      this.conn = null;
      if (conn) conn.close();
    },

    // -- delivery ------------------------------------------------------------

    /** Hand an envelope to the page once, advancing the stream's cursor. */
    _deliver: function (stream, envelope) {
      var seen = this.seen[stream];
      if (!seen || !envelope || typeof envelope.id !== 'number') return;
      // Already seen, or at/below the cursor the page was rendered (or reset) at.
      if (seen.ids[envelope.id] || envelope.id <= seen.floor) return;
      seen.ids[envelope.id] = true;
      seen.queue.push(envelope.id);
      if (seen.queue.length > this.opts.seenLimit) delete seen.ids[seen.queue.shift()];
      var cursor = this.cursors[stream];
      if (cursor === null || envelope.id > cursor) this.cursors[stream] = envelope.id;
      if (this.opts.onEvent) this.opts.onEvent(stream, envelope);
    },

    /** The server cannot serve our cursor: the page reloads state, we follow on. */
    _reset: function (stream, cursor) {
      if (!this.seen[stream]) return;
      this.cursors[stream] = typeof cursor === 'number' ? cursor : null;
      this.seen[stream] = { ids: {}, queue: [], floor: typeof cursor === 'number' ? cursor : -1 };
      if (this.opts.onReset) this.opts.onReset(stream, cursor);
    },

    /** The server caught us up to here (long-poll answers carry a cursor). */
    _advance: function (stream, cursor) {
      if (typeof cursor !== 'number') return;
      var current = this.cursors[stream];
      if (current === null || cursor > current) this.cursors[stream] = cursor;
    },

    _fatal: function (stream, code, message) {
      this.fatal[stream] = code;
      if (this.opts.onError) this.opts.onError(stream, code, message);
    },

    /** Headers for the HTTP transports' fetches: the tracking token rides in one. */
    _headers: function () {
      var headers = { Accept: 'application/json' };
      if (this.token) headers['X-Tracking-Token'] = this.token;
      return headers;
    },

    _url: function (path, params, scheme) {
      var url = new URL(path, this.base);
      if (scheme) url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
      for (var k in params) {
        if (params[k] !== null && params[k] !== undefined) url.searchParams.set(k, params[k]);
      }
      return url.toString();
    },

    // -- WebSocket -----------------------------------------------------------

    _open_ws: function (gen) {
      var self = this;
      var ws;
      var pending = {};
      try {
        ws = new global.WebSocket(this._url('/ws/live/', {}, true));
      } catch (e) {
        global.setTimeout(function () {
          self._failed(gen, 'ws constructor');
        }, 0);
        return { close: function () {} };
      }
      function subscribe(stream) {
        var msg = { action: 'subscribe', stream: stream };
        if (self.cursors[stream] !== null) msg.after = self.cursors[stream];
        if (self.token) msg.token = self.token;
        pending[stream] = true;
        ws.send(JSON.stringify(msg));
      }
      ws.onopen = function () {
        if (gen !== self.generation) return;
        self._activeStreams().forEach(subscribe);
        self.timers.ping = global.setInterval(function () {
          if (ws.readyState === 1) ws.send(JSON.stringify({ action: 'ping' }));
        }, self.opts.pingInterval);
      };
      ws.onmessage = function (message) {
        if (gen !== self.generation) return;
        var frame;
        try {
          frame = JSON.parse(message.data);
        } catch (e) {
          return;
        }
        self._touch(gen);
        switch (frame.type) {
          case 'subscribed':
            delete pending[frame.stream];
            self._opened(gen);
            break;
          case 'event':
            self._deliver(frame.stream, frame.event);
            break;
          case 'reset':
            self._reset(frame.stream, frame.cursor);
            break;
          case 'error':
            if (frame.stream && FATAL_CODES[frame.code]) {
              var followed = !pending[frame.stream];
              delete pending[frame.stream];
              self._fatal(frame.stream, frame.code, frame.message);
              // A followed stream refused as unauthenticated: the sign-in
              // ended and close 4401 follows (see onclose); wait for it.
              if (followed && frame.code === 'unauthenticated') break;
              if (!self._activeStreams().length) self._goOffline();
            } else if (frame.stream && frame.code === 'unavailable') {
              // The server could not read the log for a moment and dropped
              // this subscription: ask again, from our cursor, shortly.
              var stream = frame.stream;
              global.setTimeout(function () {
                if (gen === self.generation && ws.readyState === 1) subscribe(stream);
              }, 1000 + Math.random() * 1000);
            }
            break;
          default: // pong, unsubscribed: liveness only
        }
      };
      ws.onerror = function () {}; // onclose follows and decides
      ws.onclose = function (event) {
        if (gen !== self.generation) return;
        if (event.code === 4401) {
          self._activeStreams().forEach(function (s) {
            self._fatal(s, 'unauthenticated', 'signed out');
          });
          self._signedOut();
          return;
        }
        if (event.code === 4403) {
          self._activeStreams().forEach(function (s) {
            self._fatal(s, 'forbidden', 'refused');
          });
          self._goOffline();
          return;
        }
        self._failed(gen, 'ws closed ' + event.code);
      };
      return {
        close: function () {
          ws.onopen = ws.onmessage = ws.onclose = null;
          try {
            ws.close();
          } catch (e) {
            /* already closed */
          }
        },
      };
    },

    // -- Server-sent events --------------------------------------------------

    _open_sse: function (gen) {
      var self = this;
      if (!global.EventSource) {
        global.setTimeout(function () {
          self._failed(gen, 'no EventSource');
        }, 0);
        return { close: function () {} };
      }
      var sources = this._activeStreams().map(function (stream) {
        var src = new global.EventSource(
          self._url('/events/stream/', { stream: stream, after: self.cursors[stream] }),
          { withCredentials: true }
        );
        var onEvent = function (message) {
          if (gen !== self.generation) return;
          self._touch(gen);
          try {
            self._deliver(stream, JSON.parse(message.data));
          } catch (e) {
            /* not JSON: ignore */
          }
        };
        // The server names each event by its envelope type; unnamed ones
        // arrive as "message". Delivery is idempotent, so listen to all.
        ['message', 'event', 'order.created', 'order.status_changed', 'order.updated'].forEach(function (n) {
          src.addEventListener(n, onEvent);
        });
        src.addEventListener('reset', function (message) {
          if (gen !== self.generation) return;
          self._touch(gen);
          var data = {};
          try {
            data = JSON.parse(message.data);
          } catch (e) {
            /* fall through with no cursor */
          }
          self._reset(stream, typeof data === 'number' ? data : data.cursor);
        });
        ['heartbeat', 'ping', 'keepalive'].forEach(function (n) {
          src.addEventListener(n, function () {
            self._touch(gen);
          });
        });
        src.onopen = function () {
          self._opened(gen);
        };
        src.onerror = function (message) {
          // EventSource would retry by itself, but with its own cursor and no
          // fallback; we close it and reconnect on our own terms. A refused
          // stream (401/403) fails before opening, like a broken proxy; the
          // probe below tells them apart.
          if (gen !== self.generation) return;
          src.close();
          // The server's own `event: error` (access to an open stream ended)
          // says why in its data: no probe needed.
          var refusal = null;
          try {
            refusal = message && message.data ? JSON.parse(message.data) : null;
          } catch (e) {
            /* not ours: probe */
          }
          if (refusal && FATAL_CODES[refusal.code]) {
            self._fatal(stream, refusal.code, refusal.message);
            if (self._activeStreams().length) self._failed(gen, 'sse refused');
            else if (refusal.code === 'unauthenticated') self._signedOut();
            else self._goOffline();
            return;
          }
          self._probe(stream, gen);
        };
        return src;
      });
      return {
        close: function () {
          sources.forEach(function (s) {
            s.close();
          });
        },
      };
    },

    /** After an SSE failure, ask the poll endpoint whether the stream is refused. */
    _probe: function (stream, gen) {
      var self = this;
      var url = this._url('/events/poll/', { stream: stream, after: this.cursors[stream], timeout: 0 });
      global
        .fetch(url, { credentials: 'same-origin', headers: this._headers() })
        .then(function (response) {
          if (response.status === 400 || response.status === 401 || response.status === 403) {
            return response.json().then(
              function (body) {
                var err = (body && body.error) || {};
                self._fatal(stream, err.code || 'forbidden', err.message || '');
              },
              function () {
                self._fatal(stream, 'forbidden', '');
              }
            );
          }
        })
        .catch(function () {})
        .then(function () {
          self._failed(gen, 'sse error');
        });
    },

    // -- Long-poll -----------------------------------------------------------

    _open_poll: function (gen) {
      var self = this;
      var controller = global.AbortController ? new global.AbortController() : null;
      var streams = this._activeStreams();
      var alive = true;

      function loop(stream, first) {
        if (!alive || gen !== self.generation) return;
        var url = self._url('/events/poll/', {
          stream: stream,
          after: self.cursors[stream],
          // The first request answers at once (backlog or nothing), so the
          // page knows it is connected; later ones wait for news.
          timeout: first ? 0 : self.opts.pollTimeout,
        });
        global
          .fetch(url, {
            credentials: 'same-origin',
            headers: self._headers(),
            signal: controller ? controller.signal : undefined,
            cache: 'no-store',
          })
          .then(function (response) {
            return response.json().then(
              function (body) {
                return { status: response.status, body: body };
              },
              function () {
                return { status: response.status, body: null };
              }
            );
          })
          .then(function (result) {
            if (!alive || gen !== self.generation) return;
            var body = result.body || {};
            if (result.status === 400 || result.status === 401 || result.status === 403) {
              var err = body.error || {};
              self._fatal(stream, err.code || 'forbidden', err.message || '');
              if (self._activeStreams().length) return;
              // A held poll answered 401: the sign-in ended while we waited.
              if (!first && err.code === 'unauthenticated') self._signedOut();
              else self._goOffline();
              return;
            }
            if (result.status !== 200) throw new Error('poll status ' + result.status);
            self._opened(gen);
            self._touch(gen);
            if (body.reset) {
              self._reset(stream, body.cursor);
            } else {
              (body.events || []).forEach(function (env) {
                self._deliver(stream, env);
              });
              self._advance(stream, body.cursor);
            }
            loop(stream, false);
          })
          .catch(function (error) {
            if (!alive || gen !== self.generation) return;
            if (error && error.name === 'AbortError') return;
            self._failed(gen, 'poll error');
          });
      }

      streams.forEach(function (stream) {
        loop(stream, true);
      });
      return {
        close: function () {
          alive = false;
          if (controller) controller.abort();
        },
      };
    },
  };

  BooktimeLive.TRANSPORTS = TRANSPORTS;
  global.BooktimeLive = BooktimeLive;
})(typeof window !== 'undefined' ? window : this);
