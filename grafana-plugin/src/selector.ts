// Label selectors as Ember reads them (`{service_name="api",env=~"prod.*"}`): parsing,
// printing, merging in ad hoc filters, and where the cursor is for autocompletion.

export type MatchOp = '=' | '!=' | '=~' | '!~';

export interface Matcher {
  name: string;
  op: MatchOp;
  value: string;
}

const NAME = /[A-Za-z_][A-Za-z0-9_.]*/y;
const OP = /=~|!~|!=|=/y;

/** The error of a selector that does not parse, with where and what was expected. */
export class SelectorError extends Error {
  constructor(
    message: string,
    readonly offset: number
  ) {
    super(message);
    this.name = 'SelectorError';
  }
}

/**
 * Parses `{name op "value", ...}`; an empty string or `{}` gives no matchers. Throws a
 * `SelectorError` that says what was expected where.
 */
export function parseSelector(text: string): Matcher[] {
  const s = text.trim();
  if (s === '') {
    return [];
  }
  let i = 0;
  const fail = (what: string): never => {
    const found = i < s.length ? `"${s.slice(i, i + 12)}"` : 'the end';
    throw new SelectorError(`expected ${what} at position ${i + 1} of the label selector, found ${found}`, i);
  };
  const skip = () => {
    while (i < s.length && /\s/.test(s[i])) {
      i++;
    }
  };
  const sticky = (re: RegExp): string | undefined => {
    re.lastIndex = i;
    const m = re.exec(s);
    if (!m) {
      return undefined;
    }
    i += m[0].length;
    return m[0];
  };
  if (s[i] !== '{') {
    fail('"{" (a selector looks like {service_name="api"})');
  }
  i++;
  const matchers: Matcher[] = [];
  for (;;) {
    skip();
    if (s[i] === '}') {
      i++;
      break;
    }
    const name = sticky(NAME) ?? fail('a label name');
    skip();
    const op = (sticky(OP) as MatchOp | undefined) ?? fail('one of = != =~ !~');
    skip();
    if (s[i] !== '"') {
      fail('a double-quoted value');
    }
    i++;
    let value = '';
    while (i < s.length && s[i] !== '"') {
      if (s[i] === '\\' && i + 1 < s.length) {
        i++;
      }
      value += s[i];
      i++;
    }
    if (s[i] !== '"') {
      fail('the closing double quote of the value');
    }
    i++;
    matchers.push({ name, op, value });
    skip();
    if (s[i] === ',') {
      i++;
      continue;
    }
    if (s[i] === '}') {
      i++;
      break;
    }
    fail('"," or "}"');
  }
  skip();
  if (i < s.length) {
    fail('nothing after "}"');
  }
  return matchers;
}

/** Returns the error message of a selector, or undefined when it parses. */
export function selectorError(text: string): string | undefined {
  try {
    parseSelector(text);
    return undefined;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

/** Quotes a label value: backslashes and double quotes escaped. */
export function quoteValue(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** Prints matchers as a selector, `{}` when there are none. */
export function formatSelector(matchers: Matcher[]): string {
  return `{${matchers.map((m) => `${m.name}${m.op}${quoteValue(m.value)}`).join(',')}}`;
}

/**
 * Returns `selector` with `extra` matchers added after its own (each must hold: a
 * repeated label name narrows, as in PromQL). The selector keeps its own text when
 * nothing is added, so template variables in it stay as the user wrote them.
 */
export function withMatchers(selector: string, extra: Matcher[]): string {
  if (!extra.length) {
    return selector.trim() === '' ? '{}' : selector;
  }
  return formatSelector([...parseSelector(selector), ...extra]);
}

/** Maps a Grafana ad hoc filter operator to a matcher operator (undefined when Ember has none). */
export function adHocOperator(operator: string): MatchOp | undefined {
  return (['=', '!=', '=~', '!~'] as const).find((op) => op === operator);
}

/** Where the cursor is in a selector being typed, and so what to suggest. */
export type CompletionContext =
  | { kind: 'none' }
  /** Typing a label name: `prefix` is what is typed of it, from `start`. */
  | { kind: 'name'; prefix: string; start: number; end: number }
  /** Typing the value of `labelName`; `start..end` is the value with its quotes. */
  | { kind: 'value'; labelName: string; prefix: string; start: number; end: number };

/**
 * Returns what the cursor at `cursor` in `text` is typing: a label name right after
 * `{` or `,`, a value right after an operator (inside its quotes or not), else nothing.
 */
export function completionContext(text: string, cursor: number): CompletionContext {
  const before = text.slice(0, cursor);
  const value = /([A-Za-z_][A-Za-z0-9_.]*)\s*(=~|!~|!=|=)\s*("?)((?:[^"\\]|\\.)*)$/.exec(before);
  if (value) {
    const start = cursor - value[4].length - value[3].length;
    // The value ends at its closing quote when there is one.
    let end = cursor;
    if (value[3] === '"') {
      const close = /^(?:[^"\\]|\\.)*"/.exec(text.slice(cursor));
      end = close ? cursor + close[0].length : cursor;
    }
    return { kind: 'value', labelName: value[1], prefix: value[4], start, end };
  }
  const name = /(^|[{,])\s*([A-Za-z_][A-Za-z0-9_.]*)?$/.exec(before);
  if (name && (name[1] !== '' || before.trim() === '' || before.trim() === name[2])) {
    const prefix = name[2] ?? '';
    const rest = /^[A-Za-z0-9_.]*/.exec(text.slice(cursor))![0];
    return { kind: 'name', prefix, start: cursor - prefix.length, end: cursor + rest.length };
  }
  return { kind: 'none' };
}

/**
 * Returns the text with a suggestion put in where `context` says, and where the cursor
 * goes: after `name="` for a name (ready for the value), after the closing quote for a
 * value. A name typed into an empty field gets its braces.
 */
export function applyCompletion(
  text: string,
  context: CompletionContext,
  suggestion: string
): { text: string; cursor: number } {
  if (context.kind === 'none') {
    return { text, cursor: text.length };
  }
  if (context.kind === 'value') {
    const quoted = quoteValue(suggestion);
    const next = text.slice(0, context.start) + quoted + text.slice(context.end);
    return { text: next, cursor: context.start + quoted.length };
  }
  const rest = text.slice(context.end);
  const hasOp = /^\s*(=~|!~|!=|=)/.test(rest);
  const insert = hasOp ? suggestion : `${suggestion}="`;
  let head = text.slice(0, context.start);
  let tail = rest;
  if (!head.includes('{')) {
    head = `{${head.trimStart()}`;
  }
  if (!hasOp && !tail.trimStart().startsWith('"')) {
    // Close the value's quote now, so the selector stays whole while the value is typed.
    tail = `"${tail}`;
  }
  if (!tail.includes('}')) {
    tail = `${tail}}`;
  }
  return { text: head + insert + tail, cursor: head.length + insert.length };
}

/** Returns the label names a selector already pins with `=`, so a suggestion can skip them. */
export function pinnedNames(text: string): Set<string> {
  try {
    return new Set(
      parseSelector(text)
        .filter((m) => m.op === '=')
        .map((m) => m.name)
    );
  } catch {
    return new Set();
  }
}

/**
 * Returns the selector without the matcher whose value the cursor is typing, so that the
 * values offered for a label are those the rest of the selector allows. The text being
 * typed is seldom whole (`{a="b",env="`): the typed matcher is cut out and the rest closed.
 */
export function selectorForValues(text: string, context: CompletionContext): string {
  if (context.kind !== 'value') {
    return text;
  }
  const nameStart = text.lastIndexOf(context.labelName, context.start);
  const rest = text.slice(0, Math.max(nameStart, 0)) + text.slice(context.end);
  for (const candidate of [rest, `${rest}}`]) {
    const tidy = candidate
      .replace(/,\s*,/g, ',')
      .replace(/\{\s*,/, '{')
      .replace(/,\s*\}/, '}');
    try {
      return formatSelector(parseSelector(tidy).filter((m) => m.name !== context.labelName));
    } catch {
      // Try the next way of closing it.
    }
  }
  return '{}';
}
