// The draw-a-digit page: a drawing pad whose picture is sent to the server as a PNG while you draw,
// and the server's answers drawn back: the prediction, the image the network saw, the feature maps.
// All preprocessing happens in the server (the same C++ code as `lenet predict`), none here. When
// the server offers it, the same model also runs here: its ONNX export in ONNX Runtime Web, on the
// image the server's preprocessing made, its answer shown beside the server's.
'use strict';

const BRUSH_WIDTH = 22;          // in drawing units: strokes about as thick as MNIST's
const MIN_REQUEST_GAP_MS = 90;   // predict-as-you-draw, at most about ten times a second

const PAD_SIDE = 280;            // drawing units; the canvas has more pixels on dense screens

const pad = document.getElementById('pad');
const padContext = pad.getContext('2d');
const padScale = Math.min(3, Math.max(1, Math.round(window.devicePixelRatio || 1)));
pad.width = PAD_SIDE * padScale;
pad.height = PAD_SIDE * padScale;
padContext.setTransform(padScale, 0, 0, padScale, 0, 0);
const padHint = document.getElementById('pad-hint');
const statusLine = document.getElementById('status');
const digitOutput = document.getElementById('digit');
const confidence = document.getElementById('confidence');
const latency = document.getElementById('latency');
const bars = document.getElementById('bars');
const seen = document.getElementById('input28');
const browserVerdict = document.getElementById('browser-verdict');
const browserDigit = document.getElementById('browser-digit');
const browserDetail = document.getElementById('browser-detail');

// ---------------------------------------------------------------------------------------------
// Drawing

let hasInk = false;
let stroke = null;   // the pointer drawing now: {id, x, y}
let generation = 0;  // bumped by Clear, so that answers about an older drawing are dropped

function clearPad() {
  padContext.fillStyle = '#fff';
  padContext.fillRect(0, 0, PAD_SIDE, PAD_SIDE);
  hasInk = false;
  generation += 1;
  padHint.classList.remove('hidden');
  showEmptyResult();
}

function padPoint(event) {
  const box = pad.getBoundingClientRect();
  return {
    x: (event.clientX - box.left) * (PAD_SIDE / box.width),
    y: (event.clientY - box.top) * (PAD_SIDE / box.height),
  };
}

function drawDot(at) {
  padContext.fillStyle = '#111';
  padContext.beginPath();
  padContext.arc(at.x, at.y, BRUSH_WIDTH / 2, 0, 2 * Math.PI);
  padContext.fill();
}

function drawSegment(from, to) {
  padContext.strokeStyle = '#111';
  padContext.lineWidth = BRUSH_WIDTH;
  padContext.lineCap = 'round';
  padContext.lineJoin = 'round';
  padContext.beginPath();
  padContext.moveTo(from.x, from.y);
  padContext.lineTo(to.x, to.y);
  padContext.stroke();
}

pad.addEventListener('pointerdown', (event) => {
  if (event.button !== 0 || stroke) return;
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  const point = padPoint(event);
  stroke = { id: event.pointerId, ...point };
  drawDot(point);  // a tap leaves a mark
  hasInk = true;
  padHint.classList.add('hidden');
  requestPrediction();
});

pad.addEventListener('pointermove', (event) => {
  if (!stroke || event.pointerId !== stroke.id) return;
  event.preventDefault();
  // Coalesced events keep fast strokes smooth where the browser batches them.
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) {
    const point = padPoint(e);
    drawSegment(stroke, point);
    stroke.x = point.x;
    stroke.y = point.y;
  }
  requestPrediction();
});

function endStroke(event) {
  if (!stroke || event.pointerId !== stroke.id) return;
  stroke = null;
  requestPrediction();
}
pad.addEventListener('pointerup', endStroke);
pad.addEventListener('pointercancel', endStroke);

document.getElementById('clear').addEventListener('click', clearPad);
document.addEventListener('keydown', (event) => {
  if ((event.key === 'Escape' || event.key === 'Delete') && !event.repeat) clearPad();
});

// ---------------------------------------------------------------------------------------------
// Talking to the server: one request pair in flight at a time; whatever was drawn meanwhile is
// sent as soon as it returns, so the last answer always matches the last stroke.

let inFlight = false;
let pending = false;
let lastSentAt = 0;
let timer = null;

function requestPrediction() {
  if (!hasInk) return;
  pending = true;
  if (inFlight || timer) return;
  const wait = Math.max(0, lastSentAt + MIN_REQUEST_GAP_MS - performance.now());
  timer = setTimeout(() => { timer = null; sendDrawing(); }, wait);
}

function padAsPng() {
  return new Promise((resolve, reject) => {
    pad.toBlob((blob) => (blob ? resolve(blob) : reject(new Error('the drawing could not be encoded'))), 'image/png');
  });
}

async function postImage(path, png) {
  const response = await fetch(path, { method: 'POST', headers: { 'Content-Type': 'image/png' }, body: png });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${path}: HTTP ${response.status}`);
  return body;
}

async function sendDrawing() {
  if (!pending || !hasInk) return;
  pending = false;
  inFlight = true;
  lastSentAt = performance.now();
  const sentGeneration = generation;
  try {
    const png = await padAsPng();
    const [prediction, features] = await Promise.all([
      postImage('/api/predict', png),
      postImage('/api/features', png),
    ]);
    if (sentGeneration === generation) {
      showPrediction(prediction);
      showFeatures(features);
      setStatus('');
      await showBrowserPrediction(prediction, sentGeneration);
    }
  } catch (error) {
    if (sentGeneration === generation) setStatus(error.message, true);
  } finally {
    inFlight = false;
    if (pending) requestPrediction();
  }
}

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle('error', isError);
}

// ---------------------------------------------------------------------------------------------
// Showing the answers

const barRows = [];
for (let digit = 0; digit < 10; digit += 1) {
  const row = document.createElement('li');
  row.innerHTML = '<span class="label"></span><span class="track"><span class="fill"></span></span><span class="value"></span>';
  row.querySelector('.label').textContent = String(digit);
  bars.appendChild(row);
  barRows.push({ row, fill: row.querySelector('.fill'), value: row.querySelector('.value') });
}

function percent(probability) {
  const p = probability * 100;
  return p >= 99.95 ? '100%' : p < 0.05 ? '0%' : `${p.toFixed(1)}%`;
}

function showEmptyResult() {
  digitOutput.textContent = '?';
  digitOutput.classList.add('empty');
  confidence.textContent = 'waiting for ink';
  latency.textContent = '';
  for (const bar of barRows) {
    bar.fill.style.width = '0%';
    bar.value.textContent = '';
    bar.row.classList.remove('best');
  }
  paint(seen, new Array(784).fill(0), 28, 28, grey, 255);
  browserDigit.textContent = '?';
  browserDetail.textContent = '';
  browserVerdict.classList.remove('differs');
  for (const layer of Object.values(featureCanvases)) {
    for (const canvas of layer) paint(canvas, new Array(canvas.width * canvas.height).fill(0), canvas.width, canvas.height, viridis, 1);
  }
  setStatus('Use a mouse, a pen or a finger. One digit, large and centred.');
}

function showPrediction(answer) {
  const best = answer.digit;
  digitOutput.textContent = String(best);
  digitOutput.classList.remove('empty');
  confidence.textContent = `${percent(answer.probabilities[best])} sure`;
  latency.textContent = `server: ${(answer.latency_us / 1000).toFixed(2)} ms`;
  answer.probabilities.forEach((probability, digit) => {
    const bar = barRows[digit];
    bar.fill.style.width = `${(probability * 100).toFixed(2)}%`;
    bar.value.textContent = percent(probability);
    bar.row.classList.toggle('best', digit === best);
  });
  paint(seen, answer.input28, 28, 28, grey, 255);
}

// Colour maps: value in [0, 1] -> [r, g, b].
function grey(t) {
  const v = Math.round(t * 255);
  return [v, v, v];
}

const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function viridis(t) {
  const x = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2);
  const f = x - i;
  return VIRIDIS[i].map((a, k) => Math.round(a + (VIRIDIS[i + 1][k] - a) * f));
}

function paint(canvas, values, width, height, colour, scale) {
  const context = canvas.getContext('2d');
  const image = context.createImageData(width, height);
  for (let i = 0; i < width * height; i += 1) {
    const [r, g, b] = colour(scale > 0 ? values[i] / scale : 0);
    image.data[4 * i] = r;
    image.data[4 * i + 1] = g;
    image.data[4 * i + 2] = b;
    image.data[4 * i + 3] = 255;
  }
  context.putImageData(image, 0, 0);
}

// One heading and one canvas per map for each layer the server reports, made when its first
// answer arrives (the layers depend on the model being served). Each layer's maps share one scale
// (its largest value), so a quiet map looks quiet.
const featureCanvases = {};
function makeFeatureLayer(container, layer) {
  const heading = document.createElement('h3');
  heading.textContent = `${layer.name} `;
  const detail = document.createElement('span');
  detail.textContent = `${layer.channels} maps, ${layer.width}\u00d7${layer.height}`;
  heading.appendChild(detail);
  const maps = document.createElement('div');
  maps.className = layer.channels > 8 ? 'maps maps-16' : 'maps';
  maps.id = layer.name;
  featureCanvases[layer.name] = [];
  for (let c = 0; c < layer.channels; c += 1) {
    const canvas = document.createElement('canvas');
    canvas.width = layer.width;
    canvas.height = layer.height;
    canvas.title = `${layer.name} map ${c + 1}`;
    canvas.setAttribute('aria-label', canvas.title);
    maps.appendChild(canvas);
    featureCanvases[layer.name].push(canvas);
  }
  container.append(heading, maps);
}

function showFeatures(answer) {
  const container = document.getElementById('feature-layers');
  if (Object.keys(featureCanvases).length === 0) {
    container.replaceChildren();
    if (answer.layers.length === 0) {
      const note = document.createElement('p');
      note.className = 'note';
      note.textContent = 'This model has no convolutional layers.';
      container.appendChild(note);
    }
    for (const layer of answer.layers) makeFeatureLayer(container, layer);
  }
  for (const layer of answer.layers) {
    let largest = 0;
    for (const map of layer.maps) for (const v of map) largest = Math.max(largest, v);
    layer.maps.forEach((map, c) => {
      const canvas = (featureCanvases[layer.name] || [])[c];
      if (canvas) paint(canvas, map, layer.width, layer.height, viridis, largest);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// The same model in this browser

// onnxruntime-web's WebAssembly build and the model's ONNX export, both from the server; null
// until loaded, and when the server offers neither.
let browserModel = null;

async function startBrowserModel() {
  try {
    const ort = await import('/onnxruntime/ort.wasm.min.mjs');
    ort.env.wasm.wasmPaths = '/onnxruntime/';
    ort.env.wasm.numThreads = 1;  // threads would need a cross-origin-isolated page
    const session = await ort.InferenceSession.create('/model.onnx');
    browserModel = { ort, session };
    browserVerdict.hidden = false;
  } catch (error) {
    setStatus(`ONNX Runtime Web could not load the model: ${error.message}`, true);
  }
}

// The exported graph takes grey levels 0-255 and normalises them itself, so the server's 28x28
// image goes in as it is; log_probs' argmax is its answer.
async function showBrowserPrediction(answer, sentGeneration) {
  if (!browserModel) return;
  const { ort, session } = browserModel;
  const start = performance.now();
  const image = new ort.Tensor('float32', Float32Array.from(answer.input28), [1, 1, 28, 28]);
  const logProbs = (await session.run({ image })).log_probs.data;
  if (sentGeneration !== generation) return;
  let best = 0;
  for (let digit = 1; digit < logProbs.length; digit += 1) if (logProbs[digit] > logProbs[best]) best = digit;
  browserDigit.textContent = String(best);
  browserDetail.textContent = `${percent(Math.exp(logProbs[best]))} sure, ${(performance.now() - start).toFixed(2)} ms` +
    (best === answer.digit ? ', as the server' : `; the server says ${answer.digit}`);
  browserVerdict.classList.toggle('differs', best !== answer.digit);
}

// ---------------------------------------------------------------------------------------------
// The model's description

async function showModel() {
  try {
    const response = await fetch('/api/model');
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const model = await response.json();
    if (model.onnx_in_browser) startBrowserModel();
    document.getElementById('model-name').textContent = model.name;
    document.title = `Draw a digit · ${model.name}`;
    document.getElementById('parameter-count').textContent = model.parameter_count.toLocaleString('en-US');
    document.getElementById('weights-name').textContent = model.weights;
    if (typeof model.test_accuracy === 'number') {
      const accuracy = `${(model.test_accuracy * 100).toFixed(2)}%`;
      document.getElementById('test-accuracy').textContent = accuracy;
      const badge = document.getElementById('accuracy-badge');
      badge.textContent = `${accuracy} on MNIST's test set`;
      badge.hidden = false;
    }
    const body = document.getElementById('layers');
    for (const layer of model.layers) {
      const row = body.insertRow();
      row.insertCell().textContent = layer.name;
      const shapes = row.insertCell();
      for (const parameter of layer.parameters) {
        const code = document.createElement('code');
        code.textContent = `${parameter.name.slice(layer.name.length + 1)} [${parameter.shape.join(', ')}]`;
        shapes.appendChild(code);
      }
      const count = row.insertCell();
      count.className = 'number';
      count.textContent = layer.parameter_count.toLocaleString('en-US');
    }
  } catch (error) {
    setStatus(`Could not load the model's description: ${error.message}`, true);
  }
}

clearPad();
showModel();
