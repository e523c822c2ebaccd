/**
 * YAML text -> a small tree that remembers where every node came from (file:line:column), built
 * from js-yaml's event stream. Duplicate keys are collected as problems instead of stopping at the
 * first one, so the user sees every mistake of the file at once. Shared by the inventory
 * (cluster.yaml) and the role files (roles/*.yaml).
 */
import { EVENT_ID, SCALAR_STYLE, YAMLException, constructFromEvents, getScalarValue, parseEvents } from 'js-yaml';
import type { DocumentEvent, Event, ScalarEvent } from 'js-yaml';
import { PibakeError } from './errors.ts';
import type { Location, Problem } from './errors.ts';

export type YamlNode = YamlScalar | YamlMap | YamlSeq;

export interface YamlScalar {
  kind: 'scalar';
  /** The value as YAML's core schema resolves it (number, boolean, null or string). */
  value: unknown;
  /** The decoded text, whatever its resolved type: `5432` -> "5432". */
  text: string;
  /** Written in single or double quotes; untagged, its `value` is then the string `text`. */
  quoted: boolean;
  /** Where the scalar starts; for a quoted scalar, its opening quote. */
  location: Location;
}

export interface YamlMap {
  kind: 'map';
  entries: { key: string; keyLocation: Location; value: YamlNode }[];
  location: Location;
}

export interface YamlSeq {
  kind: 'seq';
  items: YamlNode[];
  location: Location;
}

export interface ParsedYaml {
  /** undefined for an empty file. */
  root: YamlNode | undefined;
  problems: Problem[];
}

/** Parse one YAML document. Syntax errors throw a PibakeError with the location. */
export function parseYamlTree(source: string, file: string): ParsedYaml {
  let events: Event[];
  try {
    events = parseEvents(source, { filename: file });
  } catch (error) {
    throw syntaxError(error, file);
  }
  const lines = lineStarts(source);
  const at = (offset: number): Location => locate(lines, file, offset);
  const problems: Problem[] = [];
  const anchors = new Map<string, YamlNode>();
  let index = 0;
  const documents: (YamlNode | undefined)[] = [];

  const next = (): Event => {
    const event = events[index++];
    if (!event) throw new Error('js-yaml event stream ended early');
    return event;
  };

  const remember = (event: { anchorStart: number; anchorEnd: number }, node: YamlNode): void => {
    if (event.anchorStart >= 0) anchors.set(source.slice(event.anchorStart, event.anchorEnd), node);
  };

  const readNode = (event: Event): YamlNode => {
    switch (event.type) {
      case EVENT_ID.SCALAR: {
        // Point at the opening quote of a quoted scalar, where the user sees the value start.
        const quoted = event.style === SCALAR_STYLE.SINGLE_QUOTED || event.style === SCALAR_STYLE.DOUBLE_QUOTED;
        const start = event.valueStart >= 0 ? event.valueStart - (quoted ? 1 : 0) : event.tagStart;
        const node = scalar(event, source, quoted, at(Math.max(0, start)), problems);
        remember(event, node);
        return node;
      }
      case EVENT_ID.ALIAS: {
        const name = source.slice(event.anchorStart, event.anchorEnd);
        const target = anchors.get(name);
        if (target) return target;
        problems.push({ message: `alias *${name} refers to no anchor`, location: at(Math.max(0, event.anchorStart - 1)) });
        return { kind: 'scalar', value: null, text: '', quoted: false, location: at(event.anchorStart) };
      }
      case EVENT_ID.SEQUENCE: {
        const node: YamlSeq = { kind: 'seq', items: [], location: at(event.start) };
        remember(event, node);
        for (let item = next(); item.type !== EVENT_ID.POP; item = next()) node.items.push(readNode(item));
        return node;
      }
      case EVENT_ID.MAPPING: {
        const node: YamlMap = { kind: 'map', entries: [], location: at(event.start) };
        remember(event, node);
        const seen = new Map<string, Location>();
        for (let keyEvent = next(); keyEvent.type !== EVENT_ID.POP; keyEvent = next()) {
          const keyNode = readNode(keyEvent);
          const value = readNode(next());
          if (keyNode.kind !== 'scalar') {
            problems.push({ message: 'a mapping key must be a plain name, not a list or mapping', location: keyNode.location });
            continue;
          }
          const key = keyNode.text;
          const first = seen.get(key);
          if (first) {
            problems.push({
              message: `duplicate key "${key}"`,
              hint: `it is already set at line ${first.line}; keep one of them`,
              location: keyNode.location,
            });
            continue;
          }
          seen.set(key, keyNode.location);
          node.entries.push({ key, keyLocation: keyNode.location, value });
        }
        return node;
      }
      default:
        throw new Error(`unexpected js-yaml event ${event.type}`);
    }
  };

  while (index < events.length) {
    const event = next();
    if (event.type !== EVENT_ID.DOCUMENT) throw new Error(`unexpected js-yaml event ${event.type} at top level`);
    const content = next();
    if (content.type === EVENT_ID.POP) {
      documents.push(undefined);
      continue;
    }
    documents.push(readNode(content));
    if (next().type !== EVENT_ID.POP) throw new Error('js-yaml document did not close');
  }
  if (documents.length > 1) {
    problems.push({
      message: 'the file holds more than one YAML document',
      hint: 'remove the "---" separators; this file is one document',
      location: { file, line: 1, column: 1 },
    });
  }
  return { root: documents[0], problems };
}

function scalar(event: ScalarEvent, source: string, quoted: boolean, location: Location, problems: Problem[]): YamlScalar {
  const text = event.valueStart >= 0 ? getScalarValue(source, event) : '';
  let value: unknown = text;
  // Let js-yaml's core schema decide what a plain or tagged scalar means (`17` is a number, `~` null).
  if (event.style === SCALAR_STYLE.PLAIN || event.tagStart >= 0) {
    try {
      const document: DocumentEvent = { type: EVENT_ID.DOCUMENT, explicitStart: false, explicitEnd: false, directives: [] };
      const lone: ScalarEvent = { ...event, anchorStart: -1, anchorEnd: -1 };
      [value] = constructFromEvents([document, lone, { type: EVENT_ID.POP }], { source });
    } catch (error) {
      const reason = error instanceof YAMLException ? error.reason : String(error);
      problems.push({ message: `cannot read this value: ${reason}`, location });
    }
  }
  return { kind: 'scalar', value, text, quoted, location };
}

function syntaxError(error: unknown, file: string): PibakeError {
  if (error instanceof YAMLException) {
    const location: Location = error.mark
      ? { file, line: error.mark.line + 1, column: error.mark.column + 1 }
      : { file };
    return new PibakeError(`YAML syntax error: ${error.reason}`, {
      hint: 'check indentation, colons and quotes on this line or the one before it',
      location,
      cause: error,
    });
  }
  return new PibakeError(`cannot parse ${file} as YAML`, { cause: error, location: { file } });
}

function lineStarts(source: string): number[] {
  const starts = [0];
  for (let i = 0; i < source.length; i++) if (source.charCodeAt(i) === 10) starts.push(i + 1);
  return starts;
}

function locate(starts: number[], file: string, offset: number): Location {
  let low = 0;
  let high = starts.length - 1;
  while (low < high) {
    const mid = (low + high + 1) >> 1;
    if ((starts[mid] ?? 0) <= offset) low = mid;
    else high = mid - 1;
  }
  return { file, line: low + 1, column: offset - (starts[low] ?? 0) + 1 };
}
