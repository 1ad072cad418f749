// Compiles an AST to a tree of closures, once, at parse time: evaluation then runs no
// interpreter dispatch and allocates nothing.
//
// Presence test: a label is present when `labels[key]` is a string. Labels are plain objects, so
// `labels.constructor` & co. come from the prototype; they are functions, never strings, and so
// read as absent. (`__proto__` cannot reach here: it is not a valid label key.) `==` and `in`
// compare against strings only, so they need no separate presence test.
import type { Labels } from '../resources.ts';
import type { Node } from './ast.ts';

export type Predicate = (labels: Labels) => boolean;

const TRUE: Predicate = () => true;
const FALSE: Predicate = () => false;

export function compile(n: Node): Predicate {
  switch (n.kind) {
    case 'all':
      return TRUE;
    case 'global':
      // Calico's GlobalNode is true: "non-namespaced" is the meaning of a namespaceSelector of
      // `global()`, which the rule compiler handles (the only place Calico allows it).
      return TRUE;
    case 'has': {
      const k = n.key;
      return (l) => typeof l[k] === 'string';
    }
    case 'eq': {
      const { key: k, value: v } = n;
      return (l) => l[k] === v;
    }
    case 'ne': {
      const { key: k, value: v } = n;
      return (l) => l[k] !== v;
    }
    case 'contains': {
      const { key: k, value: v } = n;
      return (l) => {
        const x = l[k];
        return typeof x === 'string' && x.includes(v);
      };
    }
    case 'startsWith': {
      const { key: k, value: v } = n;
      return (l) => {
        const x = l[k];
        return typeof x === 'string' && x.startsWith(v);
      };
    }
    case 'endsWith': {
      const { key: k, value: v } = n;
      return (l) => {
        const x = l[k];
        return typeof x === 'string' && x.endsWith(v);
      };
    }
    case 'in':
      return compileIn(n.key, n.values);
    case 'notIn': {
      const inSet = compileIn(n.key, n.values);
      return (l) => !inSet(l);
    }
    case 'not': {
      const f = compile(n.operand);
      return (l) => !f(l);
    }
    case 'and':
      return compileAtoms(n.operands) ?? compileAnd(n.operands.map(compile));
    case 'or':
      return compileOr(n.operands.map(compile));
  }
}

function compileIn(k: string, values: readonly string[]): Predicate {
  if (values.length === 0) return FALSE;
  if (values.length === 1) {
    const v = values[0]!;
    return (l) => l[k] === v;
  }
  const set: ReadonlySet<unknown> = new Set(values);
  return (l) => set.has(l[k]);
}

// How an atom of a conjunction tests the label's value (see compileAtoms).
const EQ = 0;
const NE = 1;
const HAS = 2;
const IN = 3;

/**
 * A conjunction of plain atoms (`k == v`, `k != v`, `has(k)`, `k in {...}`), the usual rule
 * selector, as one closure looping over them: one call an evaluation, where a closure per atom
 * costs a call each (none inlined: every atom's closure is a different function to the caller).
 * Undefined when an operand is anything else.
 */
function compileAtoms(operands: readonly Node[]): Predicate | undefined {
  const n = operands.length;
  // (key, op, value) for each atom, in one array: tens of thousands of selectors are kept.
  const atoms: unknown[] = [];
  for (const op of operands) {
    if (op.kind === 'eq' || op.kind === 'ne') atoms.push(op.key, op.kind === 'eq' ? EQ : NE, op.value);
    else if (op.kind === 'has') atoms.push(op.key, HAS, undefined);
    else if (op.kind === 'in' && op.values.length > 0)
      atoms.push(
        op.key,
        op.values.length === 1 ? EQ : IN,
        op.values.length === 1 ? op.values[0] : new Set(op.values),
      );
    else return undefined;
  }
  return (l) => {
    for (let i = 0; i < 3 * n; i += 3) {
      const x = l[atoms[i] as string];
      switch (atoms[i + 1]) {
        case EQ:
          if (x !== atoms[i + 2]) return false;
          break;
        case NE:
          if (x === atoms[i + 2]) return false;
          break;
        case HAS:
          if (typeof x !== 'string') return false;
          break;
        default:
          if (!(atoms[i + 2] as ReadonlySet<unknown>).has(x)) return false;
      }
    }
    return true;
  };
}

// Two operands is by far the common case (and the shape `and()` builds): no loop.
function compileAnd(fs: Predicate[]): Predicate {
  if (fs.length === 2) {
    const [a, b] = fs as [Predicate, Predicate];
    return (l) => a(l) && b(l);
  }
  return (l) => {
    for (let i = 0; i < fs.length; i++) if (!fs[i]!(l)) return false;
    return true;
  };
}

function compileOr(fs: Predicate[]): Predicate {
  if (fs.length === 2) {
    const [a, b] = fs as [Predicate, Predicate];
    return (l) => a(l) || b(l);
  }
  return (l) => {
    for (let i = 0; i < fs.length; i++) if (fs[i]!(l)) return true;
    return false;
  };
}
