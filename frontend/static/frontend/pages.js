/*
 * Page behaviour for booktime's templates: tracking, My orders, staff dashboard.
 * Each page embeds its state (bt-state), the stream to follow (bt-live) and
 * status constants (bt-constants) as JSON; BooktimeLive does the transport.
 */
(function () {
  'use strict';

  function readJSON(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  var C = readJSON('bt-constants') || { labels: {}, transitions: {}, main_path: [] };
  var LIVE = readJSON('bt-live');
  var STATE = readJSON('bt-state');

  function $(sel, root) {
    return (root || document).querySelector(sel);
  }
  function $$(sel, root) {
    return Array.prototype.slice.call((root || document).querySelectorAll(sel));
  }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var k in attrs || {}) node.setAttribute(k, attrs[k]);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function label(status) {
    return C.labels[status] || status;
  }
  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : '';
  }
  function formatTime(iso) {
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
  }
  function localizeTimes(root) {
    $$('time[datetime]', root).forEach(function (t) {
      t.textContent = formatTime(t.getAttribute('datetime'));
    });
  }
  function describe(env) {
    var o = env.order || {};
    if (env.type === 'order.created') return 'Order ' + o.reference + ' placed';
    if (env.type === 'order.status_changed') {
      return (o.previous_status ? label(o.previous_status) + ' → ' : '') + label(o.status);
    }
    return 'Order ' + o.reference + ' updated';
  }

  function toast(message, kind, onClick) {
    var box = $('#toasts');
    if (!box) return;
    var t = el('div', { class: 'toast ' + (kind || 'info'), role: kind === 'error' ? 'alert' : 'status' }, message);
    t.addEventListener('click', function () {
      if (onClick) onClick();
      t.remove();
    });
    box.appendChild(t);
    setTimeout(function () {
      t.classList.add('fade');
    }, 6000);
    setTimeout(function () {
      t.remove();
    }, 7000);
  }

  var STATE_TEXT = {
    connecting: 'Connecting…',
    reconnecting: 'Reconnecting…',
    offline: 'Offline',
    idle: 'Not connected',
    signed_out: 'Signed out — sign in again',
  };
  var TRANSPORT_TEXT = { ws: 'WebSocket', sse: 'server-sent events', poll: 'long-poll' };

  function showConnection(state, transport) {
    var conn = $('#conn');
    if (!conn) return;
    conn.dataset.state = state;
    conn.dataset.transport = state === 'live' ? transport : '';
    var text = $('.conn-text', conn);
    text.textContent = state === 'live' ? 'Live · ' + TRANSPORT_TEXT[transport] : STATE_TEXT[state] || state;
    if (state === 'signed_out' && conn.dataset.loginUrl) {
      // Final state (no retry): the way out is signing in again, back to this page.
      var next = window.location.pathname + window.location.search;
      text.textContent = 'Signed out — ';
      text.appendChild(el('a', { href: conn.dataset.loginUrl + '?next=' + encodeURIComponent(next) }, 'sign in again'));
    }
  }

  /** Follow the page's stream; `handlers` has onEvent(env) and reload(cursor). */
  function follow(handlers) {
    if (!LIVE || !window.BooktimeLive) return null;
    var live = new window.BooktimeLive({
      streams: [LIVE.stream],
      after: LIVE.after,
      token: LIVE.token || undefined,
      onEvent: function (stream, env) {
        handlers.onEvent(env);
      },
      onState: showConnection,
      onReset: function (stream, cursor) {
        handlers.reload(cursor);
      },
      onError: function (stream, code, message) {
        toast('Live updates unavailable: ' + (message || code), 'error');
      },
    });
    window.btLive = live; // for debugging and the browser tests
    live.start();
    return live;
  }

  /** The page's current state as JSON (after a reset). */
  function fetchState() {
    var url = new URL(window.location.href);
    url.searchParams.set('format', 'json');
    url.searchParams.delete('transport');
    return fetch(url.toString(), { credentials: 'same-origin', headers: { Accept: 'application/json' } }).then(function (r) {
      if (!r.ok) throw new Error('state ' + r.status);
      return r.json();
    });
  }

  function badge(span, status) {
    span.className = 'badge status-' + status;
    span.dataset.status = status;
    span.textContent = label(status);
  }

  // -- tracking link: /track/#<token> ---------------------------------------------

  var RETRIED = 'bt-track-retried:';

  function session(method, key, value) {
    try {
      return window.sessionStorage[method](key, value);
    } catch (e) {
      return null; // storage disabled: no retry bookkeeping
    }
  }

  /**
   * The token is in the URL fragment, which never reaches a server (so no
   * access log has it). Hand it over in a header; the answer sets a cookie for
   * the order (which every transport reads) and says where the order's page is.
   * A refused /track/<id>/ (cookie missing or stale) tries its fragment once.
   */
  function trackLinkPage() {
    var box = $('#track-link');
    var status = $('#track-link-status');
    var token = window.location.hash.slice(1);
    var refused = box.dataset.state === 'refused';
    var retryKey = RETRIED + window.location.pathname;
    function say(text, kind) {
      status.textContent = text;
      status.className = kind || 'error';
    }
    if (!token) {
      if (!refused) say('This tracking link is incomplete: open the whole link you were sent.');
      return;
    }
    if (refused) {
      if (session('getItem', retryKey)) {
        session('removeItem', retryKey);
        say('This browser did not keep the tracking cookie: allow cookies for this site and open the link again.');
        return;
      }
      session('setItem', retryKey, '1');
      say('Opening the tracking link…', 'muted');
    }
    fetch('/track/', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { Accept: 'application/json', 'X-CSRFToken': csrfToken(), 'X-Tracking-Token': token },
    })
      .then(function (r) {
        return r.json().then(
          function (body) {
            return { ok: r.ok, status: r.status, body: body };
          },
          function () {
            return { ok: false, status: r.status, body: {} };
          }
        );
      })
      .then(function (result) {
        if (result.ok && result.body.url) {
          // Keep ?transport= and the fragment (which stays in the browser).
          if (result.body.url === window.location.pathname) window.location.reload();
          else window.location.replace(result.body.url + window.location.search + window.location.hash);
          return;
        }
        session('removeItem', retryKey);
        var err = (result.body && result.body.error) || {};
        say(err.message || 'This tracking link is invalid, has expired or was revoked.');
      })
      .catch(function () {
        say('Could not reach the server.');
      });
  }

  /** The owner's and staff's controls: a new link (rotate) or none (revoke). */
  function shareControls(orderId) {
    var share = $('#share');
    if (!share) return;
    var input = $('#share-url');
    var result = $('#share-result');
    function call(method) {
      var buttons = $$('button', share);
      buttons.forEach(function (b) {
        b.disabled = true;
      });
      fetch('/api/orders/' + orderId + '/tracking-link/', {
        method: method,
        credentials: 'same-origin',
        headers: { Accept: 'application/json', 'X-CSRFToken': csrfToken() },
      })
        .then(function (r) {
          if (r.status === 204) return { ok: true, status: 204, data: {} };
          return r.json().then(
            function (data) {
              return { ok: r.ok, status: r.status, data: data };
            },
            function () {
              return { ok: false, status: r.status, data: {} };
            }
          );
        })
        .then(function (r) {
          if (!r.ok) {
            result.textContent = errorMessage(r);
            result.className = 'error';
            return;
          }
          if (method === 'POST') {
            input.value = r.data.url;
            result.textContent = 'New link made; earlier links no longer work.';
          } else {
            input.value = '';
            result.textContent = 'Tracking links revoked: nobody can open them any more.';
          }
          result.className = 'ok';
        })
        .catch(function () {
          result.textContent = 'Could not reach the server.';
          result.className = 'error';
        })
        .then(function () {
          buttons.forEach(function (b) {
            b.disabled = false;
          });
        });
    }
    $('#rotate-link').addEventListener('click', function () {
      call('POST');
    });
    $('#revoke-link').addEventListener('click', function () {
      call('DELETE');
    });
  }

  // -- tracking page ------------------------------------------------------------

  function trackingPage() {
    session('removeItem', RETRIED + window.location.pathname);
    shareControls($('#order').dataset.orderId);
    var timeline = $('#timeline');
    var envelopes = {};
    (STATE.events || []).forEach(function (e) {
      envelopes[e.id] = e;
    });
    $$('li[data-event-id]', timeline).forEach(function (li) {
      var env = envelopes[li.dataset.eventId];
      if (env) $('.what', li).textContent = describe(env);
    });
    localizeTimes(document);

    function entry(env) {
      var li = el('li', { 'data-event-id': env.id, 'data-status': env.order.status });
      li.appendChild(el('time', { datetime: env.at }, formatTime(env.at)));
      li.appendChild(document.createTextNode(' '));
      li.appendChild(el('span', { class: 'what' }, describe(env)));
      return li;
    }

    function renderSteps(status) {
      var reached = {};
      $$('li[data-status]', timeline).forEach(function (li) {
        reached[li.dataset.status] = true;
      });
      reached[status] = true;
      var steps = $('#steps');
      $$('li[data-step="cancelled"], li[data-step="returned"]', steps).forEach(function (li) {
        li.remove();
      });
      C.main_path.forEach(function (step) {
        var li = $('li[data-step="' + step + '"]', steps);
        var state;
        if (step === status) state = 'current';
        else if (reached[step] || status === 'returned') state = 'done';
        else if (status === 'cancelled') state = 'skipped';
        else state = 'todo';
        li.className = 'step ' + state;
      });
      if (status === 'cancelled' || status === 'returned') {
        var extra = el('li', { class: 'step current', 'data-step': status });
        extra.appendChild(el('span', { class: 'step-dot' }));
        extra.appendChild(el('span', { class: 'step-label' }, label(status)));
        steps.appendChild(extra);
      }
      badge($('#order-status'), status);
    }

    /** Newest first; an id already shown is not shown twice. */
    function add(env) {
      if ($('li[data-event-id="' + env.id + '"]', timeline)) return;
      var li = entry(env);
      var before = $$('li[data-event-id]', timeline).filter(function (x) {
        return Number(x.dataset.eventId) < env.id;
      })[0];
      timeline.insertBefore(li, before || null);
      var newest = $('li[data-event-id]', timeline);
      renderSteps(newest.dataset.status);
      li.classList.add('fresh');
    }

    follow({
      onEvent: add,
      reload: function () {
        fetchState().then(function (state) {
          timeline.textContent = '';
          state.events.forEach(add);
          renderSteps(state.order.status);
        });
      },
    });
  }

  // -- order rows (My orders and the staff dashboard) ------------------------------

  function orderTable(withActions) {
    var tbody = $('#orders tbody');

    function row(o) {
      var tr = el('tr', { 'data-order-id': o.id, 'data-last-event': o.last_event_id || 0 });
      var link = el('a', { href: '/orders/' + o.id + '/' }, o.reference);
      var td = el('td');
      td.appendChild(link);
      tr.appendChild(td);
      if (withActions) tr.appendChild(el('td', {}, o.customer || ''));
      else tr.appendChild(el('td')).appendChild(el('time', { datetime: o.created_at }, formatTime(o.created_at)));
      tr.appendChild(el('td', { class: 'items' }, String(o.items)));
      tr.appendChild(el('td', { class: 'total' }, o.total));
      var st = el('td');
      var span = el('span');
      badge(span, o.status);
      st.appendChild(span);
      tr.appendChild(st);
      if (withActions) {
        tr.appendChild(el('td', { class: 'actions' }));
        renderActions(tr, o.status);
      }
      return tr;
    }

    function renderActions(tr, status) {
      var cell = $('td.actions', tr);
      if (!cell) return;
      cell.textContent = '';
      (C.transitions[status] || []).forEach(function (next) {
        cell.appendChild(el('button', { type: 'button', class: 'small', 'data-transition': next }, next));
      });
    }

    /** Apply an event to its row; false if it is older than what the row shows. */
    function apply(env) {
      var o = env.order;
      var tr = $('tr[data-order-id="' + o.id + '"]', tbody);
      if (tr && env.id <= Number(tr.dataset.lastEvent)) return false;
      if (!tr) {
        tr = row({
          id: o.id,
          reference: o.reference,
          status: o.status,
          total: o.total,
          items: o.items,
          created_at: env.at,
          customer: o.customer || '',
          last_event_id: env.id,
        });
        tbody.insertBefore(tr, tbody.firstChild);
        var none = $('#no-orders');
        if (none) none.hidden = true;
      }
      tr.dataset.lastEvent = env.id;
      badge($('.badge', tr), o.status);
      $('.items', tr) && ($('.items', tr).textContent = String(o.items));
      $('.total', tr) && ($('.total', tr).textContent = o.total);
      renderActions(tr, o.status);
      tr.classList.remove('fresh');
      void tr.offsetWidth; // restart the highlight animation
      tr.classList.add('fresh');
      return true;
    }

    function replace(orders) {
      tbody.textContent = '';
      orders.forEach(function (o) {
        tbody.appendChild(row(o));
      });
    }

    // Server-rendered cells carry no class names; mark them for apply().
    $$('tr', tbody).forEach(function (tr) {
      var cells = tr.children;
      cells[2].classList.add('items');
      cells[3].classList.add('total');
    });
    localizeTimes(tbody);
    return { apply: apply, replace: replace, tbody: tbody };
  }

  function postJSON(url, body) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'X-CSRFToken': csrfToken() },
      body: JSON.stringify(body),
    }).then(function (r) {
      return r.json().then(
        function (data) {
          return { ok: r.ok, status: r.status, data: data };
        },
        function () {
          return { ok: r.ok, status: r.status, data: {} };
        }
      );
    });
  }

  function errorMessage(result) {
    var err = (result.data && result.data.error) || {};
    return err.message || 'Request failed (HTTP ' + result.status + ')';
  }

  // -- My orders ------------------------------------------------------------------

  function minePage() {
    var table = orderTable(false);
    follow({
      onEvent: table.apply,
      reload: function () {
        fetchState().then(function (state) {
          table.replace(state.orders);
        });
      },
    });
    var form = $('#place-order');
    if (!form) return;
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var result = $('#place-result');
      var button = $('button', form);
      button.disabled = true;
      result.textContent = 'Placing…';
      postJSON('/api/orders/', {
        lines: [{ product: Number(form.product.value), quantity: Number(form.quantity.value) }],
      })
        .then(function (r) {
          result.textContent = r.ok ? 'Order ' + (r.data.reference || '') + ' placed.' : errorMessage(r);
          result.className = r.ok ? 'ok' : 'error';
        })
        .catch(function () {
          result.textContent = 'Could not reach the server.';
          result.className = 'error';
        })
        .then(function () {
          button.disabled = false;
        });
    });
  }

  // -- staff dashboard ------------------------------------------------------------

  function staffPage() {
    var table = orderTable(true);
    var feed = $('#feed');
    var baseTitle = document.title;
    var unread = 0;
    // Counters were read at the page's cursor; events at or below it are in them.
    var countsAsOf = STATE.cursor;
    var audio = null;

    function setUnread(n) {
      unread = n;
      document.title = (unread ? '(' + unread + ') ' : '') + baseTitle;
    }
    function bump(status, delta) {
      var c = $('.counter[data-status="' + status + '"] .count');
      if (c) c.textContent = String(Math.max(0, Number(c.textContent) + delta));
    }
    function setCounts(counts) {
      for (var s in counts) {
        var c = $('.counter[data-status="' + s + '"] .count');
        if (c) c.textContent = String(counts[s]);
      }
    }
    function beep() {
      try {
        var Ctx = window.AudioContext || window.webkitAudioContext;
        if (!Ctx) return;
        audio = audio || new Ctx();
        if (audio.state === 'suspended') audio.resume();
        var osc = audio.createOscillator();
        var gain = audio.createGain();
        osc.frequency.value = 880;
        gain.gain.setValueAtTime(0.15, audio.currentTime);
        gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.35);
        osc.connect(gain).connect(audio.destination);
        osc.start();
        osc.stop(audio.currentTime + 0.35);
      } catch (e) {
        /* no sound: the toast and the title still tell */
      }
    }
    function desktopNotify(env) {
      if (!('Notification' in window) || Notification.permission !== 'granted') return;
      try {
        var n = new Notification('New order ' + env.order.reference, {
          body: env.order.items + ' item(s), total ' + env.order.total,
          tag: 'booktime-' + env.id,
        });
        n.onclick = function () {
          window.focus();
          setUnread(0);
        };
      } catch (e) {
        /* some platforms allow notifications only from a service worker */
      }
    }
    function alertNewOrder(env) {
      setUnread(unread + 1);
      toast('New order ' + env.order.reference + ' · ' + env.order.items + ' item(s) · ' + env.order.total, 'new-order', function () {
        setUnread(0);
      });
      beep();
      desktopNotify(env);
    }

    // Seeing the page and touching it counts as reading the alerts.
    document.addEventListener('click', function () {
      if (unread) setUnread(0);
    });
    document.addEventListener('keydown', function () {
      if (unread) setUnread(0);
    });

    function onEvent(env) {
      var li = el('li', { 'data-event-id': env.id, class: env.type.replace('.', '-') });
      li.appendChild(el('time', { datetime: env.at }, formatTime(env.at)));
      li.appendChild(el('span', { class: 'what' }, ' ' + env.order.reference + ': ' + describe(env)));
      feed.insertBefore(li, feed.firstChild);
      while (feed.children.length > 100) feed.removeChild(feed.lastChild);
      if (env.id > countsAsOf) {
        if (env.type === 'order.created') bump(env.order.status, 1);
        else if (env.type === 'order.status_changed') {
          if (env.order.previous_status) bump(env.order.previous_status, -1);
          bump(env.order.status, 1);
        }
      }
      table.apply(env);
      if (env.type === 'order.created') {
        alertNewOrder(env);
        fillCustomer(env.order.id);
      }
    }

    /** The envelope names no customer; a new row asks the REST API once. */
    function fillCustomer(orderId) {
      var cell = $('tr[data-order-id="' + orderId + '"] td:nth-child(2)', table.tbody);
      if (!cell || cell.textContent) return;
      fetch('/api/orders/' + orderId + '/', { credentials: 'same-origin', headers: { Accept: 'application/json' } })
        .then(function (r) {
          return r.ok ? r.json() : null;
        })
        .then(function (order) {
          if (order && !cell.textContent) cell.textContent = order.customer_username || 'customer #' + order.customer;
        })
        .catch(function () {});
    }

    table.tbody.addEventListener('click', function (ev) {
      var button = ev.target.closest('button[data-transition]');
      if (!button) return;
      var tr = button.closest('tr');
      var buttons = $$('button', tr);
      buttons.forEach(function (b) {
        b.disabled = true;
      });
      postJSON('/api/orders/' + tr.dataset.orderId + '/transition/', { status: button.dataset.transition })
        .then(function (r) {
          if (!r.ok) toast(errorMessage(r), 'error');
        })
        .catch(function () {
          toast('Could not reach the server.', 'error');
        })
        .then(function () {
          buttons.forEach(function (b) {
            b.disabled = false;
          });
        });
    });

    var enable = $('#enable-alerts');
    if (enable) {
      if (!('Notification' in window) || Notification.permission === 'granted') enable.hidden = true;
      enable.addEventListener('click', function () {
        beep(); // a click unlocks audio for later alerts
        if ('Notification' in window) {
          Notification.requestPermission().then(function (p) {
            enable.hidden = p === 'granted';
            if (p === 'denied') toast('Desktop alerts are blocked in this browser.', 'error');
          });
        }
      });
    }

    follow({
      onEvent: onEvent,
      reload: function () {
        fetchState().then(function (state) {
          countsAsOf = state.cursor;
          setCounts(state.counts);
          table.replace(state.orders);
        });
      },
    });
  }

  var page = document.body.dataset.page;
  if (page === 'track-link') trackLinkPage();
  else if (page === 'tracking') trackingPage();
  else if (page === 'mine') minePage();
  else if (page === 'staff') staffPage();
})();
