import { css, cx } from '@emotion/css';
import { GrafanaTheme2 } from '@grafana/data';
import { Input, useStyles2 } from '@grafana/ui';
import React, { KeyboardEvent, useEffect, useRef, useState } from 'react';

import {
  CompletionContext,
  applyCompletion,
  completionContext,
  pinnedNames,
  selectorError,
  selectorForValues,
} from '../selector';

interface Props {
  id?: string;
  value: string;
  /** Called with the new selector when it is committed: on blur, Enter or a completion. */
  onChange: (value: string) => void;
  /** Called on Shift+Enter, or Enter with no suggestion open. */
  onRunQuery: () => void;
  /** Label names of the series the selector matches. */
  getLabelNames: (selector: string) => Promise<string[]>;
  /** Values of one label among the series the selector matches. */
  getLabelValues: (name: string, selector: string) => Promise<string[]>;
  placeholder?: string;
  width?: number;
  'aria-label'?: string;
}

const MAX_SUGGESTIONS = 50;

/**
 * A one-line label selector with autocompletion of label names (after `{` or `,`) and
 * values (after an operator), from Ember's LabelNames and LabelValues for the rest of
 * the selector. Arrow keys pick a suggestion, Enter or Tab takes it, Escape closes the
 * list, Shift+Enter runs the query. A pasted selector is kept as it is, and a selector
 * that does not parse says where.
 */
export function LabelSelectorInput(props: Props) {
  const styles = useStyles2(getStyles);
  const [text, setText] = useState(props.value);
  const [context, setContext] = useState<CompletionContext>({ kind: 'none' });
  const [suggestions, setSuggestions] = useState<string[]>([]);
  const [active, setActive] = useState(0);
  const [open, setOpen] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  const pendingCursor = useRef<number | undefined>(undefined);
  const request = useRef(0);

  // A new value from outside (another editor, a pasted dashboard) replaces what is typed.
  const [outside, setOutside] = useState(props.value);
  if (props.value !== outside) {
    setOutside(props.value);
    setText(props.value);
  }

  useEffect(() => {
    if (pendingCursor.current !== undefined && input.current) {
      input.current.setSelectionRange(pendingCursor.current, pendingCursor.current);
      pendingCursor.current = undefined;
    }
  }, [text]);

  const { getLabelNames, getLabelValues } = props;

  /** Looks up what fits at the cursor; answers of an older keystroke are dropped. */
  const suggest = async (value: string, cursor: number) => {
    const ctx = completionContext(value, cursor);
    setContext(ctx);
    const id = ++request.current;
    if (ctx.kind === 'none') {
      setOpen(false);
      return;
    }
    let items: string[] = [];
    try {
      if (ctx.kind === 'name') {
        const pinned = pinnedNames(value);
        items = (await getLabelNames(selectorForValues(value, ctx))).filter((n) => !pinned.has(n) || n === ctx.prefix);
      } else {
        items = await getLabelValues(ctx.labelName, selectorForValues(value, ctx));
      }
    } catch {
      items = [];
    }
    if (id !== request.current) {
      return;
    }
    const prefix = ctx.prefix.toLowerCase();
    const matching = items.filter((s) => s.toLowerCase().includes(prefix));
    matching.sort((a, b) => Number(!a.toLowerCase().startsWith(prefix)) - Number(!b.toLowerCase().startsWith(prefix)));
    setSuggestions(matching.slice(0, MAX_SUGGESTIONS));
    setActive(0);
    setOpen(matching.length > 0);
  };

  const take = (suggestion: string) => {
    const next = applyCompletion(text, context, suggestion);
    pendingCursor.current = next.cursor;
    setText(next.text);
    setOpen(false);
    if (context.kind === 'value') {
      props.onChange(next.text);
    } else {
      // A name was put in: go on with its values.
      suggest(next.text, next.cursor);
    }
  };

  const onKeyDown = (e: KeyboardEvent<HTMLInputElement>) => {
    if (open && suggestions.length) {
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        const step = e.key === 'ArrowDown' ? 1 : -1;
        setActive((a) => (a + step + suggestions.length) % suggestions.length);
        return;
      }
      if ((e.key === 'Enter' && !e.shiftKey) || e.key === 'Tab') {
        e.preventDefault();
        take(suggestions[active]);
        return;
      }
      if (e.key === 'Escape') {
        e.preventDefault();
        setOpen(false);
        return;
      }
    }
    if (e.key === 'Enter') {
      e.preventDefault();
      setOpen(false);
      props.onChange(text);
      props.onRunQuery();
    }
  };

  const error = selectorError(text);
  const listId = `${props.id ?? 'label-selector'}-suggestions`;
  return (
    <div className={styles.wrapper}>
      <Input
        id={props.id}
        ref={input}
        aria-label={props['aria-label'] ?? 'Label selector'}
        role="combobox"
        aria-expanded={open}
        aria-controls={listId}
        aria-autocomplete="list"
        aria-invalid={Boolean(error)}
        className={styles.input}
        value={text}
        width={props.width}
        placeholder={props.placeholder ?? '{service_name="my-app"}'}
        spellCheck={false}
        autoComplete="off"
        onChange={(e) => {
          const el = e.currentTarget;
          setText(el.value);
          suggest(el.value, el.selectionStart ?? el.value.length);
        }}
        onClick={(e) => suggest(e.currentTarget.value, e.currentTarget.selectionStart ?? 0)}
        onFocus={(e) => suggest(e.currentTarget.value, e.currentTarget.selectionStart ?? e.currentTarget.value.length)}
        onKeyDown={onKeyDown}
        onBlur={() => {
          setOpen(false);
          if (text !== props.value) {
            props.onChange(text);
          }
        }}
      />
      {open && (
        <ul id={listId} role="listbox" className={styles.list} aria-label="Suggestions">
          {suggestions.map((s, i) => (
            <li
              key={s}
              role="option"
              aria-selected={i === active}
              className={cx(styles.item, i === active && styles.active)}
              // mousedown, not click: the input must not lose focus (and commit) first.
              onMouseDown={(e) => {
                e.preventDefault();
                take(s);
              }}
            >
              {s}
            </li>
          ))}
        </ul>
      )}
      {error && (
        <div role="alert" className={styles.error}>
          {error}
        </div>
      )}
    </div>
  );
}

const getStyles = (theme: GrafanaTheme2) => ({
  wrapper: css({ position: 'relative', flex: 1, minWidth: 240 }),
  input: css({ fontFamily: theme.typography.fontFamilyMonospace }),
  list: css({
    position: 'absolute',
    zIndex: theme.zIndex.dropdown,
    top: '100%',
    left: 0,
    margin: 0,
    padding: theme.spacing(0.5, 0),
    listStyle: 'none',
    minWidth: 240,
    maxHeight: 300,
    overflowY: 'auto',
    background: theme.colors.background.primary,
    border: `1px solid ${theme.colors.border.medium}`,
    boxShadow: theme.shadows.z3,
  }),
  item: css({
    padding: theme.spacing(0.5, 1),
    cursor: 'pointer',
    fontFamily: theme.typography.fontFamilyMonospace,
  }),
  active: css({ background: theme.colors.action.hover }),
  error: css({ color: theme.colors.error.text, fontSize: theme.typography.bodySmall.fontSize }),
});
