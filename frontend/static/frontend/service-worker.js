/* booktime's service worker: shows order notifications sent by Web Push, even
 * when no booktime tab is open, and opens the order (or the dashboard) when
 * one is clicked. Served at /service-worker.js so its scope is the whole site.
 *
 * A push message is the JSON the server's deliver worker encrypts for this
 * browser (notifications/push/deliveries.py): {title, body, url, tag, event_id}.
 * Notifications about one order share a tag, so a newer (or repeated) one
 * replaces the older instead of piling up.
 */
"use strict";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

function parse(event) {
  if (!event.data) return {};
  try {
    return event.data.json();
  } catch (err) {
    return { title: event.data.text() };
  }
}

self.addEventListener("push", (event) => {
  const message = parse(event);
  const title = message.title || "Order update";
  const options = {
    body: message.body || "",
    data: { url: message.url || "/", eventId: message.event_id || null },
  };
  if (message.tag) {
    options.tag = message.tag;
    options.renotify = true;
  }
  event.waitUntil(self.registration.showNotification(title, options));
});

/* Where a click goes: an open tab already showing the page gets the focus;
 * otherwise a new tab opens; if the browser refuses that, an open tab of
 * ours navigates there. */
async function openPage(url) {
  self.lastClickUrl = url;
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const same = windows.find((client) => client.url === url);
  if (same) {
    try {
      return await same.focus();
    } catch (err) {
      return same;
    }
  }
  try {
    return await self.clients.openWindow(url);
  } catch (err) {
    const ours = windows.find((client) => "navigate" in client);
    if (ours) return ours.navigate(url);
    throw err;
  }
}

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const data = event.notification.data || {};
  const url = new URL(data.url || "/", self.location.origin).href;
  event.waitUntil(openPage(url));
});
