// The dashboard's only script: refresh the page's content in place, and ask before a
// destructive action. Everything works without it (plain links and forms).
(() => {
  const main = document.getElementById("main");
  const every = Number(main && main.dataset.refresh) || 0;
  let busy = false;
  async function refresh() {
    const active = document.activeElement;
    if (busy || document.hidden || (active && active.tagName === "INPUT" && main.contains(active))) return;
    busy = true;
    try {
      const url = new URL(location.href);
      url.searchParams.delete("done");  // a message is shown once
      const r = await fetch(url, { headers: { "X-Fragment": "1" }, credentials: "same-origin" });
      if (r.ok) {
        main.innerHTML = await r.text();
        main.dataset.refreshed = String(Date.now());
      }
    } catch (e) {
      // the server is away: try again on the next tick
    } finally {
      busy = false;
    }
  }
  if (every > 0) setInterval(refresh, every);
  document.addEventListener("submit", (event) => {
    const question = event.target.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });
})();
