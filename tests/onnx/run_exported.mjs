// End to end: every exported model runs unchanged in ONNX Runtime and agrees with `lenet eval`.
// For each model, `lenet export` writes its ONNX file; ONNX's own checker (Debian's python3-onnx,
// check_model.py) accepts it; ONNX Runtime (onnxruntime-web's WebAssembly build under node, the one
// the draw-a-digit page runs, pinned in tools/web/package-lock.json) runs the 10,000 MNIST test images through it in batches of 1,000 and the first
// 200 one at a time; and the log-probabilities are compared with those `lenet eval --log-probs`
// writes: the same predicted class on every image, and every value within 1e-4, absolute below 1
// and relative above (as tools/check-with-pytorch compares): float32 cannot hold lenet1998's
// log-probabilities of -100 and below, sums of 84 squared distances, to 1e-4 absolute, and ONNX
// Runtime sums them in float32 where our sum accumulates in double.
//
// lenet1998-ml has no shipped weights: it is trained for one pass over 2,000 images first. The
// example of docs/onnx.md ("Using the file") runs too, as written there, on the exported lenet5.
//
// usage: node tests/onnx/run_exported.mjs LENET_BINARY OUT_DIR [--models a,b,...]
// Exit status: 0 passed, 1 failed, 77 skipped (no onnxruntime-web, python3-onnx, MNIST or weights).
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const RUNTIME = 'tools/web/node_modules/onnxruntime-web';  // from the repository's root
const PYTHON = '/usr/bin/python3';  // Debian's, where python3-onnx is
const DATA = 'data/mnist';
const TOLERANCE = 1e-4;
const LARGE_BATCH = 1000;
const SINGLE_IMAGES = 200;

function skip(reason) {
  console.log(`SKIP: ${reason}`);
  process.exit(77);
}

function parseArguments(argv) {
  const options = { lenet: argv[0], out: argv[1], models: ['lenet5', 'mlp', 'lenet1998', 'lenet1998-ml'] };
  for (let i = 2; i < argv.length; i += 2) {
    if (argv[i] === '--models' && argv[i + 1]) options.models = argv[i + 1].split(',');
    else throw new Error(`unknown option ${argv[i]}`);
  }
  if (!options.lenet || !options.out) throw new Error('usage: run_exported.mjs LENET_BINARY OUT_DIR [--models a,b]');
  return options;
}

function lenet(binary, args) {
  return execFileSync(binary, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

// The images of an IDX file (magic 2051): count x rows x cols bytes after a 16-byte header.
function readIdxImages(file) {
  const bytes = readFileSync(file);
  if (bytes.readUInt32BE(0) !== 2051) throw new Error(`${file}: not an IDX image file`);
  const [count, rows, cols] = [bytes.readUInt32BE(4), bytes.readUInt32BE(8), bytes.readUInt32BE(12)];
  return { count, rows, cols, pixels: bytes.subarray(16, 16 + count * rows * cols) };
}

// One F32 tensor of a safetensors file: [8 bytes: header length, little-endian] [JSON] [data].
function readSafetensor(file, name) {
  const bytes = readFileSync(file);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  const entry = header[name];
  if (!entry || entry.dtype !== 'F32') throw new Error(`${file}: no F32 tensor ${name}`);
  const [begin, end] = entry.data_offsets;
  const data = bytes.subarray(8 + headerLength + begin, 8 + headerLength + end);
  return { shape: entry.shape, values: new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length)) };
}

function argmax(values, offset, count) {
  let best = 0;
  for (let k = 1; k < count; ++k) if (values[offset + k] > values[offset + best]) best = k;
  return best;
}

// ONNX Runtime's log-probabilities of images [first, first + count) in batches of `batch`.
async function runOnnx(ort, session, images, first, count, batch) {
  const size = images.rows * images.cols;
  const out = new Float32Array(count * 10);
  for (let start = 0; start < count; start += batch) {
    const n = Math.min(batch, count - start);
    const input = Float32Array.from(images.pixels.subarray((first + start) * size, (first + start + n) * size));
    const result = await session.run({ image: new ort.Tensor('float32', input, [n, 1, images.rows, images.cols]) });
    const logProbs = result.log_probs;
    if (logProbs.dims.join(',') !== `${n},10`) throw new Error(`log_probs has shape [${logProbs.dims}], not [${n}, 10]`);
    out.set(logProbs.data, start * 10);
  }
  return out;
}

// How ONNX Runtime's rows compare with ours: agreeing argmax count, the largest |difference|, and
// the largest |difference| / max(1, |ours|), which the tolerance bounds.
function compare(onnx, ours, count) {
  let agree = 0, maxDiff = 0, maxScaled = 0;
  for (let i = 0; i < count; ++i) {
    if (argmax(onnx, i * 10, 10) === argmax(ours, i * 10, 10)) ++agree;
    for (let k = 0; k < 10; ++k) {
      const diff = Math.abs(onnx[i * 10 + k] - ours[i * 10 + k]);
      maxDiff = Math.max(maxDiff, diff);
      maxScaled = Math.max(maxScaled, diff / Math.max(1, Math.abs(ours[i * 10 + k])));
    }
  }
  return { agree, maxDiff, maxScaled };
}

// Shipped weights, or for lenet1998-ml (none shipped) one short pass of training.
function weightsOf(options, model) {
  const shipped = `models/${model}.safetensors`;
  if (existsSync(shipped)) return shipped;
  const trained = path.join(options.out, `${model}.safetensors`);
  console.log(`${model}: no shipped weights; training one pass over 2,000 images`);
  lenet(options.lenet, ['train', '--model', model, '--epochs', '1', '--limit', '2000', '--threads', '2',
                        '--out', trained, '--metrics', '', '--plot', '']);
  return trained;
}

// The first js block of docs/onnx.md, run from a directory holding lenet5.onnx and data/mnist (a
// link), written into tools/web/ so that it finds onnxruntime-web; it must print "digit 7", the
// first test image's label.
function runDocumentedExample(options) {
  const docs = readFileSync('docs/onnx.md', 'utf8');
  const block = docs.match(/```js\n([\s\S]*?)```/);
  if (!block) return 'docs/onnx.md has no js example';
  const directory = path.join(options.out, 'docs-example');
  mkdirSync(directory, { recursive: true });
  copyFileSync(path.join(options.out, 'lenet5.onnx'), path.join(directory, 'lenet5.onnx'));
  rmSync(path.join(directory, 'data'), { force: true });
  symlinkSync(path.resolve('data'), path.join(directory, 'data'));
  const script = path.resolve('tools/web/docs-example.generated.mjs');
  writeFileSync(script, block[1]);
  try {
    const output = execFileSync('node', [script], { cwd: directory, encoding: 'utf8' }).trim();
    console.log(`docs/onnx.md's example: ${output}`);
    return output === 'digit 7' ? null : `docs/onnx.md's example printed '${output}', not 'digit 7'`;
  } finally {
    rmSync(script, { force: true });
  }
}

async function main() {
  const options = parseArguments(process.argv.slice(2));
  if (!existsSync(RUNTIME)) skip(`onnxruntime-web is not installed in ${RUNTIME} (tools/run test installs it)`);
  try {
    execFileSync(PYTHON, ['-c', 'import onnx'], { stdio: 'ignore' });
  } catch {
    skip(`${PYTHON} has no onnx module (Debian's python3-onnx; tools/run test installs it)`);
  }
  const imagesFile = path.join(DATA, 't10k-images-idx3-ubyte');
  if (!existsSync(imagesFile)) skip(`no MNIST test images at ${imagesFile} (tools/fetch-mnist)`);
  // Its build for node, as `import 'onnxruntime-web'` finds it under node.
  const entry = JSON.parse(readFileSync(path.join(RUNTIME, 'package.json'), 'utf8')).exports['.'].node.import;
  const ort = await import(pathToFileURL(path.resolve(RUNTIME, entry)));
  ort.env.wasm.numThreads = 1;  // no worker threads under node
  ort.env.logLevel = 'error';
  const images = readIdxImages(imagesFile);
  mkdirSync(options.out, { recursive: true });

  const failures = [];
  for (const model of options.models) {
    const weights = weightsOf(options, model);
    const onnxFile = path.join(options.out, `${model}.onnx`);
    const oursFile = path.join(options.out, `${model}-log-probs.safetensors`);
    lenet(options.lenet, ['export', '--model', model, '--weights', weights, '-o', onnxFile]);
    lenet(options.lenet, ['eval', '--model', model, '--weights', weights, '--threads', '2', '--log-probs', oursFile]);
    console.log(`${model}: ${execFileSync(PYTHON, [path.join(here, 'check_model.py'), onnxFile], { encoding: 'utf8' }).trim()}`);

    const ours = readSafetensor(oursFile, 'log_probs');
    if (ours.shape.join(',') !== `${images.count},10`) throw new Error(`${oursFile}: log_probs has shape [${ours.shape}]`);
    const session = await ort.InferenceSession.create(readFileSync(onnxFile), { executionProviders: ['wasm'] });
    if (session.inputNames.join() !== 'image' || session.outputNames.join() !== 'log_probs')
      failures.push(`${model}: inputs [${session.inputNames}], outputs [${session.outputNames}]`);

    const batched = compare(await runOnnx(ort, session, images, 0, images.count, LARGE_BATCH), ours.values, images.count);
    const single = compare(await runOnnx(ort, session, images, 0, SINGLE_IMAGES, 1), ours.values, SINGLE_IMAGES);
    const summary = (result, count) =>
      `same class on ${result.agree}/${count}, max |difference| ${result.maxDiff.toExponential(2)} ` +
      `(relative above 1: ${result.maxScaled.toExponential(2)})`;
    console.log(`${model}: ONNX Runtime ${ort.env.versions.web}, batches of ${LARGE_BATCH}: ` +
                `${summary(batched, images.count)}; batch 1: ${summary(single, SINGLE_IMAGES)}`);
    for (const [what, result, count] of [['batches', batched, images.count], ['batch 1', single, SINGLE_IMAGES]]) {
      if (result.agree !== count) failures.push(`${model} (${what}): the class differs on ${count - result.agree} images`);
      if (!(result.maxScaled <= TOLERANCE))
        failures.push(`${model} (${what}): log_probs differ by ${result.maxScaled} (relative above 1) > ${TOLERANCE}`);
    }
    await session.release();
  }
  if (options.models.includes('lenet5')) {
    const failure = runDocumentedExample(options);
    if (failure) failures.push(failure);
  }
  if (failures.length) {
    for (const failure of failures) console.log(`FAIL: ${failure}`);
    process.exit(1);
  }
  console.log(`ok: ${options.models.join(', ')} agree with lenet eval in ONNX Runtime`);
}

main().catch((error) => {
  console.log(`FAIL: ${error.stderr ? error.stderr.toString().trim() : error.stack}`);
  process.exit(1);
});
