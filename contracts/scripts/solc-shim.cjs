#!/usr/bin/env node
// A stand-in for the native `solc` binary, answering the two calls forge makes
// (`--version` and `--standard-json`) through solcjs from `.tools/node_modules/solc`.
// No native solc is installable from the registries this project may use.
'use strict';
const fs = require('fs');
const path = require('path');

const solc = require(path.join(__dirname, '..', '..', '.tools', 'node_modules', 'solc'));
const args = process.argv.slice(2);

if (args.includes('--version')) {
  // forge parses "Version: X.Y.Z+commit..." from this output.
  process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
  process.exit(0);
}

if (!args.includes('--standard-json')) {
  process.stderr.write('solc-shim: only --version and --standard-json are supported\n');
  process.exit(2);
}

function findImports(p) {
  const candidates = [p];
  for (let i = 0; i < args.length; i++) {
    if ((args[i] === '--base-path' || args[i] === '--include-path') && args[i + 1]) {
      candidates.push(path.join(args[i + 1], p));
    }
  }
  for (const c of candidates) {
    try {
      return { contents: fs.readFileSync(c, 'utf8') };
    } catch (_) {
      // try the next candidate
    }
  }
  return { error: `File not found: ${p}` };
}

const input = fs.readFileSync(0, 'utf8');
process.stdout.write(solc.compile(input, { import: findImports }));
