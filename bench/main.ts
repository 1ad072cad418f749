// `npm run bench -- <name> [args]`: dataplane | selector
const [name, ...rest] = process.argv.slice(2);
process.argv = [process.argv[0]!, process.argv[1]!, ...rest];
if (name === 'dataplane') await import('./dataplane.ts');
else if (name === 'selector') await import('./selector.ts');
else {
  process.stderr.write(
    'usage: npm run bench -- dataplane [remoteEndpoints remoteNodes policies] | selector [endpoints]\n',
  );
  process.exit(2);
}
