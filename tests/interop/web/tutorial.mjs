// The getting-started tutorial in a real browser against berth's website:
// sign up, make an access token, `docker login` with it, push
// ID/mynanoserver:dev, find it on the site, see its tag with digest,
// platform and size, push :1.0 and see it first, copy the pull command,
// star it, make it private and see it vanish for others, delete `dev`
// and keep `1.0`, and check that an overview cannot run script and a
// form without its CSRF token is refused. axe-core checks every page; a
// screenshot of each is saved. Env: BASE (http://127.0.0.1:PORT), HOSTPORT,
// SHOTS (directory for screenshots), DOCKER_HOST (the engine to push with).
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";

const require = createRequire(import.meta.url);
const AXE = require.resolve("axe-core/axe.min.js");
const { BASE, HOSTPORT, SHOTS } = process.env;
mkdirSync(SHOTS, { recursive: true });

let failures = 0;
let shot = 0;
function check(ok, what, detail = "") {
  if (ok) console.log(`ok: ${what}`);
  else {
    failures++;
    console.log(`FAIL: ${what} ${detail}`);
  }
}

function sh(cmd, args, input) {
  return execFileSync(cmd, args, { input, encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
}

/// Runs axe on the page and saves a screenshot.
async function audit(page, name, { axe = true } = {}) {
  if (axe) {
    await page.addScriptTag({ path: AXE });
    const result = await page.evaluate(async () => await window.axe.run(document));
    const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
    check(bad.length === 0, `axe: no serious or critical violation on ${name}`,
      JSON.stringify(bad.map((v) => [v.id, v.impact, v.nodes.map((n) => n.target).slice(0, 3)])));
  }
  shot++;
  const path = `${SHOTS}/${String(shot).padStart(2, "0")}-${name}.png`;
  await page.screenshot({ path, fullPage: true });
  console.log(`screenshot: ${path}`);
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const alerts = [];
async function newPage(opts = {}) {
  // bypassCSP: the sanitiser alone must stop script; the CSP is a second wall.
  const context = await browser.newContext({ bypassCSP: true, ...opts });
  const page = await context.newPage();
  page.on("dialog", async (d) => {
    if (d.type() === "alert") alerts.push(d.message());
    await d.accept();
  });
  return { context, page };
}

try {
  const ID = "moby" + String(Date.now() % 100000);
  const PW = "tutorial-password";
  const { context, page } = await newPage();
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: BASE });

  // Sign up.
  await page.goto(`${BASE}/`);
  await audit(page, "home");
  await page.getByRole("link", { name: "Sign up" }).click();
  await audit(page, "signup");
  await page.getByLabel("Username (your Docker ID)").fill(ID);
  await page.getByLabel("Password").fill(PW);
  await page.getByRole("button", { name: "Sign up" }).click();
  check(await page.getByRole("heading", { name: "Your repositories" }).isVisible(), "signed up and in");

  // An access token for docker login.
  await page.getByRole("link", { name: "Account" }).click();
  await page.getByLabel("Description").fill("docker cli");
  await page.getByLabel("Access").selectOption("write");
  await page.getByRole("button", { name: "Create token" }).click();
  const token = await page.getByLabel("New access token").inputValue();
  check(token.startsWith("berth_pat_"), "the token is shown once", token.slice(0, 12));
  await audit(page, "account");
  const login = sh("docker", ["login", "-u", ID, "--password-stdin", HOSTPORT], token);
  check(login.includes("Login Succeeded"), "docker login with the access token");

  // Push :dev and find it on the site.
  const repo = `${HOSTPORT}/${ID}/mynanoserver`;
  sh("docker", ["tag", "busybox:musl", `${repo}:dev`]);
  sh("docker", ["push", `${repo}:dev`]);
  await page.goto(`${BASE}/`);
  await page.getByLabel("Search for an image").fill("mynanoserver");
  await page.getByLabel("Search for an image").press("Enter");
  await audit(page, "search");
  await page.getByRole("link", { name: `${ID}/mynanoserver` }).click();
  await audit(page, "repository");
  await page.getByRole("navigation", { name: "Repository" }).getByRole("link", { name: "Tags" }).click();
  const digest = sh("docker", ["inspect", "-f", "{{index .RepoDigests 0}}", `${repo}:dev`]).trim().split("@")[1];
  const rows = page.locator("tbody tr");
  const first = await rows.first().innerText();
  check(first.includes("dev") && first.includes(digest.slice(0, 19)) && first.includes("linux/amd64") && /\d+(\.\d)? (B|kB|MB)/.test(first),
    "the tags page shows dev with its digest, platform and size", first);
  await audit(page, "tags");

  // Push :1.0 (the same image) and see it listed first.
  await new Promise((r) => setTimeout(r, 1100));
  sh("docker", ["tag", "busybox:musl", `${repo}:1.0`]);
  sh("docker", ["push", `${repo}:1.0`]);
  await page.reload();
  const firstTag = await rows.first().locator("td").first().innerText();
  check(firstTag.trim() === "1.0", "the newest tag is listed first", firstTag);
  await page.getByRole("link", { name: "1.0" }).click();
  check(await page.getByRole("heading", { name: "Layers" }).first().isVisible(), "a tag's page lists its layers");
  check(await page.getByRole("heading", { name: "History" }).first().isVisible(), "and the config's history");
  await audit(page, "tag");

  // Copy the pull command; star it.
  await page.goto(`${BASE}/r/${ID}/mynanoserver`);
  await page.getByRole("button", { name: "Copy" }).click();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  check(copied === `docker pull ${HOSTPORT}/${ID}/mynanoserver`, "the copy button copies the pull command", copied);
  await page.getByRole("button", { name: "Star" }).click();
  check((await page.locator("#stars").innerText()).includes("1 star"), "starred: one star");

  // An overview cannot run script.
  await page.getByRole("link", { name: "Settings" }).click();
  await audit(page, "settings");
  await page.getByLabel("Overview (Markdown)").fill("# Nano server\n\n<img src=x onerror=alert(1)>\n\n[x](javascript:alert(1))\n");
  await page.getByRole("button", { name: "Save" }).click();
  await page.goto(`${BASE}/r/${ID}/mynanoserver`);
  await page.getByRole("link", { name: "x", exact: true }).click().catch(() => {});
  await page.waitForTimeout(300);
  check(alerts.length === 0, "the overview's script fires nothing", JSON.stringify(alerts));
  check(await page.getByRole("heading", { name: "Nano server" }).isVisible(), "the overview's Markdown renders");

  // A form without its CSRF token gets 403.
  await page.goto(`${BASE}/r/${ID}/mynanoserver/settings`);
  const [refused] = await Promise.all([
    page.waitForNavigation(),
    page.evaluate(() => {
      const form = document.querySelector("input[name=do][value=visibility]").form;
      form.querySelector("input[name=csrf]").remove();
      form.querySelector("input[name=confirm]").value = "x";
      form.submit();
    }),
  ]);
  check(refused.status() === 403, "a form without its CSRF token gets 403", String(refused.status()));

  // Delete dev: 1.0 stays although both share a digest.
  await page.goto(`${BASE}/r/${ID}/mynanoserver/settings`);
  await page.getByLabel("dev").check();
  await page.getByRole("button", { name: "Delete selected tags" }).click();
  await page.goto(`${BASE}/r/${ID}/mynanoserver/tags`);
  const tags = await page.locator("tbody tr td:first-child").allInnerTexts();
  check(JSON.stringify(tags.map((t) => t.trim())) === JSON.stringify(["1.0"]), "dev is gone, 1.0 remains", JSON.stringify(tags));
  check(sh("docker", ["pull", "-q", `${repo}:1.0`]).includes("1.0"), "1.0 still pulls");

  // Make it private: it vanishes for another user and for anonymous visitors.
  await page.goto(`${BASE}/r/${ID}/mynanoserver/settings`);
  await page.locator("#confirm-visibility").fill(`${ID}/mynanoserver`);
  await page.getByRole("button", { name: "Make private" }).click();
  check(await page.getByText("The repository is now private.").isVisible(), "made private");
  const anon = await newPage();
  let res = await anon.page.goto(`${BASE}/r/${ID}/mynanoserver`);
  check(res.status() === 404, "private: 404 for an anonymous visitor", String(res.status()));
  await anon.page.goto(`${BASE}/search?q=mynanoserver`);
  check((await anon.page.content()).includes(`${ID}/mynanoserver`) === false, "private: not in the anonymous search");
  await audit(anon.page, "not-found");
  const other = await newPage();
  await other.page.goto(`${BASE}/signup`);
  await other.page.getByLabel("Username (your Docker ID)").fill(ID + "x");
  await other.page.getByLabel("Password").fill(PW);
  await other.page.getByRole("button", { name: "Sign up" }).click();
  res = await other.page.goto(`${BASE}/r/${ID}/mynanoserver`);
  check(res.status() === 404, "private: 404 for another user", String(res.status()));
  await other.page.goto(`${BASE}/u/${ID}`);
  check((await other.page.content()).includes("mynanoserver") === false, "private: not on the owner's page for another user");
  await audit(other.page, "user");

  // Without JavaScript the site still works: sign in and search.
  await anon.page.goto(`${BASE}/login`);
  await audit(anon.page, "login");
  const nojs = await newPage({ javaScriptEnabled: false });
  await nojs.page.goto(`${BASE}/login`);
  await nojs.page.getByLabel("Username").fill(ID);
  await nojs.page.getByLabel("Password").fill(PW);
  await nojs.page.getByRole("button", { name: "Sign in" }).click();
  await nojs.page.goto(`${BASE}/search?q=mynanoserver`);
  check((await nojs.page.content()).includes(`${ID}/mynanoserver`), "without JavaScript: signed in, the owner finds the private repository");
  await audit(nojs.page, "search-without-javascript", { axe: false });
  sh("docker", ["logout", HOSTPORT]);
} catch (e) {
  failures++;
  console.log(`FAIL: ${e.stack || e}`);
} finally {
  await browser.close();
}
console.log(failures === 0 ? "browser tier passed" : `browser tier: ${failures} failure(s)`);
process.exit(failures === 0 ? 0 : 1);
