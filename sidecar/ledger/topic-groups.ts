import picomatch from "picomatch";

/** The label of topics past the label cap (in /stats and metrics) and of ungrouped topics in a policy's status. */
export const OTHER_TOPICS = "_other";

/** One topic group from `PUT /config` or ConnectionPolicy `spec.topics[]`. */
export interface TopicGroupSpec {
  /** Glob over topic names, e.g. `room:*`; also the group's name in /stats and metrics. */
  match: string;
  /** Joined channels this pod admits in the group; absent = no cap. */
  maxChannels?: number;
}

/**
 * Compiled topic groups. A topic belongs to the first group whose glob matches it. Groups
 * keep label values bounded: a million `room:<id>` topics are one `room:*` series.
 */
export class TopicGroups {
  private readonly matchers: ((topic: string) => boolean)[];
  private readonly specs: TopicGroupSpec[];
  /** Some group caps its channels, so joins may be refused. */
  readonly hasBudgets: boolean;

  constructor(specs: readonly TopicGroupSpec[] = []) {
    this.specs = specs.map((s) => ({ ...s }));
    this.hasBudgets = specs.some((s) => s.maxChannels !== undefined);
    // Topics are not paths: `*` must match `:` and `/` alike, so glob the whole string.
    this.matchers = specs.map((s) => picomatch(s.match, { dot: true, nonegate: true, noglobstar: false, contains: false, bash: true }));
  }

  get size(): number {
    return this.specs.length;
  }

  /** Index of the group holding `topic`, or -1. */
  groupOf(topic: string): number {
    for (let i = 0; i < this.matchers.length; i++) if (this.matchers[i]!(topic)) return i;
    return -1;
  }

  name(g: number): string {
    return this.specs[g]!.match;
  }

  maxChannels(g: number): number | undefined {
    return this.specs[g]!.maxChannels;
  }

  toJSON(): TopicGroupSpec[] {
    return this.specs.map((s) => ({ ...s }));
  }
}
