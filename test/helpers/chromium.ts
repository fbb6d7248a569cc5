/**
 * Headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by playwright-core from the
 * test-only package (test/peers), with a fresh profile, and nothing looked up or fetched outside 127.0.0.1
 * (`--host-resolver-rules` maps every name but 127.0.0.1 to NOTFOUND; no background networking, component
 * updates, sync or QUIC). Closed, and its profile removed, in the test's teardown.
 */
import { accessSync, constants } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type TestLike, TEST_PEERS_DIR, UNDER_CI } from './peers.js';

export const CHROMIUM = '/usr/bin/chromium';

/** The parts of playwright-core's API these tests use (its types live in test/peers, outside tsc's view). */
export interface Page {
  goto(url: string, options?: { timeout?: number }): Promise<unknown>;
  setContent(html: string): Promise<void>;
  addScriptTag(options: { content: string }): Promise<unknown>;
  evaluate<R, A>(fn: (arg: A) => R | Promise<R>, arg: A): Promise<R>;
  waitForSelector(selector: string, options?: { timeout?: number }): Promise<unknown>;
  locator(selector: string): { getAttribute(name: string): Promise<string | null>; textContent(): Promise<string | null> };
  screenshot(options: { path: string; fullPage?: boolean }): Promise<Buffer>;
  on(event: 'console' | 'pageerror', handler: (m: { text?: () => string; message?: string }) => void): void;
  on(event: 'request', handler: (r: { url(): string; method(): string }) => void): void;
  setDefaultTimeout(ms: number): void;
  route(url: string | RegExp, handler: (route: Route) => unknown): Promise<void>;
}
/** A request caught by page.route: refused, or answered with what the server sent (perhaps changed). */
export interface Route {
  abort(code?: string): Promise<void>;
  fetch(): Promise<{ status(): number; headers(): Record<string, string>; text(): Promise<string> }>;
  fulfill(response: { status?: number; headers?: Record<string, string>; body?: string }): Promise<void>;
}
export interface BrowserContext {
  newPage(): Promise<Page>;
  close(): Promise<void>;
}

/** Whether Chromium and playwright-core are installed: false, or a skip reason (a failure under CI). */
export function missingChromium(t: TestLike): string | false {
  let reason: string | undefined;
  try {
    accessSync(CHROMIUM, constants.X_OK);
  } catch {
    reason = `${CHROMIUM} not installed (Debian: apt-get install chromium)`;
  }
  try {
    accessSync(join(TEST_PEERS_DIR, 'node_modules', 'playwright-core', 'index.mjs'));
  } catch {
    reason ??= 'playwright-core not installed (npm ci --prefix test/peers)';
  }
  if (!reason) return false;
  if (UNDER_CI) t.fail(`${reason}: the browser tests must run under CI`);
  else t.comment(`skipping: ${reason}`);
  return reason;
}

/** Launches headless Chromium with a fresh profile (and `extraArgs`); closed in teardown. */
export async function launchChromium(t: TestLike, extraArgs: readonly string[] = []): Promise<BrowserContext> {
  const { chromium } = (await import(pathToFileURL(join(TEST_PEERS_DIR, 'node_modules', 'playwright-core', 'index.mjs')).href)) as {
    chromium: { launchPersistentContext(dir: string, options: Record<string, unknown>): Promise<BrowserContext> };
  };
  const profile = await mkdtemp(join(tmpdir(), 'qkd-tls-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60_000,
    args: [
      '--no-sandbox', // CI runs as root
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
      ...extraArgs,
    ],
  });
  t.teardown(async () => {
    await context.close().catch(() => {});
    await rm(profile, { recursive: true, force: true });
  });
  return context;
}
