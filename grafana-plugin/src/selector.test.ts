import {
  applyCompletion,
  completionContext,
  formatSelector,
  parseSelector,
  selectorError,
  selectorForValues,
  withMatchers,
} from './selector';

describe('parseSelector and formatSelector', () => {
  it('read every operator, spaces and escapes', () => {
    const matchers = parseSelector(' { service_name = "api" , env=~"prod.*", pod!="a\\"b", zone !~ "eu-.*", } ');
    expect(matchers).toEqual([
      { name: 'service_name', op: '=', value: 'api' },
      { name: 'env', op: '=~', value: 'prod.*' },
      { name: 'pod', op: '!=', value: 'a"b' },
      { name: 'zone', op: '!~', value: 'eu-.*' },
    ]);
    expect(formatSelector(matchers)).toBe('{service_name="api",env=~"prod.*",pod!="a\\"b",zone!~"eu-.*"}');
    expect(parseSelector(formatSelector(matchers))).toEqual(matchers);
  });

  it('take an empty selector as no matchers', () => {
    expect(parseSelector('')).toEqual([]);
    expect(parseSelector('{}')).toEqual([]);
    expect(formatSelector([])).toBe('{}');
  });

  it.each([
    ['service_name="api"', /expected "\{"/],
    ['{service_name}', /expected one of = != =~ !~ at position 14/],
    ['{service_name=api}', /expected a double-quoted value at position 15/],
    ['{a="b"', /expected "," or "\}" at position 7/],
    ['{a="b', /closing double quote/],
    ['{a="b"} x', /nothing after "\}"/],
  ])('say what is wrong with %s', (text, message) => {
    expect(selectorError(text)).toMatch(message);
  });
});

describe('withMatchers', () => {
  it('adds ad hoc filters after the selector and keeps a selector without filters as written', () => {
    expect(withMatchers('{service_name="api"}', [{ name: 'env', op: '!=', value: 'dev' }])).toBe(
      '{service_name="api",env!="dev"}'
    );
    expect(withMatchers('{ a = "b" }', [])).toBe('{ a = "b" }');
    expect(withMatchers('', [])).toBe('{}');
  });
});

describe('completion', () => {
  /** Types `text` with the cursor at `|`, takes `suggestion`, and returns the text with `|` at the new cursor. */
  function complete(textWithCursor: string, suggestion: string): string {
    const cursor = textWithCursor.indexOf('|');
    const text = textWithCursor.replace('|', '');
    const next = applyCompletion(text, completionContext(text, cursor), suggestion);
    return next.text.slice(0, next.cursor) + '|' + next.text.slice(next.cursor);
  }

  it.each([
    ['|', { kind: 'name', prefix: '' }],
    ['{|', { kind: 'name', prefix: '' }],
    ['{serv|', { kind: 'name', prefix: 'serv' }],
    ['{a="b", en|', { kind: 'name', prefix: 'en' }],
    ['{service_name="|"}', { kind: 'value', labelName: 'service_name', prefix: '' }],
    ['{env=~"pro|"}', { kind: 'value', labelName: 'env', prefix: 'pro' }],
    ['{env=|', { kind: 'value', labelName: 'env', prefix: '' }],
    ['{a="b"|}', { kind: 'none' }],
  ])('knows what %s is typing', (textWithCursor, expected) => {
    const cursor = textWithCursor.indexOf('|');
    expect(completionContext(textWithCursor.replace('|', ''), cursor)).toMatchObject(expected);
  });

  it.each([
    ['|', 'service_name', '{service_name="|"}'],
    ['serv|', 'service_name', '{service_name="|"}'],
    ['{|}', 'service_name', '{service_name="|"}'],
    ['{|', 'service_name', '{service_name="|"}'],
    ['{a="b",|', 'env', '{a="b",env="|"}'],
    ['{a="b",|}', 'env', '{a="b",env="|"}'],
    ['{ser|vice}', 'service_name', '{service_name="|"}'],
    ['{env|="x"}', 'environment', '{environment|="x"}'],
    ['{service_name="|"}', 'api', '{service_name="api"|}'],
    ['{service_name="a|"}', 'api', '{service_name="api"|}'],
    ['{env=~|}', 'prod', '{env=~"prod"|}'],
    ['{a="|",b="c"}', 'x"y', '{a="x\\"y"|,b="c"}'],
  ])('completes %s with %s as %s', (text, suggestion, expected) => {
    expect(complete(text, suggestion)).toBe(expected);
  });

  it('asks for values with the rest of the selector only', () => {
    const text = '{service_name="api",env="pr"}';
    const context = completionContext(text, text.indexOf('pr') + 2);
    expect(selectorForValues(text, context)).toBe('{service_name="api"}');
  });
});
