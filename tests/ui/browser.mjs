// Drives Debian's chromium through regauth's app-password page.
//
//   node browser.mjs '{"ui": "...", "user": "dana", "name": "laptop",
//                      "state": "/tmp/state.json", "shots": "/dir"}' create
//   node browser.mjs '{...}' revoke
//   node browser.mjs '{"url": "<verification_uri_complete>", "ui": "...",
//                      "user": "tess", "password": "...", "totp": "<secret>",
//                      "name": "kc-laptop"}' keycloak
//   node browser.mjs '{"url": "<verification_uri_complete>", "user": "dana",
//                      "answer": "approve", "shots": "/dir"}' device
//
// `create` signs in at the identity provider, makes an app password and
// prints {"secret": ..., "login": ...} as the last line; `revoke` reuses the
// saved browser state (the session cookie) and revokes the app password
// named `name`; `device` opens a device login's verification URL, signs in
// at the identity provider, checks the code and the client on the page and
// answers (`approve` or `deny`), printing {"client", "code", "answered"};
// `keycloak` does the same through Keycloak's login and one-time-code
// pages, then makes an app password `name` in the same session, printing
// {"client", "code", "answered", "secret"}.
// `robot` signs in (`"signin": "form"` with `user` and `password` on
// the page's password form, else at the identity provider), opens the
// team robots' page and makes robot `name` for `team` reaching `repos`
// (pull, and push with `push`), printing {"secret", "login"}; with
// `"expect": "none"` it only prints the robots page's text as {"text"}.
// `robot-rotate` (saved state) rotates robot `login` with an overlap of
// `hours`, printing {"secret", "said"}; `robot-revoke` revokes it,
// printing {"revoked"}.
// `entra` signs in at an Entra ID-shaped sign-in page (`loginfmt`,
// `passwd`) and makes an app password `name`, printing {"secret"}.
// Screenshots go to `shots` when set.
import { chromium } from 'playwright-core';
import crypto from 'node:crypto';
import fs from 'node:fs';

// RFC 6238 TOTP (HMAC-SHA1, 30 s, 6 digits) of a secret given as text,
// as Keycloak keeps an OTP credential's secret.
const totp = (secret, at = Date.now()) => {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 30000)));
  const mac = crypto.createHmac('sha1', Buffer.from(secret, 'utf8')).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const code = (mac.readUInt32BE(offset) & 0x7fffffff) % 1000000;
  return String(code).padStart(6, '0');
};

const options = JSON.parse(process.argv[2]);
const command = process.argv[3];
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
if (!fs.existsSync(executablePath)) {
  console.error(`no chromium at ${executablePath}: apt-get install -y chromium`);
  process.exit(2);
}
// nothing leaves the machine: no background fetches, updates, sync or
// first-run calls
const browser = await chromium.launch({
  executablePath,
  args: [
    '--no-sandbox', '--disable-dev-shm-usage', '--disable-background-networking',
    '--disable-component-update', '--no-first-run', '--disable-sync',
  ],
});
const saved = ['revoke', 'robot-rotate', 'robot-revoke'].includes(command);
const context = await browser.newContext(saved ? { storageState: options.state } : {});
const page = await context.newPage();
const shot = async (name, mobile = false) => {
  if (!options.shots) return;
  if (mobile) await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: `${options.shots}/${name}.png`, fullPage: true });
  if (mobile) await page.setViewportSize({ width: 1280, height: 720 });
};
try {
  if (command === 'create') {
    await page.goto(options.ui + '/');
    await shot('sign-in');
    await page.getByRole('link', { name: /Sign in with/ }).first().click();
    // the identity provider's login and consent pages
    await page.fill('input[name=login]', options.user);
    await page.fill('input[name=password]', 'any password');
    await page.click('button[type=submit]');
    await page.waitForSelector('button[type=submit]');
    if (page.url().startsWith(options.ui)) throw new Error('no consent page');
    await page.click('button[type=submit]');
    await page.waitForURL(`${options.ui}/`);
    await page.fill('input[name=name]', options.name);
    if (options.repos) await page.fill('textarea[name=repos]', options.repos);
    if (options.push) await page.check('input[name=actions][value=push]');
    await page.click('text=Create app password');
    const secret = (await page.textContent('#secret')).trim();
    const login = (await page.textContent('#login')).trim();
    await shot('created');
    await page.goto(options.ui + '/');
    await shot('app-passwords');
    await shot('app-passwords-phone', true);
    await context.storageState({ path: options.state });
    console.log(JSON.stringify({ secret, login }));
  } else if (command === 'robot') {
    await page.goto(options.ui + '/');
    if (options.signin === 'form') {
      await page.fill('input[name=username]', options.user);
      await page.fill('input[name=password]', options.password);
      await page.click('text=Sign in with your password');
    } else {
      await page.getByRole('link', { name: /Sign in with/ }).first().click();
      await page.fill('input[name=login]', options.user);
      await page.fill('input[name=password]', 'any password');
      await page.click('button[type=submit]');
      await page.waitForSelector('button[type=submit]');
      if (!page.url().startsWith(options.ui)) await page.click('button[type=submit]');
    }
    await page.waitForURL(`${options.ui}/`);
    await page.click('text=Team robots');
    await page.waitForURL(`${options.ui}/robots`);
    if (options.expect === 'none') {
      console.log(JSON.stringify({ text: await page.textContent('main') }));
    } else {
      await page.selectOption('select[name=team]', options.team);
      await page.fill('input[name=name]', options.name);
      await page.fill('input[name=description]', 'pushes the team images');
      await page.fill('textarea[name=repos]', options.repos);
      if (options.push) await page.check('input[name=actions][value=push]');
      await shot('robot-form');
      await page.click('text=Create robot');
      const secret = (await page.textContent('#secret')).trim();
      const login = (await page.textContent('#login')).trim();
      await shot('robot-created');
      await page.goto(options.ui + '/robots');
      await shot('robots');
      await shot('robots-phone', true);
      await context.storageState({ path: options.state });
      console.log(JSON.stringify({ secret, login }));
    }
  } else if (command === 'robot-rotate') {
    await page.goto(options.ui + '/robots');
    const row = page.locator('tr', { has: page.getByRole('button', { name: `Rotate ${options.login}` }) });
    await row.locator('input[name=overlap_hours]').fill(String(options.hours));
    await row.getByRole('button', { name: `Rotate ${options.login}` }).click();
    const secret = (await page.textContent('#secret')).trim();
    const said = (await page.textContent('main')).replace(/\s+/g, ' ');
    await shot(`robot-rotated-${options.hours}`);
    console.log(JSON.stringify({ secret, said }));
  } else if (command === 'robot-revoke') {
    await page.goto(options.ui + '/robots');
    await page.getByRole('button', { name: `Revoke ${options.login}` }).click();
    await page.waitForURL(`${options.ui}/robots`);
    const left = await page.getByRole('button', { name: `Revoke ${options.login}` }).count();
    console.log(JSON.stringify({ revoked: left === 0 }));
  } else if (command === 'entra') {
    // Entra ID's sign-in page (the test tenant's): the account and its
    // password, then back at the page to make an app password
    await page.goto(options.ui + '/');
    await page.getByRole('link', { name: /Sign in with/ }).first().click();
    await page.fill('input[name=loginfmt]', options.user);
    await page.fill('input[name=passwd]', options.password);
    await page.click('#idSIButton9');
    await page.waitForURL(`${options.ui}/`);
    await page.fill('input[name=name]', options.name);
    await page.click('text=Create app password');
    const secret = (await page.textContent('#secret')).trim();
    console.log(JSON.stringify({ secret }));
  } else if (command === 'device') {
    await page.goto(options.url);
    await shot('device-sign-in');
    await page.getByRole('link', { name: /Sign in with/ }).first().click();
    await page.fill('input[name=login]', options.user);
    await page.fill('input[name=password]', 'any password');
    await page.click('button[type=submit]');
    await page.waitForSelector('button[type=submit]');
    if (!page.url().includes('/ui/device')) await page.click('button[type=submit]');
    await page.waitForURL(/\/ui\/device/);
    await shot('device-code');
    await page.click('text=Continue');
    const client = (await page.textContent('#client')).trim();
    const code = (await page.textContent('#user-code')).trim();
    await shot('device-approve');
    await shot('device-approve-phone', true);
    await page.click(options.answer === 'deny' ? 'button[value=deny]' : 'button[value=approve]');
    const answered = (await page.textContent('h1')).trim();
    await shot('device-approved');
    console.log(JSON.stringify({ client, code, answered }));
  } else if (command === 'keycloak') {
    await page.goto(options.url);
    await page.getByRole('link', { name: /Sign in with/ }).first().click();
    await page.fill('#username', options.user);
    await page.fill('#password', options.password);
    await page.click('#kc-login');
    await page.waitForSelector('#otp');
    await shot('keycloak-otp');
    await page.fill('#otp', totp(options.totp));
    await page.click('#kc-login');
    await page.waitForURL(/\/ui\/device/);
    await page.click('text=Continue');
    const client = (await page.textContent('#client')).trim();
    const code = (await page.textContent('#user-code')).trim();
    await page.click('button[value=approve]');
    const answered = (await page.textContent('h1')).trim();
    await page.goto(options.ui + '/');
    await page.fill('input[name=name]', options.name);
    await page.check('input[name=actions][value=push]');
    await page.click('text=Create app password');
    const secret = (await page.textContent('#secret')).trim();
    console.log(JSON.stringify({ client, code, answered, secret }));
  } else if (command === 'revoke') {
    await page.goto(options.ui + '/');
    await page.getByRole('button', { name: `Revoke ${options.name}` }).click();
    await page.waitForURL(`${options.ui}/`);
    const left = await page.getByRole('button', { name: `Revoke ${options.name}` }).count();
    console.log(JSON.stringify({ revoked: left === 0 }));
  } else {
    throw new Error(`unknown command ${command}`);
  }
} catch (e) {
  console.error(`browser: ${e.message}\n--- page ${page.url()} ---\n${(await page.content()).slice(0, 3000)}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
