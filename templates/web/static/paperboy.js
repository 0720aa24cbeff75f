// paperboy's pages work without this script; it adds the browser's time zone, the live
// preview of a query, and the proof of work that spares a subscriber the stricter limit.
"use strict";

(function () {
  // The browser's time zone, where a form asks for it and the visitor has not chosen one.
  for (const input of document.querySelectorAll("input[data-autofill-timezone]")) {
    try {
      const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
      if (zone) input.value = zone;
    } catch (error) {
      // An old browser: the server's default (UTC) stays.
    }
  }

  // Live preview: what a query, papers liked (one a line) or both would bring among the
  // papers of the last 30 days. A field names its target; the form's other field counts too,
  // and a saved profile's preview (data-preview-url) counts its stored likes on the server.
  for (const input of document.querySelectorAll("[data-preview]")) {
    const target = document.getElementById(input.dataset.preview);
    if (!target) continue;
    const form = input.form;
    const queryField = form ? form.querySelector("input[name=query]") : input;
    const likesField = form ? form.querySelector("textarea[name=likes]") : null;
    const url = input.dataset.previewUrl || "/preview";
    let timer = null;
    const update = function () {
      const query = queryField ? queryField.value.trim() : "";
      const likes = likesField ? likesField.value.trim() : "";
      const mine = (target.asked = (target.asked || 0) + 1);
      if (!query && !likes && !input.dataset.previewUrl) {
        target.replaceChildren();
        target.removeAttribute("data-state");
        return;
      }
      target.setAttribute("aria-busy", "true");
      let address = url + "?q=" + encodeURIComponent(query);
      if (likes) address += "&likes=" + encodeURIComponent(likes);
      fetch(address, { credentials: "same-origin" })
        .then(function (response) {
          return response.text().then(function (text) { return [response.status, text]; });
        })
        .then(function (answer) {
          if (mine !== target.asked) return; // a newer one is on its way
          target.innerHTML = answer[1]; // an HTML fragment this server escaped
          target.dataset.state = answer[0] === 200 ? "ok" : "error";
          target.removeAttribute("aria-busy");
        })
        .catch(function () { target.removeAttribute("aria-busy"); });
    };
    const later = function () { clearTimeout(timer); timer = setTimeout(update, 250); };
    input.addEventListener("input", later);
    input.addEventListener("focus", function () { if (!target.dataset.state) later(); });
  }

  // Proof of work: find a nonce whose SHA-256 with the challenge starts with enough zero bits.
  const zeroBits = function (bytes, bits) {
    let index = 0;
    for (; bits >= 8; bits -= 8, index++) if (bytes[index] !== 0) return false;
    return bits === 0 || (bytes[index] >> (8 - bits)) === 0;
  };
  const solve = async function (challenge, bits) {
    const encoder = new TextEncoder();
    const batch = 256; // digests in flight at once: crypto.subtle is fast, its promises are not
    for (let start = 0; ; start += batch) {
      const jobs = [];
      for (let n = start; n < start + batch; n++) {
        jobs.push(crypto.subtle.digest("SHA-256", encoder.encode(challenge + ":" + n)));
      }
      const digests = await Promise.all(jobs);
      for (let i = 0; i < batch; i++) {
        if (zeroBits(new Uint8Array(digests[i]), bits)) return String(start + i);
      }
    }
  };
  for (const form of document.querySelectorAll("form[data-pow]")) {
    const challenge = form.querySelector("input[name=pow_challenge]");
    const nonce = form.querySelector("input[name=pow_nonce]");
    const status = form.querySelector(".pow-status");
    const button = form.querySelector("button[type=submit]");
    // Without crypto.subtle (a page not served over HTTPS or from localhost) the form goes
    // without a nonce, as it does without JavaScript.
    if (!challenge || !nonce || !window.crypto || !window.crypto.subtle) continue;
    const bits = parseInt(challenge.value.split(".")[2], 10);
    let solved = false;
    let waiting = false;
    solve(challenge.value, bits).then(function (found) {
      nonce.value = found;
      solved = true;
      form.dataset.pow = "solved";
      if (waiting) form.submit();
    });
    form.addEventListener("submit", function (event) {
      if (solved) return;
      event.preventDefault();
      waiting = true;
      if (button) button.disabled = true;
      if (status) status.textContent = "Checking that you are not a robot…";
    });
  }
})();
