#!/usr/bin/env node
/**
 * The qkd-tls command line. Each subcommand lives in bin/commands/<name>.ts and exports
 * `run(argv: string[]): Promise<number>` (the exit code).
 */
const COMMANDS: Record<string, { summary: string }> = {
  demo: { summary: 'the embedded end-to-end demo (key manager simulator, server, client)' },
  server: { summary: 'TLS-PSK server: echo, or --forward to a TCP backend' },
  client: { summary: 'TLS-PSK client: stdin -> TLS, TLS -> stdout' },
  kme: { summary: 'ETSI GS QKD 014 key manager simulator' },
  proxy: { summary: 'QKD-TLS proxy (model 2) for unmodified TCP applications' },
  bridge: { summary: 'WebSocket -> TCP bridge, so that a page can reach a TLS-PSK server' },
  vectors: { summary: 'replays the RFC 8448 traces and prints a pass/fail table' },
  bench: { summary: "benchmarks against Node's own TLS in the same run" },
};

function usage(): string {
  const lines = ['usage: qkd-tls <command> [options]', '', 'commands:'];
  for (const [name, c] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(8)} ${c.summary}`);
  lines.push('', 'Run `qkd-tls <command> --help` for the options of a command; `qkd-tls --version` prints the version.');
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  // `qkd-tls help server` is `qkd-tls server --help` (it printed the list of commands).
  if (name === 'help' && rest.length > 0 && Object.hasOwn(COMMANDS, rest[0])) return main([rest[0], '--help']);
  // `qkd-tls help nosuch` is the usage error that `qkd-tls nosuch` is (it printed the commands and exited 0).
  if (name === 'help' && rest.length > 0) return main(rest);
  if (name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return 0;
  }
  if (name === '--version' || name === '-V') {
    // It was "unknown command '--version'" and the usage, exit 2.
    const { readFileSync } = await import('node:fs');
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    process.stdout.write(`qkd-tls ${pkg.version}\n`);
    return 0;
  }
  if (!name) {
    // No command is a usage error: the usage goes where errors go (stderr), exit 2.
    process.stderr.write(usage() + '\n');
    return 2;
  }
  const cmd = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!cmd) {
    process.stderr.write(`qkd-tls: unknown command '${name}'\n\n${usage()}\n`);
    return 2;
  }
  let mod;
  try {
    mod = (await import(`./commands/${name}.js`)) as { run(argv: string[]): Promise<number> };
  } catch (e) {
    process.stderr.write(`qkd-tls: command '${name}' is not available in this build: ${(e as Error).message}\n`);
    return 2;
  }
  return mod.run(rest);
}

// A reader of our output that goes away (`qkd-tls vectors | head -1`, `qkd-tls client ... | head -c 10`) makes the
// next write fail with EPIPE: stop at once and quietly (exit code 1), as a command killed by SIGPIPE would, instead
// of dying on an unhandled 'error' event with a stack trace. Any other stdout failure is reported in one line.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code !== 'EPIPE') process.stderr.write(`qkd-tls: cannot write the output: ${e.message}\n`);
  process.exit(1);
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`qkd-tls: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
