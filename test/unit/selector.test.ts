import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ALL,
  and,
  type Labels,
  MAX_NESTING,
  MAX_SELECTOR_BYTES,
  parseSelector,
  parseSelectorCached,
  SELECTOR_CACHE_MAX,
  type Selector,
  SelectorParseError,
} from '../../model/selector/index.ts';

/** Asserts the selector matches every label set in `yes` and none in `no`, also after re-parsing. */
function check(src: string, yes: Labels[], no: Labels[]): void {
  const sel = parseSelector(src);
  const again = parseSelector(sel.canonical);
  for (const s of [sel, again]) {
    for (const l of yes) assert.equal(s.evaluate(l), true, `${src} should match ${JSON.stringify(l)}`);
    for (const l of no) assert.equal(s.evaluate(l), false, `${src} should not match ${JSON.stringify(l)}`);
  }
}

function parseError(src: string): SelectorParseError {
  try {
    parseSelector(src);
  } catch (e) {
    assert.ok(e instanceof SelectorParseError, `${JSON.stringify(src)} threw ${String(e)}`);
    return e;
  }
  assert.fail(`${JSON.stringify(src)} parsed`);
}

describe('selector operators', () => {
  it('== matches equal values only, false when absent', () => {
    check(
      "app == 'web'",
      [{ app: 'web' }, { app: 'web', x: 'y' }],
      [{}, { app: 'db' }, { x: 'web' }, { app: '' }],
    );
  });
  it('!= is true when the label differs or is absent', () => {
    check("app != 'web'", [{}, { app: 'db' }, { x: 'web' }], [{ app: 'web' }]);
  });
  it('in matches set members, false when absent', () => {
    check("app in {'a', 'b'}", [{ app: 'a' }, { app: 'b' }], [{}, { app: 'c' }, { app: 'ab' }]);
  });
  it('not in is true for non-members and when absent', () => {
    check("app not in {'a', 'b'}", [{}, { app: 'c' }], [{ app: 'a' }, { app: 'b' }]);
  });
  it('empty sets: in {} matches nothing, not in {} everything', () => {
    check('app in {}', [], [{}, { app: '' }, { app: 'a' }]);
    check('app not in {}', [{}, { app: '' }, { app: 'a' }], []);
  });
  it('contains, starts with, ends with; false when absent', () => {
    check("a contains 'b'", [{ a: 'b' }, { a: 'abc' }], [{}, { a: 'c' }, { b: 'b' }]);
    check("a starts with 'ab'", [{ a: 'ab' }, { a: 'abc' }], [{}, { a: 'cab' }, { b: 'ab' }]);
    check("a ends with 'ab'", [{ a: 'ab' }, { a: 'cab' }], [{}, { a: 'abc' }, { b: 'ab' }]);
    check("a contains ''", [{ a: '' }, { a: 'x' }], [{}]);
  });
  it('has and !has', () => {
    check('has(a)', [{ a: '' }, { a: 'x' }], [{}, { b: 'a' }]);
    check('!has(a)', [{}, { b: 'a' }], [{ a: '' }]);
  });
  it('all() matches everything; empty and blank selectors are all()', () => {
    for (const src of ['all()', '', '   ', '\t \t', ' all( ) ']) check(src, [{}, { a: 'b' }], []);
  });
  it('global() is true, as Calico\'s GlobalNode (its "non-namespaced" meaning belongs to namespaceSelector)', () => {
    check('global()', [{}, { a: 'b' }, { 'projectcalico.org/namespace': 'default' }], []);
    check('!global()', [], [{}, { 'projectcalico.org/namespace': 'default' }]);
    check("global() && a == 'b'", [{ a: 'b', 'projectcalico.org/namespace': 'ns' }], [{}]);
  });
  it('labels from Object.prototype read as absent', () => {
    check('has(constructor)', [{ constructor: 'x' }], [{}]);
    check("toString != 'x'", [{}], [{ toString: 'x' }]);
    check("valueOf not in {'x'}", [{}], [{ valueOf: 'x' }]);
    check("hasOwnProperty starts with ''", [], [{}]);
    check('has(a)', [Object.assign(Object.create(null), { a: 'x' })], [Object.create(null)]);
  });
});

describe('selector structure', () => {
  it('&& binds tighter than ||', () => {
    const src = "a == '1' || b == '2' && c == '3'";
    check(src, [{ a: '1' }, { b: '2', c: '3' }], [{ b: '2' }, { c: '3' }, {}]);
    assert.equal(parseSelector(src).canonical, '(a == "1" || (b == "2" && c == "3"))');
  });
  it('parentheses override precedence', () => {
    check(
      "(a == '1' || b == '2') && c == '3'",
      [
        { a: '1', c: '3' },
        { b: '2', c: '3' },
      ],
      [{ a: '1' }, {}],
    );
  });
  it('! applies to the next term and repeats', () => {
    check("!a == 'x' && b == 'y'", [{ b: 'y' }, { a: 'z', b: 'y' }], [{ a: 'x', b: 'y' }]);
    check('!!has(a)', [{ a: '' }], [{}]);
    check('!!!has(a)', [{}], [{ a: '' }]);
    check('! ! ! ! has(a)', [{ a: '' }], [{}]);
    check("!(a == 'x' || b == 'y')", [{}, { a: 'y' }], [{ a: 'x' }, { b: 'y' }]);
    check("!!(a == 'x' || b == 'y')", [{ a: 'x' }], [{}]);
    check('!all()', [], [{}]);
    check("!(!a == 'x')", [{ a: 'x' }], [{}]);
  });
  it('accepts both quote kinds; the other kind is literal inside', () => {
    check(`a == "it's"`, [{ a: "it's" }], [{ a: 'its' }]);
    check(`a == 'say "hi"'`, [{ a: 'say "hi"' }], [{ a: 'say hi' }]);
    check(`a in {"'", '"', "c"}`, [{ a: "'" }, { a: '"' }, { a: 'c' }], [{}, { a: 'e' }]);
    // No escape sequences, as in Calico: a backslash is an ordinary character.
    check(`a == 'x\\'`, [{ a: 'x\\' }], [{ a: 'x' }]);
  });
  it('whitespace is optional and free: spaces and tabs', () => {
    const forms = [
      "a=='x'&&b!='y'||has(c)&&d in{'1','2'}",
      "  a  ==  'x'  &&  b  !=  'y'  ||  has( c )  &&  d  in  { '1' , '2' }  ",
      "\ta ==\t'x' &&\t \tb != 'y'\t|| has(c) && d in {'1',\t'2'}\t",
    ];
    const canon = parseSelector(forms[0]!).canonical;
    assert.equal(canon, '((a == "x" && b != "y") || (has(c) && d in {"1", "2"}))');
    for (const f of forms) assert.equal(parseSelector(f).canonical, canon);
  });
  it('refuses a line break, as Calico does, and says how to write it instead', () => {
    for (const [src, at] of [
      ["a == 'x'\n", 8],
      ["a == 'x' &&\r\nb == 'y'", 11],
      ["a ==\n'x'", 4],
    ] as const) {
      const e = parseError(src);
      assert.equal(e.position, at, e.message);
      assert.match(e.expected, /no line break.*spaces and tabs/);
    }
    // Inside a string a line break is just a character of the value.
    check("a == 'x\ny'", [{ a: 'x\ny' }], [{ a: 'x y' }]);
  });
  it('a function name is a call only with ( right after it, as in Calico', () => {
    assert.match(parseError('has (a)').expected, /operator/);
    assert.match(parseError('all ()').expected, /operator/);
    assert.equal(parseSelector('has( a )').canonical, 'has(a)');
    assert.equal(parseSelector('global( )').canonical, 'global()');
  });
  it('keeps Calico quirks: startswith/endswith/notin, trailing comma in sets', () => {
    assert.equal(parseSelector(`a startswith '"'`).canonical, `a starts with '"'`);
    assert.equal(parseSelector(`a endswith "'"`).canonical, `a ends with "'"`);
    assert.equal(parseSelector(`a notin {'x'}`).canonical, `a not in {"x"}`);
    assert.equal(parseSelector(`a in {'x',}`).canonical, `a in {"x"}`);
  });
  it('function and operator names are usable as label keys', () => {
    check("has == 'x' && all == 'y' && global == 'z'", [{ has: 'x', all: 'y', global: 'z' }], [{}]);
    check(
      "in == 'x' || not != 'y' || contains contains 'z'",
      [{ in: 'x' }, { contains: 'zz' }],
      [{ not: 'y' }],
    );
    check('has(has) && has(all)', [{ has: '', all: '' }], [{ has: '' }]);
  });
  it("accepts every label key Calico's tokenizer takes: [A-Za-z0-9_./-], 1 to 512 characters", () => {
    const keys = [
      '-a',
      'a-',
      '_a',
      '.a',
      'a'.repeat(64),
      'A.com/x',
      '/x',
      'a/b/c',
      'a.com/',
      'x'.repeat(512),
    ];
    for (const k of keys) check(`${k} == 'v' && has(${k})`, [{ [k]: 'v' }], [{}, { [k]: 'w' }]);
  });
  it('accepts Kubernetes label keys with prefixes', () => {
    const keys = [
      'app.kubernetes.io/name',
      'projectcalico.org/namespace',
      'pcns.projectcalico.org/name',
      'example.com/a_b.c-d',
      'A',
      'a'.repeat(63),
      `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}/${'x'.repeat(63)}`,
      '0',
      'a.b',
    ];
    for (const k of keys) check(`${k} == 'v'`, [{ [k]: 'v' }], [{}]);
  });
  it('reports the label keys read', () => {
    assert.deepEqual(
      [...parseSelector("a == 'x' && (has(b) || c not in {}) && a != 'y'").labelKeys],
      ['a', 'b', 'c'],
    );
    assert.deepEqual([...parseSelector('global() && has(a)').labelKeys], ['a']);
    assert.equal(parseSelector('all()').labelKeys.size, 0);
    assert.equal(ALL.labelKeys.size, 0);
  });
});

describe('selector canonical form and id', () => {
  // Inputs, canonical forms and ids from Calico's own parser tests: fedmesh ids equal Felix's.
  const calico: [string, string, string?][] = [
    ['', 'all()', 's:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug'],
    [' all() ', 'all()', 's:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug'],
    [' (all() )', 'all()', 's:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug'],
    ['! (has( b)||! has(a ))', '!(has(b) || !has(a))', 's:Iss0uCleLYv1GSv_pNm7hAO58kE9jAx1NKyG3Q'],
    ['! (a == "b"&&! c != "d")', '!(a == "b" && !c != "d")', 's:lh3haoY1ikTRkd4UZu0nWSaIBknYLPJLX16d-w'],
    [`a == "'"`, `a == "'"`],
    [`a == '"'`, `a == '"'`],
    [`a contains '"'`, `a contains '"'`],
    [`a!='"'`, `a != '"'`],
    [`a in {"d", "a", "b"}`, `a in {"a", "b", "d"}`],
    [`a in {"z", "z", "x", "y", "x", "a"}`, `a in {"a", "x", "y", "z"}`],
    [
      "!(!(k == 'v' && has(t) || all()) && (a in {'b', 'c'}))",
      '!(!((k == "v" && has(t)) || all()) && a in {"b", "c"})',
    ],
    ["k == 'v' || has(x)", '(k == "v" || has(x))'],
    ["!(k == 'v')", '!k == "v"'],
    ['a in {}', 'a in {}'],
    ['global()', 'global()'],
  ];
  for (const [input, canonical, id] of calico) {
    it(`canonicalises ${JSON.stringify(input)}`, () => {
      const sel = parseSelector(input);
      assert.equal(sel.source, input);
      assert.equal(sel.canonical, canonical);
      if (id) assert.equal(sel.id, id);
      const again = parseSelector(canonical);
      assert.equal(again.canonical, canonical);
      assert.equal(again.id, sel.id);
    });
  }

  it('id has the Felix shape', () => {
    assert.match(parseSelector("a == 'b'").id, /^s:[A-Za-z0-9_-]{38}$/);
  });

  it('same meaning up to spacing, quoting, set order and duplicates, parentheses → same id', () => {
    const groups = [
      ["a == 'x'", 'a=="x"', ' ( a == "x" ) ', '((a == "x"))', "!!a == 'x'", "!(!a == 'x')"],
      ["a in {'x', 'y'}", 'a in {"y","x","y"}', "a in { 'y' , 'x' , }"],
      ['', ' ', 'all()', '(all())', ' all( )'],
      ['!has(a) && b != "1"', "! has( a )&&b!='1'", "(!has(a)) && (b != '1')"],
    ];
    for (const group of groups) {
      const ids = new Set(group.map((s) => parseSelector(s).id));
      assert.equal(ids.size, 1, `${JSON.stringify(group)} gave ${ids.size} ids`);
    }
  });

  it('different meaning → different id', () => {
    const distinct = [
      "a == 'x'",
      "a != 'x'",
      "a == 'X'",
      "b == 'x'",
      "a in {'x'}",
      "a not in {'x'}",
      "a in {'x', 'y'}",
      "a contains 'x'",
      "a starts with 'x'",
      "a ends with 'x'",
      'has(a)',
      '!has(a)',
      'all()',
      'global()',
      "a == 'x' && b == 'y'",
      "a == 'x' || b == 'y'",
      "!(a == 'x' && b == 'y')",
      "a == 'x y'",
      `a == "x'"`,
      `a == 'x"'`,
    ];
    const ids = new Set(distinct.map((s) => parseSelector(s).id));
    assert.equal(ids.size, distinct.length);
  });

  it('sorts set items by code point, as Go sorts strings', () => {
    // UTF-16 order would put U+1F600 (a surrogate pair) before U+FF5E.
    assert.equal(parseSelector("a in {'😀', '～', 'b', 'B'}").canonical, 'a in {"B", "b", "～", "😀"}');
  });
});

describe('selector parse errors', () => {
  const bad: [string, number, RegExp][] = [
    ['app ==', 6, /quoted string/],
    ['app == ', 7, /quoted string/],
    ["app = 'x'", 4, /operator/],
    ['has(', 4, /label key/],
    ['has(a', 5, /'\)'/],
    ['has()', 4, /label key/],
    ['all(', 4, /'\)'/],
    ["a in {'x'", 9, /',' or '}'/],
    ["a in {'x' 'y'}", 10, /',' or '}'/],
    ['a in {,}', 6, /quoted string or '}'/],
    ["a in 'x'", 5, /'\{'/],
    ["'x' == a", 0, /label key/],
    ["app == 'x' &&", 13, /label key/],
    ["app == 'x' ||", 13, /label key/],
    [')(', 0, /label key/],
    ['(', 1, /label key/],
    ['()', 1, /label key/],
    ["(a == 'x'", 9, /'\)'/],
    ["a == 'x')", 8, /end of input/],
    ['a', 1, /operator/],
    ['a b', 2, /operator/],
    ['b == b', 5, /quoted string/],
    ['!', 1, /label key/],
    ["a == 'x' &", 9, /end of input/],
    ["a == 'x' | b", 9, /end of input/],
    ['a == "x', 5, /closing "/],
    [`a == 'x"`, 5, /closing '/],
    ['%', 0, /label key/],
    ["a == 'b' && %", 12, /label key/],
    ["a not 'x'", 6, /'in'/],
    ["a starts 'x'", 9, /'with'/],
    ["a ends without 'x'", 7, /'with'/],
    ["a == 'x' b == 'y'", 9, /end of input/],
    ["a.b.c == 'x' a", 13, /end of input/],
  ];
  for (const [src, position, expected] of bad) {
    it(`refuses ${JSON.stringify(src)} at ${position}`, () => {
      const e = parseError(src);
      assert.equal(e.position, position, e.message);
      assert.match(e.expected, expected);
      assert.equal(e.input, src);
      assert.ok(e.message.startsWith(`selector ${JSON.stringify(src)} at position ${position}: expected `));
    });
  }

  it('names the position and what was expected', () => {
    assert.equal(parseError('app == ').message, 'selector "app == " at position 7: expected a quoted string');
  });

  it('refuses a label key over 512 characters, naming where it starts', () => {
    const key = 'k'.repeat(513);
    for (const [src, start] of [
      [`${key} == 'x'`, 0],
      [`has(${key})`, 4],
      [`a == 'b' && ${key} in {}`, 12],
    ] as const) {
      const e = parseError(src);
      assert.equal(e.position, start, e.message);
      assert.match(e.expected, /at most 512 characters/);
    }
  });

  it('refuses input over 64 KiB, counting UTF-8 bytes', () => {
    const ok = `a == '${'x'.repeat(MAX_SELECTOR_BYTES - 7)}'`;
    assert.equal(ok.length, MAX_SELECTOR_BYTES);
    assert.ok(parseSelector(ok));
    assert.match(parseError(`${ok} `).expected, /at most 65536 bytes/);
    assert.match(parseError(`a == '${'é'.repeat(MAX_SELECTOR_BYTES / 2)}'`).expected, /at most 65536 bytes/);
  });

  it('refuses a canonical form that would exceed the size limit', () => {
    // 'a=="x"&&' is 8 bytes but prints as 'a == "x" && ' (12 bytes).
    const src = Array(MAX_SELECTOR_BYTES / 8 - 1)
      .fill('a=="x"')
      .join('&&');
    assert.ok(src.length <= MAX_SELECTOR_BYTES);
    assert.match(parseError(src).expected, /canonical form/);
  });

  it('refuses nesting deeper than 256', () => {
    const nest = (d: number) => `${'('.repeat(d)}a == 'x'${')'.repeat(d)}`;
    assert.equal(parseSelector(nest(MAX_NESTING)).canonical, 'a == "x"');
    const e = parseError(nest(MAX_NESTING + 1));
    assert.equal(e.position, MAX_NESTING);
    assert.match(e.expected, /nested/);
    assert.match(parseError('('.repeat(60_000)).expected, /nested/);
  });

  it('refuses && / || groups that would print deeper than 256', () => {
    // Each level of `a || b && (…)` prints as two: (a || (b && (…))).
    const nest = (d: number): string => (d === 0 ? "z == '1'" : `a == '1' || b == '2' && (${nest(d - 1)})`);
    const deep = parseError(nest(MAX_NESTING / 2 + 1));
    assert.match(deep.expected, /nested && \/ \|\| groups/);
    const atLimit = parseSelector(nest(MAX_NESTING / 2 - 1));
    assert.equal(parseSelector(atLimit.canonical).canonical, atLimit.canonical);
  });

  it('refuses unpaired surrogates, which would hash like U+FFFD', () => {
    assert.equal(parseError("a == '\uD800'").position, 6);
    assert.equal(parseSelector("a == '\uD83D\uDE00'").canonical, 'a == "😀"');
  });
});

describe('selector API', () => {
  it('ALL is all()', () => {
    assert.equal(ALL.canonical, 'all()');
    assert.equal(ALL.id, parseSelector('').id);
    assert.equal(ALL.evaluate({}), true);
  });

  it('and() is the conjunction, with the id of parsing `(a) && (b)`', () => {
    const ns = parseSelector("projectcalico.org/namespace == 'prod'");
    const rule = parseSelector("app == 'db' || role == 'db'");
    const both = and(ns, rule);
    const parsed = parseSelector(`(${ns.source}) && (${rule.source})`);
    assert.equal(both.canonical, '(projectcalico.org/namespace == "prod" && (app == "db" || role == "db"))');
    assert.equal(both.canonical, parsed.canonical);
    assert.equal(both.id, parsed.id);
    assert.equal(parseSelector(both.source).canonical, both.canonical);
    assert.deepEqual([...both.labelKeys], ['projectcalico.org/namespace', 'app', 'role']);
    const prod = { 'projectcalico.org/namespace': 'prod' };
    assert.equal(both.evaluate({ ...prod, app: 'db' }), true);
    assert.equal(both.evaluate({ ...prod, role: 'db' }), true);
    assert.equal(both.evaluate({ 'projectcalico.org/namespace': 'dev', app: 'db' }), false);
    assert.equal(both.evaluate(prod), false);
    assert.equal(and(ns, ALL).canonical, '(projectcalico.org/namespace == "prod" && all())');
  });

  it('and() accepts Selectors made elsewhere', () => {
    const foreign: Selector = {
      source: 'x',
      canonical: 'has(x)',
      id: 'whatever',
      labelKeys: new Set(['x']),
      evaluate: (l) => l.x !== undefined,
    };
    const both = and(foreign, parseSelector("y == '1'"));
    assert.equal(both.canonical, '(has(x) && y == "1")');
  });

  it('parseSelectorCached returns the same object and is bounded', () => {
    const first = parseSelectorCached("cache == 'first'");
    assert.equal(parseSelectorCached("cache == 'first'"), first);
    assert.throws(() => parseSelectorCached('cache =='), SelectorParseError);
    for (let i = 0; i < SELECTOR_CACHE_MAX; i++) parseSelectorCached(`cache == '${i}'`);
    assert.notEqual(parseSelectorCached("cache == 'first'"), first);
    assert.equal(parseSelectorCached("cache == 'first'").canonical, first.canonical);
  });

  it('parses the examples in Calico documentation', () => {
    const examples: [string, Labels, Labels][] = [
      ["role == 'database'", { role: 'database' }, { role: 'frontend' }],
      [
        "type == 'webserver' && deployment == 'prod'",
        { type: 'webserver', deployment: 'prod' },
        { type: 'webserver' },
      ],
      ["type in {'frontend', 'backend'}", { type: 'backend' }, { type: 'db' }],
      ["deployment != 'dev'", {}, { deployment: 'dev' }],
      ['! has(label_name)', {}, { label_name: 'x' }],
      ["projectcalico.org/name == 'kube-system'", { 'projectcalico.org/name': 'kube-system' }, {}],
      ["k8s-app == 'kube-dns'", { 'k8s-app': 'kube-dns' }, { 'k8s-app': 'dns' }],
      ["color == 'red' || color == 'blue'", { color: 'blue' }, { color: 'green' }],
      ["app in {'web', 'api'} && !has(canary)", { app: 'api' }, { app: 'api', canary: 'true' }],
    ];
    for (const [src, yes, no] of examples) check(src, [yes], [no]);
  });
});
