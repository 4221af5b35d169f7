// Drives the dashboard in headless Debian Chromium (playwright-core, no downloaded
// browser): waits for the service graph, reads the numbers it shows, opens a service
// page and the live tap page, and takes a screenshot. Prints one JSON object.
// Usage: node graph.mjs URL SCREENSHOT.png
import { chromium } from 'playwright-core';

const [url, shot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'],
});
const out = {};
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  await page.goto(url + '#/graph');
  await page.waitForSelector('[data-testid=graph] [data-testid=edge]', { timeout: 60000 });
  out.nodes = await page.$$eval('[data-testid=graph] [data-testid=node]', (els) => els.map((e) => ({ name: e.dataset.name, rps: e.dataset.rps })));
  out.edges = await page.$$eval('[data-testid=graph] [data-testid=edge]', (els) => els.map((e) => ({ from: e.dataset.from, to: e.dataset.to, rps: e.dataset.rps, mtls: e.dataset.mtls })));
  out.workloads = await page.$$eval('[data-testid=workload-table] [data-testid=row]', (els) => els.map((e) => ({ name: e.dataset.name, rps: e.dataset.rps })));
  if (shot) await page.screenshot({ path: shot, fullPage: true });

  await page.goto(url + '#/service/catalog.default.svc.cluster.local');
  await page.waitForSelector('[data-testid=routes]', { timeout: 30000 });
  out.routesText = await page.$eval('[data-testid=routes]', (e) => e.innerText);
  out.charts = await page.$$eval('[data-testid=chart]', (els) => els.length);

  await page.goto(url + '#/tap');
  await page.waitForSelector('[data-testid=tap-start]');
  await page.click('[data-testid=tap-start]');
  await page.waitForSelector('[data-testid=tap-row]', { timeout: 30000 });
  out.tapRows = await page.$$eval('[data-testid=tap-row]', (els) => els.length);
} catch (e) {
  out.error = String(e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
