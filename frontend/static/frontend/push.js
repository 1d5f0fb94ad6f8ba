/* "Notify me even when this tab is closed": subscribes this browser to Web Push
 * for the page's stream (an order, or the staff dashboard's new orders).
 *
 * The button (#push-toggle) carries the server's VAPID public key. The
 * subscription goes to POST /api/push/subscriptions/ with the page's stream
 * and, on a tracking link, its token; the server checks that this viewer
 * may follow that stream. Off again: DELETE with the endpoint.
 */
(function () {
  "use strict";
  const button = document.getElementById("push-toggle");
  if (!button) return;
  const supported =
    "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
  const key = button.dataset.vapidKey;
  if (!supported || !key) return;

  const liveNode = document.getElementById("bt-live");
  const live = liveNode ? JSON.parse(liveNode.textContent) : {};
  const stream = live.stream;
  const hash = window.location.hash.length > 1 ? decodeURIComponent(window.location.hash.slice(1)) : null;
  const token = live.token || hash;
  const remember = "bt-push:" + stream;

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function keyBytes(base64url) {
    const padded = (base64url + "===".slice((base64url.length + 3) % 4))
      .replace(/-/g, "+")
      .replace(/_/g, "/");
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  }

  function show(on, text) {
    button.dataset.state = on ? "on" : "off";
    button.textContent = text || (on ? "Browser notifications on (turn off)" : "Notify me even when this tab is closed");
    button.hidden = false;
  }

  async function api(method, body) {
    const response = await fetch("/api/push/subscriptions/", {
      method: method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(body),
    });
    if (!response.ok && response.status !== 204) {
      let message = "HTTP " + response.status;
      try {
        message = (await response.json()).error.message;
      } catch (err) {
        /* keep the status */
      }
      throw new Error(message);
    }
  }

  async function turnOn() {
    const permission = await Notification.requestPermission();
    if (permission !== "granted") {
      show(false, "Notifications are blocked in this browser");
      return;
    }
    const registration = await navigator.serviceWorker.register("/service-worker.js", { scope: "/" });
    await navigator.serviceWorker.ready;
    let subscription = await registration.pushManager.getSubscription();
    if (!subscription) {
      subscription = await registration.pushManager.subscribe({
        userVisibleOnly: true,
        applicationServerKey: keyBytes(key),
      });
    }
    await api("POST", { stream: stream, token: token || undefined, subscription: subscription.toJSON() });
    localStorage.setItem(remember, subscription.endpoint);
    show(true);
  }

  async function turnOff() {
    const registration = await navigator.serviceWorker.getRegistration("/");
    const subscription = registration && (await registration.pushManager.getSubscription());
    if (subscription) {
      await api("DELETE", { endpoint: subscription.endpoint });
      await subscription.unsubscribe();
    }
    localStorage.removeItem(remember);
    show(false);
  }

  button.addEventListener("click", () => {
    button.disabled = true;
    (button.dataset.state === "on" ? turnOff() : turnOn())
      .catch((err) => show(false, "Could not turn on notifications: " + err.message))
      .finally(() => {
        button.disabled = false;
      });
  });

  show(Boolean(localStorage.getItem(remember)) && Notification.permission === "granted");
})();
