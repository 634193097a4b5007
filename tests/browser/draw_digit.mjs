// End to end: `lenet serve` on a free port, the page opened in Debian's chromium (driven by
// playwright-core), digits drawn with mouse strokes (and, on a phone-sized page, with touch), and
// the page's prediction checked, and the browser's own answer beside it (the model's ONNX export
// in ONNX Runtime Web, when onnxruntime-web is installed in tools/web/). Screenshots are saved; --update-demo also writes the desktop one
// where the README shows it.
//
// usage: node tests/browser/draw_digit.mjs LENET_BINARY [--weights FILE] [--screenshot-dir DIR]
//                                          [--update-demo docs/images/demo.png]
// Exit status: 0 passed, 1 failed, 77 skipped (no chromium, no playwright-core, or no weights).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const RUNTIME = 'tools/web/node_modules/onnxruntime-web';  // lenet serve finds it from the repository
const TIME_LIMIT_MS = 150_000;

let serverProcess = null;  // killed on the way out, whatever happens

function parseArguments(argv) {
  const options = {
    lenet: argv[0],
    weights: process.env.LENET_WEIGHTS || 'models/lenet5.safetensors',
    screenshotDir: '.',
    updateDemo: null,
  };
  for (let i = 1; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === '--weights') options.weights = value;
    else if (flag === '--screenshot-dir') options.screenshotDir = value;
    else if (flag === '--update-demo') options.updateDemo = value;
    else throw new Error(`unknown option ${flag}`);
  }
  if (!options.lenet) throw new Error('usage: draw_digit.mjs LENET_BINARY [--weights FILE] [--screenshot-dir DIR] [--update-demo PNG]');
  return options;
}

function skip(reason) {
  console.log(`SKIP: ${reason}`);
  process.exit(77);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
  console.log(`ok: ${message}`);
}

// Starts `lenet serve --port 0` and resolves with its URL, read from the line it prints.
function startServer(lenet, weights) {
  const server = spawn(lenet, ['serve', '--weights', weights, '--port', '0', '--threads', '4'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = [];
  server.stderr.on('data', (chunk) => log.push(...chunk.toString().split('\n').filter(Boolean)));
  const url = new Promise((resolve, reject) => {
    let output = '';
    const timeout = setTimeout(() => reject(new Error(`lenet serve printed no URL: ${output}`)), 20_000);
    server.stdout.on('data', (chunk) => {
      output += chunk.toString();
      const match = output.match(/http:\/\/127\.0\.0\.1:(\d+)\//);
      if (match) {
        clearTimeout(timeout);
        resolve(match[0]);
      }
    });
    server.on('exit', (code) => reject(new Error(`lenet serve exited with ${code}: ${log.join('\n')}`)));
  });
  return { server, url, log };
}

function stopServer(server) {
  return new Promise((resolve) => {
    if (server.exitCode !== null) return resolve(server.exitCode);
    server.on('exit', (code, signal) => resolve(code ?? signal));
    server.kill('SIGTERM');
  });
}

// Strokes are polylines in pad coordinates from 0 to 1, drawn the way a hand would.
const DIGITS = {
  1: [[[0.52, 0.18], [0.5, 0.5], [0.48, 0.84]]],
  7: [[[0.26, 0.22], [0.5, 0.21], [0.74, 0.22], [0.62, 0.45], [0.52, 0.65], [0.46, 0.84]]],
  0: [Array.from({ length: 25 }, (_, i) => {
    const angle = (i / 24) * 2 * Math.PI;
    return [0.5 + 0.22 * Math.sin(angle), 0.5 - 0.32 * Math.cos(angle)];
  })],
};

async function drawWithMouse(page, strokes) {
  const box = await page.locator('#pad').boundingBox();
  const at = ([x, y]) => [box.x + x * box.width, box.y + y * box.height];
  for (const stroke of strokes) {
    await page.mouse.move(...at(stroke[0]));
    await page.mouse.down();
    for (const point of stroke.slice(1)) await page.mouse.move(...at(point), { steps: 8 });
    await page.mouse.up();
  }
}

// Touch through the DevTools protocol: chromium turns these into pointer events of type "touch".
async function drawWithTouch(page, cdp, strokes) {
  const box = await page.locator('#pad').boundingBox();
  const at = ([x, y]) => ({ x: box.x + x * box.width, y: box.y + y * box.height });
  for (const stroke of strokes) {
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [at(stroke[0])] });
    for (let i = 1; i < stroke.length; i += 1) {
      for (let step = 1; step <= 8; step += 1) {
        const [x0, y0] = stroke[i - 1];
        const [x1, y1] = stroke[i];
        const t = step / 8;
        await cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: [at([x0 + (x1 - x0) * t, y0 + (y1 - y0) * t])] });
      }
    }
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
  }
}

async function expectPrediction(page, digit) {
  await page.waitForFunction((d) => document.getElementById('digit').textContent === String(d), digit, { timeout: 15_000 })
    .catch(async () => {
      const shown = await page.locator('#digit').textContent();
      throw new Error(`expected the page to predict ${digit}, it shows '${shown}'`);
    });
  // The answer must be settled: nothing left to send, and the highlighted bar is the digit's.
  await page.waitForTimeout(400);
  const shown = await page.locator('#digit').textContent();
  const highlighted = await page.locator('#bars li.best .label').textContent();
  check(shown === String(digit) && highlighted === String(digit), `the page predicts ${digit} and highlights its bar`);
}

// The browser's answer (ONNX Runtime Web on /model.onnx) once it is there: the same digit as the
// server's.
async function expectBrowserPrediction(page, digit) {
  await page.waitForFunction((d) => document.getElementById('browser-digit').textContent === String(d), digit,
    { timeout: 15_000 }).catch(async () => {
    const shown = await page.locator('#browser-verdict').textContent();
    throw new Error(`expected ONNX Runtime Web in the page to say ${digit} too, it shows '${shown.trim()}'`);
  });
  const detail = await page.locator('#browser-detail').textContent();
  check(detail.endsWith('as the server'), `ONNX Runtime Web in the page says ${digit} too (${detail})`);
}

async function clear(page) {
  await page.click('#clear');
  await page.waitForFunction(() => document.getElementById('digit').textContent === '?');
}

// Sum of the red channel of a canvas: zero when it is black all over.
function inkIn(page, selector) {
  return page.evaluate((s) => {
    const canvas = document.querySelector(s);
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let sum = 0;
    for (let i = 0; i < data.length; i += 4) sum += data[i];
    return sum;
  }, selector);
}

function distinctColours(page, selector) {
  return page.evaluate((s) => {
    const canvas = document.querySelector(s);
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const colours = new Set();
    for (let i = 0; i < data.length; i += 4) colours.add(`${data[i]},${data[i + 1]},${data[i + 2]}`);
    return colours.size;
  }, selector);
}

async function main() {
  const options = parseArguments(process.argv.slice(2));
  if (!existsSync(CHROMIUM)) skip(`no chromium at ${CHROMIUM} (apt-get install chromium)`);
  if (!existsSync(options.weights)) skip(`no weights at ${options.weights}`);
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch {
    skip('playwright-core is not installed (cd tests/browser && npm ci)');
  }
  mkdirSync(options.screenshotDir, { recursive: true });

  const { server, url: urlPromise, log } = startServer(options.lenet, options.weights);
  serverProcess = server;
  let browser;
  let failed = false;
  try {
    const url = await urlPromise;
    console.log(`server: ${url}`);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
    });

    // A laptop-sized window, drawn with the mouse.
    const desktop = await browser.newContext({ viewport: { width: 1280, height: 1000 }, deviceScaleFactor: 1 });
    const page = await desktop.newPage();
    const problems = [];
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => { if (message.type() === 'error') problems.push(`console: ${message.text()}`); });
    page.on('requestfailed', (request) => problems.push(`request failed: ${request.url()}`));
    page.on('response', async (response) => {
      if (response.status() >= 400) problems.push(`${response.url()}: ${response.status()} ${await response.text().catch(() => '')}`);
    });
    page.on('request', (request) => {
      if (!request.url().startsWith(url)) problems.push(`request outside the server: ${request.url()}`);
    });

    await page.goto(url);
    await page.waitForFunction(() => document.querySelectorAll('#layers tr').length === 5, null, { timeout: 15_000 });
    check(true, 'the model table lists 5 layers');
    const parameters = await page.locator('#parameter-count').textContent();
    check(parameters === '61,706', `the page shows 61,706 parameters (${parameters})`);
    const graphLoaded = await page.evaluate(async () => {
      const image = document.querySelector('.graph img');
      image.loading = 'eager';
      await image.decode().catch(() => {});
      return image.complete && image.naturalWidth > 0;
    });
    check(graphLoaded, 'the network graph (/api/graph.svg) is shown');

    const inBrowser = await page.evaluate(async () => (await (await fetch('/api/model')).json()).onnx_in_browser);
    if (inBrowser) {
      await page.waitForSelector('#browser-verdict', { state: 'visible', timeout: 15_000 });
      check(true, 'the page loads the model into ONNX Runtime Web');
    } else {
      console.log(`skipped: the browser's own answer (no onnxruntime-web in ${RUNTIME}; tools/run test installs it)`);
    }
    for (const digit of [1, 0, 7]) {
      await clear(page);
      await drawWithMouse(page, DIGITS[digit]);
      await expectPrediction(page, digit);
      if (inBrowser) await expectBrowserPrediction(page, digit);
    }
    check((await inkIn(page, '#input28')) > 0, 'the 28x28 image the network saw is drawn');
    check((await distinctColours(page, '#conv1 canvas')) > 3, 'conv1 feature maps are drawn');
    check((await distinctColours(page, '#conv2 canvas:nth-child(2)')) > 3, 'conv2 feature maps are drawn');
    const desktopShot = path.join(options.screenshotDir, 'demo-desktop.png');
    await page.screenshot({ path: desktopShot, fullPage: true });
    console.log(`screenshot: ${desktopShot}`);
    if (options.updateDemo) {
      await page.screenshot({ path: options.updateDemo, fullPage: true });
      console.log(`screenshot: ${options.updateDemo}`);
    }
    await clear(page);
    check((await inkIn(page, '#input28')) === 0, 'Clear empties the prediction and the 28x28 image');
    check(problems.length === 0, `no errors or outside requests on the page${problems.length ? `: ${problems.join('; ')}` : ''}`);

    // A phone-sized window, drawn with a finger.
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    const phonePage = await phone.newPage();
    await phonePage.goto(url);
    await phonePage.waitForFunction(() => document.querySelectorAll('#layers tr').length === 5, null, { timeout: 15_000 });
    const overflow = await phonePage.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `nothing is wider than a 390-pixel screen (overflow ${overflow}px)`);
    const padBox = await phonePage.locator('#pad').boundingBox();
    check(padBox.x >= 0 && padBox.x + padBox.width <= 390 && padBox.width >= 250, `the pad fits the phone's width (${Math.round(padBox.width)}px)`);
    const cdp = await phone.newCDPSession(phonePage);
    await drawWithTouch(phonePage, cdp, DIGITS[7]);
    await expectPrediction(phonePage, 7);
    const phoneShot = path.join(options.screenshotDir, 'demo-phone.png');
    await phonePage.screenshot({ path: phoneShot, fullPage: true });
    console.log(`screenshot: ${phoneShot}`);

    check(log.some((line) => /^POST \/api\/predict 200 \d+us$/.test(line)), 'the server logged its requests');
  } catch (error) {
    failed = true;
    console.error(`FAIL: ${error.message}`);
    console.error(`server log (last lines):\n${log.slice(-20).join('\n')}`);
  } finally {
    if (browser) await browser.close();
    const status = await stopServer(server);
    if (!failed && status !== 0) {
      failed = true;
      console.error(`FAIL: lenet serve did not exit cleanly on SIGTERM (${status})`);
    } else if (!failed) {
      console.log('ok: lenet serve stops cleanly on SIGTERM');
    }
  }
  process.exit(failed ? 1 : 0);
}

setTimeout(() => {
  console.error(`FAIL: the test took longer than ${TIME_LIMIT_MS / 1000} s`);
  serverProcess?.kill('SIGKILL');
  process.exit(1);
}, TIME_LIMIT_MS).unref();

main().catch((error) => {
  console.error(`FAIL: ${error.message}`);
  serverProcess?.kill('SIGKILL');
  process.exit(1);
});
