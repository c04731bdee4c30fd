// @ts-check
// Landing page: sign in (password, plus the authenticator code when the account has one), then go to the
// page for the account's role.

import * as api from "../api.js";
import { $, announce, setBusy, showScreen } from "../ui.js";

/** @type {Readonly<Record<string, string>>} */
const HOME_BY_ROLE = Object.freeze({ clinician: "/console", staff: "/staff", admin: "/staff" });

function goHome() {
  const home = HOME_BY_ROLE[/** @type {string} */ (api.accountRole())];
  if (home) {
    location.assign(home);
    return;
  }
  showScreen("signed-in");
}

/** @param {import("../events.js").FormSubmitEvent} event */
async function onSubmit(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const error = $("#login-error");
  const submit = $("#login-submit");
  const username = form.username.value.trim();
  const password = form.password.value;
  const totp = form.totp.value.trim();
  if (!username || !password) {
    error.textContent = "Enter your username and password.";
    error.hidden = false;
    (username ? form.password : form.username).focus();
    return;
  }
  error.hidden = true;
  setBusy(submit, true);
  announce("Signing in…");
  try {
    await api.login(username, password, totp);
    form.password.value = "";
    announce("Signed in.");
    goHome();
  } catch (failure) {
    const needsCode = failure instanceof api.ApiError && /totp|mfa/i.test(failure.code);
    error.textContent = needsCode ? "Enter the 6-digit code from your authenticator app." : api.describeError(failure);
    error.hidden = false;
    announce(error.textContent, { assertive: true });
    (needsCode ? form.totp : form.password).focus();
  } finally {
    setBusy(submit, false);
  }
}

function main() {
  $("#login-form").addEventListener("submit", onSubmit);
  $("#sign-out").addEventListener("click", async () => {
    await api.logout();
    showScreen("login");
    announce("Signed out.");
  });
  const token = api.accessToken();
  if (token) showScreen("signed-in");
  else showScreen("login");
}

main();
