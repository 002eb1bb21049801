// Links to Ember's own UI, which keeps its whole state in the URL (see ui/app.js):
// `query=<type>{selector}`, `from`/`until` (unix ms), and for a diff `view=diff` with
// `lselector`/`rselector` and `lfrom`/`luntil`/`rfrom`/`runtil`.

/** Both sides of a diff, resolved: a selector and a range in unix ms each. */
export interface DiffRanges {
  baseline: { selector: string; from: number; to: number };
  comparison: { selector: string; from: number; to: number };
}

export interface UiLinkTarget {
  profileTypeId: string;
  labelSelector: string;
  /** Unix ms. */
  from: number;
  to: number;
  diff?: DiffRanges;
}

/** Returns the URL of Ember's UI at `base` showing the target. */
export function emberUiUrl(base: string, target: UiLinkTarget): string {
  const p = new URLSearchParams();
  if (target.diff) {
    p.set('view', 'diff');
  }
  p.set('query', `${target.profileTypeId}${target.labelSelector}`);
  p.set('from', String(Math.floor(target.from)));
  p.set('until', String(Math.ceil(target.to)));
  if (target.diff) {
    const { baseline: l, comparison: r } = target.diff;
    p.set('lselector', l.selector);
    p.set('rselector', r.selector);
    p.set('lfrom', String(l.from));
    p.set('luntil', String(l.to));
    p.set('rfrom', String(r.from));
    p.set('runtil', String(r.to));
  }
  return `${base.replace(/\/+$/, '')}/?${p}`;
}
