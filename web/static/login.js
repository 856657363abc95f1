// The login page: POST /api/login, then on to the page that sent the browser here (?next=, a
// path of this site only: the server checks it again in `tracker.api.auth.safe_next`).
const form = document.getElementById("login");
const submit = document.getElementById("submit");

function nextPath() {
  const next = new URLSearchParams(location.search).get("next") || "/operator";
  return next.startsWith("/") && !next.startsWith("//") && !next.includes("\\") ? next : "/operator";
}

BT.languageSwitch(document.getElementById("language"));

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  submit.disabled = true;
  submit.textContent = BT.t("login_busy");
  try {
    await BT.sendJson("POST", "/api/login", {
      name: document.getElementById("name").value,
      password: document.getElementById("password").value,
    });
    location.assign(nextPath());
  } catch (error) {
    BT.showError(error.message.includes(": 401 ") ? BT.t("login_wrong") : error.message);
    submit.disabled = false;
    submit.textContent = BT.t("login_submit");
  }
});
