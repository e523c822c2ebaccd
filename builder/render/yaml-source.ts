/**
 * A YAML reader that keeps where every value came from, so role files can be validated with
 * file:line:column errors. Built on js-yaml's event stream (parseEvents), which carries source
 * offsets; the node tree it yields is deliberately small: mappings, sequences and scalars.
 */
import { EVENT_ID, getScalarValue, parseEvents, YAMLException, type Event } from 'js-yaml';
import { PibakeError, type Location } from '../common/errors.ts';

export type YamlNode =
  | { kind: 'scalar'; value: string; quoted: boolean; location: Location }
  | { kind: 'sequence'; items: YamlNode[]; location: Location }
  | { kind: 'mapping'; entries: { key: string; keyLocation: Location; value: YamlNode }[]; location: Location };

/** Parse one YAML document; undefined for an empty document. Aliases are refused (not needed in role files). */
export function parseLocatedYaml(text: string, file: string): YamlNode | undefined {
  let events: Event[];
  try {
    events = parseEvents(text, { filename: file });
  } catch (error) {
    const mark = error instanceof YAMLException ? error.mark : undefined;
    throw new PibakeError(`invalid YAML: ${error instanceof YAMLException ? error.reason : String(error)}`, {
      location: mark ? { file, line: mark.line + 1, column: mark.column + 1 } : { file },
      cause: error,
    });
  }
  const lineStarts = [0];
  for (let i = 0; i < text.length; i++) if (text[i] === '\n') lineStarts.push(i + 1);
  const locate = (offset: number): Location => {
    let lo = 0;
    let hi = lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((lineStarts[mid] ?? 0) <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { file, line: lo + 1, column: offset - (lineStarts[lo] ?? 0) + 1 };
  };

  let pos = 0;
  const next = (): Event => {
    const event = events[pos++];
    if (!event) throw new PibakeError('unexpected end of YAML', { location: { file } });
    return event;
  };
  const readNode = (event: Event): YamlNode => {
    switch (event.type) {
      case EVENT_ID.SCALAR: {
        const start = event.valueStart >= 0 ? event.valueStart : Math.max(event.tagStart, event.anchorStart, 0);
        return {
          kind: 'scalar',
          value: getScalarValue(text, event),
          quoted: event.style !== 1,
          location: locate(start),
        };
      }
      case EVENT_ID.SEQUENCE: {
        const items: YamlNode[] = [];
        for (let e = next(); e.type !== EVENT_ID.POP; e = next()) items.push(readNode(e));
        return { kind: 'sequence', items, location: locate(event.start) };
      }
      case EVENT_ID.MAPPING: {
        const entries: { key: string; keyLocation: Location; value: YamlNode }[] = [];
        for (let e = next(); e.type !== EVENT_ID.POP; e = next()) {
          const key = readNode(e);
          if (key.kind !== 'scalar') throw new PibakeError('mapping keys must be plain strings', { location: key.location });
          if (entries.some((entry) => entry.key === key.value)) {
            throw new PibakeError(`duplicate key "${key.value}"`, { location: key.location });
          }
          entries.push({ key: key.value, keyLocation: key.location, value: readNode(next()) });
        }
        return { kind: 'mapping', entries, location: locate(event.start) };
      }
      case EVENT_ID.ALIAS:
        throw new PibakeError('YAML aliases (*name) are not supported here', { location: locate(event.anchorStart) });
      default:
        throw new PibakeError('unexpected YAML structure', { location: { file } });
    }
  };

  const first = next();
  if (first.type !== EVENT_ID.DOCUMENT) throw new PibakeError('expected a YAML document', { location: { file } });
  const body = next();
  if (body.type === EVENT_ID.POP) return undefined;
  const root = readNode(body);
  if (next().type !== EVENT_ID.POP || (pos < events.length && events[pos]?.type === EVENT_ID.DOCUMENT)) {
    throw new PibakeError('expected exactly one YAML document', { location: { file } });
  }
  return root;
}

/** A plain (unquoted) scalar that YAML would read as null. */
export function isNullScalar(node: YamlNode): boolean {
  return node.kind === 'scalar' && !node.quoted && ['', '~', 'null', 'Null', 'NULL'].includes(node.value);
}
