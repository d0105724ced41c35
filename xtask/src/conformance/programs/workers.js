// node with worker threads, inside the emulated userland (cargo xtask conformance,
// workload `node`): tonistiigi/binfmt#215 is node segfaulting under a QEMU pin. Four
// workers count primes in slices of a range and post the counts back; the main thread
// counts the whole range itself and compares.
'use strict';
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');

function primes(from, to) {
  let count = 0;
  for (let n = Math.max(from, 2); n < to; n++) {
    let prime = true;
    for (let d = 2; d * d <= n; d++) {
      if (n % d === 0) { prime = false; break; }
    }
    if (prime) count++;
  }
  return count;
}

if (isMainThread) {
  const limit = 200000;
  const slices = 4;
  const step = limit / slices;
  const runs = [];
  for (let i = 0; i < slices; i++) {
    runs.push(new Promise((resolve, reject) => {
      const worker = new Worker(__filename, { workerData: { from: i * step, to: (i + 1) * step } });
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.once('exit', (code) => { if (code !== 0) reject(new Error(`worker exited ${code}`)); });
    }));
  }
  Promise.all(runs).then((counts) => {
    const total = counts.reduce((a, b) => a + b, 0);
    const want = primes(0, limit);
    if (total !== want) {
      console.log(`workers FAILED: ${total} primes from the workers, ${want} from the main thread`);
      process.exit(1);
    }
    console.log(`workers ok: node ${process.version} ${process.arch}, ${slices} workers, ${total} primes`);
  }, (error) => {
    console.log(`workers FAILED: ${error}`);
    process.exit(1);
  });
} else {
  parentPort.postMessage(primes(workerData.from, workerData.to));
}
