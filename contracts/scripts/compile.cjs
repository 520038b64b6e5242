#!/usr/bin/env node
// Compiles the deployable contracts with solcjs and writes one artifact per contract
// (contractName, abi, bytecode, deployedBytecode) to contracts/artifacts/. These artifacts are
// committed: the Rust bindings (`alloy::sol!`) are generated from them.
//
//   node contracts/scripts/compile.cjs          regenerate the artifacts
//   node contracts/scripts/compile.cjs --check  exit 1 if the committed artifacts differ from a
//                                               fresh compile (run by the test suite)
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
const toolsSolc = path.join(root, '..', '.tools', 'node_modules', 'solc');
let solc;
try {
  solc = require(toolsSolc);
} catch (e) {
  process.stderr.write(`compile: solcjs not found at ${toolsSolc}; run: bash .tools/setup.sh\n`);
  process.exit(2);
}

// Contracts that get an artifact: [source file, contract name].
const DEPLOYABLE = [
  ['src/Bridge.sol', 'Bridge'],
  // Deployed by the Bridge's constructor; its artifact is what `multibridge deploy` checks the
  // code at the bridge's `extension()` against.
  ['src/BridgeExtension.sol', 'BridgeExtension'],
  ['src/ServiceRegistry.sol', 'ServiceRegistry'],
  ['src/TestToken.sol', 'TestToken'],
  ['src/TestNFT.sol', 'TestNFT'],
  ['src/GasPriceGriefer.sol', 'GasPriceGriefer'],
];

// DEVNET ONLY contracts compiled for size (optimizer runs 1): HistoryBridge is the Bridge plus
// two owner functions and must stay under EIP-170's 24,576 bytes; its gas is never measured.
const DEPLOYABLE_SMALL = [['src/HistoryBridge.sol', 'HistoryBridge']];

// Settings are part of the artifact's identity; forge uses the same optimizer and EVM version
// (foundry.toml), so forge tests exercise the bytecode that is deployed.
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  // The IR pipeline: the bridge's runtime code is ~17 % smaller (EIP-170 leaves it room).
  viaIR: true,
  evmVersion: 'cancun',
  outputSelection: {
    '*': {
      '': ['ast'],
      '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object', 'evm.deployedBytecode.immutableReferences'],
    },
  },
};

function readSource(rel) {
  return { content: fs.readFileSync(path.join(root, rel), 'utf8') };
}

function findImports(importPath) {
  const full = path.join(root, importPath);
  if (fs.existsSync(full)) return { contents: fs.readFileSync(full, 'utf8') };
  return { error: `File not found: ${importPath}` };
}

function compile() {
  return {
    ...compileGroup(DEPLOYABLE, SETTINGS),
    ...compileGroup(DEPLOYABLE_SMALL, { ...SETTINGS, optimizer: { enabled: true, runs: 1 } }),
  };
}

function compileGroup(deployable, settings) {
  const sources = {};
  for (const [file] of deployable) sources[file] = readSource(file);
  const input = { language: 'Solidity', sources, settings };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const errors = (output.errors || []).filter((e) => e.severity === 'error');
  // 2394: solc's generic note on transient storage; the reentrancy lock clears it every call.
  const shown = (output.errors || []).filter((e) => e.errorCode !== '2394');
  for (const e of shown) process.stderr.write(`${e.formattedMessage || e.message}\n`);
  if (errors.length > 0) {
    process.stderr.write(`compile: ${errors.length} error(s)\n`);
    process.exit(1);
  }
  const artifacts = {};
  for (const [file, name] of deployable) {
    const c = output.contracts[file][name];
    const artifact = {
      contractName: name,
      compiler: `solc ${solc.version()}`,
      abi: withExtension(output, c.abi),
      bytecode: `0x${c.evm.bytecode.object}`,
      deployedBytecode: `0x${c.evm.deployedBytecode.object}`,
      // Where the runtime code holds immutables (set by the constructor, zero here): what a
      // check of deployed code against this artifact must leave out.
      immutableReferences: c.evm.deployedBytecode.immutableReferences || {},
      // The name of each immutable of `immutableReferences` (by its AST id), so a check can
      // expect a value per immutable.
      immutableNames: immutableNames(output, c.evm.deployedBytecode.immutableReferences || {}),
    };
    artifacts[name] = `${JSON.stringify(artifact, null, 2)}\n`;
  }
  return artifacts;
}

// AST id -> name of the immutables referenced in a contract's runtime code.
function immutableNames(output, references) {
  const wanted = new Set(Object.keys(references));
  const names = {};
  const walk = (node) => {
    if (!node || typeof node !== 'object') return;
    if (Array.isArray(node)) {
      node.forEach(walk);
      return;
    }
    if (node.nodeType === 'VariableDeclaration' && wanted.has(String(node.id))) names[String(node.id)] = node.name;
    for (const value of Object.values(node)) if (value && typeof value === 'object') walk(value);
  };
  for (const source of Object.values(output.sources || {})) walk(source.ast);
  return names;
}

// The bridge's fallback runs BridgeExtension's functions in its own storage (EIP-170 leaves the
// bridge no room for them): a bridge's ABI lists them, so its bindings call them at the bridge's
// address like any other function.
function withExtension(output, abi) {
  const ext = output.contracts['src/BridgeExtension.sol'];
  if (!ext || !abi.some((e) => e.type === 'fallback')) return abi;
  const signature = (e) => `${e.type} ${e.name}(${(e.inputs || []).map((i) => i.type).join(',')})`;
  const known = new Set(abi.map(signature));
  const added = ext.BridgeExtension.abi.filter((e) => e.type === 'function' && !known.has(signature(e)));
  return [...abi.filter((e) => e.type !== 'fallback'), ...added];
}

const check = process.argv.includes('--check');
const artifacts = compile();
const outDir = path.join(root, 'artifacts');
let drift = [];
for (const [name, text] of Object.entries(artifacts)) {
  const file = path.join(outDir, `${name}.json`);
  if (check) {
    const committed = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
    if (committed !== text) drift.push(`contracts/artifacts/${name}.json`);
  } else {
    fs.mkdirSync(outDir, { recursive: true });
    fs.writeFileSync(file, text);
    process.stdout.write(`wrote contracts/artifacts/${name}.json\n`);
  }
}
if (drift.length > 0) {
  process.stderr.write(
    `compile --check: committed artifacts differ from a fresh compile: ${drift.join(', ')}\n` +
      'regenerate them with: node contracts/scripts/compile.cjs\n',
  );
  process.exit(1);
}
if (check) process.stdout.write('compile --check: artifacts match the sources\n');
